"""Hours' event handlers, one per consumed event, and the table that subscribes them."""
from __future__ import annotations

from zoneinfo import ZoneInfo

from shared.bus import UNHURRIED_LINGER_S, Subscription, handles_batches, subscriptions_from
from shared.events import Event, MalformedEvent, ReportNotYetHeard, submitted_report, utcnow

from . import domain
from .store import HoursStore
from .usecases import evidence


@handles_batches(linger_s=UNHURRIED_LINGER_S)
def reports_submitted(events: list[Event], store: HoursStore, zone: ZoneInfo) -> None:
    """Remember who reported what, where and when: it evidences patrols and counts once its case closes."""
    evidence.reports_submitted(store, [(_heard(event.data, zone), event.correlation_id) for event in events],
                               utcnow())


def _heard(data: dict, zone: ZoneInfo) -> dict:
    report = submitted_report(data)
    return {"id": report["id"], "reporter_id": report["reporter_id"], "grid_id": report["grid_id"],
            "submitted_at": report["submitted_at"], "year": report["submitted_at"].astimezone(zone).year}


def _case(data: dict) -> tuple[str, list[str]]:
    case_id, report_ids = data.get("case_id"), data.get("report_ids")
    if not isinstance(case_id, str) or not case_id:
        raise MalformedEvent("a case event must carry case_id")
    if not isinstance(report_ids, list) or not report_ids or not all(isinstance(r, str) for r in report_ids):
        raise MalformedEvent("a case event must carry report_ids")
    return case_id, report_ids


def case_closed(event: Event, store: HoursStore, zone: ZoneInfo) -> None:
    """`case.closed.*`: the case counts one verified report for each of its reporters."""
    case_id, report_ids = _case(event.data)
    if unknown := evidence.case_closed(store, case_id, report_ids):
        raise ReportNotYetHeard(f"reports not heard of yet: {', '.join(unknown)}")


def case_rejected(event: Event, store: HoursStore, zone: ZoneInfo) -> None:
    """`case.rejected.*`: each of the case's reports is withdrawn as evidence, with the rejection's reason; but not
    those of a case merged into another, which went on in that case (its `case.joined` judges each of them)."""
    if event.data.get("merged_into"):
        return
    _, report_ids = _case(event.data)
    why = domain.rejection_reason(event.data.get("reason"))
    unknown = [r for r in report_ids if not evidence.withdraw_report(store, r, why, utcnow(), event.correlation_id)]
    if unknown:
        raise ReportNotYetHeard(f"reports not heard of yet: {', '.join(unknown)}")


def case_joined(event: Event, store: HoursStore, zone: ZoneInfo) -> None:
    """`case.joined.*`: a report that joins a case where its reporter already has a report is withdrawn as
    evidence (no distinct evidence of anything)."""
    case_id, report_ids = _case(event.data)
    joining = event.data.get("report_id")
    if not isinstance(joining, str) or not joining:
        raise MalformedEvent("case.joined must carry report_id")
    reports = store.reports_of(sorted({*report_ids, joining}))
    if unknown := sorted({*report_ids, joining} - set(reports)):
        raise ReportNotYetHeard(f"reports not heard of yet: {', '.join(unknown)}")
    earlier = domain.self_duplicate_of(reports[joining], list(reports.values()))
    if earlier is not None:
        evidence.withdraw_report(store, joining, domain.self_duplicate_reason(case_id, earlier), utcnow(),
                                 event.correlation_id)


# What hours consumes: queue, the routing keys bound to it, the handler (deploy/broker.py declares these).
SUBSCRIPTIONS = (
    ("hours.report-submitted", ("report.submitted",), reports_submitted),
    ("hours.case-closed", ("case.closed.*",), case_closed),
    ("hours.case-rejected", ("case.rejected.*",), case_rejected),
    ("hours.case-joined", ("case.joined.*",), case_joined),
)


def subscriptions(store: HoursStore, zone: ZoneInfo) -> list[Subscription]:
    return subscriptions_from(SUBSCRIPTIONS, store=store, zone=zone)
