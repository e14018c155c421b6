"""What the year's ledger yields: rankings, proofs of service (志愿服务证明) and their public check, and
closing a year (年度结账)."""
from __future__ import annotations

from datetime import date, datetime

from shared.auth import Caller
from shared.errors import Conflict, NotFound
from shared.spreadsheets import xlsx_answer

from .. import domain
from ..proof import Proof, ProofLine, render_proof
from ..spreadsheet import RANKING, ranking_rows
from . import Hours, actor_label
from .activities import close_with_its_year
from .patrols import close_patrol_with_its_year
from .volunteers import readable_volunteer


def this_year(hours: Hours, now: datetime) -> int:
    return now.astimezone(hours.zone).year


def rankings(hours: Hours, caller: Caller, query: dict, now: datetime):
    """The year's ranking as the caller may see it (names masked); as a spreadsheet, the whole table."""
    year, by = query.get("year") or this_year(hours, now), query["by"]
    wanted = {k: query[v] for k, v in (("organization", "organization"), ("grid_id", "grid")) if v in query}
    spreadsheet = query["format"] == "xlsx"
    rows = domain.ranked(hours.store.ranking(year, by, wanted, None if spreadsheet else query["limit"]), by)
    shown = [domain.ranking_row(row, caller) for row in rows]
    if spreadsheet:
        grid_names = {g.id: g.name for g in hours.reference.grids.values()}
        scope = "、".join(filter(None, [wanted.get("organization"), grid_names.get(wanted.get("grid_id", ""))]))
        return xlsx_answer(RANKING, f"rankings-{year}-{by}.xlsx", now, rows=ranking_rows(shown, grid_names),
                           year=year, by=by, scope_text=scope or "全市")
    return {"year": year, "by": by, "items": shown}


def proof_of_service(hours: Hours, caller: Caller, volunteer_id: str, year: int | None, public_url: str,
                     now: datetime) -> tuple[bytes, dict]:
    """The proof's PDF and record: the one already issued for unchanged figures, or a new one."""
    volunteer = readable_volunteer(hours, caller, volunteer_id)
    year = year or this_year(hours, now)
    row = hours.store.year_row(volunteer_id, year)
    if row is None or row["centihours"] <= 0:
        raise NotFound(f"No service hours recorded for {year}.")
    closed = hours.store.closed_year(year) is not None
    figures = row.get("sealed_centihours", row["centihours"]) if closed else row["centihours"]
    grid = hours.reference.grids.get(volunteer["grid_id"])
    record = hours.store.issued_proof(volunteer_id, year, figures)
    if record is None:
        record = domain.proof_record(volunteer, {**row, "centihours": figures},
                                     number=hours.store.next_proof_number(year), code=domain.proof_code(),
                                     grid_name=grid.name if grid else "", issuer=hours.rules.issuer, sealed=closed,
                                     now=now, zone=hours.zone)
        hours.store.keep_proof(record)
    # The configured address, never the request's Host: a forged one would get a genuine proof leading elsewhere.
    verify_url = f"{public_url}/v1/proofs/{record['code']}"
    pdf = hours.store.proof_pdf(record["code"], verify_url)
    if pdf is None:
        pdf = render_proof(_printable(record, verify_url))
        hours.store.keep_proof_pdf(record["code"], verify_url, pdf)
    return pdf, record


def _printable(record: dict, verify_url: str) -> Proof:
    return Proof(number=record["number"], code=record["code"], verify_url=verify_url, name=record["name"],
                 volunteer_id=record["volunteer_id"], phone_masked=record["phone_masked"],
                 organization=record["organization"], year=record["year"],
                 period_start=date.fromisoformat(record["period_start"]),
                 period_end=date.fromisoformat(record["period_end"]), total_hours=record["hours"],
                 lines=[ProofLine(**line) for line in record["lines"]], issuer=record["issuer"],
                 issued_on=date.fromisoformat(record["issued_on"]), sealed=record["sealed"])


def verify_proof(hours: Hours, code: str) -> dict:
    """Whether a proof's figures still match the ledger, with nothing personal but a masked name."""
    found = hours.store.proof(code.upper())
    if found is None:
        raise NotFound("No proof has this code.")
    return domain.proof_verdict(found, hours.store.year_row(found["volunteer_id"], found["year"]),
                                hours.store.closed_year(found["year"]) is not None)


def close_year(hours: Hours, caller: Caller, year: int, now: datetime) -> dict:
    """Seal the year once nothing more can be credited into it: what still waits in it is declined (the
    policy's year-close rule), and each volunteer's figures are kept as sealed. A close that stopped halfway
    (the process died) is finished by the next request to close."""
    domain.refuse_open_year(year, now, hours.zone, hours.rules, hours.calendar)
    begun = hours.store.begin_year_close(year, actor_label(caller), now)
    if begun["complete"]:
        raise Conflict(f"{year} is already closed.")
    at, by = begun["closed_at"], begun["closed_by"]
    span = domain.year_span(year, hours.zone)
    patrols = sum(hours.store.transaction(lambda tx, patrol_id=patrol_id: close_patrol_with_its_year(
        tx, patrol_id, at)) for patrol_id in hours.store.waiting_patrol_ids(span))
    participants = sum(hours.store.transaction(lambda tx, activity_id=activity_id: close_with_its_year(
        tx, activity_id, at)) for activity_id in hours.store.publicised_activity_ids(span))
    figures = {"volunteers": hours.store.seal_year(year), "declined_patrols": patrols,
               "declined_participants": participants}
    hours.store.finish_year_close(year, figures)
    return {"year": year, "closed_at": at, "closed_by": by, **figures}
