"""Webhook POSTs to receivers' own systems: signed, through the one safe outbound client (shared/outbound.py),
which checks every URL (no way into our own network), connects to the address it checked and ends every attempt
within its deadline.

`post` blocks up to the deadline: call it from the notify worker's own executor, never from a consumer's thread,
so that one dead receiver holds up nothing else.

Receiving a webhook (for departments' systems)
-----------------------------------------------
Every POST carries a JSON body and these headers:

    X-Woodpecker-Event-Id: <the event's id>
    X-Woodpecker-Timestamp: <Unix seconds when this attempt was signed>
    X-Woodpecker-Signature: sha256=<hex HMAC-SHA256, keyed with your secret, of "<timestamp>." + the raw body>

For a while after the secret is rotated (the overlap window), the signature header carries two signatures, the
new secret's first: `sha256=<with the new secret>,sha256=<with the old one>`, so that a receiver still holding
the old secret keeps accepting until it is given the new one. Accept the request if any one of them matches.

To accept one:

1. Take the body as raw bytes, before any JSON parsing: re-serialised JSON would not match the signature.
2. Refuse it if the timestamp is more than 5 minutes away from your clock: an old request replayed by someone
   who captured it is refused, even though its signature is genuine.
3. Compute the signature yourself and compare it with each signature of the header in constant time
   (`hmac.compare_digest`), so that the comparison's duration gives nothing away.
4. Answer 2xx quickly, and only then do the work. Anything else, or no whole answer within the deadline
   (10 seconds unless the city set another), is a failed
   attempt, retried with back-off; a retry is signed afresh but carries the same event id, so keep the ids you
   have processed and skip repeats. Use the id inside the body, which the signature covers, not the header.

`verify` below does steps 2 and 3; it depends on nothing but the standard library, so it can be copied as is.
"""
from __future__ import annotations

import hashlib
import hmac
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from shared.outbound import Resolver, TargetPolicy, fetch

USER_AGENT = "Woodpecker-Notify/1"


@dataclass(frozen=True)
class Attempt:
    status_code: int | None  # None when no HTTP answer came
    latency_ms: float
    error: str | None  # None when delivered; otherwise a short reason, kept on the delivery for people to read
    permanent: bool = False  # the target was refused: trying again cannot help

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Woodpecker-Signature of `body` sent at `timestamp` (Unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signature_header(secrets: Sequence[str], timestamp: int, body: bytes) -> str:
    """One signature per secret, the newest first: two only during a rotation's overlap window."""
    return ",".join(sign(secret, timestamp, body) for secret in secrets)


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float, tolerance_s: int = 300) -> bool:
    """The receiver's check: signed with `secret` (one of the header's signatures), and signed within
    `tolerance_s` of `now` (Unix seconds).

    `headers` may be any mapping of the request's headers (names in any case); `body` is the raw request body.
    """
    by_name = {name.lower(): value for name, value in headers.items()}
    given = [value.strip() for value in by_name.get("x-woodpecker-signature", "").split(",")]
    try:
        timestamp = int(by_name.get("x-woodpecker-timestamp", ""))
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).encode()
    # Every signature is compared, so that the time taken does not tell which one matched.
    matches = [hmac.compare_digest(expected, signature.encode()) for signature in given]
    return any(matches)


def post(url: str, secrets: Sequence[str], event_id: str, body: bytes, policy: TargetPolicy,
         now: Callable[[], float] = time.time, resolve: Resolver = socket.getaddrinfo, *,
         tls_context: ssl.SSLContext | None = None) -> Attempt:
    """POST `body` to `url`, signed with each of `secrets` (the newest first); one attempt, within the policy's
    deadline, never raising for anything the network does.

    `tls_context` replaces the system's trusted CAs, for a deployment whose receivers use a private CA.
    """
    timestamp = int(now())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Woodpecker-Event-Id": event_id,
        "X-Woodpecker-Timestamp": str(timestamp),
        "X-Woodpecker-Signature": signature_header(secrets, timestamp, body),
    }
    answer = fetch("POST", url, policy, body=body, headers=headers, resolve=resolve, tls_context=tls_context)
    if answer.status_code is not None and 200 <= answer.status_code < 300:
        # The status line decides: a body that is huge, slow or cut short after it changes nothing.
        return Attempt(answer.status_code, answer.latency_ms, None)
    error = answer.error if answer.status_code is None else outcome(answer.status_code)
    return Attempt(answer.status_code, answer.latency_ms, error, permanent=answer.refused)


def outcome(status_code: int) -> str:
    if 300 <= status_code < 400:
        # Following a redirect would let a receiver send us anywhere, past the checks.
        return "redirect not followed"
    return f"HTTP {status_code}"
