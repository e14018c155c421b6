"""Webhook signing as a receiver checks it, and what `post` refuses before it connects anywhere: pure pieces
(the POSTs to real receivers are tests/service/test_notify_webhooks.py)."""
from __future__ import annotations

import pytest

from services.notify.webhooks import post, sign, signature_header, verify
from shared.outbound import TargetPolicy
from tests.unit.resolver_double import FakeResolver

SECRET = "shared-secret"
BODY = b'{"id": "evt-1"}'
SIGNED_AT = 1_800_000_000
PUBLIC = "93.184.216.34"
NO_ALLOWANCE = TargetPolicy(deadline_s=2.0)


# --- signing, and the receiver's side ------------------------------------------------------------------------------

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


# --- refusing before connecting ------------------------------------------------------------------------------------

def test_post_refuses_a_malformed_url_without_raising():
    attempt = post("ftp://receiver.example/hook", [SECRET], "evt-1", BODY, NO_ALLOWANCE, resolve=FakeResolver(PUBLIC))

    assert attempt.error == "refused target: only http:// and https:// URLs are accepted"
    assert not attempt.delivered


# --- rotating a secret: both signatures for a while ----------------------------------------------------------------

def test_outside_the_overlap_the_header_keeps_its_single_signature_form():
    assert signature_header([SECRET], SIGNED_AT, BODY) == sign(SECRET, SIGNED_AT, BODY)
