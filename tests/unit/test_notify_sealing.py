"""Notify's key: secrets sealed at rest and bound to their owner, codes hashed under a key, and no start
without a key of our own outside development."""
from dataclasses import replace

import pytest

from services.notify.sealing import DEV_SECRET_KEY, Sealer, Unsealable, sealer_from
from services.notify.settings import NotifySettings
from shared.config import Settings, UnsafeConfiguration

KEY = "k" * 32


def test_a_sealed_secret_opens_only_with_its_key_for_its_owner():
    sealer = Sealer(KEY)
    sealed = sealer.seal("whsec_abc", "department:sanitation")

    assert "whsec_abc" not in sealed and sealed.startswith("v1:")
    assert sealer.open(sealed, "department:sanitation") == "whsec_abc"
    with pytest.raises(Unsealable):
        sealer.open(sealed, "department:traffic-police")  # copied onto another subscription
    with pytest.raises(Unsealable):
        Sealer("x" * 32).open(sealed, "department:sanitation")
    with pytest.raises(Unsealable):
        sealer.open(sealed[:-4] + "AAAA", "department:sanitation")
    assert sealer.seal("whsec_abc", "department:sanitation") != sealed  # a fresh nonce each time


def test_a_codes_hash_depends_on_the_key_the_recipient_and_the_code():
    one, other = Sealer(KEY), Sealer("x" * 32)
    assert one.code_hash("volunteer:u1", "01234567") == one.code_hash("volunteer:u1", "01234567")
    assert len({one.code_hash("volunteer:u1", "01234567"), one.code_hash("volunteer:u2", "01234567"),
                one.code_hash("volunteer:u1", "01234568"), other.code_hash("volunteer:u1", "01234567")}) == 4


def settings(allowed: bool) -> Settings:
    return replace(Settings.from_env("notify", {}), development_secret_allowed=allowed)


@pytest.mark.parametrize("key, allowed", [(None, False), (DEV_SECRET_KEY, False), ("short", False), ("short", True)])
def test_notify_refuses_to_start_without_a_key_of_its_own(key, allowed):
    with pytest.raises(UnsafeConfiguration, match="NOTIFY_SECRET_KEY"):
        sealer_from(NotifySettings.from_env({"NOTIFY_SECRET_KEY": key} if key else {}), settings(allowed))


def test_beside_make_ups_embedded_database_the_development_key_is_used():
    sealer = sealer_from(NotifySettings.from_env({}), settings(allowed=True))
    assert Sealer(DEV_SECRET_KEY).open(sealer.seal("s", "office"), "office") == "s"
    assert sealer_from(NotifySettings.from_env({"NOTIFY_SECRET_KEY": KEY}), settings(False)).open(
        Sealer(KEY).seal("s", "office"), "office") == "s"
