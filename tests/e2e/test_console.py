"""The staff console (clients/console) as `make up` serves it, against the system it starts.

Its own logic (vitest) and its type check against types freshly generated from the running services' documents;
then Debian's Chromium, headless, driven by Playwright: the loop through the screen (triage, dispatch, accept,
rectify with an uploaded after-photo, verify), a department opening another department's case, the sign-in
pages, the keyboard, and axe-core on every route. Each test saves a screenshot of each route it opens under
.run/screenshots/ (look at them: that is what a person sees).

Needs Node.js 20.19+ with npm (make up builds the console) and Chromium at /usr/bin/chromium, which this module
installs from Debian's packages when it runs as root, and otherwise skips, saying how to install it.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from PIL import Image

from deploy import console as console_build
from shared.auth import issue_token
from tests.conftest import TEST_JWT_SECRET
from tests.e2e.conftest import running_system, system_env
from tests.support import wait_for

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
CONSOLE = console_build.CONSOLE
SCREENSHOTS = ROOT / ".run" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
# Chromium, and a Chinese font for the screenshots to be read (the console is Chinese first).
DEBIAN_PACKAGES = ("chromium", "fonts-wqy-microhei")
DESKTOP = {"width": 1366, "height": 900}
TABLET = {"width": 800, "height": 1100}  # the department's views work at tablet width
LANSHAN_01 = {"lat": 35.060, "lng": 118.315, "address": "金雀山路与沂蒙路交叉口"}
HEDONG_03 = {"lat": 35.100, "lng": 118.395, "address": "沂河路"}
LINK = re.compile(r"^\s+(office|department|grid leader)\s+(http://\S+)$", re.MULTILINE)
TIMEOUT_MS = 60_000  # generous: a wait costs time only when something is wrong, and CI shares two cores


# --- the system, the browser ------------------------------------------------------------------

def chromium() -> str:
    """Debian's Chromium: installed here when it is missing and this runs as root, else the test skips."""
    if not CHROMIUM.exists() and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", *DEBIAN_PACKAGES]
        if subprocess.run(install, env=env, capture_output=True, timeout=900).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
            subprocess.run(install, env=env, capture_output=True, timeout=900)
    if not CHROMIUM.exists():
        pytest.skip("The console's browser tests drive Debian's Chromium at /usr/bin/chromium, which is missing; "
                    f"install it as root: `apt-get install {' '.join(DEBIAN_PACKAGES)}` (make test does so itself "
                    "when it runs as root).")
    return str(CHROMIUM)


@pytest.fixture(scope="module")
def system(amqp_url, mongo_url, tmp_path_factory):
    """`make up` with the console; (each service's URL, the console's URL, the sign-in link of each role)."""
    env, urls = system_env(amqp_url, mongo_url, tmp_path_factory.mktemp("run"), "console")
    env["WOODPECKER_CONSOLE"] = "on"
    with running_system(env) as printed:
        links = dict(LINK.findall(printed))
        assert set(links) == {"office", "department", "grid leader"}, f"make up printed no sign-in links:\n{printed}"
        yield urls, f"http://127.0.0.1:{env['CONSOLE_PORT']}", links


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def open_tab(browser) -> Iterator:
    """A new tab of a new browser profile (sessionStorage: each signs in on its own); closed after the test."""
    contexts = []

    def opened(viewport: dict = DESKTOP, **options):
        # Reduced motion: the console then shows dialogs and progress at once, and the screenshots show them settled.
        contexts.append(browser.new_context(viewport=viewport, locale="zh-CN", reduced_motion="reduce", **options))
        page = contexts[-1].new_page()
        page.set_default_timeout(TIMEOUT_MS)
        opened.pages.append(page)
        return page

    opened.pages = []  # what a failed test's report shows (tests/e2e/conftest.py)
    yield opened
    for context in contexts:
        context.close()


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def no_dialog(page) -> None:
    page.get_by_role("dialog").wait_for(state="hidden")


def token(role: str, sub: str, ttl: timedelta = timedelta(hours=1), **claims) -> str:
    return issue_token(TEST_JWT_SECRET, sub, role, ttl=ttl, **claims)


# --- what a volunteer submits through the API ---------------------------------------------------

def jpeg(color: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (640, 480), color).save(out, "JPEG")
    return out.getvalue()


def submitted_case(urls: dict, category: str, location: dict, description: str) -> dict:
    """A report through intake, and the case routing opens for it."""
    volunteer = {"Authorization": f"Bearer {token('volunteer', f'vol-{uuid.uuid4().hex[:6]}')}"}
    photo = requests.post(f"{urls['intake']}/v1/photos", headers=volunteer, timeout=10,
                          files={"file": ("before.jpg", jpeg("darkorange"), "image/jpeg")})
    assert photo.status_code == 201, photo.text
    report = requests.post(f"{urls['intake']}/v1/reports", headers=volunteer, timeout=10, json={
        "category": category, "description": description, "location": location, "photo_ids": [photo.json()["id"]]})
    assert report.status_code == 201, report.text
    office = {"Authorization": f"Bearer {token('office', 'office-1')}"}

    def opened() -> dict | None:
        cases = requests.get(f"{urls['routing']}/v1/cases?limit=200", headers=office, timeout=10).json()["items"]
        return next((c for c in cases if report.json()["id"] in c["report_ids"]), None)

    return wait_for(opened, timeout=30, what=f"a case for report {report.json()['id']}")


def case_as_office(urls: dict, case_id: str) -> dict:
    office = {"Authorization": f"Bearer {token('office', 'office-1')}"}
    return requests.get(f"{urls['routing']}/v1/cases/{case_id}", headers=office, timeout=10).json()


# --- the console's own checks ------------------------------------------------------------------

def npm(arguments: list[str], env: dict | None = None, timeout: int = 300) -> None:
    done = subprocess.run([shutil.which("npm") or "npm", *arguments], cwd=CONSOLE, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"npm {' '.join(arguments)} failed:\n{done.stdout[-20000:]}\n{done.stderr[-5000:]}"


def test_the_consoles_own_logic_passes_its_unit_tests(system):
    console_build.npm_install()
    npm(["run", "--silent", "test"])


def test_the_console_type_checks_against_types_generated_from_the_running_services(system):
    urls, _, _ = system
    console_build.npm_install()
    env = {**os.environ, **{f"{service.upper()}_URL": url for service, url in urls.items()}}
    npm(["run", "--silent", "generate"], env=env)
    npm(["run", "--silent", "check"])


# --- through the screen --------------------------------------------------------------------------

def test_the_loop_through_the_screen(system, open_tab):
    urls, base, links = system
    case = submitted_case(urls, "other", LANSHAN_01, "路边有人私设地桩占用公共车位")
    case_id = case["id"]
    assert case["status"] == "pending_triage"

    # The office: the case waits in its triage queue; it dispatches it to the traffic police.
    office = open_tab()
    office.goto(links["office"])
    dispatch = office.locator(f'[data-test="dispatch-{case_id}"]')
    dispatch.wait_for()
    assert office.url == f"{base}/triage", "the token stays out of the address bar"
    assert office.locator('[data-test="triage-table"] img').first.get_attribute("src").startswith("blob:")
    shot(office, "loop-1-office-triage")
    dispatch.click()
    office.locator('.el-dialog [data-test="department"]').click()
    office.locator(".el-select-dropdown__item", has_text="交警支队").click()
    office.locator(".el-select-dropdown").wait_for(state="hidden")
    shot(office, "loop-2-office-dispatch-dialog")
    office.locator('[data-test="dispatch-submit"]').click()
    dispatch.wait_for(state="detached")
    assert case_as_office(urls, case_id)["department"] == "traffic-police"

    # The department, at tablet width: accepts the case, then rectifies it with an after-photo it uploads.
    department = open_tab(TABLET)
    department.goto(links["department"])
    department.locator(f'a[href="/cases/{case_id}"]').first.click()
    department.locator('[data-test="action-accept"]').click()
    department.locator('[data-test="action-submit"]').click()
    department.locator('[data-test="case-status"]', has_text="处置中").wait_for()
    department.locator('[data-test="action-rectify"]').click()
    department.locator('.el-dialog textarea[data-test="text"]').fill("已拆除地桩，恢复公共车位")
    department.locator('[data-test="photo-input"]').set_input_files(
        files=[{"name": "after.jpg", "mimeType": "image/jpeg", "buffer": jpeg("seagreen")}])
    department.locator(".el-dialog .el-progress.is-success").wait_for()
    shot(department, "loop-3-department-rectify-dialog")
    department.locator('[data-test="action-submit"]').click()
    department.locator('[data-test="case-status"]', has_text="待复核").wait_for()
    department.locator('[data-test="after-photos"] img').wait_for()
    no_dialog(department)
    shot(department, "loop-4-department-case-rectified")
    assert case_as_office(urls, case_id)["status"] == "rectified"

    # The office checks the fix and closes the case; the page shows it closed, with its whole timeline.
    office.goto(f"{base}/cases/{case_id}")
    office.locator('[data-test="action-verify"]').click()
    office.locator('.el-dialog textarea[data-test="text"]').fill("现场复核，地桩已拆除")
    office.locator('[data-test="action-submit"]').click()
    office.locator('[data-test="case-status"]', has_text="已结案").wait_for()
    timeline = office.locator('[data-test="timeline"]').inner_text()
    for step in ("立案", "派遣", "接收", "整改反馈", "复核通过，结案", "office:office-1", "department:police-1",
                 "已拆除地桩，恢复公共车位", "现场复核，地桩已拆除"):
        assert step in timeline, step
    assert office.locator('[data-test="action-verify"]').count() == 0
    no_dialog(office)
    shot(office, "loop-5-office-case-closed")
    assert case_as_office(urls, case_id)["status"] == "closed"


def test_bulk_dispatch_of_a_disputed_case_and_a_new_one_and_the_bell_that_told_of_the_dispute(system, open_tab):
    urls, base, links = system
    disputed = submitted_case(urls, "traffic.parking", {"lat": 35.10, "lng": 118.315}, "学校门口家长接送车辆占道")
    police = {"Authorization": f"Bearer {token('department', 'police-1', dept='traffic-police')}"}
    answer = requests.post(f"{urls['routing']}/v1/cases/{disputed['id']}/dispute", headers=police, timeout=10,
                           json={"reason": "车辆停在小区内部道路，不属于交警职责"})
    assert answer.status_code == 200, answer.text
    new = submitted_case(urls, "other", {"lat": 35.10, "lng": 118.425}, "广场喷泉长期停用，池内积水发臭")
    office = open_tab()
    office.goto(links["office"])
    rows = {case["id"]: office.locator(".el-table__row", has_text=case["id"]) for case in (disputed, new)}
    for row in rows.values():
        row.wait_for()
    assert "police-1 退回：车辆停在小区内部道路，不属于交警职责" in rows[disputed["id"]].inner_text()
    assert "交警支队" in rows[disputed["id"]].inner_text(), "the rules' suggestion"
    # The office heard of the dispute: its bell counts the notice, and the notice opens the case.
    bell = office.get_by_role("button", name=re.compile("^通知"))
    wait_for(lambda: office.reload() or "未读" in (bell.get_attribute("aria-label") or ""), timeout=30,
             what="the dispute's notice counted by the bell")
    for row in rows.values():
        row.locator(".el-checkbox").click()
    shot(office, "bulk-1-office-triage-selected")
    office.locator('[data-test="bulk-dispatch"]').click()
    assert "所选案件的规则建议不同" in office.get_by_role("dialog").inner_text()
    office.locator('.el-dialog [data-test="department"]').click()
    office.locator(".el-select-dropdown__item", has_text="城市管理局").click()
    office.locator('[data-test="dispatch-submit"]').click()
    for row in rows.values():
        row.wait_for(state="detached")
    assert {case_as_office(urls, c["id"])["department"] for c in (disputed, new)} == {"urban-management"}
    bell.click()
    notice = office.locator(".notice", has_text="退回").first
    notice.wait_for()
    shot(office, "bulk-2-office-inbox")
    notice.click()
    office.wait_for_url(f"{base}/cases/{disputed['id']}")


def test_a_department_opening_another_departments_case_sees_a_not_found_page_and_none_of_it(system, open_tab):
    urls, base, _ = system
    description = "沂河路人行道违停车辆，请交警处理"
    case = submitted_case(urls, "traffic.parking", HEDONG_03, description)
    assert case["department"] == "traffic-police"
    sanitation = open_tab(TABLET)
    photos = []
    sanitation.on("request", lambda request: photos.append(request.url) if "/v1/photos/" in request.url else None)
    sanitation.goto(f"{base}/cases/{case['id']}#token={token('department', 'san-1', dept='sanitation')}")
    sanitation.get_by_role("heading", name="未找到").wait_for()
    assert f"案件 {case['id']} 不存在，或不在您的权限范围内" in sanitation.content()
    page = sanitation.content()
    for secret in (description, "交警支队", "沂河路", case["photo_ids"][0]):
        assert secret not in page, secret
    assert photos == []
    shot(sanitation, "other-department-case-not-found")


@pytest.mark.parametrize("why, link_token, title", [
    ("expired", lambda: token("office", "office-1", ttl=timedelta(seconds=-5)), "登录已过期"),
    ("missing", lambda: "", "请先登录"),
    ("invalid", lambda: "not-a-jwt", "登录链接无效"),
    ("not-staff", lambda: token("volunteer", "vol-1"), "此工作台仅供工作人员使用"),
])
def test_a_tab_without_a_usable_token_gets_a_page_that_says_why(system, open_tab, why, link_token, title):
    _, base, _ = system
    page = open_tab()
    fragment = f"#token={link_token()}" if link_token() else ""
    page.goto(f"{base}/cases/some-case{fragment}")
    page.get_by_role("heading", name=title).wait_for()
    assert "token=" not in page.url and "/sign-in" in page.url
    shot(page, f"sign-in-{why}")


def test_a_role_a_route_does_not_serve_gets_a_forbidden_state(system, open_tab):
    _, base, links = system
    page = open_tab(TABLET)
    page.goto(links["grid leader"].replace("/cases#", "/triage#"))
    page.get_by_role("heading", name="无权访问").wait_for()
    shot(page, "grid-leader-triage-forbidden")


def test_the_triage_queue_works_by_keyboard(system, open_tab):
    urls, _, links = system
    case = submitted_case(urls, "other", {"lat": 35.045, "lng": 118.305}, "公园门口共享单车乱停放堵塞出入口")
    page = open_tab()
    page.goto(links["office"])
    page.locator(f'[data-test="dispatch-{case["id"]}"]').wait_for()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    for _ in range(120):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.test") == f"dispatch-{case['id']}":
            break
    else:
        pytest.fail("Tab never reached the case's dispatch button")
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    assert "规则建议" in dialog.inner_text() or "没有适用的分拨规则" in dialog.inner_text()
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")


def axe_violations(page) -> list[dict]:
    """axe-core's serious and critical violations on the page as it stands."""
    page.add_script_tag(path=str(CONSOLE / "node_modules" / "axe-core" / "axe.min.js"))
    found = page.evaluate("""async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
        .map(v => ({id: v.id, impact: v.impact, help: v.help,
                    nodes: v.nodes.slice(0, 5).map(n => n.target.join(" "))}))""")
    return [v for v in found if v["impact"] in ("serious", "critical")]


def test_axe_finds_no_serious_or_critical_violation_on_any_route(system, open_tab):
    urls, base, links = system
    case = submitted_case(urls, "traffic.parking", {"lat": 35.06, "lng": 118.345}, "商场门口机动车占用消防通道")
    waiting = submitted_case(urls, "other", {"lat": 35.10, "lng": 118.345}, "河堤步道护栏缺失，存在安全隐患")
    assert waiting["status"] == "pending_triage"
    routes = [  # (who, width, where, what shows it is ready, the screenshot's name)
        ("office", DESKTOP, links["office"], '[data-test="triage-table"] img', "office-triage"),
        ("office", DESKTOP, f"{base}/cases", '[data-test="cases-table"] a', "office-cases"),
        ("office", DESKTOP, f"{base}/cases/{case['id']}", '[data-test="timeline"]', "office-case"),
        ("department", TABLET, links["department"], '[data-test="cases-table"] a', "department-cases"),
        ("department", TABLET, f"{base}/cases/{case['id']}", '[data-test="action-accept"]', "department-case"),
        ("grid-leader", TABLET, links["grid leader"], '[data-test="cases-table"]', "grid-leader-cases"),
        ("department", TABLET, f"{base}/triage", "text=无权访问", "department-triage-forbidden"),
        ("nobody", DESKTOP, f"{base}/sign-in?reason=expired", "text=登录已过期", "sign-in-expired"),
        ("nobody", DESKTOP, f"{base}/no-such-page", "text=没有这个页面", "not-found"),
    ]
    tabs: dict[str, object] = {}
    found = {}
    for who, viewport, url, ready, name in routes:
        # CSP keeps scripts the console does not serve out of its pages; axe is injected past it.
        page = tabs.get(who) or tabs.setdefault(who, open_tab(viewport, bypass_csp=True))
        page.goto(url)
        page.locator(ready).first.wait_for()
        page.wait_for_load_state("networkidle")
        shot(page, f"axe-{name}")
        if violations := axe_violations(page):
            found[name] = violations
    assert not found, json.dumps(found, ensure_ascii=False, indent=1)


def test_the_office_merges_a_duplicate_from_the_triage_queue(system, open_tab):
    """Two reports of one problem, 330 m apart (beyond the automatic join's 250 m), both waiting in triage: the office
    merges one into the other, by keyboard from the triage queue; the merged case says where it went, and the
    other case holds both reports."""
    urls, base, links = system
    kept = submitted_case(urls, "other", {"lat": 35.052, "lng": 118.318, "address": "沂蒙路东侧人行道"},
                          "人行道上有废弃家具堆放，影响通行")
    duplicate = submitted_case(urls, "other", {"lat": 35.055, "lng": 118.318, "address": "沂蒙路东侧"},
                               "路边废弃沙发和柜子堆在人行道上")
    assert kept["id"] != duplicate["id"] and {kept["status"], duplicate["status"]} == {"pending_triage"}
    office = open_tab(bypass_csp=True)
    office.goto(links["office"])
    office.locator(f'[data-test="merge-{duplicate["id"]}"]').click()
    dialog = office.get_by_role("dialog")
    office.locator(f'[data-test="merge-target-{kept["id"]}"]').wait_for()
    assert "相距 334 米" in dialog.inner_text() or "相距 333 米" in dialog.inner_text()
    # By keyboard: the target found by its id, a note, and the merge confirmed.
    office.locator('input[data-test="merge-search"]').focus()
    office.keyboard.type(kept["id"])
    office.keyboard.press("Enter")
    office.locator(f'[data-test="merge-target-{kept["id"]}"].is-checked').wait_for()
    office.locator('textarea[data-test="merge-note"]').fill("同一处废弃家具堆放")
    assert f"案件 {duplicate['id']} 的上报与照片转入案件 {kept['id']}" in dialog.inner_text()
    shot(office, "merge-1-office-triage-dialog")
    violations = axe_violations(office)
    assert not violations, json.dumps(violations, ensure_ascii=False, indent=1)
    office.locator('[data-test="merge-submit"]').focus()
    office.keyboard.press("Enter")
    office.locator(f'[data-test="merge-{duplicate["id"]}"]').wait_for(state="detached")
    no_dialog(office)
    shot(office, "merge-2-office-triage-after")
    ended = case_as_office(urls, duplicate["id"])
    assert (ended["status"], ended["merged_into"]) == ("rejected", kept["id"])

    # The merged case's page says it was merged, and links to the case that took its reports.
    office.goto(f"{base}/cases/{duplicate['id']}")
    office.locator('[data-test="merged-into"]').wait_for()
    assert "合并重复案件" not in office.locator('[data-test="timeline"]').inner_text()
    assert "作为重复案件并入其他案件" in office.locator('[data-test="timeline"]').inner_text()
    assert office.locator('[data-test="action-merge"]').count() == 0
    office.wait_for_load_state("networkidle")
    shot(office, "merge-3-merged-case")
    violations = axe_violations(office)
    assert not violations, json.dumps(violations, ensure_ascii=False, indent=1)
    office.locator('[data-test="merged-into-link"]').click()
    office.wait_for_url(f"{base}/cases/{kept['id']}")
    reports = office.locator('[data-test="reports"] .report')
    wait_for(lambda: reports.count() == 2, timeout=60, what="both reports on the target's page")
    listed = office.locator('[data-test="reports"]').inner_text()
    assert "人行道上有废弃家具堆放" in listed and "路边废弃沙发和柜子堆在人行道上" in listed
    assert "合并重复案件" in office.locator('[data-test="timeline"]').inner_text()
    office.wait_for_load_state("networkidle")
    shot(office, "merge-4-target-case-with-both-reports")
# --- the map -------------------------------------------------------------------------------------

def test_a_submitted_report_appears_on_the_offices_map_and_a_click_opens_its_case(system, open_tab):
    urls, base, links = system
    case = submitted_case(urls, "env.garbage", {"lat": 35.088, "lng": 118.386, "address": "滨河大道"},
                          "绿化带内堆放建筑垃圾")
    office = open_tab()
    office.goto(links["office"])
    office.locator('[data-test="triage-table"]').wait_for()
    office.goto(f"{base}/map")
    office.locator('[data-test="case-map"][data-ready="true"]').wait_for()
    office.locator(".leaflet-marker-icon").first.wait_for()  # a marker or a cluster
    shot(office, "map-office")

    # Filtered through the address to the case's category and grid it stands alone, a marker to click.
    office.goto(f"{base}/map?category=env.garbage&grid_id={case['grid_id']}&period=7d")
    marker = office.locator(f'[data-case="{case["id"]}"]')
    marker.wait_for()
    office.locator(".filters").get_by_text("近 7 天").wait_for()  # the filter shows what the address says
    shot(office, "map-office-filtered")
    marker.click()
    office.wait_for_url(f"{base}/cases/{case['id']}")
    office.locator('[data-test="timeline"]').wait_for()

    # By keyboard: the marker is a button; Enter opens the case.
    office.go_back()
    marker.wait_for()
    office.locator(".leaflet-marker-icon", has=marker).focus()
    office.keyboard.press("Enter")
    office.wait_for_url(f"{base}/cases/{case['id']}")


def test_a_department_sees_only_its_own_cases_on_the_map_at_tablet_width(system, open_tab):
    urls, base, links = system
    theirs = submitted_case(urls, "env.garbage", {"lat": 35.047, "lng": 118.318, "address": "银雀山路"}, "垃圾桶满溢")
    own = submitted_case(urls, "traffic.parking", {"lat": 35.053, "lng": 118.322}, "小区门口车辆乱停")
    assert theirs["grid_id"] == own["grid_id"] and own["department"] == "traffic-police"
    page = open_tab(TABLET)
    page.goto(links["department"])  # the traffic police
    page.locator('[data-test="cases-table"]').wait_for()
    page.goto(f"{base}/map?grid_id={theirs['grid_id']}")
    page.locator(f'[data-case="{own["id"]}"]').wait_for()
    assert page.locator(f'[data-case="{theirs["id"]}"]').count() == 0
    shot(page, "map-department-tablet")


def test_axe_finds_no_serious_or_critical_violation_on_the_map(system, open_tab):
    urls, base, links = system
    submitted_case(urls, "traffic.parking", {"lat": 35.066, "lng": 118.352}, "人行道上停放机动车")
    page = open_tab(bypass_csp=True)
    page.goto(links["office"])
    page.locator('[data-test="triage-table"]').wait_for()
    page.goto(f"{base}/map")
    page.locator('[data-test="case-map"][data-ready="true"]').wait_for()
    page.locator(".leaflet-marker-icon").first.wait_for()
    page.wait_for_load_state("networkidle")
    shot(page, "map-axe-office")
    violations = axe_violations(page)
    assert not violations, json.dumps(violations, ensure_ascii=False, indent=1)


# --- the SLA board, the statistics and the grid's week (issue 28: /sla, /stats, /grids/{grid_id}/weekly) ---------

def closed_on_time(urls: dict, location: dict, description: str) -> dict:
    """A traffic-police case closed within its deadline, so this month's league tables have a figure."""
    case = submitted_case(urls, "traffic.parking", location, description)
    police = {"Authorization": f"Bearer {token('department', 'police-1', dept='traffic-police')}"}
    office = {"Authorization": f"Bearer {token('office', 'office-1')}"}
    routing = f"{urls['routing']}/v1/cases/{case['id']}"
    # An hour's deadline, so that it falls in this month (the league table's) unless the month ends within the hour.
    assert requests.post(f"{routing}/dispatch", headers=office, timeout=10,
                         json={"department": "traffic-police", "deadline_hours": 1}).ok
    assert requests.post(f"{routing}/accept", headers=police, timeout=10).ok
    photo = requests.post(f"{urls['intake']}/v1/photos", headers=police, timeout=10,
                          files={"file": ("after.jpg", jpeg("seagreen"), "image/jpeg")}).json()["id"]
    assert requests.post(f"{routing}/rectify", headers=police, timeout=10,
                         json={"note": "已拖移违停车辆", "photo_ids": [photo]}).ok
    assert requests.post(f"{routing}/verify", headers=office, timeout=10, json={"passed": True, "note": "复核通过"}).ok
    return case


def downloaded_workbook(page, button: str) -> tuple[str, bytes]:
    """Click `button` and take the file the page saves: its name and bytes."""
    with page.expect_download() as download:
        page.locator(button).click()
    saved = download.value
    return saved.suggested_filename, Path(saved.path()).read_bytes()


def test_the_statistics_page_draws_its_charts_and_the_league_table_downloads_as_xlsx(system, open_tab):
    urls, base, links = system
    closed_on_time(urls, {"lat": 35.052, "lng": 118.335}, "公交站台旁车辆违停，影响乘客上下车")
    page = open_tab()
    page.goto(links["office"].replace("/triage#", "/stats#"))
    charts = page.locator('[data-test="stats-chart"]')
    # An axis line has no height, so Playwright never calls it visible: the chart's paths are waited for in the DOM.
    charts.first.locator("svg path").first.wait_for(state="attached")
    assert charts.count() >= 3, "on-time rate, rework rate or hours, and the cases overdue now"
    on_time = charts.first
    # Drawn with data: axes, a line with its points, and the department's name in its legend.
    assert on_time.locator("svg path").count() > 5
    assert "交警支队" in on_time.text_content()
    league = page.locator('[data-test="stats-league"]')
    assert "交警支队" in league.inner_text() and "100%" in league.inner_text()
    shot(page, "stats-office-departments")
    name, workbook = downloaded_workbook(page, '[data-test="stats-xlsx"]')
    assert name.endswith(".xlsx") and name.startswith("department-league")
    assert len(workbook) > 1000 and workbook[:2] == b"PK", "an XLSX is a zip"
    page.get_by_role("status").filter(has_text=name).wait_for()

    page.locator('[data-test="stats-by-grid"]').click()
    page.wait_for_url(re.compile(r"/stats\?by=grid"))
    page.locator('[data-test="stats-league"]', has_text="金雀山街道一网格").wait_for()
    page.locator('[data-test="stats-chart"] svg path').first.wait_for(state="attached")
    shot(page, "stats-office-grids")
    name, workbook = downloaded_workbook(page, '[data-test="stats-xlsx"]')
    assert name.startswith("grid-league") and workbook[:2] == b"PK"


def test_the_sla_board_shows_an_overdue_case_to_the_office_and_a_due_one_to_its_department(system, open_tab):
    urls, base, links = system
    due = submitted_case(urls, "traffic.parking", {"lat": 35.075, "lng": 118.36}, "银行门口机动车长时间占道停放")
    assert due["department"] == "traffic-police"  # by rule, 24 hours: due soon from the start
    # The office gives a case a deadline that has passed within a second: overdue on the board at once.
    late = submitted_case(urls, "other", {"lat": 35.085, "lng": 118.30}, "小区门口垃圾桶满溢无人清运")
    office_headers = {"Authorization": f"Bearer {token('office', 'office-1')}"}
    dispatched = requests.post(f"{urls['routing']}/v1/cases/{late['id']}/dispatch", headers=office_headers,
                               timeout=10, json={"department": "community-affairs", "deadline_hours": 0.0001})
    assert dispatched.ok, dispatched.text
    due_at = datetime.fromisoformat(dispatched.json()["due_at"].replace("Z", "+00:00"))
    wait_for(lambda: datetime.now(UTC) > due_at, timeout=5, what="the deadline passed")
    office = open_tab()
    office.goto(links["office"].replace("/triage#", "/sla?department=community-affairs#"))
    office.get_by_role("heading", name="督办看板").wait_for()
    row = office.locator(".el-table__row", has_text=late["id"])
    row.wait_for()
    assert "超期" in row.inner_text()
    assert "级督办" in row.inner_text() or "未升级" in row.inner_text(), "its escalation level"
    shot(office, "sla-office-community-affairs")
    office.goto(f"{base}/sla")
    office.locator('[data-test="sla-department"]', has_text="街道社区事务办").wait_for()
    office.locator('[data-test="sla-department"]', has_text="交警支队").wait_for()
    shot(office, "sla-office")

    department = open_tab(TABLET)
    department.goto(links["department"].replace("/cases#", "/sla#"))
    department.get_by_role("heading", name=re.compile("^交警支队")).wait_for()
    assert department.locator('[data-test="sla-department"]').count() == 1, "its own row only"
    shot(department, "sla-department")


def test_a_grid_leader_reaches_their_grids_week_from_the_menu_and_downloads_it_as_xlsx(system, open_tab):
    urls, base, links = system
    submitted_case(urls, "traffic.parking", {"lat": 35.061, "lng": 118.318}, "金雀山路口电动车占用盲道")
    page = open_tab(TABLET)
    page.goto(links["grid leader"])
    page.get_by_role("menuitem", name="网格周报").click()
    page.wait_for_url(f"{base}/grids/lanshan-01/weekly")
    submitted = page.locator('[data-test="weekly-submitted"]')
    submitted.wait_for()
    assert int(submitted.inner_text()) >= 1
    assert "金雀山路口电动车占用盲道" in page.content(), "the report still open"
    shot(page, "weekly-grid-leader")
    name, workbook = downloaded_workbook(page, '[data-test="weekly-xlsx"]')
    assert re.fullmatch(r"weekly-lanshan-01-\d{4}-W\d{2}\.xlsx", name), name
    assert len(workbook) > 1000 and workbook[:2] == b"PK"

    # An earlier week: in the address, and its own workbook.
    page.get_by_role("button", name="上一周").click()
    page.wait_for_url(re.compile(r"/grids/lanshan-01/weekly\?week=\d{4}-W\d{2}$"))
    earlier = page.url.rsplit("=", 1)[1]
    page.locator('[data-test="weekly-submitted"]').wait_for()
    shot(page, "weekly-grid-leader-earlier-week")
    name, workbook = downloaded_workbook(page, '[data-test="weekly-xlsx"]')
    assert name == f"weekly-lanshan-01-{earlier}.xlsx" and workbook[:2] == b"PK"

    # Another grid's week is not theirs.
    page.goto(f"{base}/grids/hedong-03/weekly")
    page.get_by_role("alert").filter(has_text="无权").wait_for()
    shot(page, "weekly-grid-leader-other-grid")


def test_axe_finds_no_serious_or_critical_violation_on_the_sla_statistics_and_weekly_routes(system, open_tab):
    urls, base, links = system
    submitted_case(urls, "traffic.parking", {"lat": 35.058, "lng": 118.322}, "沂蒙路人行道机动车违停")
    grid_leader = links["grid leader"]
    routes = [  # (who, width, where, what shows it is ready, the screenshot's name)
        ("office", DESKTOP, links["office"].replace("/triage#", "/sla#"), '[data-test="sla-department"]', "office-sla"),
        ("office", DESKTOP, f"{base}/stats", '[data-test="stats-chart"] svg', "office-stats"),
        ("office", DESKTOP, f"{base}/weekly", "text=请选择一个网格", "office-weekly-choose"),
        ("office", DESKTOP, f"{base}/grids/lanshan-01/weekly", '[data-test="weekly-submitted"]', "office-weekly"),
        ("department", TABLET, links["department"].replace("/cases#", "/sla#"), '[data-test="sla-department"]',
         "department-sla"),
        ("department", TABLET, f"{base}/stats", "text=无权访问", "department-stats-forbidden"),
        ("grid-leader", TABLET, grid_leader.replace("/cases#", "/grids/lanshan-01/weekly#"),
         '[data-test="weekly-submitted"]', "grid-leader-weekly"),
    ]
    tabs: dict[str, object] = {}
    found = {}
    for who, viewport, url, ready, name in routes:
        page = tabs.get(who) or tabs.setdefault(who, open_tab(viewport, bypass_csp=True))
        page.goto(url)
        page.locator(ready).first.wait_for()
        page.wait_for_load_state("networkidle")
        shot(page, f"axe-{name}")
        if violations := axe_violations(page):
            found[name] = violations
    assert not found, json.dumps(found, ensure_ascii=False, indent=1)
