"""Routing's event handlers, one per consumed event, and the table that subscribes them."""
from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime

from shared import geo
from shared.bus import Subscription
from shared.events import Event, MalformedEvent

from . import domain
from .store import CaseStore

REPORT_FIELDS = ("id", "category", "location", "grid_id", "description", "photo_ids")


def report_submitted(event: Event, store: CaseStore, clock_for: Callable[[str], domain.DeadlineClock]) -> None:
    """A report becomes a case: joined to an open case of its kind nearby, or opened and routed by rule."""
    report = event.data
    missing = [f for f in REPORT_FIELDS if f not in report]
    if missing:
        raise MalformedEvent(f"report.submitted lacks {', '.join(missing)}")
    if store.case_of_report(report["id"]):
        return
    lat, lng = report["location"]["lat"], report["location"]["lng"]
    nearby = store.open_cases_near(report["category"], geo.box_around(lat, lng, geo.DUPLICATE_RADIUS_M))
    existing = domain.nearest_open_case(lat, lng, nearby)
    if existing is not None:
        store.change(existing["id"], lambda case: domain.attach_report(case, report["id"]), event.correlation_id)
        return
    rule = domain.match_rule(store.all_rules(), report["category"], report.get("district"))
    clock = clock_for(rule.basis if rule else "calendar")
    step = domain.open_case(f"case-{report['id']}", report, rule, clock, datetime.now(UTC))
    store.create(step, event.correlation_id)


def subscriptions(store: CaseStore, clock_for: Callable[[str], domain.DeadlineClock]) -> list[Subscription]:
    return [
        Subscription(queue="routing.report-submitted", routing_keys=("report.submitted",),
                     handler=functools.partial(report_submitted, store=store, clock_for=clock_for)),
    ]
