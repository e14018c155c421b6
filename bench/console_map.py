"""The console's map with 5,000 open cases: how long from navigation until it is interactive, in headless Chromium.

`make up` (deploy/local.py) runs the system with the console, in a run directory, a RabbitMQ vhost and databases of
the bench's own (bench.harness); the bench writes the open cases straight into routing's database, in the shape
CaseStore writes them (bench.queries.stored_case, from the domain's own open_case), spread over the demo city's
grid cells with deadlines of every kind (running, due soon, overdue). Then Debian's Chromium, headless, signs in
through the office's link and opens /map again and again; each run prints

- drawn: from the navigation's start until routing's points are on the map (markers and clusters in the DOM);
- click: from a click on the first marker or cluster (dispatched and timed in the page) until the map has answered
  it (it has begun zooming into the cluster, or the cluster is gone, or the case's page is open);
- interactive: the two together: the issue's "interactive within 1.5 s" (target ≤ 1,500 ms).

The first run loads the console with an empty browser cache; the median is over the later runs. It prints figures
and asserts nothing.

    python -m bench.console_map [--cases 5000] [--runs 5]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pymongo

from bench.harness import bench_store, bench_vhost, drop_databases, service_env
from bench.queries import City, stored_case
from deploy.embedded_db import free_port
from services.routing import domain as routing
from shared import reference

SERVICES = ("intake", "routing", "hours", "notify")
CHROMIUM = "/usr/bin/chromium"
LINK = re.compile(r"^\s+(office|department|grid leader)\s+(http://\S+)$", re.MULTILINE)
TARGET_MS = 1_500
SEED = 20261207
TIMEOUT_MS = 30_000


def open_cases(count: int, now: datetime) -> list[dict]:
    """`count` open cases over the demo city's grid cells, as CaseStore stores them: most dispatched or accepted
    with deadlines from 2 days overdue to 5 days ahead, some awaiting triage, some rectified."""
    data = reference.load(None)
    city = City.of(data, routing.default_rules(data.categories.values()))
    rng = random.Random(SEED)
    grids, categories = list(data.grids.values()), list(data.categories)
    documents = []
    for number in range(count):
        grid = rng.choice(grids)
        lat, lng = city.point_in(grid, rng)
        category = rng.choice(categories)
        report = {"id": f"bench-map-{number:06d}", "category": category, "grid_id": grid.id,
                  "district": grid.district, "location": {"lat": lat, "lng": lng}, "description": "巡访发现的问题",
                  "photo_ids": []}
        opened_at = now - timedelta(hours=rng.uniform(1, 24 * 20))
        rule = routing.match_rule(city.rules, category, grid.district)
        case = routing.open_case(f"case-{report['id']}", report, rule, city.clock, opened_at).case
        if case["status"] == routing.DISPATCHED:
            due_at = now + timedelta(hours=rng.uniform(-48, 120))
            status = rng.choices([routing.DISPATCHED, routing.ACCEPTED, routing.RECTIFIED], [5, 4, 1])[0]
            case = {**case, "status": status, "due_at": due_at, "overdue": due_at <= now}
        documents.append(stored_case({**case, "version": 1}))
    return documents


def local(command: str, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deploy.local", command], env=env, capture_output=True, text=True,
                          timeout=timeout)


@contextlib.contextmanager
def running_system(mongo_url: str, amqp_url: str, run_dir: Path, drop: bool
                   ) -> Iterator[tuple[str, str, dict[str, str]]]:
    """`make up` with the console on free ports; (console URL, routing's database name, sign-in links). The
    databases are dropped afterwards when `drop` (the operator's MongoDB; an embedded one goes as a whole)."""
    databases = {f"{service.upper()}_DATABASE": f"bench_map_{service}_{uuid.uuid4().hex[:8]}" for service in SERVICES}
    env = service_env(mongo_url, amqp_url, databases)
    env.update({f"{service.upper()}_PORT": str(free_port()) for service in SERVICES})
    env.update(WOODPECKER_RUN_DIR=str(run_dir), WOODPECKER_CONSOLE="on", CONSOLE_PORT=str(free_port()),
               WOODPECKER_ADMISSION_BACKLOG="0")
    env.pop("CONSOLE_TILE_URL", None)  # offline: the grid cells are the base, as the map is by default
    started = local("up", env)
    try:
        if started.returncode != 0:
            raise SystemExit(f"make up failed:\n{started.stdout[-3000:]}\n{started.stderr[-3000:]}")
        links = dict(LINK.findall(started.stdout))
        if "office" not in links:
            raise SystemExit(f"make up printed no sign-in link for the office (is Node.js there?):\n{started.stdout}")
        yield f"http://127.0.0.1:{env['CONSOLE_PORT']}", databases["ROUTING_DATABASE"], links
    finally:
        local("down", env, timeout=120)
        if drop:
            drop_databases(mongo_url, databases)


def measure(page, base: str, trace: bool = False) -> tuple[float, float, int, float]:
    """(ms from navigation until drawn, ms from a click until handled, markers and clusters drawn, ms from navigation
    until routing's points had all arrived)."""
    answered: list[float] = []

    def finished(request) -> None:
        if "/v1/cases/points" in request.url:
            answered.append(time.perf_counter())

    page.on("requestfinished", finished)
    start = time.perf_counter()
    page.goto(f"{base}/map", wait_until="commit")
    page.locator('[data-test="case-map"][data-ready="true"]').wait_for()
    page.locator(".leaflet-marker-icon").first.wait_for()
    drawn = time.perf_counter()
    if trace:
        print(page.evaluate("""() => performance.getEntriesByType('resource').map(e =>
            `  ${Math.round(e.startTime)}–${Math.round(e.responseEnd)} ms ${e.name.replace(/^https?:\\/\\/[^/]+/, '')}`
            ).join('\\n') + `\\n  drawn ${Math.round(performance.now())} ms`"""))
    icons = page.locator(".leaflet-marker-icon").count()
    # The click is dispatched and timed in the page (Playwright's own checks before a click are not the map's time).
    # Answered: the map has begun zooming into the cluster (Leaflet marks its pane for the animation), or the
    # cluster is gone, or the case's page is open.
    click = page.locator(".leaflet-marker-icon").first.evaluate("""(icon) => new Promise((resolve) => {
        const start = performance.now();
        const answered = () => !icon.isConnected || location.pathname.startsWith('/cases/')
            || document.querySelector('.leaflet-zoom-anim') !== null;
        const check = () => answered() ? resolve(performance.now() - start) : requestAnimationFrame(check);
        icon.click();
        check();
    })""")
    page.remove_listener("requestfinished", finished)
    return (drawn - start) * 1000, click, icons, ((answered or [drawn])[0] - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--trace", action="store_true", help="print when each request started and ended")
    arguments = parser.parse_args()
    if not os.path.exists(CHROMIUM):
        raise SystemExit(f"This bench drives Debian's Chromium at {CHROMIUM}: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with (bench_store() as store, bench_vhost() as (_, amqp_url),
          tempfile.TemporaryDirectory(prefix="woodpecker-bench-map-") as run_dir,
          running_system(store.url, amqp_url, Path(run_dir), store.server_pid is None) as (base, routing_db, links)):
        cases = open_cases(arguments.cases, datetime.now(UTC))
        client = pymongo.MongoClient(store.url)
        client[routing_db]["cases"].insert_many(cases, ordered=False)
        client.close()
        print(f"{len(cases):,} open cases in routing's store ({store.described}); console at {base}")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            page = browser.new_context(viewport={"width": 1366, "height": 900}, locale="zh-CN").new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(links["office"])
            page.locator('[data-test="triage-table"]').wait_for()
            runs = []
            for run in range(arguments.runs):
                drawn, click, icons, answered = measure(page, base, arguments.trace)
                runs.append((drawn, click))
                cache = "empty cache" if run == 0 else "warm cache"
                print(f"run {run + 1} ({cache}): points arrived {answered:.0f} ms, drawn {drawn:.0f} ms "
                      f"({icons} markers and clusters), click handled {click:.0f} ms, "
                      f"interactive {drawn + click:.0f} ms", flush=True)
            browser.close()
        summarise(runs, len(cases))


def summarise(runs: list[tuple[float, float]], cases: int) -> None:
    later = runs[1:] or runs
    interactive = statistics.median(d + c for d, c in later)
    print(f"map with {cases:,} open cases, interactive (median of {len(later)} runs after the first): "
          f"{interactive:.0f} ms; drawn {statistics.median(d for d, _ in later):.0f} ms, click handled "
          f"{statistics.median(c for _, c in later):.0f} ms (target ≤ {TARGET_MS:,} ms); first run "
          f"{runs[0][0] + runs[0][1]:.0f} ms")


if __name__ == "__main__":
    main()
