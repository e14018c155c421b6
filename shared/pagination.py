"""Cursor pagination (CONTRACT "Lists": ?limit= default 50, max 200; ?cursor=; next_cursor)."""
from __future__ import annotations

import base64
import binascii

from marshmallow import Schema, fields, validate

from shared.errors import InvalidFields

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class PageQuery(Schema):
    limit = fields.Integer(load_default=DEFAULT_LIMIT, validate=validate.Range(1, MAX_LIMIT))
    cursor = fields.String(load_default=None, metadata={"description": "next_cursor of the previous page"})


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        last_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        last_id = None
    # b64decode skips characters outside its alphabet; only a cursor that round-trips is ours.
    if not last_id or encode_cursor(last_id) != cursor:
        raise InvalidFields("The cursor is not one this API issued.", {"cursor": ["not a valid cursor"]})
    return last_id


def page(items: list[dict], limit: int, id_of=lambda item: item["id"]) -> dict:
    """`items` fetched with limit + 1: the extra one only says whether another page exists."""
    more = len(items) > limit
    items = items[:limit]
    return {"items": items, "next_cursor": encode_cursor(id_of(items[-1])) if more and items else None}
