"""Webhook POSTs against real servers on 127.0.0.1: answers, deadlines, pinning, and the SSRF refusals of a live
target (the checks and the deadline are the shared outbound client's, shared/outbound.py; signing and the checks
of a URL alone are tests/unit/test_notify_webhooks.py and tests/unit/test_outbound.py).

Loopback is a private address, so the tests that deliver allow 127.0.0.0/8 as a deployment would allow a local
receiver; the refusal tests run without that allowance against the same live server, which must see nothing.
"""
from __future__ import annotations

import contextlib
import datetime
import http.server
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import pytest

from services.notify.webhooks import post, sign, verify
from shared.outbound import MAX_ANSWER_BYTES, TargetPolicy, UnsafeTarget, check_url, fetch
from tests.unit.resolver_double import FakeResolver
from tests.unit.test_notify_webhooks import BODY, SECRET, SIGNED_AT
from tests.unit.test_outbound import LOOPBACK_ALLOWED, NO_ALLOWANCE, PUBLIC


class Receiver(http.server.ThreadingHTTPServer):
    """A department's receiver: records every request and answers with the status its path names
    (/answer/500), or 204."""
    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), RecordingHandler)
        self.received: list[RecordingHandler] = []
        if tls:
            self.socket = tls.wrap_socket(self.socket, server_side=True)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def url(self, path: str = "/hook", host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"


class RecordingHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received.append(self)
        status = int(self.path.rsplit("/", 1)[1]) if self.path.startswith("/answer/") else 204
        self.send_response(status)
        if 300 <= status < 400:
            self.send_header("Location", f"http://127.0.0.1:{self.server.port}/redirected")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST

    def log_message(self, *args) -> None:
        pass


def serving(server: Receiver) -> Iterator[Receiver]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from serving(Receiver())


@pytest.fixture
def no_connections(monkeypatch) -> None:
    """Any outgoing connection fails the test: a refused target must be refused before the network."""
    def forbidden(*args, **kwargs):
        pytest.fail(f"a connection was attempted: {args}")

    monkeypatch.setattr(socket, "create_connection", forbidden)


# --- delivering --------------------------------------------------------------------------------------------------

def test_post_delivers_a_signed_request_that_the_receiver_verifies(receiver):
    attempt = post(receiver.url(), [SECRET], "evt-1", BODY, LOOPBACK_ALLOWED, now=lambda: SIGNED_AT + 0.7)

    assert (attempt.delivered, attempt.status_code, attempt.error) == (True, 204, None)
    assert attempt.latency_ms > 0
    [request] = receiver.received
    assert (request.command, request.path, request.body) == ("POST", "/hook", BODY)
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == "Woodpecker-Notify/1"
    assert request.headers["X-Woodpecker-Event-Id"] == "evt-1"
    assert request.headers["X-Woodpecker-Timestamp"] == str(SIGNED_AT)
    assert request.headers["X-Woodpecker-Signature"] == sign(SECRET, SIGNED_AT, BODY)
    assert verify(SECRET, request.headers, request.body, now=SIGNED_AT + 10)
    assert not verify(SECRET, request.headers, request.body + b" ", now=SIGNED_AT + 10)
    assert not verify(SECRET, request.headers, request.body, now=SIGNED_AT + 10 * 60)


def test_a_server_error_is_not_delivered(receiver):
    attempt = post(receiver.url("/answer/500"), [SECRET], "evt-1", BODY, LOOPBACK_ALLOWED)

    assert (attempt.delivered, attempt.status_code, attempt.error) == (False, 500, "HTTP 500")


def test_a_redirect_is_not_followed(receiver):
    attempt = post(receiver.url("/answer/302"), [SECRET], "evt-1", BODY, LOOPBACK_ALLOWED)

    assert (attempt.delivered, attempt.status_code, attempt.error) == (False, 302, "redirect not followed")
    assert [request.path for request in receiver.received] == ["/answer/302"]


# --- the deadline: the whole attempt, however the receiver behaves -------------------------------------------------

DEADLINE_S = 1.0
# What the clock may add to the deadline: thread start-up, the close, a loaded machine.
MARGIN_S = 0.5
DEADLINE = TargetPolicy.from_setting("127.0.0.0/8", deadline_s=DEADLINE_S)


def timed_post(url: str) -> tuple:
    started = time.monotonic()
    attempt = post(url, [SECRET], "evt-1", BODY, DEADLINE)
    return attempt, time.monotonic() - started


def test_a_receiver_that_never_answers_is_given_up_at_the_deadline():
    listener = socket.create_server(("127.0.0.1", 0))  # the kernel accepts connections; nobody ever answers
    with listener:
        attempt, elapsed = timed_post(f"http://127.0.0.1:{listener.getsockname()[1]}/hook")

    assert (attempt.delivered, attempt.status_code) == (False, None)
    assert attempt.error == "no complete answer within the 1 s deadline"
    assert DEADLINE_S - 0.05 <= elapsed < DEADLINE_S + MARGIN_S


def test_a_receiver_that_drips_its_answer_a_byte_at_a_time_is_given_up_at_the_deadline(raw_server):
    def drip(connection: socket.socket, test_over: threading.Event) -> None:
        connection.recv(65536)
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
            if test_over.wait(0.2):  # each byte well within any per-read timeout
                return
            with contextlib.suppress(OSError):
                connection.sendall(bytes([byte]))

    port = raw_server(drip)

    attempt, elapsed = timed_post(f"http://127.0.0.1:{port}/hook")

    assert (attempt.delivered, attempt.status_code) == (False, None)
    assert attempt.error == "no complete answer within the 1 s deadline"
    assert elapsed < DEADLINE_S + MARGIN_S


def test_a_receiver_that_drips_its_tls_handshake_is_given_up_at_the_deadline(raw_server):
    def drip_hello(connection: socket.socket, test_over: threading.Event) -> None:
        connection.recv(65536)  # the ClientHello; the "ServerHello" comes a byte at a time, never whole
        for byte in b"\x16\x03\x03\x40\x00" + b"\x02" * 64:
            if test_over.wait(0.2):
                return
            with contextlib.suppress(OSError):
                connection.sendall(bytes([byte]))

    port = raw_server(drip_hello)
    started = time.monotonic()

    attempt = post(f"https://receiver.example:{port}/hook", [SECRET], "evt-1", BODY, DEADLINE,
                   resolve=FakeResolver("127.0.0.1"))

    assert attempt.error == "no complete answer within the 1 s deadline"
    assert time.monotonic() - started < DEADLINE_S + MARGIN_S


def test_a_receiver_that_resets_the_connection_fails_at_once_with_that_said(raw_server):
    def reset(connection: socket.socket, test_over: threading.Event) -> None:
        connection.recv(65536)
        # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        connection.close()

    port = raw_server(reset)

    attempt, elapsed = timed_post(f"http://127.0.0.1:{port}/hook")

    assert (attempt.delivered, attempt.status_code) == (False, None)
    assert attempt.error in ("connection reset by the other side", "connection closed without an answer")
    assert elapsed < DEADLINE_S


def test_a_healthy_receiver_answers_meanwhile(receiver):
    """Deadlines are per attempt: an attempt stuck on a dead receiver holds nothing of another one's."""
    listener = socket.create_server(("127.0.0.1", 0))
    with listener:
        stuck = threading.Thread(target=timed_post, args=(f"http://127.0.0.1:{listener.getsockname()[1]}/hook",))
        stuck.start()
        attempt, elapsed = timed_post(receiver.url())
        stuck.join(5)

    assert attempt.delivered and elapsed < DEADLINE_S / 2


def test_the_shared_client_returns_a_bounded_answer_body(receiver):
    answer = fetch("GET", receiver.url("/answer/200"), LOOPBACK_ALLOWED)

    assert (answer.status_code, answer.error, answer.body) == (200, None, b"")
    assert [request.command for request in receiver.received] == ["GET"]


def test_a_closed_port_is_connection_refused():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]  # free once closed: nothing listens there

    attempt = post(f"http://127.0.0.1:{port}/hook", [SECRET], "evt-1", BODY, LOOPBACK_ALLOWED)

    assert (attempt.delivered, attempt.status_code, attempt.error) == (False, None, "connection refused")


def test_an_endless_answer_body_is_read_only_up_to_the_limit(raw_server):
    def endless_answer(connection: socket.socket, test_over: threading.Event) -> None:
        connection.recv(65536)
        with contextlib.suppress(OSError):  # the client may hang up before taking the last bytes
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n"
                               + b"x" * (MAX_ANSWER_BYTES + 1))
        test_over.wait(10)  # the rest never comes: reading past the limit would wait for the timeout

    port = raw_server(endless_answer)
    policy = TargetPolicy.from_setting("127.0.0.0/8", deadline_s=3.0)

    attempt = post(f"http://127.0.0.1:{port}/hook", [SECRET], "evt-1", BODY, policy)

    assert attempt.delivered
    assert attempt.latency_ms < 1500


# --- pinning: one lookup, and the connection goes to the address that was checked --------------------------------

def test_http_connects_to_the_checked_address_with_the_urls_host_header(receiver):
    resolver = FakeResolver("127.0.0.1")  # the real DNS knows no receiver.example: a second lookup would fail

    attempt = post(receiver.url(host="receiver.example"), [SECRET], "evt-1", BODY, LOOPBACK_ALLOWED, resolve=resolver)

    assert attempt.delivered, attempt.error
    [request] = receiver.received
    assert request.headers["Host"] == f"receiver.example:{receiver.port}"
    assert resolver.looked_up == ["receiver.example"]


def test_https_connects_to_the_checked_address_and_names_the_urls_host_in_sni(raw_server):
    hellos = []

    def tls_listener(connection: socket.socket, test_over: threading.Event) -> None:
        connection.settimeout(5)
        header = received_exactly(connection, 5)
        hellos.append(header + received_exactly(connection, int.from_bytes(header[3:5], "big")))

    port = raw_server(tls_listener)
    resolver = FakeResolver("127.0.0.1")

    attempt = post(f"https://receiver.example:{port}/hook", [SECRET], "evt-1", BODY, LOOPBACK_ALLOWED,
                   resolve=resolver)

    assert not attempt.delivered  # the listener hangs up after the ClientHello
    [hello] = hellos
    assert server_name_in(hello) == "receiver.example"
    assert resolver.looked_up == ["receiver.example"]


def received_exactly(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed early")
        data += chunk
    return data


def server_name_in(client_hello: bytes) -> str | None:
    """The SNI host name in a TLS ClientHello record (RFC 8446 section 4.1.2, RFC 6066 section 3)."""
    hello = client_hello[5 + 4:]  # after the record header and the handshake header
    at = 2 + 32  # legacy_version, random
    at += 1 + hello[at]  # legacy_session_id
    at += 2 + int.from_bytes(hello[at:at + 2], "big")  # cipher_suites
    at += 1 + hello[at]  # legacy_compression_methods
    end = at + 2 + int.from_bytes(hello[at:at + 2], "big")
    at += 2
    while at < end:
        kind, size = int.from_bytes(hello[at:at + 2], "big"), int.from_bytes(hello[at + 2:at + 4], "big")
        at += 4
        if kind == 0:  # server_name: list length (2), name type (1), name length (2), name
            return hello[at + 5:at + 5 + int.from_bytes(hello[at + 3:at + 5], "big")].decode()
        at += size
    return None


@pytest.fixture
def certificate(tmp_path) -> tuple[str, str]:
    """A self-signed certificate for receiver.example: its key and certificate files."""
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "receiver.example")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("receiver.example")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    key_file, cert_file = tmp_path / "key.pem", tmp_path / "cert.pem"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(key_file), str(cert_file)


@pytest.fixture
def tls_receiver(certificate) -> Iterator[Receiver]:
    key_file, cert_file = certificate
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_file, key_file)
    yield from serving(Receiver(tls))


def test_https_delivers_to_the_pinned_address_when_the_certificate_names_the_urls_host(tls_receiver, certificate):
    trusting = ssl.create_default_context(cafile=certificate[1])

    attempt = post(tls_receiver.url(host="receiver.example", scheme="https"), [SECRET], "evt-1", BODY,
                   LOOPBACK_ALLOWED, resolve=FakeResolver("127.0.0.1"), tls_context=trusting)

    assert attempt.delivered, attempt.error
    [request] = tls_receiver.received
    assert request.headers["Host"] == f"receiver.example:{tls_receiver.port}"


def test_https_refuses_a_certificate_for_another_host(tls_receiver, certificate):
    trusting = ssl.create_default_context(cafile=certificate[1])

    attempt = post(tls_receiver.url(host="impostor.example", scheme="https"), [SECRET], "evt-1", BODY,
                   LOOPBACK_ALLOWED, resolve=FakeResolver("127.0.0.1"), tls_context=trusting)

    assert not attempt.delivered
    assert attempt.error.startswith("TLS certificate not accepted: Hostname mismatch")
    assert tls_receiver.received == []


def test_https_refuses_a_certificate_no_trusted_authority_signed(tls_receiver):
    attempt = post(tls_receiver.url(host="receiver.example", scheme="https"), [SECRET], "evt-1", BODY,
                   LOOPBACK_ALLOWED, resolve=FakeResolver("127.0.0.1"))

    assert not attempt.delivered
    assert attempt.error.startswith("TLS certificate not accepted: self")  # "self-signed certificate"
    assert tls_receiver.received == []


# --- refusing targets --------------------------------------------------------------------------------------------

INTERNAL_TARGETS = [
    ("http://127.0.0.1:{port}/hook", "loopback"),
    ("http://localhost:{port}/hook", "loopback"),
    ("http://10.0.0.1:{port}/hook", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://100.64.0.1:{port}/hook", "shared"),
    ("http://[::1]:{port}/hook", "loopback"),
    ("http://[fc00::1]:{port}/hook", "private"),
    ("http://[::ffff:127.0.0.1]:{port}/hook", "loopback"),
]


@pytest.mark.parametrize("url, reason", INTERNAL_TARGETS, ids=[url for url, _ in INTERNAL_TARGETS])
def test_internal_targets_are_refused_by_check_url_and_by_post_before_any_connection(receiver, no_connections,
                                                                                     url, reason):
    url = url.format(port=receiver.port)

    with pytest.raises(UnsafeTarget) as refused:
        check_url(url, NO_ALLOWANCE)
    assert reason in refused.value.detail
    attempt = post(url, [SECRET], "evt-1", BODY, NO_ALLOWANCE)

    assert (attempt.delivered, attempt.status_code) == (False, None)
    assert attempt.error.startswith("refused target: ") and reason in attempt.error
    assert receiver.received == []


def test_dns_rebinding_is_refused_at_send_time(receiver, no_connections):
    url = receiver.url(host="receiver.example")
    check_url(url, NO_ALLOWANCE, resolve=FakeResolver(PUBLIC))  # what the subscription was saved with
    rebound = FakeResolver("127.0.0.1")  # what the same name answers when the event is sent

    attempt = post(url, [SECRET], "evt-1", BODY, NO_ALLOWANCE, resolve=rebound)

    assert not attempt.delivered
    assert attempt.error.startswith("refused target: receiver.example resolves to 127.0.0.1")
    assert attempt.permanent
    assert rebound.looked_up == ["receiver.example"]
    assert receiver.received == []


# --- rotating a secret: both signatures for a while ----------------------------------------------------------------

def test_during_the_overlap_both_signatures_are_sent_and_a_receiver_with_either_secret_accepts(receiver):
    attempt = post(receiver.url(), ["new-secret", "old-secret"], "evt-1", BODY, LOOPBACK_ALLOWED,
                   now=lambda: SIGNED_AT)

    assert attempt.delivered
    [request] = receiver.received
    assert request.headers["X-Woodpecker-Signature"] == (f"{sign('new-secret', SIGNED_AT, BODY)},"
                                                         f"{sign('old-secret', SIGNED_AT, BODY)}")
    for secret in ("new-secret", "old-secret"):
        assert verify(secret, request.headers, request.body, now=SIGNED_AT)
    assert not verify("another-secret", request.headers, request.body, now=SIGNED_AT)
