"""How long the console's triage queue and a case page take to render once their data has arrived (issue 28:
within 300 ms), in headless Chromium against the system as `make up` runs it.

The system: `make up` (deploy/local.py) with the console, on free ports, with an embedded database per
service of the bench's own (or MONGO_URL) and a RabbitMQ vhost of its own (bench/harness.py), stopped
with `make down` at the end. The queue is filled through the public APIs as volunteers, the office and a
department fill it: TRIAGE_NEW reports no rule covers (each with its own photo, a realistic phone JPEG)
and TRIAGE_DISPUTED cases a department disputed, so the office's first page is full (50 rows, a thumbnail
each); and one case with REPORTS_ON_CASE reports of one spot, a long timeline (disputed, re-dispatched,
accepted, an extension asked and granted, rectified with after-photos, sent back for rework, rectified
again) and before and after photos side by side.

Debian's Chromium (playwright, `executable_path=/usr/bin/chromium`) signs in with the office's link that
`make up` prints, then opens /triage and /cases/{id} `--runs` times each (a fresh page load each time; one
untimed load first). The views set two marks in the page's performance timeline (src/perf.ts):
`woodpecker:<view>:data` when their data is in the view's state and `woodpecker:<view>:rendered` after
Vue has patched the DOM with it, at the next animation frame. The time counted runs from the end of the
last API response the view waited for (Resource Timing's responseEnd of the list or the case, and of the
city's reference data: departments, categories, grids) to the rendered mark, so it holds the JSON
parsing, the store's update and the render. The case page's reports (one `GET /v1/reports/{id}` each,
asked once the case is in) are a second view, `case-reports`, timed the same way from the last of them.
Photos load after the render, each on its own once it comes near the screen; the time until every
thumbnail in view shows is printed too, for what it is. It prints figures and asserts nothing.

    python -m bench.console_render [--runs 20]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import requests
from PIL import Image

from bench.harness import ROOT, bench_databases, bench_stores, bench_vhost, service_env
from deploy.embedded_db import free_port
from services.intake.domain import GridMap
from shared import reference
from shared.auth import issue_token
from shared.config import DEV_JWT_SECRET
from shared.geo import DUPLICATE_RADIUS_M
from tests.support import wait_for

SERVICES = ("intake", "routing", "hours", "notify")
CHROMIUM = "/usr/bin/chromium"
DESKTOP = {"width": 1366, "height": 900}
LINK = re.compile(r"^\s+(office|department|grid leader)\s+(http://\S+)$", re.MULTILINE)
TARGET_MS = 300
TRIAGE_NEW = 50
TRIAGE_DISPUTED = 3
REPORTS_ON_CASE = 4
DEPARTMENT = "traffic-police"
ROUTED_CATEGORY = "traffic.parking"  # the rules send it to DEPARTMENT
UNROUTED_CATEGORY = "other"  # no rule: it waits for the office
SPOT = {"lat": 35.0612, "lng": 118.3158, "address": "金雀山路与沂蒙路交叉口"}
# The API requests each view waits for before it renders (Resource Timing names are full URLs).
NEEDS = {"triage": (r"/v1/cases\?", r"/v1/departments$", r"/v1/categories$", r"/v1/grids$"),
         "case": (r"/v1/cases/case-[^/?]+$", r"/v1/departments$", r"/v1/categories$", r"/v1/grids$"),
         "case-reports": (r"/v1/reports/[^/?]+$",)}
SEED = 20261207


# --- the system -----------------------------------------------------------------------------------

def local(command: str, env: dict[str, str], timeout: float) -> str:
    done = subprocess.run([sys.executable, "-m", "deploy.local", command], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(f"make {command} failed:\n{done.stdout[-5000:]}\n{done.stderr[-5000:]}")
    return done.stdout


@contextlib.contextmanager
def running_system() -> Iterator[tuple[dict[str, str], str, dict[str, str], str]]:
    """`make up` with the console on free ports; (each service's URL, the console's, the sign-in links, what
    it runs on). `make down` at the end, whatever happens."""
    with bench_stores(SERVICES) as stores, bench_vhost() as (_, amqp_url), \
            tempfile.TemporaryDirectory(prefix="woodpecker-bench-run-") as run_dir:
        ports = {service: free_port() for service in SERVICES}
        env = {**service_env(stores.urls, amqp_url, bench_databases(SERVICES)),
               **{f"{service.upper()}_PORT": str(port) for service, port in ports.items()},
               "WOODPECKER_RUN_DIR": run_dir, "WOODPECKER_CONSOLE": "on", "CONSOLE_PORT": str(free_port())}
        try:
            printed = local("up", env, timeout=900)
            links = dict(LINK.findall(printed))
            if set(links) != {"office", "department", "grid leader"}:
                raise SystemExit(f"make up printed no sign-in links (is Node.js there?):\n{printed}")
            yield ({s: f"http://127.0.0.1:{p}" for s, p in ports.items()}, f"http://127.0.0.1:{env['CONSOLE_PORT']}",
                   links, stores.described)
        finally:
            local("down", env, timeout=180)


# --- the queue and the case, through the APIs ----------------------------------------------------

def bearer(role: str, sub: str, **claims) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(DEV_JWT_SECRET, sub, role, **claims)}"}


OFFICE = bearer("office", "office-1")
POLICE = bearer("department", "police-1", dept=DEPARTMENT)


def phone_photo(rng: random.Random) -> bytes:
    """A JPEG of a phone photo's weight after the app's downscaling (1280 x 960, 150-250 KB): noisy, so that it
    does not compress to nothing."""
    small = Image.frombytes("RGB", (160, 120), rng.randbytes(160 * 120 * 3))
    out = io.BytesIO()
    small.resize((1280, 960), Image.Resampling.BILINEAR).save(out, "JPEG", quality=85)
    return out.getvalue()


def uploaded(intake: str, headers: dict, rng: random.Random) -> str:
    answer = requests.post(f"{intake}/v1/photos", headers=headers, timeout=30,
                           files={"file": ("photo.jpg", phone_photo(rng), "image/jpeg")})
    answer.raise_for_status()
    return answer.json()["id"]


def submitted(urls: dict, category: str, location: dict, description: str, rng: random.Random) -> str:
    """A volunteer's report with its photo; returns the report's id."""
    volunteer = bearer("volunteer", f"vol-{rng.randrange(1000, 9999)}")
    photo_id = uploaded(urls["intake"], volunteer, rng)
    answer = requests.post(f"{urls['intake']}/v1/reports", headers=volunteer, timeout=30, json={
        "category": category, "description": description, "location": location, "photo_ids": [photo_id]})
    answer.raise_for_status()
    return answer.json()["id"]


def case_of(urls: dict, report_id: str) -> dict:
    """The case routing opened (or joined) for the report, once it has."""
    def found() -> dict | None:
        answer = requests.get(f"{urls['intake']}/v1/reports/{report_id}", headers=OFFICE, timeout=10).json()
        if not answer.get("case_id"):
            return None
        return requests.get(f"{urls['routing']}/v1/cases/{answer['case_id']}", headers=OFFICE, timeout=10).json()

    return wait_for(found, timeout=60, what=f"the case of report {report_id}")


def command(urls: dict, case_id: str, path: str, headers: dict, body: dict | None = None) -> dict:
    answer = requests.post(f"{urls['routing']}/v1/cases/{case_id}/{path}", headers=headers, json=body, timeout=30)
    if answer.status_code != 200:
        raise SystemExit(f"POST {path} on {case_id}: {answer.status_code} {answer.text}")
    return answer.json()


def spread_points(count: int, rng: random.Random) -> list[dict]:
    """Points in the city's grids, each further than the duplicate radius from the others (so each opens a case)."""
    grids = reference.load(None).grids
    grid_map = GridMap(grids)
    boxes = [[(c[1], c[0]) for c in grid.geometry["coordinates"][0]] for grid in grids.values()]
    points: list[tuple[float, float]] = []
    apart = 2 * DUPLICATE_RADIUS_M / 111_000  # degrees of latitude, and more than enough of longitude here
    while len(points) < count:
        corners = rng.choice(boxes)
        lat = rng.uniform(min(c[0] for c in corners), max(c[0] for c in corners))
        lng = rng.uniform(min(c[1] for c in corners), max(c[1] for c in corners))
        if grid_map.locate(lat, lng) and all(math.dist((lat, lng), p) > apart for p in points):
            points.append((round(lat, 6), round(lng, 6)))
    return [{"lat": lat, "lng": lng, "address": None} for lat, lng in points]


def fill_the_queue(urls: dict, rng: random.Random) -> None:
    """TRIAGE_NEW new cases no rule covers, and TRIAGE_DISPUTED a department sent back."""
    points = spread_points(TRIAGE_NEW + TRIAGE_DISPUTED, rng)
    reports = [submitted(urls, UNROUTED_CATEGORY, point, f"路边私设地桩、占用公共空间（第 {n + 1} 处）", rng)
               for n, point in enumerate(points[:TRIAGE_NEW])]
    for n, point in enumerate(points[TRIAGE_NEW:]):
        case = case_of(urls, submitted(urls, ROUTED_CATEGORY, point, f"机动车占用人行道停放（第 {n + 1} 辆）", rng))
        command(urls, case["id"], "dispute", POLICE, {"reason": "该路段属城管执法范围，非交警职责"})
    for report_id in reports:
        case_of(urls, report_id)


def the_long_case(urls: dict, rng: random.Random) -> str:
    """One spot reported REPORTS_ON_CASE times, and its case taken through a long loop; returns its id."""
    first = submitted(urls, ROUTED_CATEGORY, SPOT, "机动车长期占用盲道停放，行人只能走机动车道", rng)
    case_id = case_of(urls, first)["id"]
    for n in range(1, REPORTS_ON_CASE):
        nearby = {**SPOT, "lat": SPOT["lat"] + n * 0.00005}
        report_id = submitted(urls, ROUTED_CATEGORY, nearby, f"同一地点再次发现违停（第 {n + 1} 次）", rng)
        wait_for(lambda r=report_id: case_of(urls, r)["id"] == case_id, timeout=60, what="the report joining the case")
    command(urls, case_id, "dispute", POLICE, {"reason": "盲道属市政设施，请转市政"})
    command(urls, case_id, "dispatch", OFFICE, {"department": DEPARTMENT, "note": "违停由交警处理，盲道由市政另案"})
    command(urls, case_id, "accept", POLICE)
    command(urls, case_id, "extension", POLICE, {"hours": 24, "reason": "需协调拖车，车主联系不上"})
    command(urls, case_id, "extension/decision", OFFICE, {"approved": True, "note": "同意延期一天"})
    after = [uploaded(urls["intake"], POLICE, rng) for _ in range(2)]
    command(urls, case_id, "rectify", POLICE, {"note": "已拖移违停车辆并张贴告示", "photo_ids": after})
    command(urls, case_id, "verify", OFFICE, {"passed": False, "note": "复查时又有车辆停放，请设置隔离桩"})
    again = [uploaded(urls["intake"], POLICE, rng) for _ in range(2)]
    command(urls, case_id, "rectify", POLICE, {"note": "已设置隔离桩三处，现场无违停", "photo_ids": again})
    return case_id


# --- the browser ---------------------------------------------------------------------------------

# In the page: the marks, and the end of the last response the view waited for (same clock).
TIMINGS = """([view, needs]) => {
  const mark = (name) => performance.getEntriesByName(`woodpecker:${view}:${name}`, "mark")[0]?.startTime ?? null;
  const waited = performance.getEntriesByType("resource")
    .filter((e) => e.initiatorType === "fetch" && needs.some((n) => new RegExp(n).test(e.name)));
  return { data: mark("data"), rendered: mark("rendered"), responses: waited.length,
           lastResponse: Math.max(...waited.map((e) => e.responseEnd)) };
}"""


def rendered(page, view: str) -> dict:
    page.wait_for_function("(name) => performance.getEntriesByName(name, 'mark').length > 0",
                           arg=f"woodpecker:{view}:rendered")
    return page.evaluate(TIMINGS, [view, list(NEEDS[view])])


def thumbnails_shown_at(page) -> float:
    """When every thumbnail in view shows (the console fetches a photo once it comes near the screen)."""
    page.wait_for_function("""() => {
      const photos = [...document.querySelectorAll('[data-test="triage-table"] .photo')]
        .filter((photo) => photo.getBoundingClientRect().top < window.innerHeight);
      return photos.length > 0 && photos.every((photo) => photo.querySelector('img[src^="blob:"]'));
    }""", timeout=60_000)
    return page.evaluate("() => performance.now()")


def measure(page, url: str, views: tuple[str, ...], runs: int) -> dict[str, list[float]]:
    """Per view: ms from its last response to its rendered mark, and from its data mark; one untimed load first."""
    spent: dict[str, list[float]] = {}
    for run in range(runs + 1):
        page.goto(url)
        for view in views:
            timing = rendered(page, view)
            if run == 0:
                continue
            after_response = timing["rendered"] - timing["lastResponse"]
            spent.setdefault(f"{view}: last response -> rendered", []).append(after_response)
            spent.setdefault(f"{view}: data in state -> rendered", []).append(timing["rendered"] - timing["data"])
            if view == "triage":
                spent.setdefault("triage: last response -> thumbnails in view shown", []).append(
                    thumbnails_shown_at(page) - timing["lastResponse"])
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="timed page loads per view")
    args = parser.parse_args()
    # Stopped with SIGTERM, it still runs `make down` and deletes its vhost on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise SystemExit(f"This bench drives Debian's Chromium at {CHROMIUM}: apt-get install chromium")
    rng = random.Random(SEED)
    prefix = "MONGO_URL=$MONGO_URL " if os.environ.get("MONGO_URL") else ""
    print(f"Reproduce: cd {ROOT} && {prefix}.venv/bin/python -m bench.console_render --runs {args.runs}")
    with running_system() as (urls, base, links, described):
        print(f"Store: {described}", flush=True)
        fill_the_queue(urls, rng)
        case_id = the_long_case(urls, rng)
        queue = requests.get(f"{urls['routing']}/v1/cases", headers=OFFICE, timeout=10,
                             params={"status": "pending_triage", "order": "oldest", "limit": 50}).json()["items"]
        case = requests.get(f"{urls['routing']}/v1/cases/{case_id}", headers=OFFICE, timeout=10).json()
        print(f"The queue's first page: {len(queue)} cases, {sum(len(c['photo_ids']) for c in queue)} thumbnails; "
              f"the case {case_id}: {len(case['report_ids'])} reports, {len(case['history'])} timeline entries, "
              f"{len(case['photo_ids'])} before- and {len(case['after_photo_ids'])} after-photos", flush=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
            page = context.new_page()
            page.set_default_timeout(30_000)
            page.goto(links["office"])  # signs the tab in
            page.wait_for_url(f"{base}/triage")
            results = measure(page, f"{base}/triage", ("triage",), args.runs)
            results |= measure(page, f"{base}/cases/{case_id}", ("case", "case-reports"), args.runs)
            browser.close()
    print(f"\n{'what':<50}{'median ms':>11}{'max ms':>9}   (of {args.runs} page loads each; target {TARGET_MS} ms)")
    for name, times in results.items():
        print(f"{name:<50}{statistics.median(times):>11.1f}{max(times):>9.1f}")


if __name__ == "__main__":
    main()
