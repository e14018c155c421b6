"""Import an association's roster from the command line, straight into hours' store:

    python -m services.hours.importer ROSTER.xlsx [--by association:zhang]

Reads HOURS_MONGO_URL or MONGO_URL (and HOURS_DATABASE) like the service. Every bad row is printed with its
row number and reason, good rows are registered, rows already registered change nothing; the volunteer.registered
events are published before the command ends (or, if the broker is away, by the hours worker once it is
back). Exit status: 0 all rows imported, 1 some rows refused, 2 file unreadable.
"""
from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from shared import reference, runtime
from shared.config import Settings
from shared.store import connect

from . import domain
from .roster import Roster, RosterUnreadable, read_roster
from .store import IMPORT_BATCH, HoursStore


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.hours.importer", description=__doc__.split("\n\n")[0])
    parser.add_argument("roster", type=Path, help="XLSX, or CSV in UTF-8 or GB18030: 姓名, 手机号, 所属组织, 网格")
    parser.add_argument("--by", default="association:importer", help="who the ledger says registered them")
    args = parser.parse_args(argv)
    settings = Settings.from_env("hours")
    city = reference.load(settings.reference_dir)
    try:
        roster = read_roster(args.roster.read_bytes(), {g.id: g.name for g in city.grids.values()})
    except (OSError, RosterUnreadable) as exc:
        print(f"{args.roster}: {exc}", file=sys.stderr)
        return 2
    relay = runtime.outbox_relay(settings)
    store = HoursStore.prepared(connect(settings.mongo_url, settings.database),
                                reference.load_service_hours(settings.reference_dir), relay)
    try:
        registered, known = register_with_progress(store, roster, args.by)
    finally:
        relay.stop()  # what it registered is published before the command ends
    for error in roster.errors:
        print(f"row {error.row}: {error.reason}", file=sys.stderr)
    print(f"{len(roster.rows) + len(roster.errors)} rows: {registered} registered, {known} already registered, "
          f"{len(roster.errors)} refused")
    return 1 if roster.errors else 0


def register_with_progress(store: HoursStore, roster: Roster, by: str) -> tuple[int, int]:
    at = datetime.now(UTC)
    registered = known = 0
    with tqdm(total=len(roster.rows), unit="row", desc="registering", file=sys.stderr) as progress:
        for start in range(0, len(roster.rows), IMPORT_BATCH):
            batch = roster.rows[start:start + IMPORT_BATCH]
            volunteers = []
            for row in batch:
                volunteer = domain.new_volunteer(row.name, row.phone, row.organization, row.grid_id, at, by)
                volunteers.append((volunteer, domain.registered_event(volunteer, None)))
            created, already = store.register_many(volunteers)
            registered, known = registered + len(created), known + len(already)
            progress.update(len(batch))
    return registered, known


if __name__ == "__main__":
    sys.exit(main())
