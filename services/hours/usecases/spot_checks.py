"""Spot checks (抽查) of recorded hours: drawing a sample of a year's credited entries, and recording each
drawn entry's result (a failed entry is reversed)."""
from __future__ import annotations

from datetime import datetime

from shared.auth import Caller
from shared.errors import NotFound
from shared.pagination import decode_cursor, page

from .. import domain
from . import Hours, actor_label
from .ledger import reverse_entry


def draw_spot_check(hours: Hours, caller: Caller, fields: dict, key: str | None, fingerprint: str,
                    now: datetime) -> tuple[dict, bool]:
    """Draw the sample with a seed the server chooses, and keep the check listed."""
    seed = domain.spot_check_seed()
    items = hours.store.sample(fields["year"], fields["size"], seed)
    check = {"id": domain.new_id(), **fields, "seed": seed, "created_by": actor_label(caller), "created_at": now,
             "items": items}
    return hours.store.create_spot_check(check, key, fingerprint)


def spot_checks_page(hours: Hours, query: dict) -> dict:
    items = hours.store.list_spot_checks(query.get("year"), decode_cursor(query.get("cursor")), query["limit"])
    result = page(items, query["limit"], "created_at")
    result["items"] = [domain.spot_check_listed(check) for check in result["items"]]
    return result


def known_spot_check(hours: Hours, check_id: str) -> dict:
    found = hours.store.spot_check(check_id)
    if found is None:
        raise NotFound(f"No spot check {check_id}.")
    return found


def record_result(hours: Hours, caller: Caller, check_id: str, entry_id: str, *, passed: bool, note: str,
                  correlation_id: str | None, now: datetime) -> dict:
    """Record one drawn entry's result, once; a failed entry is reversed with the check as its reason."""
    domain.unchecked_item(known_spot_check(hours, check_id), entry_id)
    by = actor_label(caller)
    result = domain.spot_check_result(passed, note, by, now)
    if not passed:
        reversal = reverse_entry(hours, by, entry_id, domain.spot_check_reason(check_id, note), correlation_id, now)
        result["reversal_id"] = reversal["id"]
    if not hours.store.record_result(check_id, entry_id, result):
        # Recorded by someone else meanwhile: the rule says why, against the check as it is now.
        domain.unchecked_item(known_spot_check(hours, check_id), entry_id)
    return known_spot_check(hours, check_id)
