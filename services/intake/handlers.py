"""Intake's event handlers, one per consumed event, and the table that subscribes them."""
from __future__ import annotations

import functools
import logging
from datetime import datetime

from shared.bus import Subscription
from shared.events import Event, MalformedEvent
from shared.reference import ReferenceData

from .domain import CaseStep, follow_case, parse_case_routing_key
from .store import ReportStore

log = logging.getLogger(__name__)


def _time(value, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise MalformedEvent(f"{field} is not an RFC 3339 time: {value!r}") from None


def case_changed(event: Event, store: ReportStore, reference: ReferenceData) -> None:
    """`case.<action>.<department>`: every report of the case follows it, and its reporter sees the step."""
    try:
        action, department = parse_case_routing_key(event.type)
    except ValueError as exc:
        raise MalformedEvent(str(exc)) from exc
    report_ids = event.data.get("report_ids")
    if not isinstance(report_ids, list) or not report_ids:
        raise MalformedEvent("a case event must carry report_ids")
    step = CaseStep(event_id=event.id, action=action, department=department,
                    occurred_at=_time(event.occurred_at, "occurred_at"), data=event.data)
    due_at = _time(event.data.get("due_at"), "due_at")
    dept = reference.departments.get(department) if department else None
    follow = functools.partial(follow_case, step=step, department_name=dept.name_zh if dept else None, due_at=due_at,
                               zone=reference.timezone)
    for report_id in report_ids:
        if not store.apply_case_step(str(report_id), follow):
            log.warning("case event names a report intake does not have",
                        extra={"report_id": report_id, "event_id": event.id})


# What intake consumes: queue, the routing keys bound to it, the handler (deploy/broker.py declares these).
SUBSCRIPTIONS = (
    ("intake.case-events", ("case.*.*",), case_changed),
)


def subscriptions(store: ReportStore, reference: ReferenceData) -> list[Subscription]:
    return [Subscription(queue, keys, functools.partial(handler, store=store, reference=reference))
            for queue, keys, handler in SUBSCRIPTIONS]
