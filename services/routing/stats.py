"""The office's league tables: how each department (or grid) fixed its cases in a period. Pure functions."""
from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from shared.errors import InvalidFields
from shared.reference import FIRST_YEAR, LAST_YEAR

FINISHED = ("closed", "rejected")
MONTH_PATTERN = re.compile(r"([0-9]{4})-([0-9]{2})")  # \d would also take full-width digits


def _in(moment: datetime | None, start: datetime, end: datetime) -> bool:
    return moment is not None and start <= moment < end


def _measures(cases: list[dict], start: datetime, end: datetime, now: datetime) -> dict:
    # A rejected case was never the department's to fix, so it owes no deadline. A deadline still to
    # come counts only once the case is closed: mid-month, work not yet due must not drag a rate down.
    due = [c for c in cases if c["status"] != "rejected" and _in(c["due_at"], start, end)
           and (c["due_at"] <= now or c["status"] == "closed")]
    deferred = [c for c in due if c["deferred"]]
    counted = [c for c in due if not c["deferred"]]
    closed_on_time = sum(1 for c in counted if c["status"] == "closed" and c["closed_at"] is not None
                         and c["closed_at"] <= c["due_at"])
    # Deliberately the live deadline, not the `overdue` flag, so the table is right even if the sweep lags.
    overdue_open = sum(1 for c in cases if c["status"] not in FINISHED and c["due_at"] is not None
                       and c["due_at"] < now)
    verdicts = [entry["action"] for c in cases for entry in c["history"]
                if entry["action"] in ("verified_passed", "verified_failed") and _in(entry["at"], start, end)]
    failed = verdicts.count("verified_failed")
    hours = [(c["rectified_at"] - c["dispatched_at"]).total_seconds() / 3600 for c in cases
             if _in(c["rectified_at"], start, end) and c["dispatched_at"] is not None]
    return {
        "due": len(due),
        "deferred": len(deferred),
        "closed_on_time": closed_on_time,
        "on_time_rate": closed_on_time / len(counted) if counted else None,
        "overdue_open": overdue_open,
        "rework_rate": failed / len(verdicts) if verdicts else None,
        "avg_hours_to_rectify": round(sum(hours) / len(hours), 1) if hours else None,
    }


def _standing(row: dict) -> tuple:
    """What the rank compares; a missing rate sorts after every real one."""
    on_time, rework = row["on_time_rate"], row["rework_rate"]
    return (on_time is None, -(on_time or 0), rework is None, rework or 0, row["overdue_open"])


def _league(cases: list[dict], names: dict[str, str], field: str, name_field: str,
            start: datetime, end: datetime, now: datetime) -> list[dict]:
    by_key: dict[str, list[dict]] = {key: [] for key in names}
    for case in cases:
        if case.get(field) in by_key:
            by_key[case[field]].append(case)
    rows = [{field: key, name_field: names[key], **_measures(group, start, end, now)}
            for key, group in by_key.items()]
    rows.sort(key=lambda row: (_standing(row), row[field]))
    for position, row in enumerate(rows, start=1):
        # Competition ranking: equal standing shares the rank, and the next one skips ("1, 2, 2, 4").
        previous = rows[position - 2] if position > 1 else None
        tied = previous is not None and _standing(previous) == _standing(row)
        row["rank"] = previous["rank"] if tied else position
    return rows


def department_stats(cases: list[dict], departments: dict[str, str], start: datetime, end: datetime,
                     now: datetime) -> list[dict]:
    """One row per department in `departments` (code → Chinese name), best first, for [start, end).

    按期结案率 = 按期结案数 / (应结案数 − 延期数); `None` where that denominator is 0.
    """
    return _league(cases, departments, "department", "department_name", start, end, now)


def grid_stats(cases: list[dict], grids: dict[str, str], month_start: datetime, month_end: datetime,
               now: datetime) -> list[dict]:
    """The same table as `department_stats`, one row per grid in `grids` (id → Chinese name)."""
    return _league(cases, grids, "grid_id", "grid_name", month_start, month_end, now)


def month_bounds(text: str, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """"2026-11" → the office's month, midnight to midnight in the city's time `zone`, as UTC instants."""
    match = MONTH_PATTERN.fullmatch(text)
    year, month = (int(match[1]), int(match[2])) if match else (0, 0)
    if not (FIRST_YEAR <= year <= LAST_YEAR and 1 <= month <= 12):
        raise InvalidFields("month must look like 2026-11.",
                            {"month": [f"year-month, e.g. 2026-11, year {FIRST_YEAR}..{LAST_YEAR}"]})
    following = (year + 1, 1) if month == 12 else (year, month + 1)
    start = datetime(year, month, 1, tzinfo=zone)
    end = datetime(*following, 1, tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def months_between(first: str, last: str, most: int) -> list[str]:
    """"2026-01", "2026-03" → ["2026-01", "2026-02", "2026-03"]: the months of a monthly series, at most `most`
    of them, so that one request can never ask for years of scans."""
    bounds = []
    for name, text in (("from_month", first), ("to_month", last)):
        match = MONTH_PATTERN.fullmatch(text)
        if not match or not (FIRST_YEAR <= int(match[1]) <= LAST_YEAR and 1 <= int(match[2]) <= 12):
            raise InvalidFields(f"{name} must look like 2026-01.", {name: ["year-month, e.g. 2026-01"]})
        bounds.append(int(match[1]) * 12 + int(match[2]) - 1)
    start, end = bounds
    if end < start:
        raise InvalidFields("to_month must not be before from_month.", {"to_month": ["not before from_month"]})
    if end - start + 1 > most:
        raise InvalidFields(f"At most {most} months at once.", {"to_month": [f"at most {most} months from from_month"]})
    return [f"{index // 12:04d}-{index % 12 + 1:02d}" for index in range(start, end + 1)]
