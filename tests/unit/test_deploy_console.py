"""How make up serves the console (deploy/console.py): every path is the app, assets are themselves or 404,
/config.json says where the services are, the page may talk to them and nothing else; built only when its
sources changed; without Node.js, a sentence that says how to get it."""
from pathlib import Path

import pytest

from deploy import console
from deploy.console import ConsoleSettings, create_app

SERVICES = {"intake": "http://127.0.0.1:8001", "routing": "http://127.0.0.1:8002", "hours": "http://127.0.0.1:8003",
            "notify": "https://notify.example.gov.cn/api"}


@pytest.fixture
def client(tmp_path: Path):
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><div id=app></div>")
    (tmp_path / "assets" / "index-abc123.js").write_text("console.log(1)")
    (tmp_path / "favicon.svg").write_text("<svg/>")
    settings = ConsoleSettings(port=8000, services=SERVICES, time_zone="Asia/Shanghai")
    return create_app(settings, dist=tmp_path).test_client()


@pytest.mark.parametrize("path", ["/", "/triage", "/cases/case-1", "/cases?status=closed", "/no/such/page"])
def test_every_route_is_the_app_and_never_cached(client, path):
    answer = client.get(path)
    assert answer.status_code == 200 and b"<div id=app>" in answer.data
    assert answer.headers["Cache-Control"] == "no-cache"


def test_an_asset_is_itself_cached_for_good_and_a_missing_one_is_a_404(client):
    answer = client.get("/assets/index-abc123.js")
    assert answer.data == b"console.log(1)" and "max-age=31536000" in answer.headers["Cache-Control"]
    assert client.get("/assets/index-old999.js").status_code == 404
    assert client.get("/favicon.svg").data == b"<svg/>"


def test_config_says_where_the_services_are_and_the_citys_zone(client):
    answer = client.get("/config.json")
    assert answer.json == {"services": SERVICES, "timeZone": "Asia/Shanghai"}
    assert answer.headers["Cache-Control"] == "no-store"


def test_the_page_may_talk_to_the_four_services_and_nothing_else(client):
    headers = client.get("/triage").headers
    policy = dict(part.strip().split(" ", 1) for part in headers["Content-Security-Policy"].split(";"))
    assert policy["connect-src"] == ("'self' http://127.0.0.1:8001 http://127.0.0.1:8002 http://127.0.0.1:8003 "
                                     "https://notify.example.gov.cn")
    assert policy["script-src"] == "'self'" and policy["frame-ancestors"] == "'none'"
    assert headers["Referrer-Policy"] == "no-referrer"


def test_the_services_urls_default_to_make_ups_ports():
    settings = ConsoleSettings.from_env({"ROUTING_PORT": "9002", "CONSOLE_NOTIFY_URL": "https://n.example/"})
    assert settings.services == {"intake": "http://127.0.0.1:8001", "routing": "http://127.0.0.1:9002",
                                 "hours": "http://127.0.0.1:8003", "notify": "https://n.example"}
    assert settings.port == 8000 and settings.time_zone == "Asia/Shanghai"


def test_it_is_built_only_when_its_sources_changed(tmp_path, monkeypatch):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.ts").write_text("one")
    for name in ("package.json", "package-lock.json"):
        (tmp_path / name).write_text("{}")
    runs = []

    def npm(arguments, where):
        runs.append(arguments[0])
        if arguments == ["run", "build"]:
            (where / "dist").mkdir(exist_ok=True)

    monkeypatch.setattr(console, "_npm", npm)
    (tmp_path / "node_modules").mkdir()
    assert console.build_if_changed(tmp_path) is True
    assert console.build_if_changed(tmp_path) is False
    (tmp_path / "src" / "main.ts").write_text("two")
    assert console.build_if_changed(tmp_path) is True
    assert runs == ["ci", "run", "run"], "npm ci once (the lock did not change), a build per change"


def test_types_generated_for_the_type_check_are_no_reason_to_build_again(tmp_path, monkeypatch):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.ts").write_text("import type { paths } from './api/generated/routing';")
    for name in ("package.json", "package-lock.json"):
        (tmp_path / name).write_text("{}")
    monkeypatch.setattr(console, "_npm", lambda arguments, where: (where / "dist").mkdir(exist_ok=True))
    (tmp_path / "node_modules").mkdir()
    assert console.build_if_changed(tmp_path) is True
    (tmp_path / "src" / "api" / "generated").mkdir(parents=True)
    (tmp_path / "src" / "api" / "generated" / "routing.ts").write_text("export interface paths {}")
    assert console.build_if_changed(tmp_path) is False
    (tmp_path / "src" / "api" / "client.ts").write_text("export {};")
    assert console.build_if_changed(tmp_path) is True


def test_without_nodejs_it_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr(console.shutil, "which", lambda name: None)
    assert "Node.js and npm are not installed" in console.node_problem()
    assert "https://nodejs.org" in console.node_problem()


# --- signing staff in through the city's provider (CONSOLE_OIDC_*) --------------------------------------------


KEYCLOAK = {"WOODPECKER_OIDC_ISSUER": "https://sso.linyi.example.gov.cn/realms/linyi",
            "WOODPECKER_OIDC_AUDIENCE": "woodpecker-api", "WOODPECKER_OIDC_ROLE_CLAIM": "realm_access.roles",
            "WOODPECKER_OIDC_ROLES": "woodpecker-office=office,woodpecker-department=department",
            "WOODPECKER_OIDC_DEPT_CLAIM": "groups", "WOODPECKER_OIDC_DEPT_PREFIX": "/departments/"}


def test_without_a_client_id_the_console_offers_no_provider():
    assert ConsoleSettings.from_env(KEYCLOAK).provider is None


def test_the_provider_is_the_services_own_with_their_claim_mapping():
    provider = ConsoleSettings.from_env({**KEYCLOAK, "CONSOLE_OIDC_CLIENT_ID": "woodpecker-console",
                                         "CONSOLE_OIDC_SCOPES": "profile,woodpecker",
                                         "CONSOLE_OIDC_NAME": "临沂市统一身份认证"}).provider
    assert provider.client_config() == {
        "issuer": KEYCLOAK["WOODPECKER_OIDC_ISSUER"], "clientId": "woodpecker-console",
        "scopes": "openid profile woodpecker", "name": "临沂市统一身份认证",
        "claims": {"role": {"path": "realm_access.roles", "prefix": ""},
                   "roles": [["woodpecker-office", "office"], ["woodpecker-department", "department"]],
                   "dept": {"path": "groups", "prefix": "/departments/"}, "grid": {"path": "grid", "prefix": ""}}}


def test_a_console_provider_alone_reads_our_own_claim_names():
    provider = ConsoleSettings.from_env({"CONSOLE_OIDC_ISSUER": "https://sso.example.gov.cn",
                                         "CONSOLE_OIDC_CLIENT_ID": "console"}).provider
    assert provider.scopes == "openid" and provider.client_config()["claims"]["role"] == {"path": "role",
                                                                                            "prefix": ""}


@pytest.mark.parametrize(("env", "says"), [
    ({"CONSOLE_OIDC_ISSUER": "https://sso.example.gov.cn"}, "CONSOLE_OIDC_CLIENT_ID"),
    ({"CONSOLE_OIDC_CLIENT_ID": "console"}, "no provider"),
    ({"CONSOLE_OIDC_CLIENT_ID": "console", "CONSOLE_OIDC_ISSUER": "http://sso.example.gov.cn"}, "https://"),
    ({**KEYCLOAK, "CONSOLE_OIDC_CLIENT_ID": "console", "CONSOLE_OIDC_ISSUER": "https://other.example.gov.cn"},
     "would refuse"),
])
def test_provider_settings_the_console_cannot_use_are_refused_with_the_reason(env, says):
    with pytest.raises(ValueError, match=says):
        ConsoleSettings.from_env(env)
# --- the map's tiles -------------------------------------------------------------------------------

def image_policy(client) -> dict:
    return dict(part.strip().split(" ", 1) for part in client.get("/map").headers["Content-Security-Policy"].split(";"))


def test_without_a_tile_url_the_map_has_no_tiles_and_the_page_loads_no_foreign_images(client):
    assert "tiles" not in client.get("/config.json").json
    policy = image_policy(client)
    assert policy["img-src"] == "'self' blob: data:"


def test_a_tile_url_reaches_the_map_and_its_origin_alone_is_allowed_images(tmp_path):
    (tmp_path / "index.html").write_text("<!doctype html>")
    settings = ConsoleSettings.from_env({"CONSOLE_TILE_URL": "https://{s}.tiles.example.cn/{z}/{x}/{y}.png",
                                         "CONSOLE_TILE_ATTRIBUTION": "© 示例测绘"})
    client = create_app(settings, dist=tmp_path).test_client()
    assert client.get("/config.json").json["tiles"] == {"url": "https://{s}.tiles.example.cn/{z}/{x}/{y}.png",
                                                        "attribution": "© 示例测绘"}
    policy = image_policy(client)
    assert policy["img-src"] == "'self' blob: data: https://*.tiles.example.cn"


@pytest.mark.parametrize("url", ["ftp://tiles.example.cn/{z}/{x}/{y}.png", "https://tiles.example.cn/{z}/{x}.png",
                                 "tiles.example.cn/{z}/{x}/{y}.png"])
def test_a_tile_url_that_is_no_template_is_refused_at_start(url):
    with pytest.raises(console.BadTileUrl):
        ConsoleSettings.from_env({"CONSOLE_TILE_URL": url})
