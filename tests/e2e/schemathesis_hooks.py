"""What schemathesis generates for our own formats (loaded by the conformance test through SCHEMATHESIS_HOOKS).

Our times are date-times between the years 1970 and 2999, which the documents say with a pattern on their
first digits; schemathesis would draw times over years 1 to 9999 and throw most of them away, so it draws them
from that range instead.
"""
from datetime import UTC, datetime

import schemathesis
from hypothesis import strategies as st

from shared.schemas import EARLIEST_YEAR, LATEST_YEAR


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


schemathesis.openapi.format("date-time", st.datetimes(
    min_value=datetime(EARLIEST_YEAR, 1, 2), max_value=datetime(LATEST_YEAR, 12, 30),
    timezones=st.just(UTC)).map(_rfc3339))
