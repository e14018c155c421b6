"""Routing's event handlers, one per consumed event, and the table that subscribes them."""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from shared.bus import Subscription, subscriptions_from
from shared.events import Event

from . import domain
from .store import CaseStore


def report_submitted(event: Event, store: CaseStore, clock_for: Callable[[str], domain.DeadlineClock]) -> None:
    """A report becomes a case: joined to an open case of its kind nearby, or opened and routed by rule."""
    report = domain.submitted_report(event.data)
    rule = domain.match_rule(store.rules_in_force(), report["category"], report.get("district"))
    clock = clock_for(rule.basis if rule else "calendar")
    lat, lng = report["location"]["lat"], report["location"]["lng"]
    store.open_or_join(report["id"], report["category"], lat, lng,
                       lambda nearby: domain.route_report(report, nearby, rule, clock, datetime.now(UTC)),
                       event.correlation_id)


# What routing consumes: queue, the routing keys bound to it, the handler (deploy/broker.py declares these).
SUBSCRIPTIONS = (
    ("routing.report-submitted", ("report.submitted",), report_submitted),
)


def subscriptions(store: CaseStore, clock_for: Callable[[str], domain.DeadlineClock]) -> list[Subscription]:
    return subscriptions_from(SUBSCRIPTIONS, store=store, clock_for=clock_for)
