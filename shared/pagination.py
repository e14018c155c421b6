"""Cursor pagination (docs/contract.md, "Lists": ?limit= default 50, max 200; ?cursor=; next_cursor), newest first
(or, for a queue, oldest first).

A page is read in windows of time that grow backwards from where the previous page ended. A store's
`limit` does not bound what a query costs on every store: the embedded database materialises every
document an index range yields before it sorts and limits them. A window bounds that range by time,
so the first page of a busy list costs the same with a year of history as with a day's; a sparse list
takes a few more (cheap) windows. Each window is one query per alternative filter (see
shared.scope), its time range first, so that the time index serves it when no compound index
matches the filter exactly.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from marshmallow import Schema, fields, validate
from pymongo.collection import Collection

from shared.errors import InvalidFields
from shared.events import utcnow
from shared.reference import FIRST_YEAR

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
FIRST_WINDOW = timedelta(days=1)
WINDOW_GROWTH = 4
# Nothing in the programme is older: the last window reaches back to here.
EPOCH = datetime(FIRST_YEAR, 1, 1, tzinfo=UTC)
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# A cursor is the position a page ended at: the time (milliseconds since 1970) and the id of its last item.
# Every cursor of this shape is a position a list can continue from, so the document can say exactly what
# it accepts; a client should still only send the next_cursor it was given.
ID_CHARACTERS = "A-Za-z0-9_.:-"
CURSOR_PATTERN = rf"^[0-9]{{12,13}}~[{ID_CHARACTERS}]{{1,128}}$"


class PageQuery(Schema):
    limit = fields.Integer(load_default=DEFAULT_LIMIT, validate=validate.Range(1, MAX_LIMIT),
                           metadata={"description": f"items per page, at most {MAX_LIMIT}"})
    # No default: a query string cannot carry null, so the document must not offer it.
    cursor = fields.String(validate=validate.Regexp(CURSOR_PATTERN),
                           metadata={"description": "next_cursor of the previous page", "pattern": CURSOR_PATTERN,
                                     "example": "1795515160123~6b0563189074648134dcbce3"})


@dataclass(frozen=True)
class Position:
    """Where a page ended: its last item's time and id (the id breaks ties between equal times)."""

    at: datetime
    id: str


def encode_cursor(position: Position) -> str:
    return f"{(position.at - UNIX_EPOCH) // timedelta(milliseconds=1)}~{position.id}"


def decode_cursor(cursor: str | None) -> Position | None:
    if cursor is None:
        return None
    if not re.fullmatch(CURSOR_PATTERN, cursor):
        raise InvalidFields("The cursor is not one this API issued.", {"cursor": ["not a valid cursor"]})
    milliseconds, _, item_id = cursor.partition("~")
    return Position(UNIX_EPOCH + timedelta(milliseconds=int(milliseconds)), item_id)


def newest_first(collection: Collection, filters: list[dict], time_field: str, limit: int,
                 after: Position | None = None, *, since: datetime | None = None, until: datetime | None = None,
                 projection: dict | None = None, first_window: timedelta = FIRST_WINDOW) -> list[dict]:
    """Up to `limit` + 1 documents matching any of `filters` (flat equalities), newest first by
    (`time_field`, `_id`): those after `after`, with `since` <= time < `until`. A collection written many times a
    second gives a shorter `first_window`: the first window's documents are all read."""
    floor = since or EPOCH
    upper, inclusive = (after.at, True) if after else (until, False)
    found: dict = {}
    width = first_window
    while filters:
        top = upper or utcnow()
        last = top - floor <= width  # (not top - width: a date near year 1 would overflow)
        lower = floor if last else top - width
        window = {"$gte": lower}
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


def oldest_first(collection: Collection, filters: list[dict], time_field: str, limit: int,
                 after: Position | None = None, *, projection: dict | None = None) -> list[dict]:
    """Up to `limit` + 1 documents matching any of `filters`, oldest first by (`time_field`, `_id`): those after
    `after`. The windows grow forwards from the cursor (or the programme's epoch) to now, so the first page
    reads every match of the window that reaches the oldest one: meant for queues, whose matches are few (the
    cases awaiting triage), not for a whole history."""
    lower = after.at if after else EPOCH
    found: dict = {}
    width = FIRST_WINDOW
    while filters:
        last = utcnow() - lower <= width
        window = {"$gte": lower} if last else {"$gte": lower, "$lt": lower + width}
        for wanted in filters:
            for document in collection.find({time_field: window, **wanted}, projection):
                if after is None or (document[time_field], document["_id"]) > (after.at, after.id):
                    found[document["_id"]] = document
        if len(found) > limit or last:
            break
        lower, width = lower + width, width * WINDOW_GROWTH
    oldest = sorted(found.values(), key=lambda d: (d[time_field], d["_id"]))
    return oldest[:limit + 1]


def page(items: list[dict], limit: int, time_field: str) -> dict:
    """`items` fetched with limit + 1: the extra one only says whether another page exists."""
    more = len(items) > limit
    items = items[:limit]
    cursor = encode_cursor(Position(items[-1][time_field], items[-1]["id"])) if more and items else None
    return {"items": items, "next_cursor": cursor}
