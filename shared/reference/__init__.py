"""The demo city's reference data: departments, problem categories, grid cells, its time zone and the
work calendar.

Shipped as data files beside this module and loaded at start; a deployment replaces them by
pointing WOODPECKER_REFERENCE_DIR at a folder holding its own `departments.json`,
`categories.json`, `grids.geojson`, `holidays.json` and `service_hours.json` (any file missing there falls back to the
demo city's). The city's time zone is the `timezone` of `holidays.json`, read by `load` and
`load_work_calendar` alike.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEMO_DIR = Path(__file__).parent
# The programme's lifetime, with room: no date in it is earlier or later. Keeps datetime far from its limits.
FIRST_YEAR, LAST_YEAR = 2000, 2100


@dataclass(frozen=True)
class Department:
    code: str
    name_zh: str
    name_en: str


@dataclass(frozen=True)
class Category:
    code: str
    name_zh: str
    name_en: str
    department: str | None
    deadline_hours: int | None
    urgent: bool


@dataclass(frozen=True)
class Grid:
    id: str
    name: str
    district: str
    district_name: str
    leader_id: str | None
    geometry: dict


@dataclass(frozen=True)
class ReferenceData:
    departments: dict[str, Department]
    categories: dict[str, Category]
    grids: dict[str, Grid]
    timezone: ZoneInfo  # the city's local time: its weeks, months and the times people read


@dataclass(frozen=True)
class WorkCalendar:
    """When the city's offices work: daily periods in local time, days off and make-up working days."""
    timezone: str  # the key of `ReferenceData.timezone`, e.g. "Asia/Shanghai"
    periods: tuple[tuple[time, time], ...]
    holidays: frozenset[date]
    working_weekend_days: frozenset[date]

    def is_working_day(self, day: date) -> bool:
        if day in self.working_weekend_days:
            return True
        return day.weekday() < 5 and day not in self.holidays

    def working_days_after(self, day: date, count: int) -> date:
        """The `count`-th working day after `day` (the rules' "within N working days" ends on it)."""
        # Terminates: every week outside the listed holidays has working days.
        while count > 0:
            day += timedelta(days=1)
            count -= self.is_working_day(day)
        return day


@dataclass(frozen=True)
class ServiceHoursRules:
    """How a jurisdiction credits volunteer service hours (`service_hours.json`); hours are decimal hours."""
    rule_version: str  # stamped on every ledger entry computed under these rules
    star_levels_hours: tuple[float, ...]  # cumulative hours of 1★, 2★, …
    annual_minimum_hours: float
    minimum_reminders_from: tuple[int, int]  # (month, day) from which the at-risk reminders run each year
    patrol_minimum_minutes: int
    patrol_rounding_minutes: int
    patrol_longest_hours: float
    # What one distinct report credits of its patrol at once; the rest of the patrol waits for a person.
    evidence_hours_per_report: float
    daily_cap_hours: float  # more on one day needs the association's approval
    daily_limit_hours: float  # more on one day is refused
    record_within_working_days: int
    publicity_working_days: int
    activity_minimum_photos: int
    issuer: str  # who issues proofs of service


class ReferenceDataError(ValueError):
    pass


def _read(directory: Path | None, name: str):
    path = directory / name if directory and (directory / name).exists() else DEMO_DIR / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReferenceDataError(f"cannot read reference file {path}: {exc}") from exc


def _folder(directory: str | None) -> Path | None:
    folder = Path(directory) if directory else None
    if folder and not folder.is_dir():
        raise ReferenceDataError(f"WOODPECKER_REFERENCE_DIR={directory} is not a folder")
    return folder


def _city_timezone(calendar_file: dict) -> ZoneInfo:
    """The `timezone` of `holidays.json`; an unknown zone fails here at start, not at the first deadline."""
    try:
        return ZoneInfo(calendar_file["timezone"])
    # OSError: a key naming a folder of the zone database, e.g. "Asia".
    except (KeyError, TypeError, ValueError, OSError, ZoneInfoNotFoundError) as exc:
        raise ReferenceDataError(f"the city's time zone in holidays.json is not a known zone: {exc!r}") from exc


def load(directory: str | None = None) -> ReferenceData:
    folder = _folder(directory)
    departments = {d["code"]: Department(**d) for d in _read(folder, "departments.json")["departments"]}
    categories = {c["code"]: Category(**c) for c in _read(folder, "categories.json")["categories"]}
    for category in categories.values():
        if category.department and category.department not in departments:
            raise ReferenceDataError(f"category {category.code} names unknown department {category.department}")
    grids = {}
    for feature in _read(folder, "grids.geojson")["features"]:
        props = feature["properties"]
        grids[props["id"]] = Grid(id=props["id"], name=props["name"], district=props["district"],
                                  district_name=props.get("district_name", props["district"]),
                                  leader_id=props.get("leader_id"), geometry=feature["geometry"])
    if not grids:
        raise ReferenceDataError("the grid file holds no grid cells")
    timezone = _city_timezone(_read(folder, "holidays.json"))
    return ReferenceData(departments=departments, categories=categories, grids=grids, timezone=timezone)


def load_work_calendar(directory: str | None = None) -> WorkCalendar:
    raw = _read(_folder(directory), "holidays.json")
    timezone = _city_timezone(raw)
    try:
        calendar = WorkCalendar(
            timezone=timezone.key,
            periods=tuple((time.fromisoformat(opens), time.fromisoformat(closes))
                          for opens, closes in raw["workday_periods"]),
            holidays=frozenset(date.fromisoformat(day) for day in raw["holidays"]),
            working_weekend_days=frozenset(date.fromisoformat(day) for day in raw["working_weekend_days"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ReferenceDataError(f"the work calendar is malformed: {exc!r}") from exc
    _check_work_calendar(calendar)
    return calendar


def load_service_hours(directory: str | None = None) -> ServiceHoursRules:
    raw = _read(_folder(directory), "service_hours.json")
    try:
        month, day = (int(part) for part in raw["minimum_reminders_from"].split("-"))
        date(2000, month, day)
        rules = ServiceHoursRules(
            rule_version=str(raw["rule_version"]),
            star_levels_hours=tuple(float(h) for h in raw["star_levels_hours"]),
            annual_minimum_hours=float(raw["annual_minimum_hours"]), minimum_reminders_from=(month, day),
            patrol_minimum_minutes=int(raw["patrol"]["minimum_minutes"]),
            patrol_rounding_minutes=int(raw["patrol"]["rounding_minutes"]),
            patrol_longest_hours=float(raw["patrol"]["longest_hours"]),
            evidence_hours_per_report=float(raw["patrol"]["evidence_hours_per_report"]),
            daily_cap_hours=float(raw["daily_cap_hours"]), daily_limit_hours=float(raw["daily_limit_hours"]),
            record_within_working_days=int(raw["record_within_working_days"]),
            publicity_working_days=int(raw["publicity_working_days"]),
            activity_minimum_photos=int(raw["activity_minimum_photos"]), issuer=str(raw["issuer"]))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ReferenceDataError(f"service_hours.json is malformed: {exc!r}") from exc
    levels = rules.star_levels_hours
    if not levels or any(low >= high for low, high in zip(levels, levels[1:], strict=False)) or levels[0] <= 0:
        raise ReferenceDataError("star_levels_hours must be positive and increasing")
    if not 0 < rules.daily_cap_hours <= rules.daily_limit_hours <= 24:
        raise ReferenceDataError("daily_cap_hours must be positive and at most daily_limit_hours (at most 24)")
    if rules.patrol_rounding_minutes <= 0 or rules.patrol_minimum_minutes < rules.patrol_rounding_minutes:
        raise ReferenceDataError("patrol rounding must be positive and at most the minimum patrol")
    evidence_minutes = rules.evidence_hours_per_report * 60
    if evidence_minutes <= 0 or evidence_minutes % rules.patrol_rounding_minutes:
        raise ReferenceDataError("patrol evidence_hours_per_report must be positive and a whole number of "
                                 "rounding steps")
    return rules


def _check_work_calendar(calendar: WorkCalendar) -> None:
    if not calendar.periods:
        raise ReferenceDataError("the work calendar has no working periods in a day")
    if any(moment.tzinfo for period in calendar.periods for moment in period):
        raise ReferenceDataError("working periods are local times of day, without an offset")
    previous_end = time.min
    for start, end in calendar.periods:
        if not previous_end <= start < end:
            raise ReferenceDataError(f"working periods must be increasing and not overlap: {start}-{end}")
        previous_end = end
    if both := sorted(calendar.holidays & calendar.working_weekend_days):
        raise ReferenceDataError(f"days both off and worked: {', '.join(map(str, both))}")
    # A make-up working day on a weekday would change nothing, so it is surely a typo in the date.
    if weekdays := sorted(day for day in calendar.working_weekend_days if day.weekday() < 5):
        raise ReferenceDataError(f"working weekend days that are not weekends: {', '.join(map(str, weekdays))}")


def local_text(moment: datetime | None, zone: ZoneInfo) -> str | None:
    """`moment` as the city's people read it: local wall-clock time to the minute (None stays None)."""
    return None if moment is None else moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")
