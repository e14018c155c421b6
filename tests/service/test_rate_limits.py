"""Rate limits through HTTP, counted in the real store: per caller, per address, uploads apart, shared by processes.

Each test gets an intake web app with a database of its own (so its own counters) and the limits it names.
Windows are a day long (they start at midnight UTC), so a test's second of requests does not straddle two.
"""
import io
import logging
import uuid
from datetime import timedelta

import pymongo
import pytest

from deploy.migrations import migrate
from services.intake.app import create_app
from shared.config import Rate
from shared.errors import PROBLEM_BASE, PROBLEM_MEDIA_TYPE
from shared.ratelimit import COLLECTION, WRITE, RateLimiter, drop_ended_windows
from tests.conftest import Commands, bearer, settings_for_test
from tests.service.conftest import LANSHAN_01, jpeg_bytes, upload_photo
from tests.support import free_port, wait_for

OFFICE_NAT = "10.20.30.40"  # one address many callers share
ELSEWHERE = "10.99.0.1"


@pytest.fixture
def limited(amqp_url, mongo_url):
    """An intake web app with only the limits given (rate_limit_writes=…; the others off)."""

    def make(**settings):
        limits = {"rate_limit_writes": None, "rate_limit_uploads": None, "rate_limit_per_ip": None, **settings}
        return create_app(settings_for_test("intake", amqp_url, mongo_url, **limits)).test_client()

    return make


def per_day(limit: int) -> Rate:
    return Rate(limit, "day")


def post_report(client, headers, photo_ids, address="127.0.0.1"):
    body = {"category": "traffic.parking", "description": "人行道上停放多辆机动车，影响通行",
            "location": LANSHAN_01, "photo_ids": photo_ids}
    return client.post("/v1/reports", headers=headers, json=body, environ_base={"REMOTE_ADDR": address})


def post_photo(client, headers, address="127.0.0.1", forwarded_for=None):
    extra = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return client.post("/v1/photos", headers={**headers, **extra}, content_type="multipart/form-data",
                       data={"file": (io.BytesIO(jpeg_bytes()), "p.jpg")}, environ_base={"REMOTE_ADDR": address})


def assert_rate_limited(response, because: str) -> None:
    assert response.status_code == 429, response.json
    assert response.mimetype == PROBLEM_MEDIA_TYPE
    assert response.json["type"] == PROBLEM_BASE + "rate-limited" and response.json["status"] == 429
    assert because in response.json["detail"]
    assert 0 < int(response.headers["Retry-After"]) <= 86_400


def test_the_write_after_a_callers_limit_is_a_429_problem_that_says_which_limit_and_when_to_retry(limited):
    client = limited(rate_limit_writes=per_day(3))
    volunteer = bearer("volunteer")
    photo = upload_photo(client, volunteer)["id"]
    answers = [post_report(client, volunteer, [photo]) for _ in range(4)]
    assert [a.status_code for a in answers] == [201, 201, 201, 429]
    assert [a.headers["RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    assert {a.headers["RateLimit-Limit"] for a in answers} == {"3"}
    assert_rate_limited(answers[3], "more than 3 writes per day from this caller")
    assert answers[3].headers["RateLimit-Reset"] == answers[3].headers["Retry-After"]
    assert len(client.get("/v1/reports", headers=volunteer).json["items"]) == 3  # the refused write did nothing


def test_a_caller_over_its_limit_leaves_other_callers_alone(limited):
    client = limited(rate_limit_writes=per_day(2))
    first, second = bearer("volunteer"), bearer("volunteer")
    first_photo, second_photo = upload_photo(client, first)["id"], upload_photo(client, second)["id"]
    assert [post_report(client, first, [first_photo]).status_code for _ in range(3)] == [201, 201, 429]
    assert post_report(client, second, [second_photo]).status_code == 201


def test_callers_behind_one_address_share_its_limit_and_other_addresses_are_unaffected(limited):
    client = limited(rate_limit_per_ip=per_day(3))
    statuses = [post_photo(client, bearer("volunteer"), OFFICE_NAT).status_code for _ in range(4)]
    assert statuses == [201, 201, 201, 429]
    assert_rate_limited(post_photo(client, bearer("volunteer"), OFFICE_NAT),
                        "more than 3 writes and uploads per day from this network address")
    assert post_photo(client, bearer("volunteer"), ELSEWHERE).status_code == 201


def test_a_caller_refused_by_its_own_limit_does_not_use_up_its_addresss(limited):
    client = limited(rate_limit_uploads=per_day(1), rate_limit_per_ip=per_day(3))
    runaway, colleague = bearer("volunteer"), bearer("volunteer")
    assert [post_photo(client, runaway, OFFICE_NAT).status_code for _ in range(5)] == [201, 429, 429, 429, 429]
    # The address has seen five requests but spent only one of its three.
    assert post_photo(client, colleague, OFFICE_NAT).status_code == 201


def test_uploads_have_their_own_limit_apart_from_other_writes(limited):
    client = limited(rate_limit_writes=per_day(1), rate_limit_uploads=per_day(2))
    volunteer = bearer("volunteer")
    uploads = [post_photo(client, volunteer) for _ in range(3)]
    assert [u.status_code for u in uploads] == [201, 201, 429]
    assert_rate_limited(uploads[2], "more than 2 uploads per day from this caller")
    # Two uploads spent none of the one write.
    assert post_report(client, volunteer, [uploads[0].json["id"]]).status_code == 201
    assert_rate_limited(post_report(client, volunteer, [uploads[1].json["id"]]), "more than 1 writes per day")


def test_reads_spend_none_of_the_writes_and_health_metrics_and_docs_are_never_limited(limited):
    client = limited(rate_limit_writes=per_day(1), rate_limit_uploads=per_day(1), rate_limit_per_ip=per_day(2))
    volunteer = bearer("volunteer")
    photo = upload_photo(client, volunteer)["id"]
    reads = [("/v1/reports", volunteer), (f"/v1/photos/{photo}", volunteer), ("/v1/categories", volunteer)]
    unlimited = [("/healthz", {}), ("/readyz", {}), ("/metrics", {}), ("/openapi.json", {}), ("/docs", {})]
    for _ in range(3):
        for path, headers in reads:
            assert client.get(path, headers=headers).status_code == 200, path
        for path, headers in unlimited:
            response = client.get(path, headers=headers)
            assert response.status_code not in (429, 500), path
            assert "RateLimit-Limit" not in response.headers, path
    assert post_report(client, volunteer, [photo]).status_code == 201  # the write and the address's second


def test_reads_have_their_own_limits_per_caller_and_per_address(limited):
    client = limited(rate_limit_reads=per_day(2), rate_limit_reads_per_ip=per_day(3))
    first, second = bearer("volunteer"), bearer("volunteer")
    answers = [client.get("/v1/categories", headers=first, environ_base={"REMOTE_ADDR": OFFICE_NAT})
               for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert_rate_limited(answers[2], "more than 2 reads per day from this caller")
    assert answers[0].headers["RateLimit-Limit"] == "2"
    # A colleague behind the same address has the address's third read, then the address is spent.
    colleague = [client.get("/v1/categories", headers=second, environ_base={"REMOTE_ADDR": OFFICE_NAT})
                 for _ in range(2)]
    assert [a.status_code for a in colleague] == [200, 429]
    assert_rate_limited(colleague[1], "more than 3 reads per day from this network address")
    # Without a token (the public proof check, say) a caller is its address.
    anonymous = [client.get("/v1/categories", environ_base={"REMOTE_ADDR": "203.0.113.77"}) for _ in range(3)]
    assert [a.status_code for a in anonymous] == [401, 401, 429]


def test_two_processes_on_one_database_share_the_count(amqp_url, mongo_url):
    settings = settings_for_test("intake", amqp_url, mongo_url, rate_limit_writes=per_day(3))
    first, second = create_app(settings).test_client(), create_app(settings).test_client()
    volunteer = bearer("volunteer")
    photo = upload_photo(first, volunteer)["id"]
    statuses = [post_report(client, volunteer, [photo]).status_code for client in (first, second, first, second)]
    assert statuses == [201, 201, 201, 429]


@pytest.fixture
def limiters(mongo_url):
    """RateLimiters ("processes") over one fresh counters collection, each through a client that records the
    commands it sends there."""
    clients = []

    def make(**limits) -> tuple[RateLimiter, Commands]:
        database = f"test_limits_{uuid.uuid4().hex[:10]}" if not clients else clients[0][1]
        commands = Commands(COLLECTION)
        client = pymongo.MongoClient(mongo_url, event_listeners=[commands])
        clients.append((client, database))
        limits = {"writes": None, "uploads": None, "per_address": None, **limits}
        return RateLimiter(client[database][COLLECTION], **limits, flush_every_s=None), commands

    yield make
    for client, _ in clients:
        client.close()


def stored_count(limiter: RateLimiter) -> int:
    return sum(doc["count"] for doc in limiter.counters.find())


def test_far_from_its_limit_a_busy_counter_is_written_at_each_flush_not_at_each_request(limiters):
    """A shared address's counter under many writes: the store hears of them twice a second, not 200 times."""
    limiter, commands = limiters(per_address=per_day(10_000))
    quotas = limiter.quotas(kind=WRITE, caller_id=None, address=OFFICE_NAT)
    admitted = [limiter.admit(quotas) for _ in range(200)]
    assert not any(a.refused_by for a in admitted)
    assert admitted[-1].usages[0].count == 200 and admitted[-1].usages[0].remaining == 9_800
    assert commands.seen == ["update", "find"]  # the counter's first request, counted in the store at once
    limiter.flush()
    assert commands.seen[2:] == ["update", "find"]  # one write of all it counted, and one read back
    assert stored_count(limiter) == 200


def test_near_its_limit_every_request_is_counted_in_the_store_and_refused_on_its_count(limiters):
    limiter, commands = limiters(writes=per_day(20))
    quotas = limiter.quotas(kind=WRITE, caller_id="vol-1", address="127.0.0.1")
    answers = [limiter.admit(quotas) for _ in range(22)]
    assert [bool(a.refused_by) for a in answers] == [False] * 20 + [True] * 2
    # From the last fifth of the limit on (4 of 20), and every time it had counted half the room it last saw,
    # the request went to the store: the refusals were judged on the store's own count.
    assert commands.seen.count("update") >= 6 and stored_count(limiter) == 22


def test_two_processes_counting_far_from_a_limit_see_each_other_at_their_flushes(limiters):
    first, _ = limiters(per_address=per_day(1_000))
    second, _ = limiters(per_address=per_day(1_000))
    quotas = first.quotas(kind=WRITE, caller_id=None, address=OFFICE_NAT)
    for _ in range(30):
        first.admit(quotas)
    for _ in range(10):
        second.admit(quotas)
    first.flush()
    second.flush()
    assert stored_count(first) == 40
    assert second.admit(quotas).usages[0].count == 41  # the first's thirty, read back at the second's flush


def test_the_process_flushes_what_it_counted_by_itself_and_then_rests(limiters):
    limiter, _ = limiters(per_address=per_day(1_000))
    limiter.flush_every_s = 0.05
    quotas = limiter.quotas(kind=WRITE, caller_id=None, address=OFFICE_NAT)
    for _ in range(25):
        limiter.admit(quotas)
    wait_for(lambda: stored_count(limiter) == 25, timeout=30, what="the counts flushed")
    wait_for(lambda: limiter._flusher is None, timeout=30, what="the flushing thread at rest")


def test_counts_not_flushed_while_the_store_is_away_are_flushed_once_it_answers(limiters):
    limiter, _ = limiters(per_address=per_day(1_000))
    quotas = limiter.quotas(kind=WRITE, caller_id=None, address=OFFICE_NAT)
    limiter.admit(quotas)
    counters = limiter.counters
    nowhere = pymongo.MongoClient(f"mongodb://127.0.0.1:{free_port()}/", serverSelectionTimeoutMS=100, connect=False)
    limiter.counters = nowhere["gone"][COLLECTION]
    try:
        for _ in range(5):
            limiter.admit(quotas)
        with pytest.raises(pymongo.errors.PyMongoError):
            limiter.flush()
    finally:
        nowhere.close()
    limiter.counters = counters
    limiter.flush()
    assert stored_count(limiter) == 6


def test_windows_that_are_over_are_dropped_by_an_indexed_delete_not_a_ttl_index(limiters):
    """An earlier version's TTL index goes (a migration): the embedded database's TTL monitor stalled the store."""
    limiter, _ = limiters(writes=Rate(5, "second"), per_address=per_day(1_000))
    limiter.counters.create_index("expires_at", expireAfterSeconds=0)
    assert "2026-12-rate-limit-windows-intake" in migrate(limiter.counters.database, "intake")
    limiter.prepare()
    assert "expireAfterSeconds" not in limiter.counters.index_information()["expires_at_1"]
    limiter.admit(limiter.quotas(kind=WRITE, caller_id="vol-1", address=OFFICE_NAT))  # a second's, a day's
    ends = sorted(doc["expires_at"] for doc in limiter.counters.find())
    assert drop_ended_windows(limiter.counters, ends[0] - timedelta(milliseconds=1)) == 0
    assert drop_ended_windows(limiter.counters, ends[0] + timedelta(milliseconds=1)) == 1
    assert [doc["expires_at"] for doc in limiter.counters.find()] == ends[1:]


def test_a_bad_token_counts_against_its_address_and_is_still_answered_401(limited):
    client = limited(rate_limit_uploads=per_day(2))
    forged = {"Authorization": "Bearer not-a-token"}
    answers = [post_photo(client, forged, OFFICE_NAT) for _ in range(3)]
    assert [a.status_code for a in answers] == [401, 401, 429]
    assert answers[0].json["type"] == PROBLEM_BASE + "unauthorized"
    assert_rate_limited(answers[2], "more than 2 uploads per day from this network address")
    # A valid caller at that address is counted as itself.
    assert post_photo(client, bearer("volunteer"), OFFICE_NAT).status_code == 201


def test_x_forwarded_for_is_ignored_unless_proxies_are_trusted(limited):
    client = limited(rate_limit_per_ip=per_day(1))
    volunteer = bearer("volunteer")
    assert post_photo(client, volunteer, forwarded_for="203.0.113.1").status_code == 201
    assert post_photo(client, volunteer, forwarded_for="203.0.113.2").status_code == 429  # same peer, same count


def test_behind_a_trusted_proxy_the_client_is_the_address_it_forwards(limited):
    client = limited(rate_limit_per_ip=per_day(1), trusted_proxies=1)
    volunteer = bearer("volunteer")
    statuses = [post_photo(client, volunteer, forwarded_for=client_address).status_code
                for client_address in ("203.0.113.1", "203.0.113.2", "203.0.113.1")]
    assert statuses == [201, 201, 429]


def test_writes_go_through_when_the_limits_store_does_not_answer(limited, caplog):
    client = limited(rate_limit_writes=per_day(1), rate_limit_uploads=per_day(1), rate_limit_per_ip=per_day(1))
    nowhere = pymongo.MongoClient(f"mongodb://127.0.0.1:{free_port()}/", serverSelectionTimeoutMS=100, connect=False)
    client.application.extensions["rate_limits"].counters = nowhere["gone"]["rate_limits"]
    # The app set up the service's JSON logging, which replaced the root logger's handlers (caplog's too).
    web_log = logging.getLogger("shared.web")
    web_log.addHandler(caplog.handler)
    try:
        volunteer = bearer("volunteer")
        photos = [post_photo(client, volunteer) for _ in range(2)]
        assert [p.status_code for p in photos] == [201, 201]
        assert post_report(client, volunteer, [photos[0].json["id"]]).status_code == 201
    finally:
        web_log.removeHandler(caplog.handler)
        nowhere.close()
    assert "rate limits not checked" in caplog.text


def test_openapi_documents_the_429_on_limited_operations_only(intake):
    spec = intake.client.get("/openapi.json").json
    limited = {"429": {"$ref": "#/components/responses/RATE_LIMITED"}}
    assert spec["paths"]["/v1/photos"]["post"]["responses"].items() >= limited.items()
    assert spec["paths"]["/v1/reports"]["post"]["responses"].items() >= limited.items()
    assert spec["paths"]["/v1/reports"]["get"]["responses"].items() >= limited.items()
    for path in ("/healthz", "/readyz", "/metrics"):
        assert "429" not in spec["paths"][path]["get"]["responses"], path
    rate_limited = spec["components"]["responses"]["RATE_LIMITED"]
    assert set(rate_limited["content"]) == {PROBLEM_MEDIA_TYPE}
    assert "Retry-After" in rate_limited["headers"]
