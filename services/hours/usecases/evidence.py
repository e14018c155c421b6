"""What hours hears of reports (the handlers call these): a report remembered evidences its reporter's
waiting patrol and credits it at once; a report withdrawn (its case rejected, or a duplicate of its
reporter's own) takes that credit back; a closed case counts one verified report for each reporter."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from shared.errors import Conflict, NotFound

from .. import domain
from ..store import HoursStore, HoursTransaction
from .ledger import credit_strictly, store_patrol
from .patrols import claim_report

log = logging.getLogger(__name__)


def reports_submitted(store: HoursStore, reports: list[tuple[dict, str | None]], now: datetime) -> None:
    """Remember the reports (each once), and credit the waiting patrols they evidence (a report's event may
    arrive after its patrol was recorded). `reports`: each report with its event's correlation id."""
    store.remember_reports([report for report, _ in reports])
    longest = timedelta(hours=store.rules.patrol_longest_hours)
    # One read for the whole batch: the patrols of its reporters over the span of its reports (seconds, as a
    # rule; an old event swept up late widens it to days of those few volunteers' patrols, still few).
    candidates = store.patrols_of_reporters(list({report["reporter_id"] for report, _ in reports}),
                                            min(report["submitted_at"] for report, _ in reports) - longest,
                                            max(report["submitted_at"] for report, _ in reports))
    for report, correlation_id in reports:
        for patrol in candidates:
            if patrol["status"] in domain.WAITING and domain.evidences(report, patrol):
                try:
                    evidence_patrol(store, patrol["id"], report["id"], correlation_id, now)
                except Conflict as refused:  # e.g. its year closed: the patrol stays waiting for a person
                    log.warning("evidence not credited", extra={"patrol_id": patrol["id"], "reason": refused.detail})


def evidence_patrol(store: HoursStore, patrol_id: str, report_id: str, correlation_id: str | None,
                    now: datetime) -> None:
    def work(tx: HoursTransaction) -> None:
        patrol = tx.patrol(patrol_id)
        report = tx.report(report_id)
        if patrol is None or report is None or not domain.evidences(report, patrol):
            return  # the report evidences another patrol already, or was withdrawn meanwhile
        evidenced = domain.with_evidence(patrol, report_id, now, store.rules)
        if evidenced is None:
            return  # nothing of it waits for evidence: decided meanwhile, or beyond the daily cap
        if not tx.lock_volunteer(patrol["volunteer_id"]):
            raise NotFound(f"No volunteer {patrol['volunteer_id']}.")
        after, entry = evidenced
        claim_report(tx, report_id, patrol_id)
        credit_strictly(tx, entry, store.rules, correlation_id, waiting_moves=True,
                        sessions=domain.patrol_sessions(after) - domain.patrol_sessions(patrol))
        store_patrol(tx, patrol, after)

    store.transaction(work)


def withdraw_report(store: HoursStore, report_id: str, why: str, now: datetime, correlation_id: str | None) -> bool:
    """The report is withdrawn as evidence: it evidences nothing from now on, and what it credited at once is
    taken back, its time waiting for a person again. Once per report: a redelivered event changes nothing.
    False: the report is not known yet."""
    def work(tx: HoursTransaction) -> bool:
        report = tx.report(report_id)
        if report is None:
            return False
        if report.get("withdrawn") is not None:
            return True
        tx.lock_volunteer(report["reporter_id"])  # not a registered volunteer: nothing of theirs was credited
        tx.withdraw_report(report_id, why, now)
        patrol = tx.patrol(report["patrol_id"]) if report.get("patrol_id") else None
        taken = domain.evidence_withdrawn(patrol, report_id, why, now, store.rules) if patrol else None
        if taken is None:
            return True
        after, reversal = taken
        if tx.year_closed(reversal["year"]):
            log.info("evidence withdrawn in a closed year: its credit stays sealed",
                     extra={"report_id": report_id, "patrol_id": patrol["id"]})
            return True
        credit_strictly(tx, reversal, store.rules, correlation_id, waiting_moves=True,
                        sessions=domain.patrol_sessions(after) - domain.patrol_sessions(patrol))
        store_patrol(tx, patrol, after)
        return True

    return store.transaction(work)


def case_closed(store: HoursStore, case_id: str, report_ids: list[str]) -> list[str]:
    """One verified report for each reporter of the closed case, once per case and reporter; returns the
    reports not heard of yet."""
    reports = store.reports_of(report_ids)
    for reporter_id, year in domain.verified_reporters(list(reports.values())).items():
        store.count_verified(case_id, reporter_id, year)
    return sorted(set(report_ids) - set(reports))


