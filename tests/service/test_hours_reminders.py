"""The annual-minimum reminder against the real store and broker: once per volunteer per week."""
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from services.hours.reminders import MinimumReminder
from tests.conftest import bearer
from tests.support import wait_for

ASSOCIATION = bearer("association", "assoc-1")


@pytest.fixture
def hours(fresh_hours):
    return fresh_hours


def volunteer_with(hours, phone: str, credited: float) -> str:
    created = hours.client.post("/v1/volunteers", headers=ASSOCIATION, json={
        "name": "王小明", "phone": phone, "organization": "金雀山街道志愿服务队", "grid_id": "lanshan-01"}).json
    if credited:
        response = hours.client.post("/v1/adjustments", headers=ASSOCIATION, json={
            "volunteer_id": created["id"], "hours": credited, "reason": "补录活动时长", "service_date": "2026-06-01"})
        assert response.status_code == 201, response.json
    return created["id"]


def reminder(hours) -> MinimumReminder:
    context = hours.app.extensions["hours"]
    return MinimumReminder(context.store, context.zone)


def test_from_october_each_volunteer_under_the_minimum_is_reminded_once_a_week(hours, subscribe):
    tap = subscribe("volunteer.minimum_at_risk")
    met, short, idle = (volunteer_with(hours, "13700000001", 25), volunteer_with(hours, "13700000002", 5.5),
                        volunteer_with(hours, "13700000003", 0))
    assert reminder(hours).check(datetime(2026, 9, 30, 4, tzinfo=UTC)) == 0  # before 1 October
    assert reminder(hours).check(datetime(2026, 10, 5, 4, tzinfo=UTC)) == 2
    assert reminder(hours).check(datetime(2026, 10, 9, 4, tzinfo=UTC)) == 0  # the same week
    events = wait_for(lambda: (found := tap.events("volunteer.minimum_at_risk")) and len(found) >= 2 and found,
                      what="the reminders on the broker")
    assert {e["data"]["volunteer_id"] for e in events} == {short, idle}
    by_volunteer = {e["data"]["volunteer_id"]: e["data"] for e in events}
    assert by_volunteer[short] == {"volunteer_id": short, "year": 2026, "year_hours": 5.5, "minimum_hours": 20.0,
                                   "hours_short": 14.5, "week": "2026-W41"}
    assert met not in by_volunteer


def test_several_workers_remind_each_volunteer_once(hours):
    ids = [volunteer_with(hours, f"1370000{n:04d}", 0) for n in range(40)]
    next_week = datetime(2026, 10, 12, 4, tzinfo=UTC)
    with ThreadPoolExecutor(4) as pool:
        reminded = sum(pool.map(lambda _: reminder(hours).check(next_week), range(4)))
    assert reminded == len(ids)
    marked = hours.app.extensions["hours"].store.volunteers.count_documents({"reminded_week": "2026-W42"})
    assert marked == len(ids)
