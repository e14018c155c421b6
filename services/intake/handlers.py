"""Intake's event handlers, one per consumed event, and the table that subscribes them."""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator

from shared.bus import BESIDE_SUBMISSIONS_LINGER_S, Subscription, handles_batches, subscriptions_from
from shared.events import Event, MalformedEvent, event_time
from shared.reference import ReferenceData

from .domain import CaseStep, follow_case, parse_case_routing_key, reports_following
from .store import ReportStore

log = logging.getLogger(__name__)


@handles_batches(linger_s=BESIDE_SUBMISSIONS_LINGER_S)
def cases_changed(events: list[Event], store: ReportStore, reference: ReferenceData) -> None:
    """`case.<action>.<department>`: the reports of a case follow it, and their reporters see the step. The
    events that arrived together are applied together (a case's `opened` and `dispatched` come as a pair)."""
    follows = [follow for event in events for follow in _follows(event, reference)]
    for report_id in store.apply_case_steps(follows):
        log.warning("case event names a report intake does not have", extra={"report_id": report_id})


def _follows(event: Event, reference: ReferenceData) -> Iterator[tuple[str, Callable[[dict], dict | None]]]:
    """(report id, how the report follows the step) for each report the step changes."""
    try:
        action, department = parse_case_routing_key(event.type)
    except ValueError as exc:
        raise MalformedEvent(str(exc)) from exc
    report_ids = reports_following(action, event.data)
    step = CaseStep(event_id=event.id, action=action, department=department,
                    occurred_at=event_time(event.occurred_at, "occurred_at"), data=event.data)
    due_at = event_time(event.data.get("due_at"), "due_at")
    dept = reference.departments.get(department) if department else None
    follow = functools.partial(follow_case, step=step, department_name=dept.name_zh if dept else None, due_at=due_at,
                               zone=reference.timezone)
    return ((report_id, follow) for report_id in report_ids)


# What intake consumes: queue, the routing keys bound to it, the handler (deploy/broker.py declares these).
SUBSCRIPTIONS = (
    ("intake.case-events", ("case.*.*",), cases_changed),
)


def subscriptions(store: ReportStore, reference: ReferenceData) -> list[Subscription]:
    return subscriptions_from(SUBSCRIPTIONS, store=store, reference=reference)
