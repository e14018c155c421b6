"""Rate limits and CORS origins from the environment, and the verdict a request gets (no I/O)."""
import pytest

from shared.config import Rate, Settings
from shared.ratelimit import UPLOAD, WRITE, Quota, RateLimiter, RateVerdict, Usage, address_key


def test_the_defaults_leave_room_for_a_batch_and_allow_no_origin():
    settings = Settings.from_env("intake", {})
    assert (settings.rate_limit_writes, settings.rate_limit_uploads, settings.rate_limit_per_ip) == (
        Rate(60, "minute"), Rate(30, "minute"), Rate(600, "minute"))
    assert settings.trusted_proxies == 0
    assert settings.cors_origins == ()


def test_the_environment_sets_each_limit_or_turns_it_off():
    settings = Settings.from_env("intake", {
        "WOODPECKER_RATE_LIMIT_WRITES": "120/Hours", "WOODPECKER_RATE_LIMIT_UPLOADS": " 5 / second ",
        "WOODPECKER_RATE_LIMIT_PER_IP": "off", "WOODPECKER_TRUSTED_PROXIES": "2",
        "WOODPECKER_CORS_ORIGINS": "https://app.example.gov.cn, http://localhost:5173"})
    assert settings.rate_limit_writes == Rate(120, "hour") and settings.rate_limit_writes.period_s == 3600
    assert settings.rate_limit_uploads == Rate(5, "second")
    assert settings.rate_limit_per_ip is None
    assert settings.trusted_proxies == 2
    assert settings.cors_origins == ("https://app.example.gov.cn", "http://localhost:5173")


@pytest.mark.parametrize("raw", ["60", "60/fortnight", "0/minute", "-1/minute", "many/minute", "60/"])
def test_a_rate_that_is_not_n_per_unit_is_refused_naming_the_variable(raw):
    with pytest.raises(ValueError, match="WOODPECKER_RATE_LIMIT_WRITES"):
        Settings.from_env("intake", {"WOODPECKER_RATE_LIMIT_WRITES": raw})


@pytest.mark.parametrize("origin", ["*", "https://app.example.gov.cn/", "app.example.gov.cn", "https://a.example/app",
                                    "https://*.example.gov.cn", "ftp://files.example.gov.cn"])
def test_anything_but_an_exact_origin_is_refused(origin):
    with pytest.raises(ValueError, match="WOODPECKER_CORS_ORIGINS"):
        Settings.from_env("intake", {"WOODPECKER_CORS_ORIGINS": origin})


def usage(limit: str, rate: Rate, key: str, count: int, resets_in_s: int) -> Usage:
    return Usage(Quota(limit, rate, key), count, resets_in_s)


def test_an_admitted_request_reports_the_quota_closest_to_its_limit():
    admission = RateVerdict((usage("writes", Rate(60, "minute"), "caller:v", 10, 30),
                           usage("address", Rate(600, "minute"), "address:a", 590, 30)))
    assert not admission.refused_by
    assert admission.headers() == {"RateLimit-Limit": "600", "RateLimit-Remaining": "10", "RateLimit-Reset": "30"}


def test_a_request_over_two_limits_retries_once_both_have_a_new_window():
    admission = RateVerdict((usage("uploads", Rate(30, "minute"), "caller:v", 31, 20),
                           usage("address", Rate(1000, "hour"), "address:a", 1001, 1800)))
    assert admission.headers()["Retry-After"] == "1800"
    assert admission.detail() == ("Too many requests: more than 30 uploads per minute from this caller; more than "
                                  "1000 writes and uploads per hour from this network address. Retry in 1800 s.")


def test_without_a_caller_the_callers_limit_counts_the_address():
    limiter = RateLimiter(None, writes=Rate(60, "minute"), uploads=Rate(30, "minute"), per_address=None)
    assert limiter.quotas(kind=WRITE, caller_id=None, address="10.0.0.1") == [
        Quota("writes", Rate(60, "minute"), "address:10.0.0.1")]
    assert limiter.quotas(kind=UPLOAD, caller_id="vol-1", address="10.0.0.1") == [
        Quota("uploads", Rate(30, "minute"), "caller:vol-1")]


def test_windows_are_numbered_so_every_process_names_the_same_counter():
    quota = Quota("writes", Rate(60, "minute"), "caller:v")
    assert quota.counter_id(120.0) == quota.counter_id(179.9) == "writes|caller:v|60|2"
    assert quota.counter_id(180.0) == "writes|caller:v|60|3"
    assert quota.window_end(150.0) == 180.0


@pytest.mark.parametrize("address, key", [
    ("203.0.113.7", "address:203.0.113.7"),
    ("2001:db8:1:2:aaaa::1", "address:2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:1:2:3", "address:2001:db8:1:2::/64"),  # the same subscriber's /64
    ("::ffff:203.0.113.7", "address:203.0.113.7"),
    ("unknown", "address:unknown"),
])
def test_an_ipv6_client_is_counted_by_its_64_and_an_ipv4_one_by_its_address(address, key):
    assert address_key(address) == key
