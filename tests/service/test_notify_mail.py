"""The notify mailer against a real SMTP server (aiosmtpd, in this process): TLS, logins, refusals, deadlines
(the mail as written, the outbox folder and the SMTP_URL forms are tests/unit/test_notify_mail.py)."""
from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from services.notify.mail import mailer_from
from tests.support import free_port
from tests.unit.test_notify_mail import SENDER, a_mail, assert_is_the_mail, parsed

# Characters a URL must escape: the password reaches the server only if the URL is decoded.
SMTP_USER = "notify@woodpecker"
SMTP_PASSWORD = "p@ss:w/rd %?#&+ 1"


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
