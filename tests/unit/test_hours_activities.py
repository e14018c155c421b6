"""Service activities through hours' use cases, over an in-memory store: completing one (photos, participants,
time), publicity and crediting once the window ends, and objections (during the window, once, decided once)."""
from __future__ import annotations

from datetime import timedelta

import pytest

from services.hours import domain
from services.hours.publicity import PublicityWatch
from services.hours.usecases import Hours
from services.hours.usecases import activities as use
from services.hours.usecases import patrols as patrols_use
from shared.auth import Caller
from shared.errors import Conflict, Forbidden, InvalidFields
from shared.photo_ids import side_of
from tests.unit.hours_usecase_fixtures import ASSOCIATION, CITY, OFFICE, hours_in_memory, now, register


@pytest.fixture
def hours() -> Hours:
    return hours_in_memory()


def plan(hours: Hours, who: Caller = ASSOCIATION, grid_id: str = "lanshan-01", start=None, length: int = 3) -> dict:
    start = start or now() - timedelta(hours=length + 1)
    activity, _ = use.create_activity(hours, who, {"title": "文明交通劝导志愿服务活动", "grid_id": grid_id,
                                                   "starts_at": start, "ends_at": start + timedelta(hours=length)},
                                      None, "fingerprint", now())
    return activity


def photos_of(hours: Hours, who: Caller = ASSOCIATION, count: int = 4) -> list[str]:
    return [hours.photo_ids.issue(side_of(who)) for _ in range(count)]


def complete(hours: Hours, activity: dict, participants: list[dict], who: Caller = ASSOCIATION,
             photos: list[str] | None = None) -> dict:
    body = {"participants": participants, "summary": "劝导行人闯红灯 126 人次",
            "photo_ids": photos or photos_of(hours, who)}
    return use.complete_activity(hours, who, activity["id"], body, now())


def object_to(hours: Hours, activity: dict, volunteer_id: str, who: Caller = OFFICE) -> dict:
    return use.object_to_activity(hours, who, activity["id"], {"volunteer_id": volunteer_id, "reason": "未到场"}, now())


def decide(hours: Hours, activity: dict, objection: dict, upheld: bool) -> dict:
    return use.decide_objection(hours, ASSOCIATION, activity["id"], objection["id"],
                                {"upheld": upheld, "note": "经核实签到表"}, now())


def pending(hours: Hours, volunteer_id: str) -> float:
    return domain.hours_of(hours.store.totals(volunteer_id)["pending"])


def year_hours(hours: Hours, volunteer_id: str) -> float:
    return domain.hours_of(sum(hours.store.totals(volunteer_id)["years"].values()))


def test_an_activitys_hours_are_publicised_then_credited_once_the_window_ends(hours):
    (one, _), (two, _) = register(hours), register(hours)
    activity = plan(hours)
    done = complete(hours, activity, [{"volunteer_id": one, "hours": 3}, {"volunteer_id": two, "hours": 2}])
    assert done["status"] == "publicised" and done["publicity_ends"] > now().date().isoformat()
    assert pending(hours, one) == 3 and hours.store.ledger_of(one) == []
    with pytest.raises(Conflict):
        complete(hours, activity, [{"volunteer_id": one, "hours": 3}])
    watch = PublicityWatch(hours.store, CITY.timezone)
    assert watch.check(now()) == 0  # the window is still open
    later = now() + timedelta(days=10)
    assert watch.check(later) == 2 and watch.check(later) == 0  # nothing twice
    assert (pending(hours, one), year_hours(hours, one)) == (0, 3)
    assert [(e["kind"], e["hours"], e["source_id"]) for e in hours.store.ledger_of(two)] == [
        ("activity", 2, activity["id"])]
    final = hours.store.activity(activity["id"])
    assert final["status"] == "confirmed" and {p["status"] for p in final["participants"]} == {"credited"}
    assert [e.type for e in hours.store.published] == ["hours.credited", "hours.credited"]


def test_an_objection_holds_the_hours_until_the_association_decides(hours):
    (held, _), (kept, _), (refused, _) = register(hours), register(hours), register(hours)
    activity = plan(hours)
    complete(hours, activity, [{"volunteer_id": v, "hours": 3} for v in (held, kept, refused)])
    objections = {v: object_to(hours, activity, v, who=Caller("someone", "volunteer")) for v in (held, refused)}
    watch = PublicityWatch(hours.store, CITY.timezone)
    watch.check(now() + timedelta(days=10))
    assert year_hours(hours, kept) == 3
    assert (year_hours(hours, held), pending(hours, held)) == (0, 3)
    assert decide(hours, activity, objections[held], False)["status"] == "dismissed"
    assert decide(hours, activity, objections[refused], True)["status"] == "upheld"
    with pytest.raises(Conflict):
        decide(hours, activity, objections[refused], False)
    watch.check(now() + timedelta(days=10))
    assert year_hours(hours, held) == 3
    assert (year_hours(hours, refused), pending(hours, refused)) == (0, 0)
    assert hours.store.activity(activity["id"])["status"] == "confirmed"


def test_who_objected_is_shown_to_the_association_and_the_office_only(hours):
    objected, objected_caller = register(hours)
    objector, objector_caller = register(hours)
    activity = plan(hours)
    complete(hours, activity, [{"volunteer_id": objected, "hours": 2}])
    assert object_to(hours, activity, objected, who=objector_caller)["raised_by"] is None
    for reader in (objected_caller, Caller("gl-1", "grid_leader", grid="lanshan-01")):
        assert [o["raised_by"] for o in use.shown_activity(hours, reader, activity["id"])["objections"]] == [None]
    for staff in (OFFICE, ASSOCIATION):
        assert [o["raised_by"] for o in use.shown_activity(hours, staff, activity["id"])["objections"]] == [
            f"volunteer:{objector}"]


def test_a_participants_hours_are_objected_to_once_and_a_dismissal_is_final(hours):
    volunteer, _ = register(hours)
    activity = plan(hours)
    complete(hours, activity, [{"volunteer_id": volunteer, "hours": 2}])
    decide(hours, activity, object_to(hours, activity, volunteer), False)
    with pytest.raises(Conflict, match="already decided"):
        object_to(hours, activity, volunteer)
    shown = hours.store.activity(activity["id"])
    assert [o["status"] for o in shown["objections"]] == ["dismissed"]
    assert [p["status"] for p in shown["participants"]] == ["publicised"]


def test_objections_come_during_the_window_and_name_a_participant(hours):
    volunteer, _ = register(hours)
    activity = plan(hours)
    with pytest.raises(Conflict):  # nothing publicised yet
        object_to(hours, activity, volunteer)
    complete(hours, activity, [{"volunteer_id": volunteer, "hours": 1}])
    with pytest.raises(InvalidFields):
        object_to(hours, activity, "0" * 24)
    PublicityWatch(hours.store, CITY.timezone).check(now() + timedelta(days=10))
    with pytest.raises(Conflict):
        object_to(hours, activity, volunteer)


def test_completing_an_activity_checks_its_photos_participants_and_time(hours):
    volunteer, _ = register(hours)
    activity = plan(hours)
    one = [{"volunteer_id": volunteer, "hours": 2}]
    with pytest.raises(InvalidFields) as too_few:
        complete(hours, activity, one, photos=photos_of(hours, count=3))
    assert "photo_ids" in too_few.value.errors
    with pytest.raises(InvalidFields) as not_ours:
        complete(hours, activity, one, photos=photos_of(hours, who=Caller("someone", "volunteer")))
    assert "photo_ids" in not_ours.value.errors
    with pytest.raises(InvalidFields, match="registered") as unknown:
        complete(hours, activity, [{"volunteer_id": "f" * 24, "hours": 2}])
    assert "f" * 24 in str(unknown.value.errors)
    with pytest.raises(InvalidFields):
        complete(hours, activity, [{"volunteer_id": volunteer, "hours": 3.5}])
    with pytest.raises(InvalidFields):
        complete(hours, activity, one * 2)
    with pytest.raises(Conflict):
        complete(hours, plan(hours, start=now() + timedelta(hours=1)), one)
    assert pending(hours, volunteer) == 0  # nothing was publicised
    assert hours.store.activity(activity["id"])["status"] == "planned"


def test_a_grid_leader_organises_activities_in_their_own_grid_only(hours):
    leader = Caller("gl-h1", "grid_leader", grid="hedong-01")
    assert plan(hours, who=leader, grid_id="hedong-01")["status"] == "planned"
    with pytest.raises(Forbidden):
        plan(hours, who=leader, grid_id="hedong-02")
    with pytest.raises(InvalidFields):
        use.create_activity(hours, ASSOCIATION, {"title": "清理小广告", "place": "广场", "starts_at": now(),
                                                 "ends_at": now() - timedelta(hours=2)}, None, "f", now())


def test_a_patrol_during_an_activity_the_volunteer_served_at_is_409(hours):
    volunteer, caller = register(hours)
    complete(hours, plan(hours), [{"volunteer_id": volunteer, "hours": 3}])
    with pytest.raises(Conflict, match="activity"):
        patrols_use.record_patrol(hours, caller, {"grid_id": "lanshan-01", "started_at": now() - timedelta(hours=3),
                                                  "ended_at": now() - timedelta(hours=2)}, None, "f", None, now())
