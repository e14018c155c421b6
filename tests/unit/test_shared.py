"""The shared pieces: event envelope, tokens, cursors, settings and reference data."""
from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import jwt
import pytest
from marshmallow import Schema, ValidationError

from shared import audit, reference
from shared.auth import Caller, decode_token, issue_token
from shared.config import DEFAULT_AMQP_URL, DEV_JWT_SECRET, Settings, UnsafeConfiguration, check_jwt_secret
from shared.errors import Conflict, InvalidFields, Unauthorized
from shared.events import Event, MalformedEvent
from shared.outbox import ATTEMPTS_FIELD, DUE_FIELD, OUTBOX_FIELD, push_events, update_settling_delivered, with_events
from shared.pagination import CURSOR_PATTERN, Position, decode_cursor, encode_cursor, newest_first, page
from shared.photo_ids import PhotoIds, photo_id_field, side_of
from shared.reference import ReferenceDataError
from shared.scope import Scope
from shared.store import LostRace, after_commit, connect, if_unchanged_since, optimistically

SECRET = "unit-test-secret-" + "x" * 48  # 64 bytes: long enough for HS256 and HS512


# --- events -----------------------------------------------------------------------------------

def an_event(**data) -> Event:
    return Event.new("report.submitted", "intake", {"id": "r1", "photo_ids": ["p1"], **data}, correlation_id="req-1")


def envelope(**overrides) -> bytes:
    raw = {"id": "e1", "type": "report.submitted", "occurred_at": "2026-11-18T02:00:00.000Z", "source": "intake",
           "version": 1, "correlation_id": None, "data": {"id": "r1"}}
    raw.update(overrides)
    return json.dumps({k: v for k, v in raw.items() if v is not ...}).encode()


def test_an_event_survives_a_json_round_trip():
    event = an_event(note="中文")
    assert Event.from_json(event.to_json()) == event
    assert Event.from_json(event.to_json().decode()) == event


def test_new_events_get_distinct_ids_and_the_envelope_version():
    first, second = an_event(), an_event()
    assert first.id != second.id
    assert first.version == 1
    assert first.routing_key == "report.submitted"


def test_the_envelope_has_exactly_the_contract_keys():
    assert set(json.loads(an_event().to_json())) == {"id", "type", "occurred_at", "source", "version",
                                                    "correlation_id", "data"}


def test_occurred_at_is_utc_with_a_z():
    occurred_at = an_event().occurred_at
    assert occurred_at.endswith("Z")
    moment = datetime.fromisoformat(occurred_at.replace("Z", "+00:00"))
    assert abs(moment - datetime.now(UTC)) < timedelta(minutes=1)


def test_datetimes_in_data_serialise_as_rfc3339_z():
    event = an_event(at=datetime(2026, 11, 18, 10, 0, tzinfo=timezone(timedelta(hours=8))))
    assert json.loads(event.to_json())["data"]["at"] == "2026-11-18T02:00:00.000Z"


def test_an_envelope_with_empty_data_is_accepted():
    assert Event.from_json(envelope(data={})).data == {}


@pytest.mark.parametrize("body", [b"not json", b"\xff\xfe", b"", b"[1, 2]", b"null", b"42"])
def test_a_body_that_is_not_a_json_object_is_malformed(body):
    with pytest.raises(MalformedEvent):
        Event.from_json(body)


@pytest.mark.parametrize("missing", ["id", "type", "data"])
def test_an_envelope_missing_a_required_key_is_malformed(missing):
    with pytest.raises(MalformedEvent):
        Event.from_json(envelope(**{missing: ...}))


@pytest.mark.parametrize("data", [[1, 2], "text", 7])
def test_an_envelope_whose_data_is_not_an_object_is_malformed(data):
    with pytest.raises(MalformedEvent):
        Event.from_json(envelope(data=data))


@pytest.mark.parametrize("version", ["two", [1]])
def test_an_envelope_with_a_non_integer_version_is_malformed(version):
    with pytest.raises(MalformedEvent):
        Event.from_json(envelope(version=version))


# --- tokens -----------------------------------------------------------------------------------

def raw_token(claims: dict, secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def in_an_hour() -> datetime:
    return datetime.now(UTC) + timedelta(hours=1)


def test_a_valid_token_gives_the_caller():
    token = issue_token(SECRET, "dept-user-1", "department", dept="sanitation")
    assert decode_token(token, SECRET) == Caller(id="dept-user-1", role="department", dept="sanitation", grid=None)


def test_a_grid_leader_token_carries_the_grid():
    caller = decode_token(issue_token(SECRET, "leader-1", "grid_leader", grid="lanshan-01"), SECRET)
    assert (caller.role, caller.grid, caller.dept) == ("grid_leader", "lanshan-01", None)
    assert caller.is_("office", "grid_leader") and not caller.is_("office")


@pytest.mark.parametrize("token", [
    pytest.param(issue_token(SECRET, "v1", "volunteer", ttl=timedelta(seconds=-5)), id="expired"),
    pytest.param(issue_token(SECRET.upper(), "v1", "volunteer"), id="wrong-secret"),
    pytest.param(issue_token(SECRET, "v1", "mayor"), id="unknown-role"),
    pytest.param(issue_token(SECRET, "d1", "department"), id="department-without-dept"),
    pytest.param(issue_token(SECRET, "g1", "grid_leader"), id="grid-leader-without-grid"),
    pytest.param(raw_token({"sub": "v1", "role": "volunteer"}), id="missing-exp"),
    pytest.param(raw_token({"role": "volunteer", "exp": in_an_hour()}), id="missing-sub"),
    pytest.param(raw_token({"sub": "v1", "exp": in_an_hour()}), id="missing-role"),
    pytest.param(jwt.encode({"sub": "v1", "role": "office", "exp": in_an_hour()}, SECRET, algorithm="HS512"),
                 id="other-algorithm"),
    pytest.param("not.a.token", id="garbage"),
])
def test_an_unacceptable_token_is_unauthorized_in_our_own_words(token):
    with pytest.raises(Unauthorized) as refused:
        decode_token(token, SECRET)
    # The JWT library's texts ("Signature verification failed", "Not enough segments", ...) stay inside.
    assert refused.value.detail.startswith(("The token", "A department token", "A grid_leader token"))


def test_when_an_issuer_and_audience_are_configured_tokens_must_name_them():
    token = issue_token(SECRET, "v1", "volunteer", issuer="linyi-cmc", audience="woodpecker")
    assert decode_token(token, SECRET, issuer="linyi-cmc", audience="woodpecker").id == "v1"
    for wrong in (issue_token(SECRET, "v1", "volunteer", issuer="elsewhere", audience="woodpecker"),
                  issue_token(SECRET, "v1", "volunteer", issuer="linyi-cmc", audience="other"),
                  issue_token(SECRET, "v1", "volunteer")):
        with pytest.raises(Unauthorized, match="not issued for this system|lacks the"):
            decode_token(wrong, SECRET, issuer="linyi-cmc", audience="woodpecker")


@pytest.mark.parametrize("secret, allowed", [("x", True), ("s" * 31, True), (DEV_JWT_SECRET, False)])
def test_a_guessable_jwt_secret_is_refused_at_start(secret, allowed):
    settings = replace(Settings.from_env("intake", {}), jwt_secret=secret, development_secret_allowed=allowed)
    with pytest.raises(UnsafeConfiguration, match="WOODPECKER_JWT_SECRET"):
        check_jwt_secret(settings)


@pytest.mark.parametrize("secret, allowed", [("s" * 32, False), (DEV_JWT_SECRET, True)])
def test_a_long_secret_or_the_development_one_beside_make_ups_database_is_accepted(secret, allowed):
    check_jwt_secret(replace(Settings.from_env("intake", {}), jwt_secret=secret, development_secret_allowed=allowed))


# --- cursors ----------------------------------------------------------------------------------

AT = datetime(2026, 11, 24, 8, 30, 15, 123000, tzinfo=UTC)


@pytest.mark.parametrize("last_id", ["r1", "01J9Z3K7Q8", "case-6b0563189074648134dcbce3", "a.b:c_d"])
def test_a_cursor_round_trips_to_the_last_time_and_id(last_id):
    cursor = encode_cursor(Position(AT, last_id))
    assert re.fullmatch(CURSOR_PATTERN, cursor)  # what the document promises is what is issued
    assert decode_cursor(cursor) == Position(AT, last_id)


def test_every_cursor_the_document_allows_is_a_position():
    """A well-formed cursor is accepted whatever its values, so a client generated from the document
    never meets a 422 the document did not announce."""
    assert decode_cursor("0000000000000~x") == Position(datetime(1970, 1, 1, tzinfo=UTC), "x")
    assert decode_cursor("9999999999999~y").at.year == 2286


def test_no_cursor_decodes_to_none():
    assert decode_cursor(None) is None


@pytest.mark.parametrize("cursor", ["!!!!", "", "cjE=", "r1 x", "1795515160123", "1795515160123~", "~r1",
                                    "179551516~r1", "1795515160123~报告", "1795515160123~a b", "1795515160123~r1\n"])
def test_a_garbage_cursor_is_invalid_fields(cursor):
    """Not milliseconds, a tilde and an id: none of them is ours."""
    with pytest.raises(InvalidFields) as caught:
        decode_cursor(cursor)
    assert set(caught.value.errors) == {"cursor"}


def items(n: int) -> list[dict]:
    return [{"id": f"r{i}", "at": AT - timedelta(minutes=i)} for i in range(n)]


def test_a_page_fetched_with_one_extra_item_has_a_next_cursor_after_its_last_item():
    result = page(items(4), limit=3, time_field="at")
    assert [i["id"] for i in result["items"]] == ["r0", "r1", "r2"]
    assert decode_cursor(result["next_cursor"]) == Position(AT - timedelta(minutes=2), "r2")


class NoDocuments:
    def find(self, *_args, **_kwargs) -> list:
        return []


def test_a_list_window_reaching_back_to_year_1_does_not_overflow():
    """newest_first widens its window back from `until`; near year 1 the window's start must not be computed below
    the earliest date (an OverflowError, a 500, once found by schemathesis with a `to` near year 1)."""
    until = datetime(1, 1, 1, 12, tzinfo=UTC)
    assert newest_first(NoDocuments(), [{}], "at", 10, until=until, since=datetime(1, 1, 1, tzinfo=UTC)) == []
    assert newest_first(NoDocuments(), [{}], "at", 10, until=until) == []


class DocumentsEverySecond:
    """A collection with a document every second up to `until`, which keeps the time ranges it was asked for."""

    def __init__(self, until: datetime):
        self.until, self.asked = until, []

    def find(self, query: dict, *_args, **_kwargs) -> list:
        window = query["at"]
        self.asked.append(window)
        lower, upper = window["$gte"], window.get("$lte", window.get("$lt", self.until))
        seconds = int((self.until - lower).total_seconds())
        documents = [{"_id": f"d{n}", "at": self.until - timedelta(seconds=n)} for n in range(max(seconds, 0) + 1)]
        inclusive = "$lte" in window
        return [d for d in documents if lower <= d["at"] and (d["at"] < upper or (inclusive and d["at"] == upper))]


def test_a_dense_list_reads_only_its_first_window_and_the_audit_logs_is_seconds_long():
    """A page reads its first window whole; the audit log, entered on every request, keeps that window short."""
    until = AT
    dense = DocumentsEverySecond(until)
    newest = newest_first(dense, [{}], "at", 5, until=until, first_window=audit.FIRST_WINDOW)
    assert [d["_id"] for d in newest] == [f"d{n}" for n in range(1, 7)]
    assert [w["$gte"] for w in dense.asked] == [until - audit.FIRST_WINDOW]
    assert audit.FIRST_WINDOW <= timedelta(minutes=1)


@pytest.mark.parametrize("n", [0, 2, 3])
def test_a_page_with_at_most_limit_items_is_the_last(n):
    result = page(items(n), limit=3, time_field="at")
    assert len(result["items"]) == n
    assert result["next_cursor"] is None


# --- scopes -----------------------------------------------------------------------------------

def test_an_unlimited_scope_admits_everything_and_leaves_the_filter_as_it_is():
    scope = Scope.everything()
    assert scope.unlimited and scope.admits({"grid_id": "x"})
    assert scope.within({"status": "open"}) == [{"status": "open"}]


def test_a_scope_admits_a_document_matching_any_alternative():
    scope = Scope.any_of({"grid_id": "g1"}, {"reporter_id": "me"})
    assert scope.admits({"grid_id": "g1", "reporter_id": "other"})
    assert scope.admits({"grid_id": "g2", "reporter_id": "me"})
    assert not scope.admits({"grid_id": "g2", "reporter_id": "other"})
    assert not scope.admits({})


def test_a_scope_narrows_a_filter_to_each_alternative_it_does_not_contradict():
    scope = Scope.any_of({"grid_id": "g1"}, {"reporter_id": "me"})
    assert scope.within({"status": "open"}) == [{"status": "open", "grid_id": "g1"},
                                                {"status": "open", "reporter_id": "me"}]
    assert scope.within({"grid_id": "g2"}) == [{"grid_id": "g2", "reporter_id": "me"}]
    assert Scope.any_of({"department": "a"}).within({"department": "b"}) == []


# --- settings ---------------------------------------------------------------------------------

@pytest.mark.parametrize("service, port", [("intake", 8001), ("routing", 8002), ("hours", 8003), ("notify", 8004)])
def test_each_service_has_its_default_port(service, port):
    assert Settings.from_env(service, {}).port == port


def test_the_defaults_without_any_environment():
    settings = Settings.from_env("intake", {})
    assert settings.amqp_url == DEFAULT_AMQP_URL == "amqp://guest:guest@127.0.0.1:5672//"
    assert settings.mongo_url is None
    assert settings.jwt_secret == DEV_JWT_SECRET
    assert settings.database == "woodpecker_intake"
    assert settings.reference_dir is None
    assert settings.retry_delays_ms == (1000, 10000, 60000)


def test_the_environment_overrides_the_defaults():
    settings = Settings.from_env("routing", {"ROUTING_PORT": "9002", "AMQP_URL": "amqp://mq//",
                                             "WOODPECKER_JWT_SECRET": "s3cret", "ROUTING_DATABASE": "r",
                                             "WOODPECKER_RETRY_DELAYS_MS": "50, 500",
                                             "MONGO_URL": "mongodb://db:27017"})
    assert (settings.port, settings.amqp_url, settings.jwt_secret, settings.database) == (9002, "amqp://mq//",
                                                                                          "s3cret", "r")
    assert settings.retry_delays_ms == (50, 500)
    assert settings.mongo_url == "mongodb://db:27017"


def test_a_service_of_its_own_store_takes_its_url_before_mongo_url():
    env = {"MONGO_URL": "mongodb://db:27017", "INTAKE_MONGO_URL": "mongodb://intake-db:27017"}
    assert Settings.from_env("intake", env).mongo_url == "mongodb://intake-db:27017"
    assert Settings.from_env("routing", env).mongo_url == "mongodb://db:27017"
    assert Settings.from_env("hours", {"HOURS_MONGO_URL": "mongodb://h:1"}).mongo_url == "mongodb://h:1"


@pytest.mark.parametrize("mongo_url", [None, ""])
def test_a_service_without_mongo_url_refuses_to_start_and_says_how_to_get_one(mongo_url):
    with pytest.raises(SystemExit, match="MONGO_URL is not set.*make up"):
        connect(mongo_url, "woodpecker_intake")


@pytest.mark.parametrize("raw", ["", "soon", "1000,-5", "0", "100,,abc"])
def test_bad_retry_delays_are_refused(raw):
    with pytest.raises(ValueError):
        Settings.from_env("intake", {"WOODPECKER_RETRY_DELAYS_MS": raw})


# --- reference data ---------------------------------------------------------------------------

CONTRACT_CATEGORIES = {
    "env.garbage": ("sanitation", 24), "env.flyers": ("urban-management", 48),
    "env.dumping": ("urban-management", 48), "env.garbage-sorting": ("sanitation", 72),
    "order.street-vending": ("urban-management", 24), "order.blind-lane": ("urban-management", 48),
    "order.public-place": ("community-affairs", 72), "traffic.parking": ("traffic-police", 24),
    "traffic.pedestrian": ("traffic-police", 72), "infra.damaged": ("municipal-works", 72),
    "market.disorder": ("market-regulation", 72), "site.construction": ("housing-construction", 72),
    "civility.dogs": ("public-security", 72), "community.facilities": ("community-affairs", 48),
    "other": (None, None),
}
CONTRACT_DEPARTMENTS = {"sanitation", "urban-management", "traffic-police", "municipal-works", "market-regulation",
                        "housing-construction", "public-security", "community-affairs"}


@pytest.fixture(scope="module")
def demo() -> reference.ReferenceData:
    return reference.load()


def one_grid_file(grid_id: str = "test-01") -> dict:
    return {"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"id": grid_id, "name": "测试网格", "district": "test"},
        "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}}]}


def reference_dir(folder: Path, **files: dict) -> str:
    for name, content in files.items():
        (folder / name.replace("_", ".")).write_text(json.dumps(content, ensure_ascii=False), encoding="utf-8")
    return str(folder)


def test_the_demo_city_has_at_least_6_grids_in_2_districts(demo):
    assert len(demo.grids) >= 6
    assert len({grid.district for grid in demo.grids.values()}) >= 2
    assert all(grid.geometry["type"] in ("Polygon", "MultiPolygon") for grid in demo.grids.values())


def test_the_demo_city_has_the_contract_categories_with_their_departments_and_time_limits(demo):
    assert {code: (c.department, c.deadline_hours) for code, c in demo.categories.items()} == CONTRACT_CATEGORIES


def test_traffic_parking_goes_to_the_traffic_police_within_24_hours_and_other_to_triage(demo):
    parking, other = demo.categories["traffic.parking"], demo.categories["other"]
    assert (parking.department, parking.deadline_hours, parking.name_zh) == ("traffic-police", 24, "车辆乱停乱放")
    assert (other.department, other.deadline_hours) == (None, None)


def test_the_demo_city_has_all_8_contract_departments(demo):
    assert set(demo.departments) == CONTRACT_DEPARTMENTS


def test_a_reference_folder_with_its_own_grids_replaces_the_grids_but_keeps_the_demo_categories(tmp_path, demo):
    folder = reference_dir(tmp_path, grids_geojson=one_grid_file("test-01"))
    settings = Settings.from_env("intake", {"WOODPECKER_REFERENCE_DIR": folder})
    loaded = reference.load(settings.reference_dir)
    assert list(loaded.grids) == ["test-01"]
    assert loaded.grids["test-01"].district_name == "test"  # falls back to the district code
    assert loaded.categories == demo.categories
    assert loaded.departments == demo.departments


def test_a_category_naming_an_unknown_department_is_refused(tmp_path):
    category = {"code": "noise", "name_zh": "噪音", "name_en": "Noise", "department": "ministry-of-silence",
                "deadline_hours": 24, "urgent": False}
    with pytest.raises(ReferenceDataError, match="ministry-of-silence"):
        reference.load(reference_dir(tmp_path, categories_json={"categories": [category]}))


def test_a_grid_file_without_grids_is_refused(tmp_path):
    with pytest.raises(ReferenceDataError):
        reference.load(reference_dir(tmp_path, grids_geojson={"type": "FeatureCollection", "features": []}))


def test_an_unreadable_reference_file_is_refused(tmp_path):
    (tmp_path / "departments.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ReferenceDataError):
        reference.load(str(tmp_path))


def test_a_reference_path_to_a_file_is_refused(tmp_path):
    path = tmp_path / "categories.json"
    path.write_text("{}", encoding="utf-8")
    with pytest.raises(ReferenceDataError):
        reference.load(str(path))


def test_a_reference_path_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(ReferenceDataError):
        reference.load(str(tmp_path / "does-not-exist"))


def calendar_file(**overrides) -> dict:
    return {**json.loads((reference.DEMO_DIR / "holidays.json").read_text(encoding="utf-8")), **overrides}


def test_the_demo_city_keeps_beijing_time(demo):
    assert demo.timezone == ZoneInfo("Asia/Shanghai")


def test_a_city_takes_its_time_zone_from_its_calendar_file(tmp_path):
    folder = reference_dir(tmp_path, holidays_json=calendar_file(timezone="Asia/Urumqi"))
    assert reference.load(folder).timezone == ZoneInfo("Asia/Urumqi")
    assert reference.load_work_calendar(folder).timezone == "Asia/Urumqi"  # the one source, read alike


@pytest.mark.parametrize("zone", ["Asia/Atlantis", "asia/shanghai", "Asia", "", "../etc/passwd", 8, None])
def test_an_unknown_time_zone_is_refused(tmp_path, zone):
    folder = reference_dir(tmp_path, holidays_json=calendar_file(timezone=zone))
    with pytest.raises(ReferenceDataError, match="time zone"):
        reference.load(folder)
    with pytest.raises(ReferenceDataError, match="time zone"):
        reference.load_work_calendar(folder)


def test_a_calendar_file_without_a_time_zone_is_refused(tmp_path):
    raw = calendar_file()
    del raw["timezone"]
    with pytest.raises(ReferenceDataError, match="time zone"):
        reference.load(reference_dir(tmp_path, holidays_json=raw))


# --- photo ids --------------------------------------------------------------------------------

def test_a_photo_id_checks_out_for_the_side_it_was_issued_to_and_no_other():
    ids = PhotoIds(SECRET)
    police = side_of(Caller("p1", "department", dept="traffic-police"))
    photo = ids.issue(police)
    assert ids.issued_to(photo, police)
    assert ids.issued_to(photo, side_of(Caller("p2", "department", dept="traffic-police")))  # a colleague
    for other in (side_of(Caller("s1", "department", dept="sanitation")), side_of(Caller("p1", "volunteer"))):
        assert not ids.issued_to(photo, other)
    assert not PhotoIds(SECRET.upper()).issued_to(photo, police)  # another system's key


# Non-ASCII ids once reached the MAC comparison as text and crashed it (a 500 schemathesis found).
@pytest.mark.parametrize("photo_id", ["", ".", "abc", "abc.", ".abc", "6650a1f0c2d94e1b8a3f0e17", "a.b.c",
                                      "k2x9V0aQf3Rz8LwYb1NcDg.Jq4uT7sWm0ZpE2Hé", "照片.照片"])
def test_anything_not_issued_is_refused(photo_id):
    assert PhotoIds(SECRET).not_issued_to([photo_id], "user:v1") == [photo_id]


@pytest.mark.parametrize("photo_id", ["k2x9V0aQf3Rz8LwYb1NcDg.Jq4uT7sWm0ZpE2Hé", "abc", ""])
def test_a_request_naming_a_photo_id_of_another_shape_is_invalid(photo_id):
    class Named(Schema):
        photo_id = photo_id_field(required=True)

    with pytest.raises(ValidationError):
        Named().load({"photo_id": photo_id})


# --- optimistic concurrency ---------------------------------------------------------------------

def test_a_lost_race_is_run_again_from_the_read():
    outcomes = iter([LostRace("x"), LostRace("x"), "written"])

    def attempt():
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert optimistically(attempt, "Case c1") == "written"


def test_a_conditional_update_sets_and_unsets_each_field_only_at_the_revision_it_was_read_at():
    update = if_unchanged_since({"$set": {"status": "$dispatched", "timeline": [1]}, "$unset": {"outbox_due": ""}},
                                "revision", 4)
    unchanged = {"$eq": ["$revision", 4]}
    assert update == [{"$set": {
        "status": {"$cond": [unchanged, {"$literal": "$dispatched"}, "$status"]},
        "timeline": {"$cond": [unchanged, {"$literal": [1]}, "$timeline"]},
        "outbox_due": {"$cond": [unchanged, "$$REMOVE", "$outbox_due"]},
        "revision": {"$cond": [unchanged, 5, "$revision"]},
    }}]


@pytest.mark.parametrize("update", [{"$inc": {"n": 1}}, {"$set": {"a.b": 1}}, {"$set": {"revision": 9}}])
def test_a_conditional_update_refuses_what_it_cannot_guard(update):
    with pytest.raises(ValueError):
        if_unchanged_since(update, "revision", 0)


def test_a_race_lost_every_time_is_a_conflict_the_caller_can_retry():
    def always_lost():
        raise LostRace("x")

    with pytest.raises(Conflict, match="Case c1 is changing too quickly"):
        optimistically(always_lost, "Case c1", tries=3)


def test_periodic_work_runs_every_interval_and_survives_a_failed_pass():
    import threading
    import time

    from shared.runtime import every

    passes = []

    def check(now):
        passes.append(now)
        if len(passes) == 1:
            raise ConnectionError("the store is briefly away")
        return 1

    stop = threading.Event()
    worker = threading.Thread(target=every(0.01, check, "things done"), args=(stop,))
    worker.start()
    deadline = time.monotonic() + 5
    while len(passes) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    worker.join(2)
    assert len(passes) >= 3 and not worker.is_alive()
    assert all(now.tzinfo is not None for now in passes)


# --- the outbox -----------------------------------------------------------------------------------

def test_a_consumer_that_learnt_an_event_was_delivered_pulls_it_and_leaves_the_others():
    submitted, other = Event.new("report.submitted", "intake", {}), Event.new("report.withdrawn", "intake", {})
    document = with_events({"_id": "r1"}, submitted, other)
    update = update_settling_delivered(document, {"$set": {"status": "in_progress"}}, "report.submitted")
    assert update == {"$set": {"status": "in_progress", OUTBOX_FIELD: [other.to_dict()]}}


def test_pulling_the_last_event_clears_the_due_time_and_a_document_without_it_is_left_alone():
    submitted = Event.new("report.submitted", "intake", {})
    update = update_settling_delivered(with_events({"_id": "r1"}, submitted), {"$set": {"status": "in_progress"}},
                            "report.submitted")
    assert update == {"$set": {"status": "in_progress", OUTBOX_FIELD: []},
                      "$unset": {DUE_FIELD: "", ATTEMPTS_FIELD: ""}}
    settled = {"_id": "r1", OUTBOX_FIELD: []}
    closing = {"$set": {"status": "closed"}}
    assert update_settling_delivered(settled, closing, "report.submitted") == closing


def test_a_stored_event_waits_its_grace_for_the_process_that_stored_it(monkeypatch):
    monkeypatch.setenv("WOODPECKER_OUTBOX_GRACE_S", "30")
    due = push_events({"$set": {"x": 1}}, Event.new("report.submitted", "intake", {}))["$set"][DUE_FIELD]
    assert timedelta(seconds=29) < due - datetime.now(UTC) <= timedelta(seconds=30)


def test_outside_a_transaction_what_waits_for_the_commit_runs_at_once():
    ran = []
    after_commit(lambda: ran.append(1))
    assert ran == [1]
