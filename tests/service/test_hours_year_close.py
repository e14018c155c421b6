"""Closing a year (年度结账) leaves nothing waiting: patrols' waiting time and activities' publicised or held
hours of that year are declined with the close, and the publicity watch has nothing left to try."""
import logging
from datetime import UTC, datetime, timedelta

import pytest

from services.hours.api import records as records_api
from services.hours.publicity import PublicityWatch
from tests.conftest import bearer
from tests.service.conftest import upload_photo

OFFICE = bearer("office", "office-1")
ASSOCIATION = bearer("association", "assoc-1")


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture
def waiting_in_this_year(fresh_hours, intake):
    """A volunteer with a patrol waiting for its grid leader, and an activity whose hours are publicised for
    them and held by an objection for another; all of this year, in an hours service of its own."""
    client = fresh_hours.client
    volunteers = [client.post("/v1/volunteers", headers=ASSOCIATION, json={
        "name": "王小明", "phone": f"1370000000{n}", "organization": "金雀山街道志愿服务队",
        "grid_id": "lanshan-01"}).json for n in range(2)]
    walker, held = volunteers
    now = datetime.now(UTC)
    walked = client.post("/v1/patrols", headers=bearer("volunteer", walker["id"]), json={
        "grid_id": "lanshan-02", "started_at": iso(now - timedelta(hours=6)),
        "ended_at": iso(now - timedelta(hours=4))})
    assert walked.status_code == 201 and walked.json["status"] == "awaiting_confirmation", walked.json
    activity = client.post("/v1/activities", headers=ASSOCIATION, json={
        "title": "文明交通劝导志愿服务活动", "grid_id": "lanshan-01", "starts_at": iso(now - timedelta(hours=3)),
        "ends_at": iso(now - timedelta(hours=1))}).json
    photos = [upload_photo(intake.client, ASSOCIATION)["id"] for _ in range(4)]
    completed = client.post(f"/v1/activities/{activity['id']}/complete", headers=ASSOCIATION, json={
        "participants": [{"volunteer_id": walker["id"], "hours": 2}, {"volunteer_id": held["id"], "hours": 1.5}],
        "summary": "劝导行人闯红灯 126 人次", "photo_ids": photos})
    assert completed.status_code == 200, completed.json
    objection = client.post(f"/v1/activities/{activity['id']}/objections", headers=OFFICE,
                            json={"volunteer_id": held["id"], "reason": "该志愿者当天未到场"})
    assert objection.status_code == 201
    return fresh_hours, walker, held, walked.json, activity


def pending(service, volunteer_id: str) -> float:
    return service.client.get(f"/v1/volunteers/{volunteer_id}/summary", headers=OFFICE).json["pending_hours"]


def test_closing_a_year_declines_what_still_waits_in_it_and_the_watch_stops_trying(waiting_in_this_year,
                                                                                   monkeypatch, caplog):
    service, walker, held, walked, activity = waiting_in_this_year
    assert (pending(service, walker["id"]), pending(service, held["id"])) == (4.0, 1.5)
    year = datetime.now(UTC).year
    after_its_windows = datetime(year + 1, 3, 2, 4, tzinfo=UTC)
    monkeypatch.setattr(records_api, "now", lambda: after_its_windows)
    closed = service.client.post(f"/v1/years/{year}/close", headers=OFFICE)
    assert closed.status_code == 200, closed.json
    assert (closed.json["declined_patrols"], closed.json["declined_participants"]) == (1, 2)
    found = service.client.get(f"/v1/patrols/{walked['id']}", headers=OFFICE).json
    assert (found["status"], found["declined_hours"], found["waiting_hours"]) == ("declined", 2.0, 0)
    assert found["decision_note"] == "年度已结账"
    shown = service.client.get(f"/v1/activities/{activity['id']}", headers=OFFICE).json
    assert shown["status"] == "confirmed" and {p["status"] for p in shown["participants"]} == {"declined"}
    assert [o["status"] for o in shown["objections"]] == ["lapsed"]
    assert (pending(service, walker["id"]), pending(service, held["id"])) == (0, 0)
    # Nothing is left for a person to decide, nor for the watch to credit (and warn about) every round.
    confirm = service.client.post(f"/v1/patrols/{walked['id']}/confirm", headers=ASSOCIATION, json={})
    assert confirm.status_code == 409
    watch = PublicityWatch(service.app.extensions["hours"].store, service.app.extensions["hours"].zone)
    with caplog.at_level(logging.WARNING, logger="services.hours.publicity"):
        assert watch.check(after_its_windows) == 0 and watch.check(after_its_windows) == 0
    assert not [r for r in caplog.records if r.name == "services.hours.publicity"]
    assert service.client.post(f"/v1/years/{year}/close", headers=OFFICE).status_code == 409
