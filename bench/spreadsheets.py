"""What the full rankings XLSX costs built, served as stored, and answered 304, at a realistic size.

The hours web app runs in this process (Flask's test client, no HTTP server) on a store holding `--volunteers`
volunteers with a year row each (bench/hours.py's loader). Each request is `GET /v1/rankings?year=&format=xlsx`
as a volunteer: "built" with the stored workbooks removed first, so every request builds the workbook;
"stored" with the workbook already in the store; "304" with If-None-Match naming its ETag. Each figure is the
median over `--repeat` requests: wall time, this process's CPU time and the store's (the embedded database's
process; none for MongoDB).

    python -m bench.spreadsheets [--volunteers 20000] [--repeat 10]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

from bench.cpu import TICKS_PER_S
from bench.harness import bench_databases, bench_store, drop_databases
from bench.hours import YEAR, Scale, load
from services.hours.app import create_app
from services.hours.store import HoursStore
from shared import reference
from shared.auth import issue_token
from shared.config import DEV_JWT_SECRET, Settings

PATH = f"/v1/rankings?year={YEAR}&by=hours&format=xlsx"
ENTRIES_PER_VOLUNTEER = 5  # enough that nearly every volunteer has a row in the year ranked


def cpu_s(pid: int | None) -> float:
    if pid is None:
        return os.times().user + os.times().system
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def timed(request: Callable[[], object], before: Callable[[], object], repeat: int,
          store_pid: int | None) -> tuple[float, float, float | None]:
    """Median wall ms, this process's CPU ms and the store's CPU ms (None for MongoDB) of `request`."""
    wall, own, store = [], [], []
    for _ in range(repeat):
        before()
        marks = time.perf_counter(), cpu_s(None), cpu_s(store_pid) if store_pid else 0.0
        request()
        wall.append((time.perf_counter() - marks[0]) * 1000)
        own.append((cpu_s(None) - marks[1]) * 1000)
        store.append(((cpu_s(store_pid) if store_pid else 0.0) - marks[2]) * 1000)
    return statistics.median(wall), statistics.median(own), statistics.median(store) if store_pid else None


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.spreadsheets", description=__doc__.split("\n\n")[0])
    parser.add_argument("--volunteers", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    city = reference.load(None)
    with bench_store() as (mongo_url, described, store_pid):
        print(f"Store: {described}", flush=True)
        databases = bench_databases(("hours",))
        settings = Settings.from_env("hours", env={
            "MONGO_URL": mongo_url, **databases, "WOODPECKER_JWT_SECRET": DEV_JWT_SECRET,
            "WOODPECKER_ALLOW_DEV_SECRET": "1", "WOODPECKER_RATE_LIMIT_WRITES": "off",
            "WOODPECKER_RATE_LIMIT_UPLOADS": "off", "WOODPECKER_RATE_LIMIT_PER_IP": "off"})
        try:
            app = create_app(settings)
            store: HoursStore = app.extensions["hours"].store
            print(f"  loading {args.volunteers:,} volunteers", flush=True)
            load(store, Scale(args.volunteers, args.volunteers * ENTRIES_PER_VOLUNTEER), list(city.grids))
            client = app.test_client()
            token = {"Authorization": f"Bearer {issue_token(DEV_JWT_SECRET, 'bench-volunteer', 'volunteer')}"}
            first = client.get(PATH, headers=token)
            assert first.status_code == 200, first.status_code
            rows = store.year_totals.count_documents({"year": YEAR})
            print(f"  the workbook: {rows:,} rows, {len(first.data) / 1024:,.0f} KiB", flush=True)
            workbooks = app.extensions["spreadsheets"].workbooks
            cases = {
                "built (nothing stored)": (lambda: client.get(PATH, headers=token),
                                           lambda: workbooks.delete_many({})),
                "served as stored": (lambda: client.get(PATH, headers=token), lambda: None),
                "304 (If-None-Match)": (lambda: client.get(PATH, headers={**token,
                                                                          "If-None-Match": first.headers["ETag"]}),
                                        lambda: None),
            }
            client.get(PATH, headers=token)
            print(f"\n| {PATH} | wall ms | web process CPU ms | store CPU ms |\n|---|---|---|---|")
            for name, (request, before) in cases.items():
                wall, own, store_ms = timed(request, before, args.repeat, store_pid)
                store_text = f"{store_ms:.0f}" if store_ms is not None else "n/a (MongoDB)"
                print(f"| {name} | {wall:.0f} | {own:.0f} | {store_text} |", flush=True)
        finally:
            drop_databases(mongo_url, databases)


if __name__ == "__main__":
    main()
