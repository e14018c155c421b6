"""Hours' event handlers, one per consumed event, and the table that subscribes them."""
from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from shared.bus import UNHURRIED_LINGER_S, Subscription, handles_batches, subscriptions_from
from shared.events import Event, MalformedEvent

from .store import HoursStore


class ReportNotYetHeard(Exception):
    """A case closed for a report whose report.submitted has not reached hours yet: retried later."""


def _time(value, field: str) -> datetime:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        raise MalformedEvent(f"{field} is not an RFC 3339 time: {value!r}") from None


@handles_batches(linger_s=UNHURRIED_LINGER_S)
def reports_submitted(events: list[Event], store: HoursStore, zone: ZoneInfo) -> None:
    """Remember who reported what, where and when: it evidences patrols and counts once its case closes."""
    store.reports_submitted([(_heard(event.data, zone), event.correlation_id) for event in events])


def _heard(data: dict, zone: ZoneInfo) -> dict:
    missing = [k for k in ("id", "reporter_id", "grid_id", "submitted_at") if not isinstance(data.get(k), str)]
    if missing:
        raise MalformedEvent(f"report.submitted lacks {', '.join(missing)}")
    submitted_at = _time(data["submitted_at"], "submitted_at")
    return {"id": data["id"], "reporter_id": data["reporter_id"], "grid_id": data["grid_id"],
            "submitted_at": submitted_at, "year": submitted_at.astimezone(zone).year}


def case_closed(event: Event, store: HoursStore, zone: ZoneInfo) -> None:
    """`case.closed.*`: each of the case's reports counts once as verified for its reporter."""
    report_ids = event.data.get("report_ids")
    if not isinstance(report_ids, list) or not all(isinstance(r, str) for r in report_ids) or not report_ids:
        raise MalformedEvent("a case event must carry report_ids")
    unknown = store.case_closed(report_ids)
    if unknown:
        raise ReportNotYetHeard(f"reports not heard of yet: {', '.join(unknown)}")


# What hours consumes: queue, the routing keys bound to it, the handler (deploy/broker.py declares these).
SUBSCRIPTIONS = (
    ("hours.report-submitted", ("report.submitted",), reports_submitted),
    ("hours.case-closed", ("case.closed.*",), case_closed),
)


def subscriptions(store: HoursStore, zone: ZoneInfo) -> list[Subscription]:
    return subscriptions_from(SUBSCRIPTIONS, store=store, zone=zone)
