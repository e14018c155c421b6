"""The outbound client's target checks (shared/outbound.py): which URLs and addresses it refuses, and what a
deployment's allowance opens, with the name resolver stood in for (the refusals of a live target, and the
connections, are tests/service/test_notify_webhooks.py)."""
from __future__ import annotations

import pytest

from shared.outbound import TargetPolicy, UnsafeTarget, check_url
from tests.unit.resolver_double import FakeResolver, unresolvable

PUBLIC = "93.184.216.34"
LOOPBACK_ALLOWED = TargetPolicy.from_setting("127.0.0.0/8", deadline_s=2.0)
NO_ALLOWANCE = TargetPolicy(deadline_s=2.0)


# --- refusing targets ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url, reason", [
    ("http://0.0.0.0/", "unspecified"),
    ("http://127.1/", "loopback"),          # the resolver's shorthand for 127.0.0.1
    ("http://2130706433/", "loopback"),     # 127.0.0.1 as one number
    ("http://192.168.1.10/", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://[fe80::1]/", "link-local"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://255.255.255.255/", "reserved"),
    ("http://[2002:7f00:1::]/", "tunnel address to 127.0.0.1"),  # 6to4
    ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "private"),  # Teredo
    ("http://[64:ff9b::7f00:1]/", "reserved"),  # NAT64
    ("http://192.0.2.1/", "private"),  # documentation range: not on the internet
])
def test_other_non_public_addresses_are_refused(url, reason):
    with pytest.raises(UnsafeTarget) as refused:
        check_url(url, NO_ALLOWANCE)
    assert reason in refused.value.detail


@pytest.mark.parametrize("answer", [("10.1.2.3",), (PUBLIC, "10.1.2.3"), ("fd12::1", PUBLIC)],
                         ids=["private", "public-then-private", "private-then-public"])
def test_a_name_resolving_to_any_private_address_is_refused_without_saying_what_it_resolved_to(answer):
    with pytest.raises(UnsafeTarget) as refused:
        check_url("https://receiver.example/hook", NO_ALLOWANCE, resolve=FakeResolver(*answer))

    assert str(refused.value) == ("receiver.example does not resolve to a public internet address; only public "
                                  "internet addresses are accepted")
    assert not any(address in str(refused.value) for address in ("10.1.2.3", "fd12", "private"))
    assert refused.value.detail.startswith("receiver.example resolves to ")  # for the delivery log only
    assert refused.value.detail.endswith(", which is a private address")


@pytest.mark.parametrize("url", ["https://receiver.example/hook", "http://receiver.example:8080/hook?token=1",
                                 "HTTPS://Receiver.Example/hook", "https://bücher.example/hook"])
def test_a_name_resolving_to_public_addresses_is_accepted(url):
    check_url(url, NO_ALLOWANCE, resolve=FakeResolver(PUBLIC, "2606:4700::6810:84e5"))


@pytest.mark.parametrize("url", [f"http://{PUBLIC}/", "https://[2606:4700::6810:84e5]/", f"http://[::ffff:{PUBLIC}]/",
                                 "http://[2002:5db8:d822::1]/"])
def test_public_address_literals_are_accepted_without_a_lookup(url):
    check_url(url, NO_ALLOWANCE, resolve=unresolvable)


def test_a_name_that_does_not_resolve_is_refused_in_the_same_words_as_one_resolving_inside():
    for resolve in (unresolvable, FakeResolver(), FakeResolver("10.1.2.3")):
        with pytest.raises(UnsafeTarget, match="^receiver.example does not resolve to a public internet address"):
            check_url("https://receiver.example/hook", NO_ALLOWANCE, resolve=resolve)


def test_a_strict_policy_takes_https_to_public_addresses_only_whatever_the_deployment_allows():
    strict = LOOPBACK_ALLOWED.strict()

    with pytest.raises(UnsafeTarget, match="only https:// URLs are accepted"):
        check_url(f"http://{PUBLIC}/hook", strict)
    with pytest.raises(UnsafeTarget, match="loopback"):
        check_url("https://127.0.0.1:8443/hook", strict)
    check_url(f"https://{PUBLIC}/hook", strict)
    check_url("http://127.0.0.1:8080/hook", LOOPBACK_ALLOWED)


@pytest.mark.parametrize("url, reason", [
    ("ftp://receiver.example/hook", "only http:// and https://"),
    ("file:///etc/passwd", "only http:// and https://"),
    ("gopher://receiver.example:70/", "only http:// and https://"),
    ("javascript:alert(1)", "only http:// and https://"),
    ("receiver.example/hook", "only http:// and https://"),
    ("https://user:pass@receiver.example/hook", "user name or password"),
    ("https://user@receiver.example/hook", "user name or password"),
    ("https://receiver.example\\@evil.example/hook", "user name or password"),
    ("http:///hook", "no host"),
    ("https://receiver.example:0/hook", "port"),
    ("https://receiver.example:65536/hook", "port"),
    ("https://receiver.example:http/hook", "port"),
    ("https://receiver.example/" + "a" * 2048, "longer than 2048"),
    ("https://receiver.example/hook\r\nX-Injected: yes", "control characters"),
    ("https://receiver .example/hook", "spaces"),
    ("https://receiver.example/hôok", "ASCII"),
    ("https://receiver!.example/hook", "not a valid host name"),
])
def test_malformed_urls_are_refused(url, reason):
    with pytest.raises(UnsafeTarget, match=reason):
        check_url(url, NO_ALLOWANCE, resolve=FakeResolver(PUBLIC))


# --- the allowance -------------------------------------------------------------------------------------------------

def test_allowed_networks_open_exactly_those_networks():
    policy = TargetPolicy.from_setting(" 127.0.0.0/8, 10.1.0.0/16 ,::1/128,")

    check_url("http://127.0.0.1:8080/hook", policy)
    check_url("http://[::1]/hook", policy)
    check_url("http://receiver.internal/hook", policy, resolve=FakeResolver("10.1.200.7", PUBLIC))
    with pytest.raises(UnsafeTarget, match="private"):
        check_url("http://10.2.0.1/hook", policy)
    with pytest.raises(UnsafeTarget, match="link-local"):
        check_url("http://169.254.169.254/", policy)


def test_the_allowance_applies_to_ipv4_mapped_forms_of_an_allowed_address():
    check_url("http://[::ffff:127.0.0.1]/hook", LOOPBACK_ALLOWED)


def test_from_setting_reads_nothing_as_no_allowance_and_keeps_the_deadline():
    assert TargetPolicy.from_setting(None) == TargetPolicy()
    assert TargetPolicy.from_setting("  ", deadline_s=2.5) == TargetPolicy(deadline_s=2.5)


@pytest.mark.parametrize("setting, named", [("127.0.0.0/8,10.1.0.0/33", "10.1.0.0/33"), ("intranet", "intranet"),
                                            ("10.1.2.3/16", "10.1.2.3/16")])
def test_from_setting_names_a_bad_network(setting, named):
    with pytest.raises(ValueError, match=f"NOTIFY_ALLOWED_NETWORKS: '{named}'"):
        TargetPolicy.from_setting(setting)


def test_a_deadline_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        TargetPolicy(deadline_s=0)
