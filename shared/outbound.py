"""The one safe outbound HTTP client: every request we make to a URL that someone typed goes through `fetch`.

A URL typed by a person (a department's webhook, an identity provider's discovery document) is hostile until
checked (server-side request forgery): only http and https (https alone under a strict policy), and only public
addresses unless the deployment allows a network by name (e.g. a receiver on the same host in development).
`check_url` answers when the URL is saved; `fetch` checks again at every request, because a name that resolved
to a public address yesterday may resolve to 127.0.0.1 today (DNS rebinding). `fetch` resolves the name once,
checks every address it got, and connects to the checked address itself, so that no second lookup can slip
another address in between the check and the connection.

Every request has one overall deadline for connecting, the TLS handshake, sending and reading the answer
(`Deadline`): a per-read timeout alone lets a server that drips one byte at a time hold the caller for days.
Name resolution is bounded by the system resolver's own timeouts, not by the deadline.

`fetch` blocks up to its deadline: call it from a thread of its own (an executor), never from a consumer's.
"""
from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., Sequence[tuple[Any, ...]]]  # socket.getaddrinfo's signature and answer

MAX_URL_LENGTH = 2048
MAX_ANSWER_BYTES = 64 * 1024
USER_AGENT = "Woodpecker/1"
DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 6598: carrier-grade NAT space. Python's ipaddress counts it as neither private nor global, so name it.
SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")
# After IDNA encoding, what DNS names may be made of; anything else in a host is a trick or a typo.
HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")
# Spaces and control characters: urlsplit silently drops some of them, and they have no business in a URL.
UNSAFE_URL_CHARACTERS = re.compile(r"[\x00-\x20\x7f]")
REFUSED = "refused target: "
# A socket timeout set to the time left may end a read this much before the deadline's own clock says it passed.
CLOCK_SLACK_S = 0.01


class UnsafeTarget(ValueError):
    """A URL we refuse to fetch. `str()` says why in words the person who typed it may read: never what one of
    our names resolved to, which would map our network for them; `detail` says all, for our own records."""

    def __init__(self, public: str, detail: str | None = None) -> None:
        super().__init__(public)
        self.detail = detail or public


@dataclass(frozen=True)
class TargetPolicy:
    allowed_networks: tuple[Network, ...] = ()  # private networks a deployment lets requests reach
    https_only: bool = False
    deadline_s: float = 10.0  # for the whole request: connecting, TLS, sending and reading the answer

    def __post_init__(self) -> None:
        if self.deadline_s <= 0:
            raise ValueError(f"the deadline must be positive, not {self.deadline_s}")

    @classmethod
    def from_setting(cls, text: str | None, deadline_s: float = 10.0) -> TargetPolicy:
        """The policy from a list of networks such as NOTIFY_ALLOWED_NETWORKS: comma-separated CIDRs, e.g.
        "127.0.0.0/8,10.1.0.0/16"."""
        networks = []
        for item in (text or "").split(","):
            if not item.strip():
                continue
            try:
                networks.append(ipaddress.ip_network(item.strip()))
            except ValueError as error:
                raise ValueError(f"NOTIFY_ALLOWED_NETWORKS: {item.strip()!r} is not a network such as "
                                 f"10.1.0.0/16 ({error})") from None
        return cls(allowed_networks=tuple(networks), deadline_s=deadline_s)

    def strict(self) -> TargetPolicy:
        """The same deadline, but https only and public addresses only, whatever the deployment allows."""
        return replace(self, allowed_networks=(), https_only=True)

    def allows(self, address: Address) -> bool:
        return any(address in network for network in self.allowed_networks)


@dataclass(frozen=True)
class Answer:
    """What one request came to. `error` is None when a whole answer came (whatever its status)."""
    status_code: int | None  # None when no HTTP status line came
    latency_ms: float
    error: str | None
    body: bytes = b""  # at most `max_answer_bytes` of it

    @property
    def refused(self) -> bool:
        """The target was refused before any connection: trying again later cannot help."""
        return (self.error or "").startswith(REFUSED)


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (one address, already checked) and what to say once there."""
    scheme: str
    host: str  # as sent in the Host header and, for https, in SNI and the certificate check
    port: int
    path: str
    address: Address


class Deadline:
    """One request's overall deadline. The sockets it watches are shut down when it passes, which ends any read
    or write blocked on them at once (however slowly the other side drips); `passed` then tells why the request
    failed. A context manager: leaving it disarms the watch."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ends_at = time.monotonic() + seconds
        self._expired = False
        self._watched: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()
        with self._lock:
            for watched in self._watched:
                watched.close()
            self._watched.clear()

    @property
    def passed(self) -> bool:
        # The clock as well as the watch: a socket's own timeout, set to the time left, may end a read first.
        return self._expired or time.monotonic() >= self.ends_at - CLOCK_SLACK_S

    def remaining(self) -> float:
        """Seconds left, or TimeoutError when there are none (a timeout of 0 would mean "do not block")."""
        if self.passed:
            raise TimeoutError(f"the {self.seconds:g} s deadline passed")
        return self.ends_at - time.monotonic()

    def watch(self, sock: socket.socket) -> None:
        """Shut `sock` down when the deadline passes. A duplicate of its descriptor is kept, so the watch still
        holds once TLS has wrapped the socket (shutting down any descriptor of a connection ends the connection)."""
        with self._lock:
            if self.passed:
                raise TimeoutError(f"the {self.seconds:g} s deadline passed")
            self._watched.append(sock.dup())

    def connection(self, address: tuple[str, int]) -> socket.socket:
        """A TCP connection to `address`, made within the deadline and watched by it."""
        sock = socket.create_connection(address, self.remaining())
        try:
            self.watch(sock)
            sock.settimeout(self.remaining())
        except BaseException:
            sock.close()
            raise
        return sock

    def _expire(self) -> None:
        with self._lock:
            self._expired = True
            for watched in self._watched:
                try:
                    watched.shutdown(socket.SHUT_RDWR)
                except OSError:  # already closed by the other side
                    pass


# --- checking a URL -------------------------------------------------------------------------------

def check_url(url: str, policy: TargetPolicy, resolve: Resolver = socket.getaddrinfo) -> None:
    """Raise UnsafeTarget unless we may fetch `url` now (used when a URL is saved)."""
    checked_target(url, policy, resolve)


def checked_target(url: str, policy: TargetPolicy, resolve: Resolver = socket.getaddrinfo) -> Target:
    scheme, host, port, path = parsed_url(url, policy)
    addresses = resolved_addresses(host, port, resolve)
    for address in addresses:
        if policy.allows(address):
            continue
        reason = why_not_public(address)
        if reason is None:
            continue
        rule = "only public internet addresses are accepted"
        if str(address) == host:
            raise UnsafeTarget(f"{host} is {reason}; {rule}")
        raise UnsafeTarget(f"{host} does not resolve to a public internet address; {rule}",
                           f"{host} resolves to {address}, which is {reason}")
    return Target(scheme, host, port, path, addresses[0])


def parsed_url(url: str, policy: TargetPolicy = TargetPolicy()) -> tuple[str, str, int, str]:
    """The scheme, host (IDNA, lower case), port and request path of a URL, or UnsafeTarget."""
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
        raise UnsafeTarget("only https:// URLs are accepted" if policy.https_only
                           else "only http:// and https:// URLs are accepted")
    if policy.https_only and scheme != "https":
        raise UnsafeTarget("only https:// URLs are accepted")
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
    # The same words as for a name that resolves inside: which of our names exist is not the caller's to learn.
    unresolved = UnsafeTarget(f"{host} does not resolve to a public internet address; only public internet "
                              "addresses are accepted", f"the host name {host} cannot be resolved")
    try:
        answers = resolve(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):  # socket.gaierror is an OSError; over-long labels raise UnicodeError
        raise unresolved from None
    addresses: list[Address] = []
    for _family, _type, _proto, _canonname, sockaddr in answers:
        address = plain_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise unresolved
    return addresses


def plain_address(text: str) -> Address:
    """The address a socket really talks to: an IPv4-mapped IPv6 address (::ffff:a.b.c.d) is a.b.c.d."""
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def why_not_public(address: Address) -> str | None:
    """In words, why we must not connect to `address`; None for a public internet address."""
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


# --- fetching -------------------------------------------------------------------------------------

def fetch(method: str, url: str, policy: TargetPolicy, *, body: bytes | None = None,
          headers: Mapping[str, str] | None = None, resolve: Resolver = socket.getaddrinfo,
          tls_context: ssl.SSLContext | None = None, max_answer_bytes: int = MAX_ANSWER_BYTES) -> Answer:
    """One request to `url`, checked, pinned and within `policy.deadline_s`; never raises for anything the
    network or the other side does. Redirects are not followed: a 3xx is returned as it came.

    `tls_context` replaces the system's trusted CAs, for a deployment whose servers use a private CA.
    """
    started = time.perf_counter()

    def answer(status_code: int | None, error: str | None, content: bytes = b"") -> Answer:
        return Answer(status_code, (time.perf_counter() - started) * 1000, error, content)

    try:
        target = checked_target(url, policy, resolve)
    except UnsafeTarget as refusal:
        return answer(None, REFUSED + refusal.detail)
    sent = {"User-Agent": USER_AGENT, **(headers or {})}
    with Deadline(policy.deadline_s) as deadline:
        connection = pinned_connection(target, deadline, tls_context)
        status: int | None = None
        try:
            connection.request(method, target.path, body=body, headers=sent)
            response = connection.getresponse()
            status = response.status
            return answer(status, None, response.read(max_answer_bytes))
        except Exception as failure:  # whatever the network did, said in words
            return answer(status, deadline_passed(deadline) if deadline.passed else network_error(failure))
        finally:
            connection.close()


def deadline_passed(deadline: Deadline) -> str:
    return f"no complete answer within the {deadline.seconds:g} s deadline"


def network_error(failure: Exception) -> str:
    if isinstance(failure, TimeoutError):
        return "timeout"
    if isinstance(failure, ConnectionRefusedError):
        return "connection refused"
    if isinstance(failure, http.client.RemoteDisconnected):  # before ConnectionResetError, one of its bases
        return "connection closed without an answer"
    if isinstance(failure, ConnectionResetError):
        return "connection reset by the other side"
    if isinstance(failure, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted: {failure.verify_message}"
    if isinstance(failure, ssl.SSLError):
        return f"TLS failed: {failure.reason or failure}"
    if isinstance(failure, http.client.IncompleteRead):
        return "connection closed in the middle of the answer"
    if isinstance(failure, http.client.HTTPException):
        return f"malformed HTTP answer ({type(failure).__name__})"
    if isinstance(failure, OSError):
        return f"network error: {failure.strerror or failure}"
    return f"failed: {type(failure).__name__}"


def pinned_connection(target: Target, deadline: Deadline,
                      tls_context: ssl.SSLContext | None) -> http.client.HTTPConnection:
    if target.scheme == "https":
        return PinnedHTTPSConnection(target, deadline, tls_context or ssl.create_default_context())
    return PinnedHTTPConnection(target, deadline)


class PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to the checked address, with the URL's host in the Host header: the library never resolves it."""

    def __init__(self, target: Target, deadline: Deadline) -> None:
        super().__init__(target.host, target.port, timeout=deadline.seconds)
        self.address = target.address
        self.deadline = deadline

    def connect(self) -> None:
        self.sock = self.deadline.connection((str(self.address), self.port))


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to the checked address; SNI and the certificate's name check use the URL's host, as a browser's."""

    def __init__(self, target: Target, deadline: Deadline, tls_context: ssl.SSLContext) -> None:
        super().__init__(target.host, target.port, timeout=deadline.seconds, context=tls_context)
        self.address = target.address
        self.deadline = deadline
        self.tls_context = tls_context

    def connect(self) -> None:
        plain = self.deadline.connection((str(self.address), self.port))
        try:
            self.sock = self.tls_context.wrap_socket(plain, server_hostname=self.host)
        except BaseException:
            plain.close()
            raise
