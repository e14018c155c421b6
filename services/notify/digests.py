"""The weekly grid digest: every Monday from 08:00 in the city's time, each grid's leader gets last week's
summary of their grid (new, open, overdue and closed reports), built from the events notify has seen.

Once per grid per week however many worker processes run: the digest's notice is keyed by grid and week like
an event, so a second writer creates nothing. A worker that was down on Monday sends it when it comes back,
the same week. A pass that wrote every grid records the week, so later passes cost one read.
"""
from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from shared.reference import ReferenceData, local_text

from . import domain
from .domain import DIGEST_KIND, Notice
from .notices import NoticeWriter
from .store import NotifyStore

SENT_FROM = time(8, 0)
LISTED = 200  # items a digest lists at most per list (the template shows 20 and counts the rest)
STATUS_NAMES = {"submitted": "已提交", "pending_triage": "待分拨", "dispatched": "已派遣", "accepted": "处置中",
                "disputed": "退回重派", "rectified": "已整改待核查", "closed": "已办结", "rejected": "不予受理"}


def due_week(now: datetime, zone: ZoneInfo) -> tuple[str, date] | None:
    """(last week's ISO label, its Monday) once this week's Monday 08:00 local has come; None before."""
    local = now.astimezone(zone)
    monday = local.date() - timedelta(days=local.weekday())
    if local.weekday() == 0 and local.time() < SENT_FROM:
        return None
    last_monday = monday - timedelta(days=7)
    iso_year, week, _ = last_monday.isocalendar()
    return f"{iso_year}-W{week:02d}", last_monday


def period_text(monday: date) -> str:
    sunday = monday + timedelta(days=6)
    return f"{monday.month}月{monday.day}日至{sunday.month}月{sunday.day}日"


class GridDigest:
    def __init__(self, store: NotifyStore, writer: NoticeWriter, city: ReferenceData, links: domain.Links):
        self.store = store
        self.writer = writer
        self.city = city
        self.links = links

    def check(self, now: datetime) -> int:
        """Write the digests due by `now` that are not written yet; returns how many this pass wrote."""
        zone = self.city.timezone
        due = due_week(now, zone)
        if due is None:
            return 0
        week, monday = due
        if self.store.digests_done(week):
            return 0
        start = datetime.combine(monday, time.min, tzinfo=zone).astimezone(UTC)
        end = start + timedelta(days=7)
        written = 0
        for grid in self.city.grids.values():
            context = self.summary(grid.id, grid.name, week, monday, start, end)
            notice = Notice(f"grid:{grid.id}", DIGEST_KIND, "digest.weekly", context,
                            {k: v for k, v in context.items() if not k.endswith("_items")})
            written += self.writer.write([notice], f"digest:{grid.id}:{week}", DIGEST_KIND, now.isoformat(), now)
        self.store.record_digests_done(week, now)
        return written

    def summary(self, grid_id: str, grid_name: str, week: str, monday: date, start: datetime,
                end: datetime) -> dict:
        reports = self.store.reports_of_grid(grid_id, start, end)
        zone = self.city.timezone

        def item(report: dict) -> dict:
            category = self.city.categories.get(report.get("category") or "")
            return {"report_id": report["_id"], "category_name": category.name_zh if category else "",
                    "submitted_at": local_text(report["submitted_at"], zone),
                    "status_name": STATUS_NAMES.get(report.get("status"), report.get("status") or "")}

        open_reports = sorted(reports["open"], key=lambda r: r["submitted_at"])
        overdue = [r for r in open_reports if r.get("overdue")]
        return {"grid_name": grid_name, "week": week, "period": period_text(monday), "new": reports["new"],
                "closed": reports["closed"], "open": len(open_reports), "overdue": len(overdue),
                "open_items": [item(r) for r in open_reports[:LISTED]],
                "overdue_items": [item(r) for r in overdue[:LISTED]], "link": self.links.grid(grid_id)}
