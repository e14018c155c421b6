"""Routing's event handlers, one per consumed event, and the table that subscribes them."""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from shared.bus import Subscription, handles_batches, subscriptions_from
from shared.events import Event

from . import domain
from .store import CaseStore
from .usecases.cases import route_reports


@handles_batches()
def reports_submitted(events: list[Event], store: CaseStore,
                      clock_for: Callable[[str], domain.DeadlineClock]) -> None:
    """Each report becomes a case: joined to an open case of its kind nearby, or opened and routed by rule. The
    reports that arrived together are routed in one transaction, a later one joining an earlier one's case."""
    submitted = [domain.Submitted(domain.submitted_report(event.data), event.correlation_id) for event in events]
    rules = store.rules_in_force()
    now = datetime.now(UTC)

    def route(report: dict, nearby: list[dict]) -> domain.Step:
        rule = domain.match_rule(rules, report["category"], report.get("district"))
        return domain.route_report(report, nearby, rule, clock_for(rule.basis if rule else "calendar"), now)

    route_reports(store, submitted, route)


# What routing consumes: queue, the routing keys bound to it, the handler (deploy/broker.py declares these).
SUBSCRIPTIONS = (
    ("routing.report-submitted", ("report.submitted",), reports_submitted),
)


def subscriptions(store: CaseStore, clock_for: Callable[[str], domain.DeadlineClock]) -> list[Subscription]:
    return subscriptions_from(SUBSCRIPTIONS, store=store, clock_for=clock_for)
