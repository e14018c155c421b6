"""When the weekly grid digest falls due: pure pieces (writing it from the events notify heard is
tests/service/test_notify_digests.py)."""
from __future__ import annotations

from datetime import datetime, time, timedelta

from services.notify.digests import due_week
from shared import reference

ZONE = reference.load(None).timezone


def next_monday_morning() -> datetime:
    """A Monday 09:00 in Linyi after now: its digest covers the week now is in."""
    today = datetime.now(ZONE).date()
    monday = today + timedelta(days=7 - today.weekday())
    return datetime.combine(monday, time(9, 0), tzinfo=ZONE)


def test_no_digest_before_monday_eight_oclock():
    monday = next_monday_morning()
    assert due_week(monday - timedelta(hours=1, minutes=1), ZONE) is None
    assert due_week(monday - timedelta(hours=1), ZONE) is not None  # 08:00 sharp
