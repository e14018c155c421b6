"""Staff signing in to the console through the city's OpenID Connect provider (docs/console.md), in Debian's
Chromium: `make up` with the console configured for the test provider (tests/identity_provider.py) and the services
accepting its tokens, as a city runs it. The office clicks the provider's button, picks its user at the provider's
page, and lands on its triage queue, loaded from the API with the provider's token; a refusal at the provider, an
answer this tab did not ask for, and an expired token each end on a page that says so. Screenshots under
.run/screenshots/; axe-core on the sign-in page.
"""
from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest

from tests.conftest import provider_env
from tests.e2e.conftest import running_system, system_env
from tests.e2e.test_console import DESKTOP, TIMEOUT_MS, axe_violations, chromium, shot, submitted_case
from tests.identity_provider import (
    CONSOLE_CALLBACK_PATH,
    CONSOLE_CLIENT_ID,
    KEYCLOAK_MAPPING,
    STAFF,
    IdentityProvider,
    console_origins,
)

pytestmark = pytest.mark.e2e
PROVIDER_NAME = "临沂市统一身份认证"


@pytest.fixture(scope="module")
def provider():
    with IdentityProvider() as running:
        for username, claims in STAFF.items():
            running.add_user(username, claims)
        yield running


@pytest.fixture(scope="module")
def system(provider, amqp_url, mongo_url, tmp_path_factory):
    """`make up` with the console offering the provider; (the services' URLs, the console's URL)."""
    env, urls = system_env(amqp_url, mongo_url, tmp_path_factory.mktemp("run"), "console_sign_in")
    origins = console_origins(int(env["CONSOLE_PORT"]))
    provider.add_public_client(CONSOLE_CLIENT_ID, [o + CONSOLE_CALLBACK_PATH for o in origins], origins)
    env.update(provider_env(provider, "local,oidc", **KEYCLOAK_MAPPING))
    env.update(WOODPECKER_CONSOLE="on", CONSOLE_OIDC_CLIENT_ID=CONSOLE_CLIENT_ID, CONSOLE_OIDC_NAME=PROVIDER_NAME)
    with running_system(env) as printed:
        assert f"staff sign in through the city's provider {provider.issuer}" in printed, printed
        yield urls, origins[0]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()


def new_tab(browser, **options):
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN", reduced_motion="reduce", **options)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return page


@pytest.fixture
def tab(browser) -> Iterator:
    """A tab of a fresh browser profile (a sign-in of its own), under the console's own CSP."""
    page = new_tab(browser)
    yield page
    page.context.close()


def provider_button(page):
    return page.get_by_role("button", name=f"使用 {PROVIDER_NAME} 登录")


def claims_of(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_the_office_signs_in_at_the_provider_and_its_queue_loads_with_the_providers_token(provider, system, tab):
    urls, base = system
    waiting = submitted_case(urls, "other", {"lat": 35.045, "lng": 118.305}, "广场东侧路灯不亮，夜间行人看不清路")
    tab.goto(f"{base}/triage")
    provider_button(tab).wait_for()
    assert "/sign-in" in tab.url
    shot(tab, "sign-in-with-provider")

    provider_button(tab).click()
    tab.wait_for_url(f"{provider.issuer}/authorize?*")
    query = tab.url
    assert "code_challenge_method=S256" in query and "state=" in query and "nonce=" in query
    shot(tab, "sign-in-provider-page")
    with tab.expect_request(lambda r: r.url.startswith(f"{urls['routing']}/v1/cases")) as asked:
        tab.get_by_role("button", name="office-wang").click()
    tab.wait_for_url(f"{base}/triage")  # back where it began, the code and the state gone from the address
    token = asked.value.headers["authorization"].removeprefix("Bearer ")
    assert claims_of(token)["iss"] == provider.issuer and claims_of(token)["sub"] == "office-wang"
    tab.locator(f'[data-test="dispatch-{waiting["id"]}"]').wait_for()  # the queue, from routing, on that token
    answer = asked.value.response()
    assert answer is not None and answer.status == 200
    assert "office-wang" in tab.locator(".who").inner_text()
    assert tab.evaluate("sessionStorage.getItem('woodpecker.console.oidc')") is None  # the round trip's keys gone
    assert tab.evaluate("sessionStorage.getItem('woodpecker.console.token')") == token
    shot(tab, "office-triage-via-provider")


def test_refusing_at_the_provider_shows_the_refusal_in_words(provider, system, tab):
    _, base = system
    tab.goto(f"{base}/cases")
    provider_button(tab).click()
    tab.get_by_role("button", name="Refuse").click()
    tab.get_by_role("heading", name="登录已被拒绝").wait_for()
    assert "code=" not in tab.url and "state=" not in tab.url and "reason=denied" in tab.url
    assert provider_button(tab).is_visible()  # and one click to try again
    shot(tab, "sign-in-provider-refused")


def test_an_answer_this_tab_did_not_ask_for_is_not_used(system, tab):
    _, base = system
    tab.goto(f"{base}{CONSOLE_CALLBACK_PATH}?code=stolen-code&state=someone-elses")
    tab.get_by_role("heading", name="登录没有完成").wait_for()
    assert "stolen-code" not in tab.url
    assert tab.evaluate("sessionStorage.getItem('woodpecker.console.token')") is None


def test_a_provider_token_that_expires_leads_to_the_expired_page(provider, system, tab):
    _, base = system
    provider.token_lifetime_s = 6
    try:
        tab.goto(f"{base}/cases")
        provider_button(tab).click()
        tab.get_by_role("button", name="police-li").click()
        tab.get_by_role("heading", name="登录已过期").wait_for()
    finally:
        provider.token_lifetime_s = 300
    assert provider_button(tab).is_visible()
    shot(tab, "sign-in-provider-expired")


def test_axe_finds_no_serious_or_critical_violation_on_the_sign_in_page(provider, system, browser):
    _, base = system
    page = new_tab(browser, bypass_csp=True)  # axe-core is injected inline, which the console's CSP refuses
    try:
        for address, ready in [(f"{base}/triage", provider_button(page)),
                               (f"{base}/sign-in?reason=denied", page.get_by_role("heading", name="登录已被拒绝"))]:
            page.goto(address)
            ready.wait_for()
            violations = axe_violations(page)
            assert not violations, json.dumps(violations, ensure_ascii=False, indent=1)
    finally:
        page.context.close()
