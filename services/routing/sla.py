"""The SLA board (督办看板): which running cases are overdue and which come due soon, per department. Pure functions.

"Soon" is counted on each case's own clock (its deadline basis): for a working-hours case, 24 hours means 24
working hours, so a case due on Monday morning is due soon on Friday afternoon. The board reads the live
deadline, not the `overdue` flag, so it is right even when the deadline watch lags a sweep behind.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from .clock import DeadlineClock
from .domain import RUNNING_STATUSES

OVERDUE, DUE_SOON = "overdue", "due_soon"
# What the store reads of a case for the board: nothing of its history, photos or outbox.
BOARD_FIELDS = ("category", "department", "grid_id", "status", "due_at", "basis", "escalation_level", "extension")


def standing(due_at: datetime | None, now: datetime, horizon: datetime) -> str | None:
    """Overdue once the deadline has passed; due soon when it comes by `horizon` (now plus the window on the
    case's clock); otherwise (or without a deadline) not on the board."""
    if due_at is None:
        return None
    if due_at <= now:
        return OVERDUE
    if due_at <= horizon:
        return DUE_SOON
    return None


def board_entry(case: dict, clock: DeadlineClock, now: datetime, horizon: datetime) -> dict | None:
    """A running case as the board lists it, with the hours left or overdue by on its own clock; None when the
    case's deadline does not run or is not near."""
    if case["status"] not in RUNNING_STATUSES:
        return None
    where = standing(case.get("due_at"), now, horizon)
    if where is None:
        return None
    due_at = case["due_at"]
    extension = case.get("extension") or {}
    return {
        "id": case["id"], "category": case["category"], "department": case["department"],
        "grid_id": case["grid_id"], "status": case["status"], "due_at": due_at, "basis": case["basis"],
        "standing": where,
        "hours_left": round(clock.hours_between(now, due_at), 1) if where == DUE_SOON else None,
        "hours_overdue": round(clock.hours_between(due_at, now), 1) if where == OVERDUE else None,
        "escalation_level": case["escalation_level"],
        "extension_requested": extension.get("status") == "requested",
    }


def _urgency(entry: dict) -> tuple:
    """Overdue first, the longest overdue at the top; then the soonest due."""
    return (entry["standing"] != OVERDUE, entry["due_at"], entry["id"])


def sla_board(cases: Iterable[dict], departments: Iterable[str], clock_for: Callable[[str], DeadlineClock],
              now: datetime, horizons: dict[str, datetime], cap: int) -> list[dict]:
    """One row per department of `departments` (those the caller may see), the most overdue first: the counts of
    overdue and due-soon cases, and at most `cap` of them, most urgent first (`truncated` when there are more).
    `horizons` maps each deadline basis to now plus the window on that basis's clock."""
    rows = {code: [] for code in departments}
    for case in cases:
        if case.get("department") not in rows:
            continue
        entry = board_entry(case, clock_for(case["basis"]), now, horizons[case["basis"]])
        if entry is not None:
            rows[case["department"]].append(entry)
    board = []
    for code, entries in rows.items():
        entries.sort(key=_urgency)
        overdue = sum(1 for e in entries if e["standing"] == OVERDUE)
        board.append({"department": code, "overdue": overdue, "due_soon": len(entries) - overdue,
                      "truncated": len(entries) > cap, "cases": entries[:cap]})
    board.sort(key=lambda row: (-row["overdue"], -row["due_soon"], row["department"]))
    return board
