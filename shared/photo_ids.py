"""Photo ids that cannot be guessed and that say who uploaded them.

A photo id is 128 random bits and a MAC of them with the uploader's side: the user for a volunteer
(or anyone else), the department for a department's staff. Any service can then check, without asking
intake, that an id a command names was issued by intake to the caller's side: routing refuses a
department's `rectify` naming a photo another department or a volunteer took, intake a report naming
someone else's. Intake hands out an id only once the photo is stored, so an id that checks out exists.

The key is derived from WOODPECKER_JWT_SECRET, which every service already shares; changing that secret
retires the ids issued before (their photos stay visible, but new commands can no longer name them).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from marshmallow import fields, validate

from shared.auth import Caller

NONCE_BYTES = 16
MAC_BYTES = 12
# What every issued id looks like (base64url of the nonce, a dot, base64url of the MAC); the documents say it.
PATTERN = r"^[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{16}$"


def side_of(caller: Caller) -> str:
    """Whose photos a caller may name: a department's staff share theirs; everyone else has their own."""
    return f"department:{caller.dept}" if caller.role == "department" else f"user:{caller.id}"


class PhotoIds:
    def __init__(self, secret: str):
        self._key = hmac.new(secret.encode(), b"woodpecker photo ids v1", hashlib.sha256).digest()

    def _mac(self, nonce: str, side: str) -> str:
        digest = hmac.new(self._key, f"{nonce}|{side}".encode(), hashlib.sha256).digest()[:MAC_BYTES]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, side: str) -> str:
        nonce = secrets.token_urlsafe(NONCE_BYTES)
        return f"{nonce}.{self._mac(nonce, side)}"

    def issued_to(self, photo_id: str, side: str) -> bool:
        if not re.fullmatch(PATTERN, photo_id):
            return False
        nonce, _, mac = photo_id.partition(".")
        return hmac.compare_digest(mac.encode(), self._mac(nonce, side).encode())

    def not_issued_to(self, photo_ids: list[str], side: str) -> list[str]:
        return [photo_id for photo_id in photo_ids if not self.issued_to(photo_id, side)]


def photo_id_field(**kwargs) -> fields.String:
    """A photo id in a request: the shape every issued id has (whose it is, the command checks)."""
    return fields.String(validate=validate.Regexp(PATTERN, error="Not a photo id."),
                         metadata={"pattern": PATTERN, "example": "k2x9V0aQf3Rz8LwYb1NcDg.Jq4uT7sWm0ZpE2Ha"}, **kwargs)
