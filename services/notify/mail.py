"""Sending a notice as an email: over SMTP when SMTP_URL is set, otherwise as .eml files in an outbox folder.

`send` blocks on the network up to its deadline (connecting, TLS, the whole conversation), however slowly the server
answers: call it from the notify worker's own mail threads, never from a consumer's thread, so that one slow mail
server holds up nothing else.
"""
from __future__ import annotations

import os
import re
import smtplib
import ssl
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, parseaddr
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from shared.outbound import Deadline


class MailSettingsError(ValueError):
    """SMTP_URL or the sender cannot work; raised at start so that nobody learns it from a lost mail."""


class UnsendableMail(ValueError):
    """The mail itself is unfit to send (an injected header, a recipient that is not one address)."""


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    body: str
    message_id: str  # stable per notice, e.g. "<{notice_id}@woodpecker>", so that a resend is recognisable


@dataclass(frozen=True)
class MailResult:
    delivered: bool
    error: str | None
    permanent: bool  # retrying cannot help: the relay refused this recipient or this mail for good

    @classmethod
    def sent(cls) -> MailResult:
        return cls(delivered=True, error=None, permanent=False)

    @classmethod
    def failed(cls, error: str, *, permanent: bool = False) -> MailResult:
        return cls(delivered=False, error=error[:300], permanent=permanent)


class Mailer(Protocol):
    def send(self, mail: Mail) -> MailResult: ...

    def describe(self) -> str: ...


def mailer_from(smtp_url: str | None, sender: str, outbox_dir: Path, deadline_s: float = 10.0, *,
                tls_context: ssl.SSLContext | None = None) -> Mailer:
    """The mailer SMTP_URL asks for; without one, files in `outbox_dir`, so that `make up` shows what it would send.

    `tls_context` replaces the system's trusted certificates, for a relay with a private CA (and the tests).
    """
    if not _address_of(sender):
        raise MailSettingsError(f"the mail sender {sender!r} has no email address")
    if not smtp_url:
        return FileMailer(sender, outbox_dir)
    return SmtpMailer(smtp_relay_from(smtp_url), sender, deadline_s, tls_context or ssl.create_default_context())


Security = Literal["starttls", "tls", "none"]


@dataclass(frozen=True)
class SmtpRelay:
    host: str
    port: int
    security: Security
    username: str | None = None
    password: str | None = None

    def describe(self) -> str:
        label = {"starttls": "STARTTLS", "tls": "TLS", "none": "no TLS"}[self.security]
        return f"SMTP {self.host}:{self.port} ({label})"


def smtp_relay_from(smtp_url: str) -> SmtpRelay:
    """The relay an SMTP_URL names. Error messages never repeat the URL: it may hold a password."""
    parts = urlsplit(smtp_url.strip())
    if parts.scheme not in ("smtp", "smtps"):
        raise MailSettingsError(f"SMTP_URL must start with smtp:// or smtps://, not {parts.scheme or 'nothing'}://")
    if not parts.hostname:
        raise MailSettingsError("SMTP_URL names no host")
    if parts.path not in ("", "/"):
        raise MailSettingsError("SMTP_URL must not have a path")
    try:
        port = parts.port or (465 if parts.scheme == "smtps" else 587)
    except ValueError as bad_port:
        raise MailSettingsError(f"SMTP_URL has a bad port: {bad_port}") from None
    username, password = unquote(parts.username or ""), unquote(parts.password or "")
    if bool(username) != bool(password):
        raise MailSettingsError("SMTP_URL must have both a user and a password, or neither")
    if not (username + password).isascii():
        # smtplib encodes AUTH as ASCII: it would fail at every send, so say it now.
        raise MailSettingsError("SMTP_URL: the user and the password must be ASCII")
    return SmtpRelay(parts.hostname, port, _security_of(parts.scheme, parts.query), username or None, password or None)


def _security_of(scheme: str, query: str) -> Security:
    options = parse_qs(query, keep_blank_values=True)
    unknown = set(options) - {"starttls"}
    if unknown:
        raise MailSettingsError(f"SMTP_URL has unknown options: {', '.join(sorted(unknown))} (only starttls=false)")
    if scheme == "smtps":
        if options:
            raise MailSettingsError("SMTP_URL: smtps:// is TLS from the start; starttls does not apply")
        return "tls"
    starttls = options.get("starttls", ["true"])[-1].lower()
    if starttls not in ("true", "false"):
        raise MailSettingsError(f"SMTP_URL: starttls must be true or false, not {starttls!r}")
    return "starttls" if starttls == "true" else "none"


def message_from(mail: Mail, sender: str) -> EmailMessage:
    """The RFC 5322 message for `mail`; the default policy writes non-ASCII headers as UTF-8 encoded-words."""
    for field, value in (("to", mail.to), ("subject", mail.subject), ("message_id", mail.message_id)):
        if "\r" in value or "\n" in value:
            raise UnsendableMail(f"line break in {field}: refused as header injection")
    if len(getaddresses([mail.to])) != 1 or not _address_of(mail.to):
        raise UnsendableMail(f"not one email address: {mail.to!r}")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = mail.message_id
    # RFC 3834: tells mail servers and people's auto-responders not to answer (no vacation replies to noreply@).
    message["Auto-Submitted"] = "auto-generated"
    # base64 rather than 8bit: a relay need not announce 8BITMIME, and Chinese lines outgrow quoted-printable.
    message.set_content(mail.body, charset="utf-8", cte="base64")
    return message


def _address_of(mailbox: str) -> str:
    address = parseaddr(mailbox)[1]
    return address if "@" in address else ""


class SmtpMailer:
    """One SMTP connection per mail: notices are few, and a fresh connection never finds a stale one to recover."""

    def __init__(self, relay: SmtpRelay, sender: str, deadline_s: float, tls_context: ssl.SSLContext) -> None:
        self.relay = relay
        self.sender = sender
        self.deadline_s = deadline_s
        self.tls_context = tls_context

    def describe(self) -> str:
        return self.relay.describe()

    def send(self, mail: Mail) -> MailResult:
        try:
            message = message_from(mail, self.sender)
        except UnsendableMail as unsendable:
            return MailResult.failed(str(unsendable), permanent=True)
        with Deadline(self.deadline_s) as deadline:
            try:
                self._deliver(message, _address_of(mail.to), deadline)
            except (smtplib.SMTPException, OSError) as failure:  # ssl.SSLError and TimeoutError are OSErrors
                if deadline.passed:
                    return MailResult.failed(f"no complete answer from {self.relay.host}:{self.relay.port} within "
                                             f"the {deadline.seconds:g} s deadline")
                return self._failure(failure)
        return MailResult.sent()

    def _failure(self, failure: smtplib.SMTPException | OSError) -> MailResult:
        if isinstance(failure, smtplib.SMTPRecipientsRefused):
            code, reply = next(iter(failure.recipients.values()))
            return MailResult.failed(f"recipient refused: {code} {_text(reply)}", permanent=500 <= code < 600)
        if isinstance(failure, smtplib.SMTPAuthenticationError):
            return MailResult.failed(f"SMTP authentication failed: {failure.smtp_code} {_text(failure.smtp_error)}")
        if isinstance(failure, smtplib.SMTPSenderRefused):
            # 530 is "authenticate first" or "STARTTLS first": our settings, not this mail, are at fault.
            permanent = 500 <= failure.smtp_code < 600 and failure.smtp_code != 530
            return MailResult.failed(f"sender refused: {failure.smtp_code} {_text(failure.smtp_error)}",
                                     permanent=permanent)
        if isinstance(failure, smtplib.SMTPDataError):
            return MailResult.failed(f"message refused: {failure.smtp_code} {_text(failure.smtp_error)}",
                                     permanent=500 <= failure.smtp_code < 600)
        if isinstance(failure, smtplib.SMTPResponseException):
            return MailResult.failed(f"SMTP error: {failure.smtp_code} {_text(failure.smtp_error)}")
        if isinstance(failure, smtplib.SMTPException):  # before OSError, its base: a disconnect, a missing extension
            return MailResult.failed(f"SMTP: {failure}")
        if isinstance(failure, ssl.SSLError):
            return MailResult.failed(f"TLS with {self.relay.host}:{self.relay.port} failed: {failure}")
        # refused, timed out, unknown host
        return MailResult.failed(f"cannot reach {self.relay.host}:{self.relay.port}: {type(failure).__name__}: "
                                 f"{failure}")

    def _deliver(self, message: EmailMessage, recipient: str, deadline: Deadline) -> None:
        if self.relay.security == "tls":
            smtp: smtplib.SMTP = SmtpsWithin(deadline, self.tls_context)
        else:
            smtp = SmtpWithin(deadline)
        try:
            code, greeting = smtp.connect(self.relay.host, self.relay.port)
            if code != 220:
                raise smtplib.SMTPConnectError(code, greeting)
            if self.relay.security == "starttls":
                self._start_tls(smtp)
            if self.relay.username and self.relay.password:
                smtp.login(self.relay.username, self.relay.password)
            smtp.send_message(message, from_addr=_address_of(self.sender), to_addrs=[recipient])
        finally:
            _close_quietly(smtp)

    def _start_tls(self, smtp: smtplib.SMTP) -> None:
        smtp.ehlo()
        if not smtp.has_extn("starttls"):
            # Going on would send the password and the mail in clear; a local test relay says ?starttls=false.
            raise smtplib.SMTPNotSupportedError(
                "the server does not offer STARTTLS; refusing to send in clear (use ?starttls=false for a local relay)")
        smtp.starttls(context=self.tls_context)
        smtp.ehlo()


class SmtpWithin(smtplib.SMTP):
    """SMTP whose connection is made within `deadline` and shut down when it passes (STARTTLS included)."""

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline
        super().__init__(timeout=deadline.seconds)

    def _get_socket(self, host: str, port: int, timeout: float):
        self._host = host  # as SMTP(host) would have set it: STARTTLS checks the certificate against it
        return self.deadline.connection((host, port))


class SmtpsWithin(smtplib.SMTP_SSL):
    """SMTP over TLS from the start, within `deadline` like SmtpWithin (the handshake included)."""

    def __init__(self, deadline: Deadline, context: ssl.SSLContext) -> None:
        self.deadline = deadline
        super().__init__(timeout=deadline.seconds, context=context)

    def _get_socket(self, host: str, port: int, timeout: float):
        self._host = host
        plain = self.deadline.connection((host, port))
        try:
            return self.context.wrap_socket(plain, server_hostname=self._host)
        except BaseException:
            plain.close()
            raise


def _close_quietly(smtp: smtplib.SMTP) -> None:
    # Once the server has accepted the mail, a failed QUIT must not turn the delivery into a failure (and a resend).
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


class FileMailer:
    """Writes each mail to `outbox_dir` as an .eml file that any mail client opens."""

    def __init__(self, sender: str, outbox_dir: Path) -> None:
        self.sender = sender
        self.outbox_dir = Path(outbox_dir)

    def describe(self) -> str:
        return f"files in {self.outbox_dir.resolve()}"

    def send(self, mail: Mail) -> MailResult:
        try:
            message = message_from(mail, self.sender)
        except UnsendableMail as unsendable:
            return MailResult.failed(str(unsendable), permanent=True)
        try:
            self._write(message, mail.message_id)
        except OSError as failure:
            return MailResult.failed(f"cannot write to {self.outbox_dir}: {failure}")
        return MailResult.sent()

    def _write(self, message: EmailMessage, message_id: str) -> None:
        self.outbox_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        final = self.outbox_dir / f"{stamp}-{_file_safe(message_id)}.eml"
        # A temporary file renamed into place: whoever watches the folder never reads half a mail.
        descriptor, temporary = tempfile.mkstemp(dir=self.outbox_dir, prefix=".", suffix=".eml.tmp")
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(message.as_bytes())
            os.replace(temporary, final)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def _file_safe(message_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@-]", "_", message_id.strip("<>"))[:120] or "mail"
