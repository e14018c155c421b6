"""The hot queries at 1,000 and at 50,000 documents: proof by measurement that their cost does not grow
with the collection.

Every query that a request, an event or a background pass runs often is timed through the code the
services run: ReportStore and CaseStore (after `ensure_indexes()`) and the outbox relay's sweep. Each row
is the median time of one operation over `--repeat` operations at each size, and the ratio of the largest
size's time to the smallest's: near 1 means an index bounds the query, whatever the history. It prints
figures and asserts nothing.

The collections hold a city's year in exactly the shape the stores write it: reports, their photos and
their cases, lived through case step by case step with the domain's own commands (the report following
each case event as intake's handler makes it). What grows
from one size to the next is the closed history only. What the hot queries are bounded by is the same
at every size, "the present": the last RECENT_DAYS days at DAILY_REPORTS a day, every open report and
case, the pending outbox, and the probe volunteer's and grid leader's own reports over the year. So
about 99.5% of the reports are closed at 50,000 and about 77% at 1,000: an open share fixed at 5%
would make the open workload grow fifty-fold with the history, which no city's does.

Without MONGO_URL it starts embedded databases of its own (deploy/embedded_db.py), one per size, on free
ports with their data in a temporary directory, and stops them at the end; with MONGO_URL it uses a fresh
database per size there and drops them at the end. The sizes take turns operation by operation, so that
whatever else the machine does meanwhile weighs on every size alike.

    python -m bench.queries [--sizes 1000,50000] [--repeat 50]
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from bson import ObjectId
from pymongo.database import Database

from services.intake import domain as intake
from services.intake import store as intake_store
from services.intake.store import ReportStore, new_id
from services.routing import domain as routing
from services.routing import store as routing_store
from services.routing.api import FALLBACK_DEADLINE_HOURS
from services.routing.clock import CALENDAR, CalendarClock
from services.routing.store import CaseStore
from services.routing.usecases.cases import change_case, route_reports
from shared import geo, idempotency, reference
from shared.bus import PublishOutcome
from shared.events import Event
from shared.outbox import DUE_FIELD, OUTBOX_FIELD, OutboxRelay, push_events, with_events
from shared.pagination import DEFAULT_LIMIT
from shared.scope import Scope
from shared.store import connect

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SIZES = (1_000, 50_000)
DEFAULT_REPEAT = 50
BATCH = 5_000
SEED = 20261124

# The city: 50,000 reports a year, about 137 a day, from about 500 volunteers.
YEAR = timedelta(days=365)
DAILY_REPORTS = 137
VOLUNTEERS = 500
# The first page of a department's or a grid's list reaches back one window of 1 day and one of 4.
RECENT_DAYS = 5
# Below this size the present is thinned to fit, and the table says so.
FULL_PRESENT_SIZE = 1_000
# An average volunteer's year (50,000 / 500); a grid leader reports now and then besides leading.
PROBE_VOLUNTEER_REPORTS = 100
PROBE_LEADER_REPORTS = 20
PROBE_VOLUNTEER = "volunteer-000"
PROBE_GRID = "lanshan-01"
PROBE_DEPARTMENT = "traffic-police"
PROBE_CATEGORY = "traffic.parking"
PROBE_SPOT = (35.0610, 118.3160)
# Open reports of the probe category within the duplicate radius of the probe spot.
REPORTS_AT_PROBE_SPOT = 3
PENDING_OUTBOX = 5
NEWLY_OVERDUE = 5
# The deadline watch's pass comes this long after a deadline passes.
WATCH_DELAY = timedelta(minutes=1)
# History younger than this is settled quickly (never late, never sent back), so none of it is still open.
SETTLING = timedelta(days=20)

CATEGORY_WEIGHTS = {"traffic.parking": 8, "env.garbage": 6, "order.street-vending": 5, "env.flyers": 4,
                    "env.dumping": 3, "order.blind-lane": 3, "civility.dogs": 2, "community.facilities": 2}
LEADER_SHARE = 0.05
KEYED_SHARE = 0.8
REJECTED_SHARE = 0.04
LATE_SHARE = 0.03
REWORK_SHARE = 0.05

OFFICE = routing.Actor(id="office-1", role="office")


def hours(count: float) -> timedelta:
    return timedelta(hours=count)


def object_id_at(moment: datetime, rng: random.Random) -> str:
    """An ObjectId created at `moment`, as new_id() would have made it then."""
    return str(ObjectId(int(moment.timestamp()).to_bytes(4, "big") + rng.randbytes(8)))


def event_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


# --- the city ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class City:
    """The demo city's reference data and what the services derive from it."""

    reference: reference.ReferenceData
    grid_map: intake.GridMap
    rules: list[routing.Rule]
    clock: CalendarClock

    @classmethod
    def of(cls, data: reference.ReferenceData, rules: list[routing.Rule]) -> City:
        return cls(data, intake.GridMap(data.grids), rules, CalendarClock())

    def point_in(self, grid: reference.Grid, rng: random.Random) -> tuple[float, float]:
        corners = grid.geometry["coordinates"][0]
        lngs, lats = [c[0] for c in corners], [c[1] for c in corners]
        while True:
            lat, lng = round(rng.uniform(min(lats), max(lats)), 6), round(rng.uniform(min(lngs), max(lngs)), 6)
            found = self.grid_map.locate(lat, lng)
            if found is not None and found.id == grid.id:
                return lat, lng

    def department_name(self, code: str | None) -> str | None:
        department = self.reference.departments.get(code) if code else None
        return department.name_zh if department else None


# --- one report and its case, lived through -----------------------------------------------------

@dataclass(frozen=True)
class Submission:
    """A volunteer's POST /v1/reports as intake turns it into a report."""

    reporter_id: str
    grid: reference.Grid
    category: str
    location: tuple[float, float]
    at: datetime


@dataclass
class Filing:
    """One report as intake stores it, its case as routing stores it, and the photos they name."""

    report: dict
    case: dict
    photos: list[dict]


def photo_record(photo_id: str, owner_id: str, at: datetime, rng: random.Random) -> dict:
    sha256 = rng.randbytes(32).hex()
    record = {"_id": photo_id, "owner_id": owner_id, "content_type": "image/jpeg",
              "size": rng.randint(80_000, 900_000), "sha256": sha256, "width": 1280, "height": 960,
              "uploaded_at": at, idempotency.FINGERPRINT_FIELD: idempotency.fingerprint(sha256)}
    if rng.random() < KEYED_SHARE:
        record[idempotency.KEY_FIELD] = f"{owner_id}:{event_id(rng)}"
    return record


def new_report(city: City, submission: Submission, photo_id: str, report_id: str,
               rng: random.Random) -> tuple[dict, dict]:
    """The report domain.new_report makes, and the request body it came from."""
    category = city.reference.categories[submission.category]
    lat, lng = submission.location
    body = {"category": submission.category, "description": f"{category.name_zh}，{submission.grid.name}",
            "location": {"lat": lat, "lng": lng, "address": None}, "photo_ids": [photo_id]}
    fields = {**body, "observed_at": submission.at - timedelta(minutes=rng.uniform(1, 30)), "patrol_id": None}
    return intake.new_report(report_id, submission.reporter_id, fields, submission.grid, duplicate_of=None,
                             now=submission.at), body


def department_actor(case: dict) -> routing.Actor:
    return routing.Actor(id=f"{case['department']}-duty", role="department", dept=case["department"])


Move = tuple[datetime, Callable[[dict, datetime], routing.Step]]


def planned_moves(city: City, case: dict, rule: routing.Rule | None, quick: bool, rng: random.Random) -> list[Move]:
    """When the office and the department act on a new case. A `quick` case is never late and never
    sent back, so it is over within about four days."""
    at = case["opened_at"]
    deadline = rule.deadline_hours if rule else FALLBACK_DEADLINE_HOURS
    moves: list[Move] = []
    if rule is None:
        department = rng.choice(list(city.reference.departments))
        at += hours(rng.uniform(1, 8))
        moves.append((at, lambda c, t: routing.dispatch(c, OFFICE, department, hours=deadline, basis=CALENDAR,
                                                        clock=city.clock, now=t)))
    if rng.random() < REJECTED_SHARE:
        reason = rng.choice(routing.REJECT_REASONS)
        moves.append((at + hours(rng.uniform(1, 6)), lambda c, t: routing.reject(c, OFFICE, reason, "", t)))
        return moves
    accepted = at + hours(rng.uniform(0.3, 4))
    moves.append((accepted, lambda c, t: routing.accept(c, department_actor(c), t)))
    late = not quick and rng.random() < LATE_SHARE
    share = rng.uniform(1.2, 3) if late else rng.uniform(0.2, 0.9)
    rectified = max(accepted + hours(0.5), at + hours(deadline * share))
    fixed = object_id_at(rectified, rng)
    moves.append((rectified, lambda c, t: routing.rectify(c, department_actor(c), "已整改", [fixed], t)))
    verified = rectified + hours(rng.uniform(2, 24))
    if not quick and rng.random() < REWORK_SHARE:
        moves.append((verified, lambda c, t: routing.verify(c, OFFICE, False, note="整改不到位", hours=None,
                                                            clock=city.clock, now=t)))
        reworked = verified + hours(deadline * rng.uniform(0.2, 0.8))
        fixed_again = object_id_at(reworked, rng)
        moves.append((reworked, lambda c, t: routing.rectify(c, department_actor(c), "已返工", [fixed_again], t)))
        verified = reworked + hours(rng.uniform(2, 24))
    moves.append((verified, lambda c, t: routing.verify(c, OFFICE, True, note="", hours=None, clock=city.clock, now=t)))
    return moves


class Casework:
    """A report and its case going through the case's steps: routing stores each step with its version,
    and the report follows every event of the step as intake's handler makes it (one write each)."""

    def __init__(self, city: City, report: dict, rng: random.Random):
        self.city = city
        self.rng = rng
        self.report = report
        self.revision = 0
        self.case: dict = {"version": 0}

    def take(self, step: routing.Step, at: datetime) -> None:
        if not step.actions:
            return
        self.case = {**step.case, "version": self.case["version"] + 1}
        for event in routing.case_events(replace(step, case=self.case), None):
            action, department = intake.parse_case_routing_key(event.routing_key)
            case_step = intake.CaseStep(event_id(self.rng), action, department, at, event.data)
            changes = intake.follow_case(self.report, case_step, self.city.department_name(department),
                                         self.case["due_at"], self.city.reference.timezone)
            if changes is not None:
                self.report = {**self.report, **changes}
                self.revision += 1

    @property
    def unflagged_due(self) -> datetime | None:
        """The running deadline, if the overdue flag is not yet set."""
        case = self.case
        running = case["status"] in routing.RUNNING_STATUSES and not case["overdue"]
        return case["due_at"] if running else None

    def watch(self, until: datetime) -> None:
        """What the deadline watch has done by `until`."""
        due = self.unflagged_due
        if due is not None and due + WATCH_DELAY <= until:
            self.take(routing.mark_overdue(self.case, due + WATCH_DELAY), due + WATCH_DELAY)


@dataclass
class Watch:
    """The deadline watch over the present: a few deadlines have passed since its last pass."""

    left_unflagged: int = 0

    def leaves(self, work: Casework, now: datetime) -> bool:
        due = work.unflagged_due
        if due is None or due > now or self.left_unflagged >= NEWLY_OVERDUE:
            return False
        self.left_unflagged += 1
        return True


def file_report(city: City, submission: Submission, now: datetime, rng: random.Random,
                watch: Watch | None = None) -> Filing:
    """A report submitted at `submission.at` and its case as they stand at `now`. Without a `watch` the
    report is history, and its case is over: no history is open, whatever its size."""
    photo_id = object_id_at(submission.at - timedelta(minutes=rng.uniform(1, 10)), rng)
    report_id = object_id_at(submission.at, rng)
    report, body = new_report(city, submission, photo_id, report_id, rng)
    rule = routing.match_rule(city.rules, submission.category, submission.grid.district)
    opened_at = submission.at + timedelta(seconds=rng.uniform(0.2, 20))
    work = Casework(city, report, rng)
    work.take(routing.open_case(f"case-{report_id}", report, rule, city.clock, opened_at), opened_at)
    quick = watch is None and now - submission.at < SETTLING
    for at, move in planned_moves(city, work.case, rule, quick, rng):
        if at > now:
            break
        work.watch(at)
        work.take(move(work.case, at), at)
    if watch is None or not watch.leaves(work, now):
        work.watch(now)
    case = work.case
    photos = [photo_record(photo_id, submission.reporter_id, submission.at, rng)]
    photos += [photo_record(p, department_actor(case).id, case["rectified_at"], rng) for p in case["after_photo_ids"]]
    key = f"{submission.reporter_id}:{event_id(rng)}" if rng.random() < KEYED_SHARE else None
    return Filing(stored_report(work.report, work.revision, key, idempotency.fingerprint(body)),
                  stored_case(case), photos)


def stored_report(report: dict, revision: int, key: str | None, fingerprint: str) -> dict:
    """As ReportStore.add_report and apply_case_steps leave it, once the relay has emptied its outbox."""
    document = {"_id": report["id"], **{k: v for k, v in report.items() if k != "id"},
                intake_store.OPEN: report["status"] in intake.OPEN_STATUSES,
                intake_store.AREA: geo.place_key_of(report), "revision": revision,
                idempotency.FINGERPRINT_FIELD: fingerprint}
    return {**document, idempotency.KEY_FIELD: key} if key else document


def stored_case(case: dict) -> dict:
    """As routing's use cases store it (CaseStore.open_or_join and save), once the relay has emptied its outbox."""
    return {"_id": case["id"], **{k: v for k, v in case.items() if k != "id"},
            routing_store.OPEN: case["status"] in routing.OPEN_STATUSES,
            routing_store.AREA: geo.place_key_of(case)}


def with_pending_events(filing: Filing) -> Filing:
    """The filing before the relay has published its latest events, left behind: due for the sweep."""
    report = {**filing.report, "id": filing.report["_id"]}
    case = {**filing.case, "id": filing.case["_id"]}
    submitted = intake.report_submitted(report, None)
    opened = routing.case_events(routing.Step(case, ("opened",)), None)
    return Filing(left_behind(with_events(filing.report, submitted)), left_behind(with_events(filing.case, *opened)),
                  filing.photos)


def left_behind(document: dict) -> dict:
    return {**document, DUE_FIELD: datetime.now(UTC) - timedelta(seconds=1)}


# --- a year: the present and the history -------------------------------------------------------

def random_submission(city: City, at: datetime, rng: random.Random, *, reporter_id: str | None = None,
                      grid: reference.Grid | None = None, category: str | None = None) -> Submission:
    grid = grid or rng.choice(list(city.reference.grids.values()))
    if reporter_id is None:
        # The probe volunteer and grid leader report only in the present, the same at every size.
        leader = rng.random() < LEADER_SHARE and grid.id != PROBE_GRID
        reporter_id = grid.leader_id if leader else f"volunteer-{rng.randrange(1, VOLUNTEERS):03d}"
    if category is None:
        codes = list(city.reference.categories)
        category = rng.choices(codes, [CATEGORY_WEIGHTS.get(code, 1) for code in codes])[0]
    return Submission(reporter_id, grid, category, city.point_in(grid, rng), at)


@dataclass(frozen=True)
class PresentPlan:
    """How much of each part of the present a size holds (all of it from FULL_PRESENT_SIZE up)."""

    recent: int
    volunteer: int
    leader: int

    @classmethod
    def at(cls, size: int) -> PresentPlan:
        share = min(1.0, size / FULL_PRESENT_SIZE)
        return cls(round(DAILY_REPORTS * RECENT_DAYS * share), round(PROBE_VOLUNTEER_REPORTS * share),
                   round(PROBE_LEADER_REPORTS * share))

    @property
    def thinned(self) -> bool:
        return self.recent < DAILY_REPORTS * RECENT_DAYS

    @property
    def size(self) -> int:
        return self.recent + self.volunteer + self.leader + REPORTS_AT_PROBE_SPOT


def near_probe_spot(rng: random.Random) -> tuple[float, float]:
    """Within about 60 m of the probe spot."""
    lat, lng = PROBE_SPOT
    return round(lat + rng.uniform(-4e-4, 4e-4), 6), round(lng + rng.uniform(-4e-4, 4e-4), 6)


def present_submissions(city: City, plan: PresentPlan, now: datetime, rng: random.Random) -> list[Submission]:
    """The same at every size: evenly spread over their spans, newest first."""
    grid = city.reference.grids[PROBE_GRID]
    recent = [random_submission(city, now - RECENT_DAYS * timedelta(days=k + rng.random()) / plan.recent, rng)
              for k in range(plan.recent)]
    volunteer = [random_submission(city, now - YEAR * (k + rng.random()) / plan.volunteer, rng,
                                   reporter_id=PROBE_VOLUNTEER) for k in range(plan.volunteer)]
    leader = [random_submission(city, now - YEAR * (k + rng.random()) / plan.leader, rng, grid=grid,
                                reporter_id=grid.leader_id) for k in range(plan.leader)]
    spot = [Submission(f"volunteer-{rng.randrange(1, VOLUNTEERS):03d}", grid, PROBE_CATEGORY, near_probe_spot(rng),
                       now - hours(rng.uniform(1, 4))) for _ in range(REPORTS_AT_PROBE_SPOT)]
    return recent + volunteer + leader + spot


def present(city: City, plan: PresentPlan, rng: random.Random) -> Iterator[Filing]:
    """Its clock starts when it is first asked for: after the history is in."""
    now = datetime.now(UTC)
    watch = Watch()
    for number, submission in enumerate(present_submissions(city, plan, now, rng)):
        filing = file_report(city, submission, now, rng, watch)
        yield with_pending_events(filing) if number < PENDING_OUTBOX else filing


def history(city: City, count: int, rng: random.Random) -> Iterator[Filing]:
    """Closed reports, evenly spread over the year before the present."""
    now = datetime.now(UTC)
    span = YEAR - timedelta(days=RECENT_DAYS)
    for k in range(count):
        at = now - timedelta(days=RECENT_DAYS) - span * ((k + rng.random()) / count)
        yield file_report(city, random_submission(city, at, rng), now, rng)


# --- loading ----------------------------------------------------------------------------------

@dataclass
class Sample:
    """What the probes ask about, picked from what was loaded."""

    reports: list[dict] = field(default_factory=list)  # spread over the whole year
    open_reports: list[dict] = field(default_factory=list)
    open_case_ids: list[str] = field(default_factory=list)
    pending_report_ids: list[str] = field(default_factory=list)
    pending_case_ids: list[str] = field(default_factory=list)

    def take(self, filings: list[Filing], stride: int, offset: int) -> None:
        for number, filing in enumerate(filings, offset):
            report, case = filing.report, filing.case
            if number % stride == 0:
                self.reports.append(report)
            if report[intake_store.OPEN]:
                self.open_reports.append(report)
            if case[routing_store.OPEN]:
                self.open_case_ids.append(case["_id"])
            if OUTBOX_FIELD in report:
                self.pending_report_ids.append(report["_id"])
                self.pending_case_ids.append(case["_id"])


def insert(db: Database, filings: list[Filing]) -> int:
    db["reports"].insert_many([f.report for f in filings], ordered=False)
    db["cases"].insert_many([f.case for f in filings], ordered=False)
    photos = [p for f in filings for p in f.photos]
    db["photos"].insert_many(photos, ordered=False)
    return 2 * len(filings) + len(photos)


def batches(items: Iterator, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def load(db: Database, city: City, size: int) -> Sample:
    """`size` reports (each with its case and photos) and `size` markers, the history first and the
    present last, so that the present's clock is the one the queries then run against."""
    plan = PresentPlan.at(size)
    sample, stride = Sample(), max(1, size // 200)
    started, written, done = time.perf_counter(), 0, 0
    parts = (history(city, size - plan.size, random.Random(SEED + 1)), present(city, plan, random.Random(SEED)))
    for part in parts:
        for batch in batches(part, BATCH):
            written += insert(db, batch)
            sample.take(batch, stride, done)
            done += len(batch)
            rate = written / (time.perf_counter() - started)
            print(f"    {done:,} of {size:,} reports with their cases and photos ({rate:,.0f} documents/s)", flush=True)
    print(f"    loaded in {time.perf_counter() - started:,.0f} s", flush=True)
    print(f"    the present: {plan.size:,} reports, {len(sample.open_reports)} of them open, "
          f"{len(sample.pending_report_ids)} with pending events", flush=True)
    return sample


# --- the probes: one per hot query ---------------------------------------------------------------

@dataclass(frozen=True)
class Probe:
    name: str
    run: Callable[[Any], object]
    # Untimed: the argument of the i-th operation (a new report, a re-armed outbox, ...).
    prepare: Callable[[int], Any] = lambda i: i


def pick(items: list, i: int) -> Any:
    return items[i % len(items)]


def intake_reads(store: ReportStore, city: City, sample: Sample) -> list[Probe]:
    leader_id = city.reference.grids[PROBE_GRID].leader_id
    volunteer = Scope.any_of({"reporter_id": PROBE_VOLUNTEER})
    grid_leader = Scope.any_of({"grid_id": PROBE_GRID}, {"reporter_id": leader_id})
    department = Scope.any_of({"department": PROBE_DEPARTMENT})
    office = Scope.everything()
    week = intake.Week.containing(datetime.now(UTC), city.reference.timezone)
    first_page = partial(store.list_reports, after=None, limit=DEFAULT_LIMIT)
    return [
        # The open reports in the nine lattice cells around the spot (open, area: one $in of equalities),
        # never the closed history.
        Probe("intake  open_reports_near (duplicate lookup)",
              lambda i: store.open_reports_near(PROBE_CATEGORY, *PROBE_SPOT)),
        # One point lookup by _id; the scope is checked in Python.
        Probe("intake  visible_report (grid leader)", lambda i: store.visible_report(
            pick(sample.reports, i)["_id"], grid_leader)),
        # The volunteer's own reports (reporter_id, submitted_at), in windows back to a page or the start:
        # a volunteer's year at most.
        Probe("intake  list_reports: volunteer", lambda i: first_page({}, volunteer)),
        # The grid's and the leader's own reports of the windows a page takes, 1 + 4 days here.
        Probe("intake  list_reports: grid leader (2 alternatives)", lambda i: first_page({}, grid_leader)),
        # The department's reports of 1 + 4 days (department, submitted_at).
        Probe("intake  list_reports: department", lambda i: first_page({}, department)),
        # Everybody's last day (submitted_at).
        Probe("intake  list_reports: office", lambda i: first_page({}, office)),
        # The reports of the status in the windows it takes to find a page (status, submitted_at): a common
        # status in a day or two...
        Probe("intake  list_reports: office, status=in_progress", lambda i: first_page({"status": "in_progress"},
                                                                                        office)),
        # ...and a rare one in every window back to the start, each reading only its few matches.
        Probe("intake  list_reports: office, status=submitted", lambda i: first_page({"status": "submitted"}, office)),
        # The volunteer's own reports of a status (reporter_id, status, submitted_at).
        Probe("intake  list_reports: volunteer, status=closed", lambda i: first_page({"status": "closed"}, volunteer)),
        # The reports naming the photo (two multikey indexes).
        Probe("intake  photo_in_reports (department)", lambda i: store.photo_in_reports(
            pick(sample.reports, i)["photo_ids"][0], department)),
        # The grid's reports of the week, its open ones, and those closed in the week. The current week:
        # run on a Saturday or Sunday, its first days are older than the present and thin at 1,000.
        Probe("intake  grid_week_reports", lambda i: store.grid_week_reports(PROBE_GRID, week.start, week.end)),
    ]


def routing_reads(cases: CaseStore, sample: Sample) -> list[Probe]:
    office = Scope.everything()
    department = Scope.any_of({"department": PROBE_DEPARTMENT})
    first_page = partial(cases.list_cases, after=None, limit=DEFAULT_LIMIT)
    return [
        # One point lookup by _id.
        Probe("routing case", lambda i: cases.case(pick(sample.reports, i)["case_id"])),
        # One entry of the unique (multikey) index on report_ids.
        Probe("routing case_of_report", lambda i: cases.case_of_report(pick(sample.reports, i)["_id"])),
        # Everybody's last day (opened_at).
        Probe("routing list_cases: office", lambda i: first_page({}, office)),
        # The department's cases of 1 + 4 days (department, opened_at).
        Probe("routing list_cases: department", lambda i: first_page({}, department)),
        # The department's accepted cases, fewer than a page: all windows back to the start, each
        # reading only those (department, status, opened_at).
        Probe("routing list_cases: department, status=accepted", lambda i: first_page({"status": "accepted"},
                                                                                        department)),
        # The department's overdue cases (department, overdue, opened_at): few, so every window is read.
        Probe("routing list_cases: department, overdue", lambda i: first_page({"overdue": True}, department)),
        # The running cases past their deadline and not yet flagged (overdue, status, due_at).
        Probe("routing newly_overdue", lambda i: cases.newly_overdue(datetime.now(UTC))),
    ]


class ConfirmingBroker:
    """Stands in for EventPublisher: confirms every event at once, so a relay pass costs its store work."""

    def publish(self, events: list[Event]) -> PublishOutcome:
        return PublishOutcome(confirmed=[event.id for event in events])

    def close(self) -> None:
        pass


def sweep(service: str, collection, pending_ids: list[str]) -> Probe:
    """One OutboxRelay.sweep_once: the documents past their due time (sparse index on it: only the pending
    ones), the publish, and one settling write per document."""
    relay = OutboxRelay(ConfirmingBroker(), service).sweeps(collection)

    def rearm(i: int) -> None:
        for document_id in pending_ids:
            pushed = push_events({}, Event.new("bench.relayed", service, {"i": i}))
            collection.update_one({"_id": document_id}, {**pushed, "$set": {
                **pushed["$set"], DUE_FIELD: datetime.now(UTC) - timedelta(seconds=1)}})

    return Probe(f"{service:<7} outbox sweep_once ({len(pending_ids)} pending)", lambda _: relay.sweep_once(), rearm)


def intake_writes(store: ReportStore, city: City, sample: Sample, rng: random.Random) -> list[Probe]:
    keyed = [r for r in sample.reports if idempotency.KEY_FIELD in r]

    def submission(i: int) -> tuple:
        s = random_submission(city, datetime.now(UTC), rng)
        report, body = new_report(city, s, new_id(), new_id(), rng)
        event = intake.report_submitted(report, None)
        return report, event, f"{s.reporter_id}:{uuid.uuid4()}", idempotency.fingerprint(body)

    def replay(i: int) -> tuple:
        earlier = pick(keyed, i)
        report = {"id": new_id(), **{k: v for k, v in earlier.items() if k not in intake_store.HIDDEN_FIELDS}}
        event = intake.report_submitted(report, None)
        return report, event, earlier[idempotency.KEY_FIELD], earlier[idempotency.FINGERPRINT_FIELD]

    def case_event(i: int) -> tuple:
        report = pick(sample.open_reports, i)
        step = intake.CaseStep(str(uuid.uuid4()), "overdue", report["department"], datetime.now(UTC),
                               {"case_id": report["case_id"]})
        return report["_id"], partial(intake.follow_case, step=step, due_at=None, zone=city.reference.timezone,
                                      department_name=city.department_name(report["department"]))

    return [
        # One insert: the _id and every index of the collection take an entry.
        Probe("intake  add_report (new, with an idempotency key)", lambda a: store.add_report(*a), submission),
        # The insert refused by the key's unique (partial) index, then the earlier report by its key.
        Probe("intake  add_report replayed (key used, same request)", lambda a: store.add_report(*a), replay),
        # The report by _id, then a write conditional on its _id and revision.
        Probe("intake  apply_case_steps (case.overdue)", lambda a: store.apply_case_steps([a]), case_event),
    ]


def next_step(city: City, case: dict) -> routing.Step:
    """What the office or the department does next to an open case."""
    now, status = datetime.now(UTC), case["status"]
    if status == routing.PENDING_TRIAGE:
        return routing.dispatch(case, OFFICE, PROBE_DEPARTMENT, hours=FALLBACK_DEADLINE_HOURS, basis=CALENDAR,
                                clock=city.clock, now=now)
    if status == routing.DISPATCHED:
        return routing.accept(case, department_actor(case), now)
    if status == routing.ACCEPTED:
        return routing.rectify(case, department_actor(case), "已整改", [], now)
    if status == routing.RECTIFIED:
        return routing.verify(case, OFFICE, True, note="", hours=None, clock=city.clock, now=now)
    return routing.Step(case, ())


def routing_writes(cases: CaseStore, city: City, sample: Sample, rng: random.Random) -> list[Probe]:
    def new_report_event(i: int) -> tuple:
        s = random_submission(city, datetime.now(UTC), rng, category=PROBE_CATEGORY)
        report, _ = new_report(city, s, new_id(), new_id(), rng)
        rule = routing.match_rule(city.rules, report["category"], report["district"])
        return report, lambda report, nearby: routing.route_report(report, nearby, rule, city.clock, datetime.now(UTC))

    def open_or_join(report: dict, route: Callable) -> None:
        route_reports(cases, [routing.Submitted(report, None)], route)

    return [
        # A transaction: four opening locks upserted by _id, the open cases in the nine lattice cells
        # around the report (open, area: one $in of equalities), then one insert or one conditional update.
        Probe("routing open_or_join (new report)", lambda a: open_or_join(*a), new_report_event),
        # The case by _id, then a write conditional on its _id and version.
        Probe("routing change (next step of an open case)", lambda case_id: change_case(
            cases, case_id, partial(next_step, city), correlation_id=None), lambda i: pick(sample.open_case_ids, i)),
    ]


# --- timing -----------------------------------------------------------------------------------

@dataclass
class Side:
    """One size: its database, loaded, and its probes over it."""

    size: int
    db: Database
    probes: list[Probe]


def loaded_side(db: Database, data: reference.ReferenceData, size: int) -> Side:
    print(f"  {size:,} documents", flush=True)
    # As the services start: indexes first, then the city's default rules, which routing then reads.
    reports, cases = ReportStore.prepared(db), CaseStore.prepared(db, data)
    city = City.of(data, cases.all_rules())
    sample = load(db, city, size)
    # The load's writes reach the disk now rather than in a checkpoint during the timing.
    db.client.admin.command("fsync")
    rng = random.Random(SEED + 3)
    # Reads first, then the writes, each of which changes what later probes would see.
    probes = [*intake_reads(reports, city, sample), *routing_reads(cases, sample),
              sweep("intake", reports.reports, sample.pending_report_ids),
              sweep("routing", cases.cases, sample.pending_case_ids),
              *intake_writes(reports, city, sample, rng), *routing_writes(cases, city, sample, rng)]
    return Side(size, db, probes)


def one_operation_ms(probe: Probe, i: int) -> float:
    argument = probe.prepare(i)
    start = time.perf_counter()
    probe.run(argument)
    return (time.perf_counter() - start) * 1000


def time_side_by_side(sides: list[Side], repeat: int) -> dict[int, dict[str, float]]:
    """The median ms of each probe at each size, the sizes taking turns operation by operation, so that
    whatever else the machine is doing meanwhile weighs on every size alike."""
    medians: dict[int, dict[str, float]] = {side.size: {} for side in sides}
    for probes in zip(*(side.probes for side in sides), strict=True):
        for probe in probes:
            probe.run(probe.prepare(0))  # warm-up, untimed
        spent: list[list[float]] = [[] for _ in probes]
        for i in range(1, repeat + 1):
            for probe, times in zip(probes, spent, strict=True):
                times.append(one_operation_ms(probe, i))
        for side, times in zip(sides, spent, strict=True):
            medians[side.size][probes[0].name] = statistics.median(times)
        figures = ", ".join(f"{statistics.median(times):.2f}" for times in spent)
        print(f"    {probes[0].name}: {figures} ms", flush=True)
    return medians


# --- running ----------------------------------------------------------------------------------

@contextlib.contextmanager
def stores_under_test(sizes: list[int]) -> Iterator[tuple[dict[int, str], str]]:
    """A store URL per size, and what they are: MONGO_URL for every size (each in a database of its own),
    or an embedded database of the bench's own per size, so that no size's data shares a tree with another's."""
    if url := os.environ.get("MONGO_URL"):
        yield {size: url for size in sizes}, "MongoDB at MONGO_URL, a fresh database per size, dropped at the end"
        return
    # deploy/ is not part of the installed package; benches run from the checkout.
    from deploy.embedded_db import EmbeddedDatabase, free_port

    version = importlib.metadata.version("secantusdb")
    with tempfile.TemporaryDirectory(prefix="woodpecker-bench-db-") as directory, contextlib.ExitStack() as servers:
        urls = {}
        for size in sizes:
            database = EmbeddedDatabase(Path(directory) / str(size), free_port(), Path(directory) / f"{size}.log")
            database.start()
            servers.callback(database.stop)
            urls[size] = database.url
        yield urls, f"embedded SecantusDB {version}, one server per size ({', '.join(urls.values())}), in {directory}"


def reproduce_command(sizes: list[int], repeat: int) -> str:
    prefix = "MONGO_URL=$MONGO_URL " if os.environ.get("MONGO_URL") else ""
    sizes_option = ",".join(map(str, sizes))
    return f"cd {ROOT} && {prefix}.venv/bin/python -m bench.queries --sizes {sizes_option} --repeat {repeat}"


def print_table(sizes: list[int], results: dict[int, dict[str, float]]) -> None:
    names = list(results[sizes[0]])
    width = max(len(name) for name in names) + 2
    header = "query".ljust(width) + "".join(f"{f'ms/op at {size:,}':>18}" for size in sizes) + f"{'ratio':>8}"
    print()
    print(header)
    print("-" * len(header))
    for name in names:
        times = [results[size][name] for size in sizes]
        print(name.ljust(width) + "".join(f"{t:>18.2f}" for t in times) + f"{times[-1] / times[0]:>8.2f}")


def parse_sizes(text: str) -> list[int]:
    return sorted(int(part.replace("_", "")) for part in text.split(","))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=parse_sizes, default=list(DEFAULT_SIZES),
                        help="documents per collection, comma-separated (default: 1000,50000)")
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT, help="timed operations per query and size")
    args = parser.parse_args()
    data = reference.load(None)
    with stores_under_test(args.sizes) as (urls, described), contextlib.ExitStack() as databases:
        print(f"Reproduce: {reproduce_command(args.sizes, args.repeat)}")
        print(f"Store: {described}")
        if any(PresentPlan.at(size).thinned for size in args.sizes):
            print(f"Sizes below {FULL_PRESENT_SIZE:,} hold a thinned present (fewer reports a day): "
                  "their figures compare only with each other.")
        sides = []
        for size in args.sizes:
            db = connect(urls[size], f"bench_queries_{os.getpid()}_{size}")
            databases.callback(db.client.close)
            # An embedded server goes with its directory (and drops a database slowly); MongoDB keeps nothing.
            if os.environ.get("MONGO_URL"):
                databases.callback(db.client.drop_database, db.name)
            sides.append(loaded_side(db, data, size))
        print(f"  timing {len(sides[0].probes)} queries, {args.repeat} operations each at every size, taking turns",
              flush=True)
        results = time_side_by_side(sides, args.repeat)
    print_table(args.sizes, results)
    print(f"\nms/op: median of {args.repeat} operations; ratio: the largest size's over the smallest's.")


if __name__ == "__main__":
    main()
