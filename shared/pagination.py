"""Cursor pagination (CONTRACT "Lists": ?limit= default 50, max 200; ?cursor=; next_cursor), newest first.

A page is read in windows of time that grow backwards from where the previous page ended. A store's
`limit` does not bound what a query costs on every store: the embedded database materialises every
document an index range yields before it sorts and limits them. A window bounds that range by time,
so the first page of a busy list costs the same with a year of history as with a day's; a sparse list
takes a few more (cheap) windows. Each window is one query per alternative filter (see
shared.scope), its time range first, so that the time index serves it when no compound index
matches the filter exactly.
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from marshmallow import Schema, fields, validate
from pymongo.collection import Collection

from shared.errors import InvalidFields
from shared.events import rfc3339, utcnow
from shared.reference import FIRST_YEAR

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
FIRST_WINDOW = timedelta(days=1)
WINDOW_GROWTH = 4
# Nothing in the programme is older: the last window reaches back to here.
EPOCH = datetime(FIRST_YEAR, 1, 1, tzinfo=UTC)


class PageQuery(Schema):
    limit = fields.Integer(load_default=DEFAULT_LIMIT, validate=validate.Range(1, MAX_LIMIT))
    cursor = fields.String(load_default=None, metadata={"description": "next_cursor of the previous page"})


@dataclass(frozen=True)
class Position:
    """Where a page ended: its last item's time and id (the id breaks ties between equal times)."""

    at: datetime
    id: str


def encode_cursor(position: Position) -> str:
    raw = json.dumps([rfc3339(position.at), position.id], ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Position | None:
    if cursor is None:
        return None
    try:
        at, item_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        position = Position(datetime.fromisoformat(at.replace("Z", "+00:00")), str(item_id))
    except (binascii.Error, ValueError, TypeError, AttributeError):
        position = None
    # b64decode skips characters outside its alphabet; only a cursor that round-trips is ours.
    if position is None or position.at.tzinfo is None or encode_cursor(position) != cursor:
        raise InvalidFields("The cursor is not one this API issued.", {"cursor": ["not a valid cursor"]})
    return position


def newest_first(collection: Collection, filters: list[dict], time_field: str, limit: int,
                 after: Position | None = None, since: datetime | None = None, until: datetime | None = None,
                 projection: dict | None = None) -> list[dict]:
    """Up to `limit` + 1 documents matching any of `filters` (flat equalities), newest first by
    (`time_field`, `_id`): those after `after`, with `since` <= time < `until`."""
    floor = since or EPOCH
    upper, inclusive = (after.at, True) if after else (until, False)
    found: dict = {}
    width = FIRST_WINDOW
    while filters:
        lower = (upper or utcnow()) - width
        last = lower <= floor
        window = {"$gte": floor if last else lower}
        if upper is not None:
            window["$lte" if inclusive else "$lt"] = upper
        for wanted in filters:
            for document in collection.find({time_field: window, **wanted}, projection):
                if after is None or (document[time_field], document["_id"]) < (after.at, after.id):
                    found[document["_id"]] = document
        if len(found) > limit or last:
            break
        upper, inclusive, width = lower, False, width * WINDOW_GROWTH
    newest = sorted(found.values(), key=lambda d: (d[time_field], d["_id"]), reverse=True)
    return newest[:limit + 1]


def page(items: list[dict], limit: int, time_field: str) -> dict:
    """`items` fetched with limit + 1: the extra one only says whether another page exists."""
    more = len(items) > limit
    items = items[:limit]
    cursor = encode_cursor(Position(items[-1][time_field], items[-1]["id"])) if more and items else None
    return {"items": items, "next_cursor": cursor}
