"""Notify's key (NOTIFY_SECRET_KEY): it seals the webhook secrets and the confirmation mails while they wait in the
store, and keys the hashes of the confirmation codes.

Sealed with AES-256-GCM under a key derived from NOTIFY_SECRET_KEY (HKDF-SHA256), each value bound to what it
belongs to (a secret to its recipient, a mail to its delivery): a value copied onto another document does not
open there. A code's hash is an HMAC under another derived key, so that the store alone gives no way to try the
hundred million codes offline.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.config import MAKE_A_SECRET, Settings, UnsafeConfiguration

from .settings import NotifySettings

log = logging.getLogger(__name__)

DEV_SECRET_KEY = "woodpecker-notify-development-key-never-use-in-production"
MIN_KEY_BYTES = 32
VERSION = "v1:"
NONCE_BYTES = 12


class Unsealable(ValueError):
    """A sealed value that does not open: another key sealed it, or it was changed or moved."""


class Sealer:
    def __init__(self, key: str) -> None:
        self._aead = AESGCM(_derived(key, b"woodpecker notify: sealing"))
        self._code_key = _derived(key, b"woodpecker notify: confirmation codes")

    def seal(self, plaintext: str, bound_to: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), bound_to.encode())
        return VERSION + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, sealed: str, bound_to: str) -> str:
        if not sealed.startswith(VERSION):
            raise Unsealable("not a sealed value")
        try:
            raw = base64.urlsafe_b64decode(sealed[len(VERSION):])
            return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], bound_to.encode()).decode()
        except (InvalidTag, ValueError):
            raise Unsealable("the value does not open with this key here") from None

    def code_hash(self, recipient: str, code: str) -> str:
        return hmac.new(self._code_key, f"{recipient}\n{code}".encode(), hashlib.sha256).hexdigest()

    def address_key(self, address: str) -> str:
        """An address as the confirmation counts know it: keyed, so the store does not list who was mailed."""
        return hmac.new(self._code_key, address.strip().lower().encode(), hashlib.sha256).hexdigest()


def _derived(key: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(key.encode())


def sealer_from(notify_settings: NotifySettings, settings: Settings) -> Sealer:
    """The sealer NOTIFY_SECRET_KEY asks for (`checked_secret_key` says what it refuses)."""
    key = checked_secret_key(notify_settings, settings)
    if key == DEV_SECRET_KEY:
        log.warning("NOTIFY_SECRET_KEY is not set: webhook secrets are sealed with the public development key")
    return Sealer(key)


def checked_secret_key(notify_settings: NotifySettings, settings: Settings) -> str:
    """The key to seal with; refuses to start with no key, a short one, or the public development key outside
    development (where `make up` runs its embedded database, as for WOODPECKER_JWT_SECRET)."""
    key = notify_settings.secret_key
    if key is None or key == DEV_SECRET_KEY:
        if not settings.development_secret_allowed:
            raise UnsafeConfiguration(
                "NOTIFY_SECRET_KEY is not set, or is the public development key. Set it to a random string of at "
                f"least {MIN_KEY_BYTES} bytes, e.g. {MAKE_A_SECRET}, and keep it: webhook secrets sealed with it "
                "do not open with another.")
        return DEV_SECRET_KEY
    if len(key.encode()) < MIN_KEY_BYTES:
        raise UnsafeConfiguration(f"NOTIFY_SECRET_KEY is {len(key.encode())} bytes; it must be at least "
                                  f"{MIN_KEY_BYTES} random bytes, e.g. {MAKE_A_SECRET}.")
    return key
