"""Notify's event handlers, one per consumed event, and the table that subscribes them."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from shared.bus import UNHURRIED_LINGER_S, Subscription, handles_batches, subscriptions_from
from shared.events import Event, MalformedEvent, ReportNotYetHeard, event_time, submitted_report
from shared.reference import ReferenceData

from . import domain
from .notices import Heard, NoticeWriter
from .store import NotifyStore


@dataclass(frozen=True)
class Context:
    store: NotifyStore
    writer: NoticeWriter
    city: ReferenceData
    links: domain.Links


@handles_batches(linger_s=UNHURRIED_LINGER_S)
def reports_submitted(events: list[Event], context: Context) -> None:
    """Remember who reported what, and where: reporters hear of their cases; grid digests count reports."""
    context.store.remember_reports([_heard(event.data) for event in events])


def _heard(data: dict) -> dict:
    return {**submitted_report(data), "status": "submitted"}


@handles_batches(linger_s=UNHURRIED_LINGER_S)
def cases_changed(events: list[Event], context: Context) -> None:
    """`case.<action>.<department>`: its reporters, its department and the office hear what concerns them
    (`case.joined.*`: the reporter of the report that joined, and the department); the events that arrived
    together are read about and written down together."""
    steps = [_case_step(event) for event in events]
    heard_reports = context.store.heard_reports([r for _, _, _, data in steps for r in data["report_ids"]])
    reporters = {report_id: report["reporter_id"] for report_id, report in heard_reports.items()}
    heard, follows = [], []
    for event, action, department, data in steps:
        told = [report_id for report_id, _ in domain.reporters_told(action, data)]
        if unknown := [r for r in told if r not in reporters]:
            raise ReportNotYetHeard(f"reports not heard of yet: {', '.join(unknown)}")
        notices = domain.case_notices(action, department, event.type, data, reporters=reporters, city=context.city,
                                      zone=context.city.timezone, links=context.links,
                                      due_at=event_time(data.get("due_at"), "due_at"))
        heard.append(Heard(notices, event.id, event.type, event.occurred_at))
        # A case merged into another leaves its reports to that case: they follow it, not this end.
        if isinstance(data.get("case_version"), int) and not (action == "rejected" and data.get("merged_into")):
            follows.append((data["report_ids"], {
                "status": data.get("status"), "case_id": data["case_id"],
                "open": data.get("status") not in ("closed", "rejected"), "overdue": bool(data.get("overdue")),
                **({"closed_at": event_time(event.occurred_at, "occurred_at")}
                   if data.get("status") == "closed" else {})},
                data["case_version"]))
    context.writer.write_all(heard, datetime.now(UTC))
    context.store.follow_cases(follows, heard_reports)


def _case_step(event: Event) -> tuple[Event, str, str | None, dict]:
    """(the event, its action, the department holding the case or None, its data), or MalformedEvent."""
    parts = event.type.split(".")
    if len(parts) != 3:
        raise MalformedEvent(f"not a case routing key: {event.type}")
    _, action, holder = parts
    data = event.data
    report_ids = data.get("report_ids")
    if not isinstance(report_ids, list) or not report_ids or not isinstance(data.get("case_id"), str):
        raise MalformedEvent("a case event must carry case_id and report_ids")
    if action == "joined" and data.get("report_id") not in report_ids:
        raise MalformedEvent("case.joined must carry report_id, the report that joined, among its report_ids")
    return event, action, None if holder == "none" else holder, data


def volunteer_event(event: Event, context: Context) -> None:
    """`hours.*` and `volunteer.*`: the volunteer they concern hears of their hours and levels."""
    if event.type == "volunteer.registered":
        return  # nothing to tell: the association registered them
    notices = domain.volunteer_notices(event.type, event.data, context.links)
    context.writer.write(notices, event.id, event.type, event.occurred_at, datetime.now(UTC))


# What notify consumes: queue, the routing keys bound to it, the handler (deploy/broker.py declares these).
SUBSCRIPTIONS = (
    ("notify.report-submitted", ("report.submitted",), reports_submitted),
    ("notify.case-events", ("case.*.*",), cases_changed),
    ("notify.volunteer-events", ("hours.*", "volunteer.*"), volunteer_event),
)


def subscriptions(context: Context) -> list[Subscription]:
    return subscriptions_from(SUBSCRIPTIONS, context=context)
