"""Webhook POSTs to departments' own systems, which must never become a way into our own network.

Notify is the only service that talks to the outside, and the URLs it talks to are typed in by people, so a
webhook URL is treated as hostile until checked (server-side request forgery): only http and https, and only
to public addresses unless the deployment allows a network by name (NOTIFY_ALLOWED_NETWORKS, e.g. a receiver
on the same host in development). `check_url` answers when a subscription is saved; `post` checks again at
every attempt, because a name that resolved to a public address yesterday may resolve to 127.0.0.1 today (DNS
rebinding). `post` resolves the name once, checks every address it got, and connects to the checked address
itself, so that no second lookup can slip another address in between the check and the connection.

`post` blocks for up to a few timeouts: call it from the notify worker's own executor, never from a consumer's
thread, so that one dead receiver holds up nothing else.

Receiving a webhook (for departments' systems)
-----------------------------------------------
Every POST carries a JSON body and these headers:

    X-Woodpecker-Event-Id: <the event's id>
    X-Woodpecker-Timestamp: <Unix seconds when this attempt was signed>
    X-Woodpecker-Signature: sha256=<hex HMAC-SHA256, keyed with your secret, of "<timestamp>." + the raw body>

To accept one:

1. Take the body as raw bytes, before any JSON parsing: re-serialised JSON would not match the signature.
2. Refuse it if the timestamp is more than 5 minutes away from your clock: an old request replayed by someone
   who captured it is refused, even though its signature is genuine.
3. Compute the signature yourself and compare it with the header in constant time (`hmac.compare_digest`),
   so that the comparison's duration gives nothing away.
4. Answer 2xx quickly, and only then do the work. Anything else, or no answer within 5 seconds, is a failed
   attempt, retried with back-off; a retry is signed afresh but carries the same event id, so keep the ids you
   have processed and skip repeats. Use the id inside the body, which the signature covers, not the header.

`verify` below does steps 2 and 3; it depends on nothing but the standard library, so it can be copied as is.
"""
from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., Sequence[tuple[Any, ...]]]  # socket.getaddrinfo's signature and answer

MAX_URL_LENGTH = 2048
MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "Woodpecker-Notify/1"
DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 6598: carrier-grade NAT space. Python's ipaddress counts it as neither private nor global, so name it.
SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")
# After IDNA encoding, what DNS names may be made of; anything else in a host is a trick or a typo.
HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")
# Spaces and control characters: urlsplit silently drops some of them, and they have no business in a URL.
UNSAFE_URL_CHARACTERS = re.compile(r"[\x00-\x20\x7f]")


class UnsafeTarget(ValueError):
    """A webhook URL that notify refuses to call; the message says why, in words a subscriber understands."""


@dataclass(frozen=True)
class TargetPolicy:
    allowed_networks: tuple[Network, ...] = ()  # private networks a deployment lets webhooks reach
    timeout_s: float = 5.0  # for connecting, and for each read of the answer

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ValueError(f"the webhook timeout must be positive, not {self.timeout_s}")

    @classmethod
    def from_setting(cls, text: str | None, timeout_s: float = 5.0) -> TargetPolicy:
        """The policy from NOTIFY_ALLOWED_NETWORKS: comma-separated CIDRs such as "127.0.0.0/8,10.1.0.0/16"."""
        networks = []
        for item in (text or "").split(","):
            if not item.strip():
                continue
            try:
                networks.append(ipaddress.ip_network(item.strip()))
            except ValueError as error:
                raise ValueError(f"NOTIFY_ALLOWED_NETWORKS: {item.strip()!r} is not a network such as "
                                 f"10.1.0.0/16 ({error})") from None
        return cls(allowed_networks=tuple(networks), timeout_s=timeout_s)

    def allows(self, address: Address) -> bool:
        return any(address in network for network in self.allowed_networks)


@dataclass(frozen=True)
class Attempt:
    status_code: int | None  # None when no HTTP answer came
    latency_ms: float
    error: str | None  # None when delivered; otherwise a short reason, kept on the delivery for people to read

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True)
class Target:
    """A checked webhook URL: where to connect (one address, already checked) and what to say once there."""
    scheme: str
    host: str  # as sent in the Host header and, for https, in SNI and the certificate check
    port: int
    path: str
    address: Address


def check_url(url: str, policy: TargetPolicy, resolve: Resolver = socket.getaddrinfo) -> None:
    """Raise UnsafeTarget unless notify may POST to `url` now (used when a subscription is saved)."""
    checked_target(url, policy, resolve)


def checked_target(url: str, policy: TargetPolicy, resolve: Resolver = socket.getaddrinfo) -> Target:
    scheme, host, port, path = parsed_url(url)
    addresses = resolved_addresses(host, port, resolve)
    for address in addresses:
        if not policy.allows(address):
            reason = why_not_public(address)
            if reason:
                shown = host if str(address) == host else f"{host} resolves to {address}, which"
                raise UnsafeTarget(f"{shown} is {reason}; webhooks may only go to public internet addresses")
    return Target(scheme, host, port, path, addresses[0])


def parsed_url(url: str) -> tuple[str, str, int, str]:
    """The scheme, host (IDNA, lower case), port and request path of a webhook URL, or UnsafeTarget."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeTarget(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if UNSAFE_URL_CHARACTERS.search(url):
        raise UnsafeTarget("the URL contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeTarget("the URL's host or port cannot be read; the port must be a number from 1 to 65535") \
            from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise UnsafeTarget("only http:// and https:// URLs are accepted")
    if "@" in parts.netloc:
        raise UnsafeTarget("the URL must not contain a user name or password")
    if not parts.hostname:
        raise UnsafeTarget("the URL has no host")
    if port == 0:
        raise UnsafeTarget("the port must be a number from 1 to 65535")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not path.isascii():
        raise UnsafeTarget("the URL's path must be ASCII (percent-encode anything else)")
    return scheme, ascii_host(parts.hostname), port or DEFAULT_PORTS[scheme], path


def ascii_host(hostname: str) -> str:
    try:
        return str(ipaddress.ip_address(hostname))
    except ValueError:
        pass
    try:
        host = hostname.encode("idna").decode("ascii")
    except UnicodeError:
        raise UnsafeTarget(f"{hostname!r} is not a valid host name") from None
    if not HOST_NAME.fullmatch(host):
        raise UnsafeTarget(f"{hostname!r} is not a valid host name")
    return host


def resolved_addresses(host: str, port: int, resolve: Resolver) -> list[Address]:
    """Every address `host` stands for now, in the resolver's order of preference, without repeats."""
    try:
        return [plain_address(host)]
    except ValueError:
        pass
    try:
        answers = resolve(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):  # socket.gaierror is an OSError; over-long labels raise UnicodeError
        raise UnsafeTarget(f"the host name {host} cannot be resolved") from None
    addresses: list[Address] = []
    for _family, _type, _proto, _canonname, sockaddr in answers:
        address = plain_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnsafeTarget(f"the host name {host} cannot be resolved")
    return addresses


def plain_address(text: str) -> Address:
    """The address a socket really talks to: an IPv4-mapped IPv6 address (::ffff:a.b.c.d) is a.b.c.d."""
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def why_not_public(address: Address) -> str | None:
    """In words, why notify must not connect to `address`; None for a public internet address."""
    if isinstance(address, ipaddress.IPv6Address):
        for embedded in embedded_ipv4(address):  # tunnels that a relay unwraps towards the embedded address
            reason = why_not_public(embedded)
            if reason:
                return f"a tunnel address to {embedded}, which is {reason}"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address (this machine)"
    if address.is_link_local:
        return "a link-local address (such as a cloud metadata service)"
    if address.is_multicast:
        return "a multicast address"
    if address in SHARED_ADDRESS_SPACE:
        return "a shared (carrier-grade NAT) address"
    if address.is_reserved:  # before is_private, which also counts 240.0.0.0/4 and the like
        return "a reserved address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "not a public internet address"
    return None


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses carried by a 6to4 or Teredo address."""
    if address.sixtofour:
        return [address.sixtofour]
    if address.teredo:
        return list(address.teredo)
    return []


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Woodpecker-Signature of `body` sent at `timestamp` (Unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float, tolerance_s: int = 300) -> bool:
    """The receiver's check: signed with `secret`, and signed within `tolerance_s` of `now` (Unix seconds).

    `headers` may be any mapping of the request's headers (names in any case); `body` is the raw request body.
    """
    by_name = {name.lower(): value for name, value in headers.items()}
    given = by_name.get("x-woodpecker-signature", "")
    try:
        timestamp = int(by_name.get("x-woodpecker-timestamp", ""))
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body).encode(), given.encode())


def post(url: str, secret: str, event_id: str, body: bytes, policy: TargetPolicy, now: Callable[[], float] = time.time,
         resolve: Resolver = socket.getaddrinfo, *, tls_context: ssl.SSLContext | None = None) -> Attempt:
    """POST `body` to `url`, signed with `secret`; one attempt, never raising for anything the network does.

    `tls_context` replaces the system's trusted CAs, for a deployment whose receivers use a private CA.
    """
    started = time.perf_counter()

    def attempt(status_code: int | None, error: str | None) -> Attempt:
        return Attempt(status_code, (time.perf_counter() - started) * 1000, error)

    try:
        target = checked_target(url, policy, resolve)
    except UnsafeTarget as refusal:
        return attempt(None, f"refused target: {refusal}")
    timestamp = int(now())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Woodpecker-Event-Id": event_id,
        "X-Woodpecker-Timestamp": str(timestamp),
        "X-Woodpecker-Signature": sign(secret, timestamp, body),
    }
    connection = pinned_connection(target, policy.timeout_s, tls_context)
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
    except TimeoutError:
        return attempt(None, "timeout")
    except ConnectionRefusedError:
        return attempt(None, "connection refused")
    except ssl.SSLCertVerificationError as error:
        return attempt(None, f"TLS certificate not accepted: {error.verify_message}")
    except ssl.SSLError as error:
        return attempt(None, f"TLS failed: {error.reason or error}")
    except http.client.RemoteDisconnected:
        return attempt(None, "connection closed without an answer")
    except http.client.HTTPException as error:
        return attempt(None, f"malformed HTTP answer ({type(error).__name__})")
    except OSError as error:
        return attempt(None, f"network error: {error.strerror or error}")
    else:
        read_answer_body(response)
        return attempt(response.status, outcome(response.status))
    finally:
        connection.close()


def outcome(status_code: int) -> str | None:
    if 200 <= status_code < 300:
        return None
    if 300 <= status_code < 400:
        # Following a redirect would let a receiver send us anywhere, past the checks above.
        return "redirect not followed"
    return f"HTTP {status_code}"


def read_answer_body(response: http.client.HTTPResponse) -> None:
    """Let the receiver finish writing its answer, up to a bound: the status line has already decided the
    attempt, so a body that is huge, slow or cut short changes nothing."""
    try:
        response.read(MAX_RESPONSE_BYTES)
    except (OSError, http.client.HTTPException):
        pass


def pinned_connection(target: Target, timeout_s: float,
                      tls_context: ssl.SSLContext | None) -> http.client.HTTPConnection:
    if target.scheme == "https":
        return PinnedHTTPSConnection(target, timeout_s, tls_context or ssl.create_default_context())
    return PinnedHTTPConnection(target, timeout_s)


class PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to the checked address, with the URL's host in the Host header: the library never resolves it."""

    def __init__(self, target: Target, timeout_s: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout_s)
        self.address = target.address

    def connect(self) -> None:
        self.sock = socket.create_connection((str(self.address), self.port), self.timeout)


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to the checked address; SNI and the certificate's name check use the URL's host, as a browser's."""

    def __init__(self, target: Target, timeout_s: float, tls_context: ssl.SSLContext) -> None:
        super().__init__(target.host, target.port, timeout=timeout_s, context=tls_context)
        self.address = target.address
        self.tls_context = tls_context

    def connect(self) -> None:
        plain = socket.create_connection((str(self.address), self.port), self.timeout)
        try:
            self.sock = self.tls_context.wrap_socket(plain, server_hostname=self.host)
        except BaseException:
            plain.close()
            raise
