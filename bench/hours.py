"""The hours service's reads at two scales, and one worker's crediting throughput.

Reads: a volunteer's summary, the rankings (city-wide by hours and by verified reports, and one
organisation's) and a volunteer's ledger page, timed through the code the endpoints run (HoursStore and
the domain), with 20,000 volunteers and 1,000,000 ledger entries and again with a tenth of each. The ledgers
are generated in bulk in exactly the shape the store writes them, with the running totals and year rows
that the entries add up to. A summary reads one volunteer's running totals and a ranking reads the year
rows from the top down in bands of the measure, so neither reads an entry: their cost must not follow the
ledger's size. Each row is the median of `--repeat` operations, the scales taking turns operation by
operation; the ratio is the large scale's over the small one's.

Crediting: one hours worker process (as `make up` runs it) credits waiting patrols from report.submitted
events: `--credits` volunteers each have a patrol waiting for evidence, a report of theirs in its grid
arrives on the broker for each, and the bench times until every patrol is credited (the report stored,
the patrol found, its entry, running totals, year row and day written in one transaction, hours.credited
relayed). It also times the same crediting over HTTP: patrols recorded by their volunteers
(`POST /v1/patrols`, 8 clients) when the report is already known, so the patrol is credited at once.

Without MONGO_URL it starts embedded databases of its own. Loading a million entries takes about four
minutes on the project's machine.

    python -m bench.hours [--scales 20000:1000000,2000:100000] [--repeat 50] [--credits 400]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import random
import secrets
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import requests

from bench.harness import bench_databases, bench_store, bench_vhost, drop_databases, running, service_env
from bench.queries import stores_under_test
from services.hours import domain
from services.hours.store import HoursStore, _year_id
from services.hours.usecases import patrols
from shared import reference
from shared.auth import issue_token
from shared.bus import EventPublisher
from shared.config import DEV_JWT_SECRET
from shared.events import Event, rfc3339
from shared.store import connect

SEED = 20261124
YEAR = 2026
BATCH = 5_000
ORGANIZATIONS = [f"第{n}志愿服务队" for n in range(1, 41)]
KINDS = [domain.PATROL] * 6 + [domain.ACTIVITY] * 3 + [domain.ADJUSTMENT]


@dataclass(frozen=True)
class Scale:
    volunteers: int
    entries: int

    @property
    def label(self) -> str:
        return f"{self.volunteers:,} volunteers / {self.entries:,} entries"


def parse_scales(text: str) -> list[Scale]:
    scales = []
    for part in text.split(","):
        volunteers, entries = part.split(":")
        scales.append(Scale(int(volunteers), int(entries)))
    return scales


# --- loading ----------------------------------------------------------------------------------

def load(store: HoursStore, scale: Scale, grids: list[str]) -> list[str]:
    """`scale.entries` entries spread over `scale.volunteers` volunteers across two years, with the totals and
    year rows they add up to; returns the volunteer ids."""
    rng = random.Random(SEED + scale.volunteers)
    started = time.perf_counter()
    registered = datetime(YEAR - 1, 1, 5, tzinfo=UTC)
    volunteers = [{"_id": secrets.token_hex(12), "name": f"志愿者{n}", "phone": f"13{n:09d}",
                   "organization": rng.choice(ORGANIZATIONS), "grid_id": rng.choice(grids),
                   "registered_at": registered + timedelta(minutes=n), "registered_by": "association:bench",
                   "version": 0} for n in range(scale.volunteers)]
    totals = {v["_id"]: {"total": 0, "years": {}} for v in volunteers}
    rows: dict[tuple[str, int], dict] = {}
    written = 0
    for start in range(0, scale.entries, BATCH):
        batch = []
        for _ in range(min(BATCH, scale.entries - start)):
            volunteer = rng.choice(volunteers)
            kind = rng.choice(KINDS)
            year = YEAR if rng.random() < 0.6 else YEAR - 1
            service_date = date(year, 1, 1) + timedelta(days=rng.randrange(300))
            hours = rng.choice((0.5, 1.0, 1.5, 2.0, 2.5, 3.0))
            entry = {"_id": secrets.token_hex(12), "volunteer_id": volunteer["_id"], "hours": hours, "kind": kind,
                     "source": kind, "source_id": secrets.token_hex(12), "service_date": service_date.isoformat(),
                     "year": year, "recorded_at": datetime(year, 1, 1, tzinfo=UTC) + timedelta(
                         days=(service_date - date(year, 1, 1)).days + 1), "recorded_by": "bench",
                     "rule_version": "linyi-2026.1", "note": "bench", "draw": rng.randrange(domain.DRAWS)}
            batch.append(entry)
            amount = domain.centihours(hours)
            totals[volunteer["_id"]]["total"] += amount
            years = totals[volunteer["_id"]]["years"]
            years[str(year)] = years.get(str(year), 0) + amount
            row = rows.setdefault((volunteer["_id"], year), {
                "_id": _year_id(volunteer["_id"], year), "volunteer_id": volunteer["_id"], "year": year,
                "name": volunteer["name"], "organization": volunteer["organization"],
                "grid_id": volunteer["grid_id"], "centihours": 0, "verified_reports": rng.randrange(30),
                "kinds": {}, "first_service": entry["service_date"], "last_service": entry["service_date"]})
            row["centihours"] += amount
            figures = row["kinds"].setdefault(kind, {"centihours": 0, "sessions": 0})
            figures["centihours"] += amount
            figures["sessions"] += 1
            row["first_service"] = min(row["first_service"], entry["service_date"])
            row["last_service"] = max(row["last_service"], entry["service_date"])
        store.entries.insert_many(batch, ordered=False)
        written += len(batch)
        if written % 100_000 < BATCH or written == scale.entries:
            rate = written / (time.perf_counter() - started)
            print(f"    {written:,} of {scale.entries:,} entries ({rate:,.0f}/s)", flush=True)
    for volunteer in volunteers:
        total = totals[volunteer["_id"]]
        volunteer.update({"phone_key": domain.phone_key(volunteer["organization"], volunteer["phone"]),
                          "star_level": domain.star_level(total["total"] / 100, store.rules),
                          "totals": {**total, "pending": 0, "verified_reports": 0}})
    for start in range(0, len(volunteers), BATCH):
        store.volunteers.insert_many(volunteers[start:start + BATCH], ordered=False)
    documents = list(rows.values())
    for start in range(0, len(documents), BATCH):
        store.year_totals.insert_many(documents[start:start + BATCH], ordered=False)
    print(f"    {len(volunteers):,} volunteers and {len(documents):,} year rows; loaded in "
          f"{time.perf_counter() - started:,.0f} s", flush=True)
    return [v["_id"] for v in volunteers]


# --- the reads --------------------------------------------------------------------------------

def probes(store: HoursStore, volunteer_ids: list[str]) -> dict[str, callable]:
    rules = store.rules
    pick = lambda i: volunteer_ids[(i * 7919) % len(volunteer_ids)]  # noqa: E731
    return {
        "summary (GET /v1/volunteers/{id}/summary)": lambda i: domain.summary(store.volunteer(pick(i)), YEAR, rules),
        "ranking by hours, city, top 50": lambda i: domain.ranked(store.ranking(YEAR, "hours", {}, 50), "hours"),
        "ranking by reports, city, top 50": lambda i: domain.ranked(store.ranking(YEAR, "reports", {}, 50),
                                                                    "reports"),
        "ranking by hours, one organisation, top 50": lambda i: domain.ranked(
            store.ranking(YEAR, "hours", {"organization": ORGANIZATIONS[i % len(ORGANIZATIONS)]}, 50), "hours"),
        "ledger, first page of 50 (GET …/ledger?year=)": lambda i: store.ledger(pick(i), YEAR, None, 51),
    }


def time_reads(sides: list[tuple[Scale, dict]], repeat: int) -> dict[str, list[tuple[float, float]]]:
    results: dict[str, list[tuple[float, float]]] = {}
    for name in sides[0][1]:
        runs = [probes_of[name] for _, probes_of in sides]
        for run in runs:
            run(0)  # warm-up
        spent: list[list[float]] = [[] for _ in runs]
        for i in range(1, repeat + 1):
            for run, times in zip(runs, spent, strict=True):
                started = time.perf_counter()
                run(i)
                times.append((time.perf_counter() - started) * 1000)
        results[name] = [(statistics.median(t), statistics.quantiles(t, n=10)[-1]) for t in spent]
        print(f"    {name}: " + ", ".join(f"{m:.1f} ms" for m, _ in results[name]), flush=True)
    return results


def reads(scales: list[Scale], repeat: int) -> None:
    city = reference.load(None)
    rules = reference.load_service_hours(None)
    sizes = [scale.entries for scale in scales]
    with stores_under_test(sizes) as (urls, described), contextlib.ExitStack() as cleanup:
        print(f"Store: {described}")
        sides = []
        for scale in scales:
            print(f"  loading {scale.label}", flush=True)
            db = connect(urls[scale.entries], f"bench_hours_{os.getpid()}_{scale.entries}")
            cleanup.callback(db.client.close)
            if os.environ.get("MONGO_URL"):
                cleanup.callback(db.client.drop_database, db.name)
            store = HoursStore.prepared(db, rules)
            sides.append((scale, probes(store, load(store, scale, list(city.grids)))))
        print(f"  timing, {repeat} operations each, the scales taking turns", flush=True)
        results = time_reads(sides, repeat)
    header = " | ".join(scale.label for scale in scales)
    print(f"\n| read | {header} | ratio |\n|---|" + "---|" * len(scales) + "---|")
    for name, figures in results.items():
        cells = " | ".join(f"{median:.1f} ms (p90 {p90:.1f})" for median, p90 in figures)
        print(f"| {name} | {cells} | {figures[0][0] / figures[-1][0]:.2f} |")


# --- crediting --------------------------------------------------------------------------------

def crediting(count: int) -> None:
    city = reference.load(None)
    rules = reference.load_service_hours(None)
    grid = next(iter(city.grids))
    with bench_store() as (mongo_url, described, _), bench_vhost() as (_, amqp_url):
        print(f"\nCrediting — store: {described}")
        databases = bench_databases(("hours",))
        env = service_env(mongo_url, amqp_url, databases)
        store = HoursStore.prepared(connect(mongo_url, databases["HOURS_DATABASE"]), rules)
        now = datetime.now(UTC)
        # One report credits an hour of its patrol at once (the demo's evidence_hours_per_report): an hour's patrol.
        started, ended = now - timedelta(hours=1, minutes=30), now - timedelta(minutes=30)
        try:
            with running("hours", env) as hours:
                print(f"  {hours.describe()}", flush=True)
                waiting = [register(hours.port, n) for n in range(count)]
                for volunteer_id in waiting:
                    claim = domain.PatrolClaim(volunteer_id, grid, started, ended, 1.0,
                                               started.astimezone(city.timezone).date())
                    patrols.record_claim(store, claim, by_its_grid_leader=False, recorded_by="bench", now=now, key=None,
                                         fingerprint="bench", correlation_id=None)
                events = [Event.new("report.submitted", "intake", {
                    "id": uuid.uuid4().hex, "reporter_id": volunteer_id, "grid_id": grid,
                    "submitted_at": rfc3339(now - timedelta(hours=1))}) for volunteer_id in waiting]
                publisher = EventPublisher(amqp_url, "intake")
                clock = time.perf_counter()
                for start in range(0, len(events), 100):
                    publisher.publish(events[start:start + 100])
                while store.patrols.count_documents({"status": domain.CREDITED}) < count:
                    time.sleep(0.05)
                elapsed = time.perf_counter() - clock
                print(f"  one worker, from report.submitted: {count} patrols credited in {elapsed:.1f} s "
                      f"= {count / elapsed:.1f} credits/s", flush=True)
                print(f"  over HTTP, evidenced at once: {http_patrols(hours.port, store, grid, count, now):.1f} "
                      "patrols/s (8 clients)", flush=True)
        finally:
            drop_databases(mongo_url, databases)


def register(port: int, n: int) -> str:
    token = issue_token(DEV_JWT_SECRET, "bench-association", "association")
    response = requests.post(f"http://127.0.0.1:{port}/v1/volunteers", timeout=10,
                             headers={"Authorization": f"Bearer {token}"},
                             json={"name": "王小明", "phone": f"135{n:08d}", "organization": "测试服务队",
                                   "grid_id": "lanshan-01"})
    response.raise_for_status()
    return response.json()["id"]


def http_patrols(port: int, store: HoursStore, grid: str, count: int, now: datetime) -> float:
    """Patrols of `count` new volunteers whose evidence is already stored, recorded over HTTP by 8 clients."""
    volunteers = [register(port, count + n) for n in range(count)]
    for volunteer_id in volunteers:
        store.reports.insert_one({"_id": uuid.uuid4().hex, "reporter_id": volunteer_id, "grid_id": grid,
                                  "submitted_at": now - timedelta(hours=1), "year": now.year, "verified": False})

    def record(volunteer_id: str) -> int:
        token = issue_token(DEV_JWT_SECRET, volunteer_id, "volunteer")
        return requests.post(f"http://127.0.0.1:{port}/v1/patrols", timeout=30,
                             headers={"Authorization": f"Bearer {token}"},
                             json={"grid_id": grid, "started_at": rfc3339(now - timedelta(hours=1, minutes=30)),
                                   "ended_at": rfc3339(now - timedelta(minutes=30))}).status_code

    clock = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(record, volunteers))
    elapsed = time.perf_counter() - clock
    if set(statuses) != {201}:
        raise SystemExit(f"patrols answered {sorted(set(statuses))}")
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", type=parse_scales, default=parse_scales("20000:1000000,2000:100000"),
                        help="volunteers:entries, comma-separated (default: 20000:1000000,2000:100000)")
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--credits", type=int, default=400, help="patrols credited in the crediting measurement")
    parser.add_argument("--skip-reads", action="store_true")
    args = parser.parse_args()
    if not args.skip_reads:
        reads(args.scales, args.repeat)
    crediting(args.credits)


if __name__ == "__main__":
    main()
