"""Marshmallow pieces every service's HTTP and event shapes share."""
from __future__ import annotations

from datetime import UTC, datetime

from marshmallow import ValidationError, fields

from shared.events import rfc3339

# No time of the programme lies outside these years; outside them a time is a mistake or a probe (year 1 with a
# positive offset is before the first instant Python can hold in UTC).
EARLIEST_YEAR, LATEST_YEAR = 1970, 2999
# The same bound, as the API's documents say it (a date-time's first four characters).
YEAR_PATTERN = r"^(19[7-9][0-9]|2[0-9]{3})-"


class Timestamp(fields.AwareDateTime):
    """RFC 3339 in UTC with `Z` on the way out; any offset accepted on the way in, kept as UTC."""

    def __init__(self, **kwargs):
        metadata = {"pattern": YEAR_PATTERN, **kwargs.pop("metadata", {})}
        super().__init__(format="iso", default_timezone=None, metadata=metadata, **kwargs)

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        if value.tzinfo is None:  # the store hands back naive UTC on some backends
            value = value.replace(tzinfo=UTC)
        return rfc3339(value)

    def _deserialize(self, value, attr, data, **kwargs) -> datetime:
        try:
            moment = super()._deserialize(value, attr, data, **kwargs)
        except ValidationError:
            raise ValidationError("Not an RFC 3339 time with an offset, e.g. 2026-11-23T08:30:00Z.") from None
        if not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
            raise ValidationError(f"A time between the years {EARLIEST_YEAR} and {LATEST_YEAR}, not {moment.year}.")
        return moment.astimezone(UTC)
