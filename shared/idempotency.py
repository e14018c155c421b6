"""`Idempotency-Key` on creating POSTs (docs/contract.md, "HTTP conventions").

The key lives in the created document itself under a partial unique index, so claiming the key and
creating the resource are one atomic insert; a document created without a key has no such field and
is not in the index at all.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from flask import request
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from shared.errors import IdempotencyConflict, InvalidFields

KEY_FIELD = "idempotency_key"
FINGERPRINT_FIELD = "request_fingerprint"
MAX_KEY_LENGTH = 200
# Visible ASCII, no spaces: what a UUID, a ULID or any client's own scheme needs, and what every HTTP
# stack carries unchanged. The document says exactly this, and the service accepts exactly this.
KEY_PATTERN = r"^[!-~]{1,200}$"
HEADER_PARAMETER = {
    "in": "header", "name": "Idempotency-Key", "required": False,
    "description": "Send the same key with a retry of the same request: it creates nothing new and answers "
                   "with the first result (header Idempotent-Replayed: true). The same key with another body is "
                   "a 409.",
    "schema": {"type": "string", "pattern": KEY_PATTERN, "minLength": 1, "maxLength": MAX_KEY_LENGTH,
               "example": "6f1c2d9e-7b4a-4c1e-9f0a-2b8d5e3c7a10"},
}
# Keys are non-empty strings. The filter is stated as a range rather than `$exists`, because a store
# uses a partial index only for a query that provably falls inside its filter, and an equality on a
# string provably falls inside a string range on both MongoDB and the embedded database.
KEYED = {KEY_FIELD: {"$gt": ""}}


# What a replayed creating POST answers with, beside the first result.
REPLAY_HEADER = "Idempotent-Replayed"
REPLAYED = {REPLAY_HEADER: {"description": "true when this answers a retry with the same Idempotency-Key: "
                                           "nothing new was created", "schema": {"type": "string", "enum": ["true"]}}}


def ensure_index(collection: Collection) -> None:
    collection.create_index(KEY_FIELD, unique=True, partialFilterExpression=KEYED)


def fingerprint(payload: Any) -> str:
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def requested_key(caller_id: str) -> str | None:
    """The header's key, scoped to the caller so two callers' keys never collide."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not re.fullmatch(KEY_PATTERN, key):
        raise InvalidFields(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} visible ASCII characters, no spaces.",
                            {"Idempotency-Key": [f"1 to {MAX_KEY_LENGTH} visible ASCII characters, no spaces"]})
    return f"{caller_id}:{key}"


def insert_once(collection: Collection, document: dict, key: str | None, request_fingerprint: str,
                ) -> tuple[dict, bool]:
    """Insert `document` unless `key` was used before; returns (the stored document, created?).

    The same key with the same request gives back the first document; with another request it
    is a 409.
    """
    stored = {**document, FINGERPRINT_FIELD: request_fingerprint, **({KEY_FIELD: key} if key else {})}
    try:
        collection.insert_one(stored)
        return stored, True
    except DuplicateKeyError:
        if key is None:
            raise
    earlier = collection.find_one({KEY_FIELD: key})
    if earlier is None or earlier[FINGERPRINT_FIELD] != request_fingerprint:
        raise IdempotencyConflict("This Idempotency-Key was already used with a different request.")
    return earlier, False


def replay_header(created: bool) -> dict[str, str]:
    return {} if created else {REPLAY_HEADER: "true"}
