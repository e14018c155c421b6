"""The queries behind the console's screens at 1,000,000 stored reports and cases against 10,000: proof by
measurement that what the office and the departments look at every day does not slow down as the years pile
up (issue 28: within 1.2x; FixMyStreet's admin index took about 7 s at a million reports, its issue #1799).

Each query is timed through the code the services run: routing's CaseStore and intake's ReportStore after
their `ensure_indexes()`, with the arguments the console's requests turn into (routing's `GET /v1/cases`
calls `CaseStore.list_cases`). Each row is the median of `--repeat` operations at each size, the sizes
taking turns operation by operation, and the ratio of the largest size's time to the smallest's. It prints
figures and asserts nothing. The queries are a table (CASE_QUERIES: name → a call on a CaseStore;
INTAKE_QUERIES the same on a ReportStore), so a screen's query joins it as one row.

What is stored, in exactly the shape the stores write it (bench/queries.py's domain-made filings: the
report as intake keeps it after following its case, the case as routing keeps it, the photos' records):

- **The present**, the same at both sizes: the last PRESENT_DAYS days of a large city at DAILY_REPORTS a
  day, each report's case as far along as its moves have come by now (most dispatched, accepted or
  rectified; some overdue), and the triage queue: TRIAGE_NEW cases no rule covers and TRIAGE_DISPUTED cases
  a department disputed, all awaiting the office. The first windows of every list (shared.pagination: one
  day, then four more) fall inside it, so at both sizes a busy list finds its page in the same documents.
- **The history**: the rest, closed (or rejected) over the YEARS years before the present. It is what grows
  from one size to the next; the open workload does not (bench/queries.py says why a fixed open share
  would be wrong). To load a million quickly, TEMPLATES filings are lived through with the domain's own
  commands (every shape: rejected, on time, late, reworked, escalated), and each history filing is one of
  them moved to its own time and place: every time shifted by the same amount, new ids (ObjectIds of its
  new time, new idempotency keys), a point of the same grid with its place key. Inserted in large
  `insert_many` batches into empty collections; the indexes are built afterwards by the stores' own
  `ensure_indexes()` (the same indexes, made in one pass instead of one document at a time).

Photos' records (one before-photo per report, the after-photos of each rectified case) are in intake's
`photos`, because the triage queue shows a thumbnail per case, which the console fetches from intake one
photo at a time (`GET /v1/photos/{id}`: the record by _id, and for a department whether a report it may
see holds the photo); the case page fetches each of its reports (`GET /v1/reports/{id}`). The photos'
bytes (GridFS) are not loaded: they are read by `_id` and chunk number, the same at any size.

Without MONGO_URL it starts an embedded database per size (deploy/embedded_db.py) on free ports with its
data in a temporary directory, and stops them at the end; with MONGO_URL it uses a fresh database per size
there and drops them at the end.

    python -m bench.console_queries [--sizes 10000,1000000] [--repeat 30]
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pymongo.database import Database

from bench.queries import (
    ROOT,
    Casework,
    City,
    Filing,
    Probe,
    Side,
    Submission,
    Watch,
    batches,
    department_actor,
    event_id,
    file_report,
    new_report,
    object_id_at,
    photo_record,
    pick,
    print_table,
    random_submission,
    stored_case,
    stored_report,
    stores_under_test,
    time_side_by_side,
)
from deploy.embedded_db import EmbeddedDatabase, free_port
from services.intake import store as intake_store
from services.intake.store import ReportStore
from services.routing import domain as routing
from services.routing import store as routing_store
from services.routing.store import CaseStore
from shared import geo, idempotency, reference
from shared.pagination import DEFAULT_LIMIT, Position
from shared.scope import Scope
from shared.store import connect

DEFAULT_SIZES = (10_000, 1_000_000)
DEFAULT_REPEAT = 30
BATCH = 10_000
SEED = 20261207

# A large city: about a million reports in three years, some 900 a day.
YEARS = 3
DAILY_REPORTS = 900
# The first page of a list reads back one window of a day and one of four (shared.pagination).
PRESENT_DAYS = 5
TRIAGE_NEW = 50
TRIAGE_DISPUTED = 8
TEMPLATES = 2_000
PLACES_PER_GRID = 200
SAMPLED = 500

# Who and what the rows ask about.
PAGE = DEFAULT_LIMIT
DEPARTMENT = "traffic-police"
GRID = "lanshan-02"
CATEGORY = "civility.dogs"  # 2 of 40 reports: a page takes the present's two windows
UNROUTED = "other"  # no rule: the office triages it
OFFICE = Scope.everything()
OWN_DEPARTMENT = Scope.any_of({"department": DEPARTMENT})
DEPARTMENTS = tuple(reference.load(None).departments)
# The demo city's grid cells lie inside this box; the map asks for the cells' extent.
CITY_BOX = geo.BoundingBox(min_lat=34.95, max_lat=35.25, min_lng=118.20, max_lng=118.55)
MAP_LIMIT = 10_000


# --- the table of queries ------------------------------------------------------------------------

_page_ends: dict[tuple[int, int], Position] = {}


def first_page_end(cases: CaseStore, scope: Scope = OFFICE) -> Position:
    """Where the first page of a list ended (found once per store): the cursor the console sends for the second."""
    key = (id(cases), id(scope))
    if key not in _page_ends:
        last = cases.list_cases({}, scope, None, PAGE)[PAGE - 1]
        _page_ends[key] = Position(last["opened_at"], last["id"])
    return _page_ends[key]


# name → the query on routing's store, as `GET /v1/cases` (or the screen's own endpoint) makes it.
CASE_QUERIES: dict[str, Callable[[CaseStore], object]] = {
    # /triage: the cases awaiting the office, oldest first (status, opened_at), windows forward from 2000.
    "triage queue (pending_triage, oldest first)": lambda cases: cases.list_cases(
        {"status": routing.PENDING_TRIAGE}, OFFICE, None, PAGE, oldest=True),
    # /cases as the office: everybody's last day (opened_at).
    "case list: office, newest first": lambda cases: cases.list_cases({}, OFFICE, None, PAGE),
    "case list: office, second page by cursor": lambda cases: cases.list_cases(
        {}, OFFICE, first_page_end(cases), PAGE),
    # /cases as a department: its own (department, opened_at).
    "case list: a department's own": lambda cases: cases.list_cases({}, OWN_DEPARTMENT, None, PAGE),
    "case list: a department's own, second page": lambda cases: cases.list_cases(
        {}, OWN_DEPARTMENT, first_page_end(cases, OWN_DEPARTMENT), PAGE),
    # The filters of /cases (grid_id, opened_at), (category, opened_at), and both together: a grid's cases
    # of a rare category take windows back past the present.
    "case list: office, grid filter": lambda cases: cases.list_cases({"grid_id": GRID}, OFFICE, None, PAGE),
    "case list: office, category filter": lambda cases: cases.list_cases({"category": CATEGORY}, OFFICE, None,
                                                                         PAGE),
    "case list: office, grid and category filters": lambda cases: cases.list_cases(
        {"grid_id": GRID, "category": CATEGORY}, OFFICE, None, PAGE),
    "case list: a department's own, category filter": lambda cases: cases.list_cases(
        {"category": "traffic.pedestrian"}, OWN_DEPARTMENT, None, PAGE),
    # /sla: the running cases due within the board's horizon, department by department (the office's), or one.
    "SLA board: office, every department": lambda cases: cases.sla_board(
        [f for code in DEPARTMENTS for f in OFFICE.within({"department": code})], sla_horizon()),
    "SLA board: a department's own": lambda cases: cases.sla_board(
        OWN_DEPARTMENT.within({"department": DEPARTMENT}), sla_horizon()),
    # /map: the open cases in the city's box, as the office and as a department see them.
    "map: office, the city's open cases": lambda cases: cases.open_points({}, OFFICE, CITY_BOX, MAP_LIMIT),
    "map: a department's open cases": lambda cases: cases.open_points({}, OWN_DEPARTMENT, CITY_BOX, MAP_LIMIT),
}


def sla_horizon() -> datetime:
    """The board's default horizon, 24 hours on, as the widest clock (calendar hours) counts it."""
    return datetime.now(UTC) + timedelta(hours=24)


@dataclass
class Sample:
    """What the per-item rows ask about, spread over the whole history and the present."""

    case_ids: list[str] = field(default_factory=list)
    report_ids: list[str] = field(default_factory=list)
    photo_ids: list[str] = field(default_factory=list)
    # The before-photos of the cases in the triage queue: what its thumbnails fetch.
    queue_photo_ids: list[str] = field(default_factory=list)


# name → the query on intake's store (or routing's, by id) for the i-th item of the sample.
INTAKE_QUERIES: dict[str, Callable[[ReportStore, CaseStore, Sample, int], object]] = {
    # /cases/{id}: the case by _id.
    "case page: the case": lambda reports, cases, sample, i: cases.case(pick(sample.case_ids, i)),
    # /cases/{id}: each of its reports, GET /v1/reports/{id} (by _id; the scope checked in Python).
    "case page: a report (intake)": lambda reports, cases, sample, i: reports.visible_report(
        pick(sample.report_ids, i), OFFICE),
    # /triage: each thumbnail, GET /v1/photos/{id} as the office (the record by _id).
    "triage thumbnail: a photo's record (intake)": lambda reports, cases, sample, i: reports.photo(
        pick(sample.queue_photo_ids, i)),
    # A department's case page: the photo's record and whether a report it may see holds it (multikey).
    "case page photo, as a department (intake)": lambda reports, cases, sample, i: (
        reports.photo(pick(sample.photo_ids, i)),
        reports.photo_in_reports(pick(sample.photo_ids, i), OWN_DEPARTMENT)),
}


# --- the present, made with the domain ------------------------------------------------------------

def filed(city: City, work: Casework, submission: Submission, photo_id: str, body: dict,
          rng: random.Random) -> Filing:
    """The filing as the stores keep it (bench.queries.file_report's last steps)."""
    case = work.case
    photos = [photo_record(photo_id, submission.reporter_id, submission.at, rng)]
    photos += [photo_record(p, department_actor(case).id, case["rectified_at"], rng) for p in case["after_photo_ids"]]
    key = f"{submission.reporter_id}:{event_id(rng)}" if rng.random() < 0.8 else None
    return Filing(stored_report(work.report, work.revision, key, idempotency.fingerprint(body)),
                  stored_case(case), photos)


def awaiting_triage(city: City, submission: Submission, disputed: bool, rng: random.Random) -> Filing:
    """A case the office has to triage: new and no rule covers it, or dispatched by a rule and disputed."""
    photo_id = object_id_at(submission.at - timedelta(minutes=3), rng)
    report_id = object_id_at(submission.at, rng)
    report, body = new_report(city, submission, photo_id, report_id, rng)
    rule = routing.match_rule(city.rules, submission.category, submission.grid.district) if disputed else None
    opened_at = submission.at + timedelta(seconds=2)
    work = Casework(city, report, rng)
    work.take(routing.open_case(f"case-{report_id}", report, rule, city.clock, opened_at), opened_at)
    if disputed:
        at = opened_at + timedelta(hours=rng.uniform(0.5, 3))
        work.take(routing.dispute(work.case, department_actor(work.case), "不属于本部门职责", at), at)
    return filed(city, work, submission, photo_id, body, rng)


def present(city: City, now: datetime, rng: random.Random) -> list[Filing]:
    """The last PRESENT_DAYS days, newest first, then the triage queue (the same at every size)."""
    count = DAILY_REPORTS * PRESENT_DAYS
    watch = Watch()
    span = timedelta(days=PRESENT_DAYS)
    filings = [file_report(city, random_submission(city, now - span * ((k + rng.random()) / count), rng), now, rng,
                           watch) for k in range(count)]
    for k in range(TRIAGE_NEW + TRIAGE_DISPUTED):
        disputed = k >= TRIAGE_NEW
        at = now - timedelta(days=2) * rng.random() - timedelta(hours=3 if disputed else 0)
        category = rng.choice(["traffic.parking", "env.garbage"]) if disputed else UNROUTED
        filings.append(awaiting_triage(city, random_submission(city, at, rng, category=category), disputed, rng))
    return filings


# --- the history: templates moved in time and place ------------------------------------------------

@dataclass(frozen=True)
class Template:
    filing: Filing
    at: datetime  # submitted
    span: timedelta  # from submission to the case's last step


def last_step(case: dict) -> datetime:
    return max(entry["at"] for entry in case["history"])


def templates(city: City, now: datetime, rng: random.Random) -> list[Template]:
    """Closed filings of every shape, lived through with the domain over the year before the present (old
    enough that late, reworked and escalated cases happen)."""
    made = []
    for k in range(TEMPLATES):
        at = now - timedelta(days=60) - timedelta(days=300) * ((k + rng.random()) / TEMPLATES)
        filing = file_report(city, random_submission(city, at, rng), now, rng)
        submitted = filing.report["submitted_at"]
        made.append(Template(filing, submitted, last_step(filing.case) - submitted))
    return made


def relived(value: Any, ids: dict[str, str], shift: timedelta) -> Any:
    """`value` with every time moved by `shift` and every id in `ids` replaced."""
    if isinstance(value, dict):
        return {k: relived(v, ids, shift) for k, v in value.items()}
    if isinstance(value, list):
        return [relived(v, ids, shift) for v in value]
    if isinstance(value, datetime):
        return value + shift
    if isinstance(value, str):
        return ids.get(value, value)
    return value


def moved(template: Template, at: datetime, place: tuple[float, float], rng: random.Random) -> Filing:
    """The template's filing submitted at `at`, at `place` (a point of the same grid), with ids of its own."""
    old = template.filing
    shift = at - template.at
    ids: dict[str, str] = {}
    report_id = object_id_at(at, rng)
    ids[old.report["_id"]] = report_id
    ids[old.case["_id"]] = f"case-{report_id}"
    for photo in old.photos:
        ids[photo["_id"]] = object_id_at(photo["uploaded_at"] + shift, rng)
        if idempotency.KEY_FIELD in photo:
            ids[photo[idempotency.KEY_FIELD]] = f"{photo['owner_id']}:{event_id(rng)}"
    if idempotency.KEY_FIELD in old.report:
        ids[old.report[idempotency.KEY_FIELD]] = f"{old.report['reporter_id']}:{event_id(rng)}"
    report, case = relived(old.report, ids, shift), relived(old.case, ids, shift)
    lat, lng = place
    for document in (report, case):
        document["location"] = {**document["location"], "lat": lat, "lng": lng}
    report[intake_store.AREA] = geo.place_key_of(report)
    case[routing_store.AREA] = geo.place_key_of(case)
    return Filing(report, case, [relived(p, ids, shift) for p in old.photos])


def history(city: City, made: list[Template], count: int, present_starts: datetime,
            rng: random.Random) -> Iterator[Filing]:
    """`count` closed filings, oldest first, evenly over the YEARS years before the present."""
    places = {grid_id: [city.point_in(grid, rng) for _ in range(PLACES_PER_GRID)]
              for grid_id, grid in city.reference.grids.items()}
    span = timedelta(days=365 * YEARS)
    latest = datetime.now(UTC) - timedelta(minutes=5)
    for k in range(count):
        template = rng.choice(made)
        # The fraction first: span * k overflows a timedelta past about 900,000 filings.
        at = present_starts - span + span * ((k + rng.random()) / count)
        at = min(at, latest - template.span)  # a case over before now
        yield moved(template, at, rng.choice(places[template.filing.report["grid_id"]]), rng)


# --- loading ------------------------------------------------------------------------------------

def insert(intake_db: Database, routing_db: Database, filings: list[Filing]) -> int:
    intake_db["reports"].insert_many([f.report for f in filings], ordered=False)
    routing_db["cases"].insert_many([f.case for f in filings], ordered=False)
    photos = [p for f in filings for p in f.photos]
    intake_db["photos"].insert_many(photos, ordered=False)
    return 2 * len(filings) + len(photos)


def load(intake_db: Database, routing_db: Database, city: City, made: list[Template], size: int) -> Sample:
    now = datetime.now(UTC)
    the_present = present(city, now, random.Random(SEED))
    sample, stride = Sample(), max(1, size // SAMPLED)
    sample.queue_photo_ids = [f.case["photo_ids"][0] for f in the_present[-(TRIAGE_NEW + TRIAGE_DISPUTED):]]
    started, written, done = time.perf_counter(), 0, 0
    past = history(city, made, size - len(the_present), now - timedelta(days=PRESENT_DAYS), random.Random(SEED + 1))
    # Each batch is inserted while the next is made, so that the store's work and the bench's overlap.
    inserting: Future | None = None
    with ThreadPoolExecutor(max_workers=1) as inserter:
        for batch in batches(itertools.chain(past, the_present), BATCH):
            written += inserting.result() if inserting else 0
            inserting = inserter.submit(insert, intake_db, routing_db, batch)
            for number, filing in enumerate(batch, done):
                if number % stride == 0:
                    sample.case_ids.append(filing.case["_id"])
                    sample.report_ids.append(filing.report["_id"])
                    sample.photo_ids.append(filing.photos[-1]["_id"])
            done += len(batch)
            if done % 100_000 < BATCH:
                rate = written / (time.perf_counter() - started)
                print(f"    {done:,} of {size:,} reports made ({rate:,.0f} documents/s stored)", flush=True)
        written += inserting.result() if inserting else 0
    open_cases = sum(f.case[routing_store.OPEN] for f in the_present)
    pending = sum(f.case["status"] == routing.PENDING_TRIAGE for f in the_present)
    print(f"    loaded {written:,} documents in {time.perf_counter() - started:,.0f} s; the present: "
          f"{len(the_present):,} reports, {open_cases:,} open cases, {pending} awaiting triage", flush=True)
    return sample


def loaded_side(url: str, data: reference.ReferenceData, made: list[Template], city: City, size: int,
                tag: str, kept: Path | None, indexes_first: bool = False) -> tuple[Side, list[Database]]:
    """The size's stores, loaded (or, with `kept`, as an earlier run loaded them), with their indexes: built after
    the load, or with `indexes_first` before it (the embedded database builds an index over a large collection
    far more slowly than it keeps one up to date insert by insert)."""
    print(f"  {size:,} reports and cases", flush=True)
    intake_db, routing_db = connect(url, f"{tag}_intake"), connect(url, f"{tag}_routing")
    if indexes_first and not (kept is not None and kept.exists()):
        ReportStore.prepared(intake_db), CaseStore.prepared(routing_db, data)
    if kept is not None and kept.exists():
        sample = Sample(**json.loads(kept.read_text()))
        print(f"    as loaded before ({kept}, {routing_db.cases.estimated_document_count():,} cases)", flush=True)
    else:
        sample = load(intake_db, routing_db, city, made, size)
    started = time.perf_counter()
    reports, cases = ReportStore.prepared(intake_db), CaseStore.prepared(routing_db, data)
    print(f"    the stores' ensure_indexes(): {time.perf_counter() - started:,.0f} s", flush=True)
    if kept is not None:
        kept.write_text(json.dumps(asdict(sample)))
    # The load's writes reach the disk now rather than in a checkpoint during the timing.
    routing_db.client.admin.command("fsync")
    probes = [Probe(name, lambda i, q=query: q(cases)) for name, query in CASE_QUERIES.items()]
    probes += [Probe(name, lambda i, q=query: q(reports, cases, sample, i)) for name, query in INTAKE_QUERIES.items()]
    return Side(size, routing_db, probes), [intake_db, routing_db]


@contextlib.contextmanager
def stores_kept_in(directory: Path, sizes: list[int]) -> Iterator[tuple[dict[int, str], str]]:
    """An embedded database per size with its data in `directory`, kept for the next run."""
    with contextlib.ExitStack() as servers:
        urls = {}
        for size in sizes:
            database = EmbeddedDatabase(directory / str(size), free_port(), directory / f"{size}.log")
            database.start()
            servers.callback(database.stop)
            urls[size] = database.url
        yield urls, f"embedded SecantusDB, one server per size, its data kept in {directory}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=lambda text: sorted(int(p.replace("_", "")) for p in text.split(",")),
                        default=list(DEFAULT_SIZES), help="reports (and cases) stored, comma-separated "
                        "(default: 10000,1000000)")
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT, help="timed operations per query and size")
    parser.add_argument("--indexes-first", action="store_true", help="build the indexes before the load rather "
                        "than after it (quicker on the embedded database at a million)")
    parser.add_argument("--data", type=Path, help="keep the embedded databases here, and time what an earlier run "
                        "loaded there (after a store's change, without loading again; its present ages)")
    args = parser.parse_args()
    smallest = DAILY_REPORTS * PRESENT_DAYS + TRIAGE_NEW + TRIAGE_DISPUTED
    if args.sizes[0] < smallest:
        parser.error(f"every size must hold the present: at least {smallest:,}")
    data = reference.load(None)
    city = City.of(data, routing.default_rules(data.categories.values()))
    prefix = "MONGO_URL=$MONGO_URL " if os.environ.get("MONGO_URL") and not args.data else ""
    kept = f" --data {args.data}" if args.data else ""
    first = " --indexes-first" if args.indexes_first else ""
    print(f"Reproduce: cd {ROOT} && {prefix}.venv/bin/python -m bench.console_queries "
          f"--sizes {','.join(map(str, args.sizes))} --repeat {args.repeat}{first}{kept}")
    started = time.perf_counter()
    made = templates(city, datetime.now(UTC), random.Random(SEED + 2))
    print(f"  {len(made):,} template filings lived through with the domain in {time.perf_counter() - started:.1f} s",
          flush=True)
    tag = "bench_console" if args.data else f"bench_console_{os.getpid()}"
    stores = stores_kept_in(args.data, args.sizes) if args.data else stores_under_test(args.sizes)
    with stores as (urls, described), contextlib.ExitStack() as databases:
        print(f"Store: {described}")
        sides = []
        # The largest first: the smaller size's present is then the fresher, never the staler, at the timing.
        for size in reversed(args.sizes):
            side, dbs = loaded_side(urls[size], data, made, city, size, tag,
                                    args.data / f"{size}.json" if args.data else None, args.indexes_first)
            for db in dbs:
                databases.callback(db.client.close)
                if os.environ.get("MONGO_URL") and not args.data:
                    databases.callback(db.client.drop_database, db.name)
            sides.append(side)
        sides.reverse()
        print(f"  timing {len(sides[0].probes)} queries, {args.repeat} operations each at every size, taking turns",
              flush=True)
        results = time_side_by_side(sides, args.repeat)
    print_table(args.sizes, results)
    print(f"\nms/op: median of {args.repeat} operations; ratio: the largest size's over the smallest's "
          "(issue 28: at most 1.2).")


if __name__ == "__main__":
    main()
