"""CORS through HTTP: a browser front end on an allowed origin may call intake; any other origin may not."""
import io

import pytest

from services.intake.app import create_app
from shared.config import Rate
from tests.conftest import bearer, settings_for_test
from tests.service.conftest import jpeg_bytes

FRONT_END = "https://app.example.gov.cn"
DEV_SERVER = "http://localhost:5173"


@pytest.fixture(scope="module")
def client(amqp_url, mongo_url):
    """Intake allowing two origins, with limits of one write a day (which preflights must not spend)."""
    settings = settings_for_test("intake", amqp_url, mongo_url, cors_origins=(FRONT_END, DEV_SERVER),
                                 rate_limit_writes=Rate(1, "day"), rate_limit_per_ip=Rate(1, "day"))
    return create_app(settings).test_client()


def preflight(client, origin: str):
    """What a browser asks before a page's POST of JSON with a token and an Idempotency-Key."""
    return client.options("/v1/reports", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key"})


def cors_headers(response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name.lower().startswith("access-control-")}


def listed(value: str) -> set[str]:
    return {part.strip().lower() for part in value.split(",")}


@pytest.mark.parametrize("origin", [FRONT_END, DEV_SERVER])
def test_a_preflight_from_an_allowed_origin_is_answered_without_a_token(client, origin):
    response = preflight(client, origin)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert listed(response.headers["Access-Control-Allow-Methods"]) == {"get", "post"}  # what intake's API uses
    assert listed(response.headers["Access-Control-Allow-Headers"]) == {"authorization", "content-type",
                                                                        "idempotency-key"}
    assert response.headers["Access-Control-Max-Age"] == "600"


@pytest.mark.parametrize("origin", ["https://evil.example", "https://app.example.gov.cn.evil.example",
                                    "http://app.example.gov.cn", "null"])
def test_a_preflight_from_another_origin_gets_no_cors_headers(client, origin):
    response = preflight(client, origin)
    assert cors_headers(response) == {}


def test_an_actual_cross_origin_request_is_allowed_and_may_read_the_headers_a_front_end_needs(client):
    volunteer = bearer("volunteer")
    response = client.get("/v1/reports", headers={**volunteer, "Origin": FRONT_END})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == FRONT_END
    assert "origin" in listed(response.headers["Vary"])  # a cache keeps each origin's answer apart
    assert {"retry-after", "idempotent-replayed", "x-request-id", "content-disposition", "ratelimit-limit",
            "ratelimit-remaining", "ratelimit-reset"} <= listed(response.headers["Access-Control-Expose-Headers"])


@pytest.mark.parametrize("origin", ["https://evil.example", None])
def test_an_actual_request_from_another_origin_or_none_gets_no_cors_headers(client, origin):
    response = client.get("/v1/reports", headers={**bearer("volunteer"), **({"Origin": origin} if origin else {})})
    assert response.status_code == 200
    assert cors_headers(response) == {}
    assert "origin" in listed(response.headers["Vary"])


def test_preflights_spend_no_limit_and_a_429_is_readable_by_the_page(client):
    volunteer = bearer("volunteer")
    address = {"REMOTE_ADDR": "10.55.0.1"}
    for _ in range(3):
        assert client.options("/v1/photos", environ_base=address, headers={
            "Origin": FRONT_END, "Access-Control-Request-Method": "POST"}).status_code == 200
    photo = client.post("/v1/photos", headers={**volunteer, "Origin": FRONT_END}, environ_base=address,
                        content_type="multipart/form-data", data={"file": (io.BytesIO(jpeg_bytes()), "p.jpg")})
    assert photo.status_code == 201  # the address's one write of the day: the preflights spent none
    refused = client.post("/v1/reports", json={}, headers={**volunteer, "Origin": FRONT_END}, environ_base=address)
    assert refused.status_code == 429
    assert refused.headers["Access-Control-Allow-Origin"] == FRONT_END  # else the page cannot see Retry-After


def test_without_configured_origins_there_are_no_cors_headers(intake):
    assert cors_headers(preflight(intake.client, FRONT_END)) == {}
    response = intake.client.get("/v1/reports", headers={**bearer("volunteer"), "Origin": FRONT_END})
    assert cors_headers(response) == {}
