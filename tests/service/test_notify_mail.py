"""The notify mailers against a real SMTP server (aiosmtpd, in this process) and a real outbox folder."""
from __future__ import annotations

import contextlib
import email
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from services.notify.mail import FileMailer, Mail, MailSettingsError, mailer_from

SENDER = "Woodpecker 啄木鸟 <noreply@woodpecker.example>"
# Characters a URL must escape: the password reaches the server only if the URL is decoded.
SMTP_USER = "notify@woodpecker"
SMTP_PASSWORD = "p@ss:w/rd %?#&+ 1"


def a_mail(**changes: str) -> Mail:
    notice_id = uuid.uuid4().hex
    fields = {"to": "张三 <zhangsan@volunteers.example>", "subject": "新的案件：井盖缺失（朝阳路 12 号）",
              "body": "您好，\n\n朝阳路 12 号的井盖缺失，已派给市政。\n\n——啄木鸟",
              "message_id": f"<{notice_id}@woodpecker>"}
    return Mail(**{**fields, **changes})


@dataclass
class RecordingHandler:
    """Keeps what arrives; answers `rcpt_reply` to RCPT or `data_reply` to DATA when told to refuse."""

    rcpt_reply: str | None = None
    data_reply: str | None = None
    received: list = field(default_factory=list)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 (aiosmtpd's name)
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        if self.data_reply:
            return self.data_reply
        self.received.append(envelope)
        return "250 Message accepted for delivery"


@dataclass
class Authenticator:
    """Accepts SMTP_USER/SMTP_PASSWORD only, and records every attempt with whether it came over TLS."""

    attempts: list = field(default_factory=list)

    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        over_tls = server.transport.get_extra_info("ssl_object") is not None
        self.attempts.append((login, password, over_tls))
        # handled=False: aiosmtpd answers a failure with 535 itself.
        return AuthResult(success=(login, password) == (SMTP_USER, SMTP_PASSWORD), handled=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def start_smtp_server():
    """Starts aiosmtpd servers on 127.0.0.1 with the given SMTP options; returns each one's port."""
    controllers = []

    def start(handler: RecordingHandler, **smtp_options) -> int:
        controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **smtp_options)
        controller.start()
        controllers.append(controller)
        return controller.port

    yield start
    for controller in controllers:
        controller.stop()


@dataclass(frozen=True)
class Certificate:
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def trusting_client_context(self) -> ssl.SSLContext:
        # Verifies the chain and the host name as in production, trusting only this certificate.
        return ssl.create_default_context(cafile=str(self.cert_file))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> Certificate:
    """A self-signed certificate for 127.0.0.1."""
    folder = tmp_path_factory.mktemp("tls")
    try:
        return _certificate_by_cryptography(folder)
    except ImportError:
        pass
    if shutil.which("openssl"):
        return _certificate_by_openssl(folder)
    pytest.skip("neither the cryptography package nor the openssl command is here to make a certificate")


def _certificate_by_cryptography(folder: Path) -> Certificate:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return Certificate(cert_file, key_file)


def _certificate_by_openssl(folder: Path) -> Certificate:
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key_file), "-out", str(cert_file)], check=True, capture_output=True)
    return Certificate(cert_file, key_file)


def credentials() -> str:
    return f"{quote(SMTP_USER, safe='')}:{quote(SMTP_PASSWORD, safe='')}"


def parsed(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=default_policy)


def assert_is_the_mail(message: EmailMessage, mail: Mail, raw: bytes) -> None:
    assert str(message["From"]) == SENDER
    assert message["From"].addresses[0].addr_spec == "noreply@woodpecker.example"
    assert str(message["To"]) == mail.to
    assert str(message["Subject"]) == mail.subject
    assert message["Message-ID"] == mail.message_id
    assert message["Auto-Submitted"] == "auto-generated"
    assert abs(parsedate_to_datetime(message["Date"]) - datetime.now(UTC)) < timedelta(minutes=1)
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert message.get_content() == mail.body + "\n"
    assert b"=?utf-8?" in raw.split(b"\r\n\r\n" if b"\r\n\r\n" in raw else b"\n\n", 1)[0], \
        "the Chinese subject travels as a MIME encoded-word"


def test_a_mail_sent_without_tls_arrives_whole(start_smtp_server, tmp_path):
    handler = RecordingHandler()
    port = start_smtp_server(handler)
    mailer = mailer_from(f"smtp://127.0.0.1:{port}?starttls=false", SENDER, tmp_path)
    mail = a_mail()

    result = mailer.send(mail)

    assert (result.delivered, result.error, result.permanent) == (True, None, False)
    [envelope] = handler.received
    assert envelope.mail_from == "noreply@woodpecker.example"
    assert envelope.rcpt_tos == ["zhangsan@volunteers.example"]
    assert_is_the_mail(parsed(envelope.content), mail, envelope.content)
    assert mailer.describe() == f"SMTP 127.0.0.1:{port} (no TLS)"
    assert list(tmp_path.iterdir()) == [], "an SMTP mailer writes no files"


def test_starttls_with_a_login_checked_by_the_server(start_smtp_server, certificate, tmp_path):
    handler, authenticator = RecordingHandler(), Authenticator()
    port = start_smtp_server(handler, tls_context=certificate.server_context(), require_starttls=True,
                             authenticator=authenticator, auth_required=True)
    mailer = mailer_from(f"smtp://{credentials()}@127.0.0.1:{port}", SENDER, tmp_path,
                         tls_context=certificate.trusting_client_context())
    mail = a_mail()

    result = mailer.send(mail)

    assert result.delivered, result.error
    assert authenticator.attempts == [(SMTP_USER, SMTP_PASSWORD, True)], "decoded credentials, sent over TLS"
    [envelope] = handler.received
    assert_is_the_mail(parsed(envelope.content), mail, envelope.content)
    assert mailer.describe() == f"SMTP 127.0.0.1:{port} (STARTTLS)"


def test_a_wrong_password_is_reported_as_such_and_may_be_retried(start_smtp_server, certificate, tmp_path):
    handler = RecordingHandler()
    port = start_smtp_server(handler, tls_context=certificate.server_context(), require_starttls=True,
                             authenticator=Authenticator(), auth_required=True)
    mailer = mailer_from(f"smtp://{quote(SMTP_USER, safe='')}:wrong@127.0.0.1:{port}", SENDER, tmp_path,
                         tls_context=certificate.trusting_client_context())

    result = mailer.send(a_mail())

    assert not result.delivered and not result.permanent
    assert "authentication" in result.error.lower()
    assert handler.received == []


def test_a_certificate_nobody_vouches_for_is_refused(start_smtp_server, certificate, tmp_path):
    handler, authenticator = RecordingHandler(), Authenticator()
    port = start_smtp_server(handler, tls_context=certificate.server_context(), require_starttls=True,
                             authenticator=authenticator, auth_required=True)
    mailer = mailer_from(f"smtp://{credentials()}@127.0.0.1:{port}", SENDER, tmp_path)  # the system's CAs only

    result = mailer.send(a_mail())

    assert not result.delivered and not result.permanent
    assert "certificate" in result.error.lower()
    assert authenticator.attempts == [] and handler.received == []


def test_smtps_speaks_tls_from_the_start(start_smtp_server, certificate, tmp_path):
    handler, authenticator = RecordingHandler(), Authenticator()
    # aiosmtpd counts only STARTTLS as TLS when deciding to offer AUTH; this connection is TLS from the start.
    port = start_smtp_server(handler, ssl_context=certificate.server_context(), authenticator=authenticator,
                             auth_require_tls=False)
    mailer = mailer_from(f"smtps://{credentials()}@127.0.0.1:{port}", SENDER, tmp_path,
                         tls_context=certificate.trusting_client_context())

    result = mailer.send(a_mail())

    assert result.delivered, result.error
    assert authenticator.attempts == [(SMTP_USER, SMTP_PASSWORD, True)]
    assert len(handler.received) == 1
    assert mailer.describe() == f"SMTP 127.0.0.1:{port} (TLS)"


def test_a_server_without_starttls_gets_neither_the_password_nor_the_mail(start_smtp_server, tmp_path):
    handler, authenticator = RecordingHandler(), Authenticator()
    # This server would accept the login in clear: only the mailer's refusal keeps the password off the wire.
    port = start_smtp_server(handler, authenticator=authenticator, auth_require_tls=False)
    mailer = mailer_from(f"smtp://{credentials()}@127.0.0.1:{port}", SENDER, tmp_path)

    result = mailer.send(a_mail())

    assert not result.delivered
    assert "STARTTLS" in result.error
    assert authenticator.attempts == [] and handler.received == []


@pytest.mark.parametrize(("refusal", "permanent"), [
    ({"rcpt_reply": "550 5.1.1 No such user"}, True),
    ({"rcpt_reply": "451 4.3.0 Try again later"}, False),
    ({"data_reply": "554 5.7.1 Message rejected"}, True),
    ({"data_reply": "452 4.3.1 Insufficient storage"}, False),
])
def test_a_refusal_is_permanent_only_when_the_server_says_so(start_smtp_server, tmp_path, refusal, permanent):
    handler = RecordingHandler(**refusal)
    port = start_smtp_server(handler)
    mailer = mailer_from(f"smtp://127.0.0.1:{port}?starttls=false", SENDER, tmp_path)

    result = mailer.send(a_mail())

    assert not result.delivered
    assert result.permanent is permanent
    code = next(iter(refusal.values()))[:3]
    assert code in result.error


def test_a_closed_port_is_a_temporary_failure(tmp_path):
    mailer = mailer_from(f"smtp://127.0.0.1:{free_port()}?starttls=false", SENDER, tmp_path)

    result = mailer.send(a_mail())

    assert (result.delivered, result.permanent) == (False, False)
    assert "refused" in result.error.lower()


def test_a_server_that_never_answers_is_given_up_at_the_deadline_as_a_temporary_failure(tmp_path):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel completes the handshake; nobody ever sends the greeting
        port = silent.getsockname()[1]
        mailer = mailer_from(f"smtp://127.0.0.1:{port}?starttls=false", SENDER, tmp_path, deadline_s=0.3)
        started = time.monotonic()

        result = mailer.send(a_mail())

    assert (result.delivered, result.permanent) == (False, False)
    assert result.error == f"no complete answer from 127.0.0.1:{port} within the 0.3 s deadline"
    assert time.monotonic() - started < 0.3 + 0.5


def test_a_server_that_drips_its_greeting_a_byte_at_a_time_is_given_up_at_the_deadline(raw_server, tmp_path):
    def drip(connection: socket.socket, test_over: threading.Event) -> None:
        for byte in b"220-" + b"w" * 200 + b"\r\n":  # each byte well within any per-read timeout
            if test_over.wait(0.1):
                return
            with contextlib.suppress(OSError):
                connection.sendall(bytes([byte]))

    port = raw_server(drip)
    mailer = mailer_from(f"smtp://127.0.0.1:{port}?starttls=false", SENDER, tmp_path, deadline_s=1.0)
    started = time.monotonic()

    result = mailer.send(a_mail())

    assert (result.delivered, result.permanent) == (False, False)
    assert result.error == f"no complete answer from 127.0.0.1:{port} within the 1 s deadline"
    assert time.monotonic() - started < 1.0 + 0.5


def test_a_server_that_resets_the_connection_is_a_temporary_failure_said_at_once(raw_server, tmp_path):
    def reset(connection: socket.socket, test_over: threading.Event) -> None:
        connection.sendall(b"220 relay.example ESMTP\r\n")
        connection.recv(1024)  # EHLO
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        connection.close()

    port = raw_server(reset)
    mailer = mailer_from(f"smtp://127.0.0.1:{port}?starttls=false", SENDER, tmp_path, deadline_s=5.0)
    started = time.monotonic()

    result = mailer.send(a_mail())

    assert (result.delivered, result.permanent) == (False, False)
    assert "deadline" not in result.error and ("reset" in result.error or "closed" in result.error), result.error
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("injection", [
    {"to": "zhangsan@volunteers.example\r\nBcc: everyone@elsewhere.example"},
    {"to": "zhangsan@volunteers.example\nBcc: everyone@elsewhere.example"},
    {"subject": "通知\r\nBcc: everyone@elsewhere.example"},
    {"subject": "通知\nX-Injected: yes"},
])
def test_header_injection_is_refused_for_good(start_smtp_server, tmp_path, injection):
    handler = RecordingHandler()
    port = start_smtp_server(handler)
    outbox = tmp_path / "outbox"
    mailers = [mailer_from(f"smtp://127.0.0.1:{port}?starttls=false", SENDER, tmp_path),
               mailer_from(None, SENDER, outbox)]

    for mailer in mailers:
        result = mailer.send(a_mail(**injection))

        assert (result.delivered, result.permanent) == (False, True), mailer.describe()
        assert "injection" in result.error
    assert handler.received == []
    assert not outbox.exists() or list(outbox.iterdir()) == []


@pytest.mark.parametrize("to", ["not an address", "zhangsan@volunteers.example, lisi@volunteers.example"])
def test_a_recipient_that_is_not_one_address_is_refused_for_good(tmp_path, to):
    result = mailer_from(None, SENDER, tmp_path).send(a_mail(to=to))

    assert (result.delivered, result.permanent) == (False, True)
    assert list(tmp_path.iterdir()) == []


def test_without_smtp_url_each_mail_becomes_an_eml_file(tmp_path):
    outbox = tmp_path / "var" / "outbox"  # not there yet
    mailer = mailer_from("", SENDER, outbox)
    mail = a_mail()

    result = mailer.send(mail)

    assert (result.delivered, result.error, result.permanent) == (True, None, False)
    assert isinstance(mailer, FileMailer)
    assert str(outbox.resolve()) in mailer.describe()
    [written] = list(outbox.iterdir())  # and no temporary file left behind
    notice_id = mail.message_id.strip("<>")
    assert re.fullmatch(rf"\d{{8}}T\d{{6}}\.\d{{6}}Z-{re.escape(notice_id)}\.eml", written.name), written.name
    raw = written.read_bytes()
    message = parsed(raw)
    assert not message.defects
    assert_is_the_mail(message, mail, raw)


def test_an_eml_file_name_cannot_leave_the_outbox(tmp_path):
    outbox = tmp_path / "outbox"
    mailer = mailer_from(None, SENDER, outbox)

    result = mailer.send(a_mail(message_id="<../../etc/passwd@woodpecker>"))

    assert result.delivered
    [written] = list(outbox.iterdir())
    assert "/" not in written.name and written.name.endswith(".eml")
    assert [path.name for path in tmp_path.iterdir()] == ["outbox"]


def test_a_resent_notice_is_a_second_file_with_the_same_message_id(tmp_path):
    mailer = mailer_from(None, SENDER, tmp_path)
    mail = a_mail()

    assert mailer.send(mail).delivered and mailer.send(mail).delivered

    written = sorted(tmp_path.iterdir())
    assert len(written) == 2
    assert {parsed(path.read_bytes())["Message-ID"] for path in written} == {mail.message_id}


@pytest.mark.parametrize(("url", "description"), [
    ("smtp://user:secret@smtp.example.com", "SMTP smtp.example.com:587 (STARTTLS)"),
    ("smtp://user:secret@smtp.example.com:2525?starttls=true", "SMTP smtp.example.com:2525 (STARTTLS)"),
    ("smtps://user:secret@smtp.example.com", "SMTP smtp.example.com:465 (TLS)"),
    ("smtp://relay.local:25?starttls=false", "SMTP relay.local:25 (no TLS)"),
])
def test_smtp_url_forms(url, description, tmp_path):
    assert mailer_from(url, SENDER, tmp_path).describe() == description


@pytest.mark.parametrize("url", [
    "http://smtp.example.com",
    "smtp.example.com:587",
    "smtp://",
    "smtp://:587",
    "smtp://user:secret@:587",
    "smtp://smtp.example.com:port",
    "smtp://smtp.example.com:99999",
    "smtp://smtp.example.com/inbox",
    "smtp://smtp.example.com?starttls=maybe",
    "smtp://smtp.example.com?tls=false",
    "smtps://smtp.example.com?starttls=false",
    "smtp://user@smtp.example.com",
    "smtp://user:secret%E5%95%84@smtp.example.com",
])
def test_a_malformed_smtp_url_is_refused_at_start_without_echoing_it(url, tmp_path):
    with pytest.raises(MailSettingsError) as refusal:
        mailer_from(url, SENDER, tmp_path)
    assert "secret" not in str(refusal.value)


def test_a_sender_without_an_address_is_refused_at_start(tmp_path):
    with pytest.raises(MailSettingsError):
        mailer_from(None, "Woodpecker 啄木鸟", tmp_path)
