"""Webhook POSTs against real servers on 127.0.0.1: signing, answers, deadlines, pinning, and the SSRF refusals
(the checks and the deadline are the shared outbound client's, shared/outbound.py).

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

from services.notify.webhooks import post, sign, signature_header, verify
from shared.outbound import MAX_ANSWER_BYTES, TargetPolicy, UnsafeTarget, check_url, fetch

SECRET = "shared-secret"
BODY = b'{"id": "evt-1"}'
SIGNED_AT = 1_800_000_000
PUBLIC = "93.184.216.34"
LOOPBACK_ALLOWED = TargetPolicy.from_setting("127.0.0.0/8", deadline_s=2.0)
NO_ALLOWANCE = TargetPolicy(deadline_s=2.0)


class FakeResolver:
    """Stands in for socket.getaddrinfo: answers every name with the given addresses, and counts the lookups."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses
        self.looked_up: list[str] = []

    def __call__(self, host: str, port: int, *args, **kwargs) -> list[tuple]:
        self.looked_up.append(host)
        return [(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
                for address in self.addresses]


def unresolvable(host: str, port: int, *args, **kwargs) -> list[tuple]:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


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


# --- signing, and the receiver's side ----------------------------------------------------------------------------

def test_sign_is_hmac_sha256_of_timestamp_dot_body_in_hex():
    # Computed outside Python: printf '1800000000.{"id": "evt-1"}' | openssl dgst -sha256 -hmac shared-secret
    assert sign(SECRET, SIGNED_AT, BODY) == "sha256=fcbb00a318f74f9b8f6b4c093f952c8c4908117a8ad5615cbdf68fcd9ca30287"


def signed_headers(timestamp: int = SIGNED_AT, body: bytes = BODY, secret: str = SECRET) -> dict[str, str]:
    return {"X-Woodpecker-Timestamp": str(timestamp), "X-Woodpecker-Signature": sign(secret, timestamp, body)}


def test_verify_accepts_a_fresh_genuine_signature_with_header_names_in_any_case():
    assert verify(SECRET, signed_headers(), BODY, now=SIGNED_AT + 299)
    lower = {name.lower(): value for name, value in signed_headers().items()}
    assert verify(SECRET, lower, BODY, now=SIGNED_AT)


@pytest.mark.parametrize("headers, body, now", [
    (signed_headers(), b'{"id": "evt-2"}', SIGNED_AT),                      # tampered body
    (signed_headers(secret="someone-else"), BODY, SIGNED_AT),              # wrong secret
    (signed_headers(), BODY, SIGNED_AT + 301),                             # replayed after 5 minutes
    (signed_headers(), BODY, SIGNED_AT - 301),                             # from too far in the future
    ({"X-Woodpecker-Timestamp": str(SIGNED_AT + 1),                        # timestamp changed after signing
      "X-Woodpecker-Signature": sign(SECRET, SIGNED_AT, BODY)}, BODY, SIGNED_AT),
    ({"X-Woodpecker-Timestamp": str(SIGNED_AT)}, BODY, SIGNED_AT),         # no signature
    ({"X-Woodpecker-Signature": sign(SECRET, SIGNED_AT, BODY)}, BODY, SIGNED_AT),  # no timestamp
    ({"X-Woodpecker-Timestamp": "soon", "X-Woodpecker-Signature": "sha256=00"}, BODY, SIGNED_AT),
], ids=["tampered-body", "wrong-secret", "too-old", "too-new", "moved-timestamp", "unsigned", "no-timestamp",
        "garbage"])
def test_verify_rejects(headers, body, now):
    assert not verify(SECRET, headers, body, now=now)


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


@pytest.mark.parametrize("url, reason", [
    ("http://0.0.0.0/", "unspecified"),
    ("http://127.1/", "loopback"),          # the resolver's shorthand for 127.0.0.1
    ("http://2130706433/", "loopback"),     # 127.0.0.1 as one number
    ("http://192.168.1.10/", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://[fe80::1]/", "link-local"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://255.255.255.255/", "reserved"),
    ("http://[2002:7f00:1::]/", "tunnel address to 127.0.0.1"),  # 6to4
    ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "private"),  # Teredo
    ("http://[64:ff9b::7f00:1]/", "reserved"),  # NAT64
    ("http://192.0.2.1/", "private"),  # documentation range: not on the internet
])
def test_other_non_public_addresses_are_refused(url, reason):
    with pytest.raises(UnsafeTarget) as refused:
        check_url(url, NO_ALLOWANCE)
    assert reason in refused.value.detail


@pytest.mark.parametrize("answer", [("10.1.2.3",), (PUBLIC, "10.1.2.3"), ("fd12::1", PUBLIC)],
                         ids=["private", "public-then-private", "private-then-public"])
def test_a_name_resolving_to_any_private_address_is_refused_without_saying_what_it_resolved_to(answer):
    with pytest.raises(UnsafeTarget) as refused:
        check_url("https://receiver.example/hook", NO_ALLOWANCE, resolve=FakeResolver(*answer))

    assert str(refused.value) == ("receiver.example does not resolve to a public internet address; only public "
                                  "internet addresses are accepted")
    assert not any(address in str(refused.value) for address in ("10.1.2.3", "fd12", "private"))
    assert refused.value.detail.startswith("receiver.example resolves to ")  # for the delivery log only
    assert refused.value.detail.endswith(", which is a private address")


@pytest.mark.parametrize("url", ["https://receiver.example/hook", "http://receiver.example:8080/hook?token=1",
                                 "HTTPS://Receiver.Example/hook", "https://bücher.example/hook"])
def test_a_name_resolving_to_public_addresses_is_accepted(url):
    check_url(url, NO_ALLOWANCE, resolve=FakeResolver(PUBLIC, "2606:4700::6810:84e5"))


@pytest.mark.parametrize("url", [f"http://{PUBLIC}/", "https://[2606:4700::6810:84e5]/", f"http://[::ffff:{PUBLIC}]/",
                                 "http://[2002:5db8:d822::1]/"])
def test_public_address_literals_are_accepted_without_a_lookup(url):
    check_url(url, NO_ALLOWANCE, resolve=unresolvable)


def test_a_name_that_does_not_resolve_is_refused_in_the_same_words_as_one_resolving_inside():
    for resolve in (unresolvable, FakeResolver(), FakeResolver("10.1.2.3")):
        with pytest.raises(UnsafeTarget, match="^receiver.example does not resolve to a public internet address"):
            check_url("https://receiver.example/hook", NO_ALLOWANCE, resolve=resolve)


def test_a_strict_policy_takes_https_to_public_addresses_only_whatever_the_deployment_allows():
    strict = LOOPBACK_ALLOWED.strict()

    with pytest.raises(UnsafeTarget, match="only https:// URLs are accepted"):
        check_url(f"http://{PUBLIC}/hook", strict)
    with pytest.raises(UnsafeTarget, match="loopback"):
        check_url("https://127.0.0.1:8443/hook", strict)
    check_url(f"https://{PUBLIC}/hook", strict)
    check_url("http://127.0.0.1:8080/hook", LOOPBACK_ALLOWED)


@pytest.mark.parametrize("url, reason", [
    ("ftp://receiver.example/hook", "only http:// and https://"),
    ("file:///etc/passwd", "only http:// and https://"),
    ("gopher://receiver.example:70/", "only http:// and https://"),
    ("javascript:alert(1)", "only http:// and https://"),
    ("receiver.example/hook", "only http:// and https://"),
    ("https://user:pass@receiver.example/hook", "user name or password"),
    ("https://user@receiver.example/hook", "user name or password"),
    ("https://receiver.example\\@evil.example/hook", "user name or password"),
    ("http:///hook", "no host"),
    ("https://receiver.example:0/hook", "port"),
    ("https://receiver.example:65536/hook", "port"),
    ("https://receiver.example:http/hook", "port"),
    ("https://receiver.example/" + "a" * 2048, "longer than 2048"),
    ("https://receiver.example/hook\r\nX-Injected: yes", "control characters"),
    ("https://receiver .example/hook", "spaces"),
    ("https://receiver.example/hôok", "ASCII"),
    ("https://receiver!.example/hook", "not a valid host name"),
])
def test_malformed_urls_are_refused(url, reason):
    with pytest.raises(UnsafeTarget, match=reason):
        check_url(url, NO_ALLOWANCE, resolve=FakeResolver(PUBLIC))


def test_post_refuses_a_malformed_url_without_raising():
    attempt = post("ftp://receiver.example/hook", [SECRET], "evt-1", BODY, NO_ALLOWANCE, resolve=FakeResolver(PUBLIC))

    assert attempt.error == "refused target: only http:// and https:// URLs are accepted"
    assert not attempt.delivered


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


# --- the allowance -----------------------------------------------------------------------------------------------

def test_allowed_networks_open_exactly_those_networks():
    policy = TargetPolicy.from_setting(" 127.0.0.0/8, 10.1.0.0/16 ,::1/128,")

    check_url("http://127.0.0.1:8080/hook", policy)
    check_url("http://[::1]/hook", policy)
    check_url("http://receiver.internal/hook", policy, resolve=FakeResolver("10.1.200.7", PUBLIC))
    with pytest.raises(UnsafeTarget, match="private"):
        check_url("http://10.2.0.1/hook", policy)
    with pytest.raises(UnsafeTarget, match="link-local"):
        check_url("http://169.254.169.254/", policy)


def test_the_allowance_applies_to_ipv4_mapped_forms_of_an_allowed_address():
    check_url("http://[::ffff:127.0.0.1]/hook", LOOPBACK_ALLOWED)


def test_from_setting_reads_nothing_as_no_allowance_and_keeps_the_deadline():
    assert TargetPolicy.from_setting(None) == TargetPolicy()
    assert TargetPolicy.from_setting("  ", deadline_s=2.5) == TargetPolicy(deadline_s=2.5)


@pytest.mark.parametrize("setting, named", [("127.0.0.0/8,10.1.0.0/33", "10.1.0.0/33"), ("intranet", "intranet"),
                                            ("10.1.2.3/16", "10.1.2.3/16")])
def test_from_setting_names_a_bad_network(setting, named):
    with pytest.raises(ValueError, match=f"NOTIFY_ALLOWED_NETWORKS: '{named}'"):
        TargetPolicy.from_setting(setting)


def test_a_deadline_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        TargetPolicy(deadline_s=0)


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


def test_outside_the_overlap_the_header_keeps_its_single_signature_form():
    assert signature_header([SECRET], SIGNED_AT, BODY) == sign(SECRET, SIGNED_AT, BODY)
