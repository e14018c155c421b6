"""Notify's collections, indexes and queries: the reports it has heard of, inbox items, deliveries and
subscriptions.

One notice per (event, recipient, channel): inbox items and deliveries carry unique keys on those, so a
redelivered event, or a handler run again after a crash halfway, creates nothing twice.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from shared.errors import NotFound
from shared.pagination import Position, newest_first
from shared.store import public_document

from . import domain
from .domain import CONFIRMATION_KIND, EMAIL, HELD, PENDING, SUSPENDED

DELIVERIES_LISTED_BY = ((), ("status",), ("recipient",), ("recipient", "status"))
DUPLICATE_KEY = 11000


_public = partial(public_document, hidden=("lease",))


def insert_new(collection, documents: list[dict]) -> int:
    """Insert what is not there yet (by the collection's unique keys); returns how many were new."""
    if not documents:
        return 0
    try:
        return len(collection.insert_many(documents, ordered=False).inserted_ids)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(error.get("code") != DUPLICATE_KEY for error in errors):
            raise
        return exc.details.get("nInserted", len(documents) - len(errors))


class NotifyStore:
    def __init__(self, db: Database):
        self.db = db
        self.reports = db["reports"]
        self.inbox = db["inbox"]
        self.deliveries = db["deliveries"]
        self.subscriptions = db["subscriptions"]
        # One document per recipient and channel while an attempt is under way, whichever process makes it.
        self.leases = db["delivery_leases"]
        # When the last confirmation mails went, per recipient and per (keyed) address.
        self.confirmations_sent = db["confirmations_sent"]

    @classmethod
    def prepared(cls, db: Database) -> NotifyStore:
        store = cls(db)
        store.ensure_indexes()
        return store

    def ensure_indexes(self) -> None:
        self.inbox.create_index([("event_id", ASCENDING), ("recipient", ASCENDING)], unique=True)
        self.inbox.create_index([("recipient", ASCENDING), ("created_at", DESCENDING)])
        self.inbox.create_index([("recipient", ASCENDING), ("read", ASCENDING), ("created_at", DESCENDING)])
        self.deliveries.create_index([("event_id", ASCENDING), ("recipient", ASCENDING), ("channel", ASCENDING)],
                                     unique=True)
        self.deliveries.create_index([("status", ASCENDING), ("next_attempt_at", ASCENDING)])
        self.deliveries.create_index([("recipient", ASCENDING), ("channel", ASCENDING), ("status", ASCENDING)])
        for prefix in DELIVERIES_LISTED_BY:
            self.deliveries.create_index([*((f, ASCENDING) for f in prefix), ("created_at", DESCENDING)])
        self.reports.create_index([("grid_id", ASCENDING), ("submitted_at", ASCENDING)])
        self.reports.create_index([("grid_id", ASCENDING), ("open", ASCENDING)])
        self.reports.create_index([("grid_id", ASCENDING), ("closed_at", ASCENDING)])

    # --- what notify has heard ----------------------------------------------------------------------

    def remember_reports(self, reports: list[dict]) -> None:
        """The reports notify hears of, each kept once (a report heard again changes nothing)."""
        self.reports.bulk_write([UpdateOne({"_id": report["id"]}, {"$setOnInsert": {
            **{k: v for k, v in report.items() if k != "id"}, "open": True, "overdue": False}}, upsert=True)
            for report in reports], ordered=False)

    def heard_reports(self, report_ids: list[str]) -> dict[str, dict]:
        """The reports notify has heard of among `report_ids`: each one's reporter and the case version it follows."""
        return {d["_id"]: d for d in self.reports.find({"_id": {"$in": report_ids}},
                                                       {"reporter_id": 1, "case_version": 1})}

    def follow_cases(self, steps: list[tuple[list[str], dict, int]], heard: dict[str, dict]) -> None:
        """Keep each report's state as its case moves (for the grid digests), step by step in their order: each
        (report ids, changes, case version); a step no newer than what a report has changes nothing.

        `heard` is what `heard_reports` read of them: the steps of one report are folded into one write, made
        only if the report is still at the version read. If one was changed meanwhile, every step is written
        again one by one, each only over an older version: the order of the steps is kept either way."""
        folded: dict[str, tuple[dict, int]] = {}
        for report_ids, changes, case_version in sorted(steps, key=lambda step: step[2]):
            for report_id in report_ids:
                if report_id not in heard:
                    continue  # notify has not heard of it: there is no report to update
                read = heard[report_id].get("case_version")
                if read is None or case_version > read:
                    merged = folded[report_id][0] if report_id in folded else {}
                    folded[report_id] = ({**merged, **changes}, case_version)
        writes = [UpdateOne({"_id": report_id, "case_version": heard[report_id].get("case_version")},
                            {"$set": {**changes, "case_version": case_version}})
                  for report_id, (changes, case_version) in folded.items()]
        if not writes or self.reports.bulk_write(writes, ordered=False).matched_count == len(writes):
            return
        self.reports.bulk_write([UpdateOne({"_id": report_id, "case_version": {"$not": {"$gte": case_version}}},
                                           {"$set": {**changes, "case_version": case_version}})
                                 for report_ids, changes, case_version in steps for report_id in report_ids],
                                ordered=True)

    def reports_of_grid(self, grid_id: str, start: datetime, end: datetime) -> dict[str, Any]:
        """For a grid's digest: how many reports came and closed in [start, end), and which are open now."""
        in_week = {"$gte": start, "$lt": end}
        return {"new": len(list(self.reports.find({"grid_id": grid_id, "submitted_at": in_week}, {"_id": 1}))),
                "closed": len(list(self.reports.find({"grid_id": grid_id, "closed_at": in_week}, {"_id": 1}))),
                "open": list(self.reports.find({"grid_id": grid_id, "open": True}))}

    def digests_done(self, week: str) -> bool:
        return self.db["digest_weeks"].find_one({"_id": week}, {"_id": 1}) is not None

    def record_digests_done(self, week: str, at: datetime) -> None:
        self.db["digest_weeks"].update_one({"_id": week}, {"$setOnInsert": {"done_at": at}}, upsert=True)

    # --- notices ------------------------------------------------------------------------------------

    def add_notices(self, inbox_items: list[dict], deliveries: list[dict]) -> int:
        """Store a notice's inbox items and deliveries; those already stored (a redelivered event) are kept."""
        added = insert_new(self.inbox, inbox_items)
        insert_new(self.deliveries, deliveries)
        return added

    def inbox_page(self, recipients: list[str], unread: bool | None, after: Position | None,
                   limit: int) -> list[dict]:
        filters = [{"recipient": r, **({"read": not unread} if unread is not None else {})} for r in recipients]
        return [_public(d) for d in newest_first(self.inbox, filters, "created_at", limit, after)]

    def unread_count(self, recipients: list[str]) -> int:
        return sum(self.inbox.count_documents({"recipient": r, "read": False}) for r in recipients)

    def mark_read(self, item_id: str, recipients: list[str], at: datetime) -> dict:
        item = self.inbox.find_one({"_id": item_id})
        if item is None or item["recipient"] not in recipients:
            raise NotFound(f"No inbox item {item_id}.")
        if not item["read"]:
            self.inbox.update_one({"_id": item_id, "read": False}, {"$set": {"read": True, "read_at": at}})
        return _public(self.inbox.find_one({"_id": item_id}))

    def mark_all_read(self, recipients: list[str], at: datetime) -> int:
        return sum(self.inbox.update_many({"recipient": r, "read": False},
                                          {"$set": {"read": True, "read_at": at}}).modified_count
                   for r in recipients)

    # --- subscriptions ------------------------------------------------------------------------------

    def subscription(self, recipient: str) -> dict | None:
        """The stored subscription, sealed secrets and all (`domain.public_subscription` is what callers see)."""
        return self.subscriptions.find_one({"_id": recipient})

    def save_subscription(self, recipient: str, changes: dict, unset: tuple[str, ...]) -> dict:
        """Create or replace the subscription's fields with `changes`, removing those named in `unset`."""
        self.subscriptions.update_one({"_id": recipient}, {"$set": changes, **(
            {"$unset": {name: "" for name in unset}} if unset else {})}, upsert=True)
        return self.subscription(recipient)

    def rotate_secret(self, recipient: str, current: str | None, changes: dict) -> bool:
        """Write a new secret over `current` (the sealed one read before): False if another rotation came first."""
        return self.subscriptions.update_one({"_id": recipient, "secret_sealed": current},
                                             {"$set": changes}).modified_count == 1

        self.subscriptions.update_many({"email_confirmed": {"$exists": False}}, {"$set": {"email_confirmed": False}})

    def subscriptions_of(self, recipients: set[str]) -> dict[str, dict]:
        found = self.subscriptions.find({"_id": {"$in": sorted(recipients)}}) if recipients else []
        return {d["_id"]: d for d in found}

    # --- proving an address ---------------------------------------------------------------------------

    def take_confirmation_slot(self, key: str, now: datetime) -> bool:
        """Count one confirmation mail against `key` (a recipient or an address) unless CONFIRMATIONS_PER_DAY went
        in the last day; False when none may go. One conditional write, so two requests never both get the
        last slot: the upsert of a document whose condition fails is a duplicate key."""
        limit = domain.CONFIRMATIONS_PER_DAY
        since = now - domain.CONFIRMATION_WINDOW
        try:
            self.confirmations_sent.update_one(
                {"_id": key, "$or": [{f"sent.{limit - 1}": {"$exists": False}}, {"sent.0": {"$lte": since}}]},
                {"$push": {"sent": {"$each": [now], "$slice": -limit}}}, upsert=True)
        except DuplicateKeyError:
            return False
        return True

    def next_confirmation_slot(self, keys: list[str]) -> datetime | None:
        """When the earliest of `keys`' counted mails leaves the window (for Retry-After)."""
        oldest = [d["sent"][0] for d in self.confirmations_sent.find({"_id": {"$in": keys}}, {"sent": 1}) if d["sent"]]
        return max(oldest) + domain.CONFIRMATION_WINDOW if oldest else None

    def start_confirmation(self, recipient: str, confirmation: dict, mail: dict) -> None:
        """Wait for `confirmation` (its address, the code's hash, expiry), and queue the mail that carries it in
        place of any earlier code's mail still waiting (its code no longer works)."""
        self.subscriptions.update_one({"_id": recipient}, {"$set": {"confirmation": confirmation}})
        self.deliveries.update_many({"recipient": recipient, "channel": EMAIL, "kind": CONFIRMATION_KIND,
                                     "status": {"$in": [PENDING, SUSPENDED]}},
                                    {"$set": {"status": domain.FAILED, "next_attempt_at": None}})
        self.deliveries.insert_one(mail)

    def spend_guess(self, recipient: str, code_hash: str) -> bool:
        """One of the waiting code's guesses, if any is left."""
        return self.subscriptions.update_one(
            {"_id": recipient, "confirmation.code_hash": code_hash,
             "confirmation.guesses": {"$lt": domain.GUESSES_PER_CODE}},
            {"$inc": {"confirmation.guesses": 1}}).modified_count == 1

    def confirm_email(self, recipient: str, confirmation: dict, at: datetime) -> bool:
        """The address of `confirmation` (as read) is proven: once, however many requests bring the code."""
        written = self.subscriptions.update_one(
            {"_id": recipient, "email": confirmation["address"], "confirmation.code_hash": confirmation["code_hash"]},
            {"$set": {"email_confirmed": True, "email_confirmed_at": at}, "$unset": {"confirmation": ""}})
        return written.modified_count == 1

    # --- what waits when an address changes -------------------------------------------------------------

    def fail_waiting(self, recipient: str, channel: str) -> None:
        """The recipient removed the channel's address: what waits for it goes nowhere."""
        self.deliveries.update_many({"recipient": recipient, "channel": channel,
                                     "status": {"$in": [PENDING, SUSPENDED, HELD]}},
                                    {"$set": {"status": domain.FAILED, "next_attempt_at": None}})

    def retarget_waiting(self, recipient: str, channel: str, target: str) -> None:
        """What waits goes to `target` (a confirmation mail stays with the address it proves)."""
        self.deliveries.update_many({"recipient": recipient, "channel": channel,
                                     "status": {"$in": [PENDING, SUSPENDED, HELD]}, "kind": {"$ne": CONFIRMATION_KIND}},
                                    {"$set": {"target": target}})

    def hold_waiting_mail(self, recipient: str, address: str) -> None:
        """Mail waits for the new, unproven address (never sent to it before it is proven)."""
        self.deliveries.update_many({"recipient": recipient, "channel": EMAIL, "status": {"$in": [PENDING, SUSPENDED]},
                                     "kind": {"$ne": CONFIRMATION_KIND}},
                                    {"$set": {"status": HELD, "target": address, "next_attempt_at": None}})

    def release_held_mail(self, recipient: str, at: datetime) -> None:
        """The address is proven: the mail that waited for it goes now."""
        self.deliveries.update_many({"recipient": recipient, "channel": EMAIL, "status": HELD},
                                    {"$set": {"status": PENDING, "next_attempt_at": at}})

    def release_held_mail_of_confirmed(self, recipients: set[str], at: datetime) -> None:
        """Mail held a moment ago for an address that was proven meanwhile: released (the proof's own release ran
        before the mail was held)."""
        for document in self.subscriptions.find({"_id": {"$in": sorted(recipients)}}, {"email_confirmed": 1}):
            if document.get("email_confirmed"):
                self.release_held_mail(document["_id"], at)

    def resume_suspended(self, recipient: str, at: datetime) -> None:
        self.deliveries.update_many({"recipient": recipient, "status": SUSPENDED},
                                    {"$set": {"status": PENDING, "next_attempt_at": at}})

    # --- deliveries ---------------------------------------------------------------------------------

    def claim_due(self, now: datetime, lease_s: float, free: dict[str, int], busy: set[tuple[str, str]],
                  holder: str) -> list[dict]:
        """Due deliveries this dispatcher takes, at most `free[channel]` of each channel and one per recipient and
        channel: for each, the recipient's lease on that channel (no other dispatcher, in any process, attempts
        it meanwhile) and the delivery itself, both for `lease_s`. `busy`: what this dispatcher has under way.

        Every due delivery is looked at (only its recipient and channel), so a receiver with a long backlog cannot
        hide the others' deliveries behind it."""
        claimed, taken = [], set(busy)
        left = dict(free)
        due = self.deliveries.find({"status": PENDING, "next_attempt_at": {"$lte": now}},
                                   {"recipient": 1, "channel": 1, "next_attempt_at": 1})
        for candidate in due:
            channel, key = candidate["channel"], (candidate["recipient"], candidate["channel"])
            if left.get(channel, 0) <= 0 or key in taken or not self.take_lease(key, holder, now, lease_s):
                continue
            claim = self.deliveries.update_one(
                {"_id": candidate["_id"], "status": PENDING, "next_attempt_at": candidate["next_attempt_at"]},
                {"$set": {"next_attempt_at": now + timedelta(seconds=lease_s)}})
            if not claim.modified_count:
                self.release_lease(key, holder)
                continue
            claimed.append(_public(self.deliveries.find_one({"_id": candidate["_id"]})))
            taken.add(key)
            left[channel] -= 1
            if not any(count > 0 for count in left.values()):
                break
        return claimed

    def take_lease(self, key: tuple[str, str], holder: str, now: datetime, lease_s: float) -> bool:
        """The lease on a recipient's channel, if it is free or has run out: one conditional write (the upsert
        of a document whose condition fails is a duplicate key)."""
        try:
            self.leases.update_one({"_id": _lease_id(key), "expires_at": {"$lte": now}},
                                   {"$set": {"holder": holder, "expires_at": now + timedelta(seconds=lease_s)}},
                                   upsert=True)
        except DuplicateKeyError:
            return False
        return True

    def release_lease(self, key: tuple[str, str], holder: str) -> None:
        self.leases.delete_one({"_id": _lease_id(key), "holder": holder})

    def hold(self, delivery: dict, target: str | None) -> None:
        self.deliveries.update_one({"_id": delivery["id"]}, {"$set": {
            "status": HELD, "next_attempt_at": None, **({"target": target} if target else {})}})

    def record_attempt(self, delivery: dict, attempt: dict, changes: dict) -> None:
        self.deliveries.update_one({"_id": delivery["id"]}, {"$push": {"attempts": {"$each": [attempt], "$slice": -50}},
                                                             "$inc": {"attempt_count": 1}, "$set": changes})

    def count_failure(self, recipient: str, channel: str, failed: bool, suspend_after: int) -> bool:
        """Count consecutive failures of a recipient's channel; True when this one suspends it. A success (a
        manual retry, say) clears the count and lifts a suspension, releasing what it held."""
        if not failed:
            lifted = self.subscriptions.update_one({"_id": recipient}, {"$set": {f"failures.{channel}": 0},
                                                                        "$pull": {"suspended": channel}})
            if lifted.modified_count:
                self.deliveries.update_many({"recipient": recipient, "channel": channel, "status": SUSPENDED},
                                            {"$set": {"status": PENDING, "next_attempt_at": datetime.now(UTC)}})
            return False
        self.subscriptions.update_one({"_id": recipient}, {"$inc": {f"failures.{channel}": 1}})
        written = self.subscriptions.update_one(
            {"_id": recipient, f"failures.{channel}": {"$gte": suspend_after}, "suspended": {"$ne": channel}},
            {"$addToSet": {"suspended": channel}})
        if written.modified_count:
            self.deliveries.update_many({"recipient": recipient, "channel": channel, "status": PENDING},
                                        {"$set": {"status": SUSPENDED, "next_attempt_at": None}})
            return True
        return False

    def delivery(self, delivery_id: str) -> dict | None:
        return _public(self.deliveries.find_one({"_id": delivery_id}))

    def list_deliveries(self, wanted: dict, after: Position | None, limit: int) -> list[dict]:
        return [_public(d) for d in newest_first(self.deliveries, [wanted], "created_at", limit, after)]

    def retry(self, delivery_id: str, now: datetime) -> dict:
        written = self.deliveries.update_one({"_id": delivery_id, "status": {"$ne": domain.DELIVERED}},
                                             {"$set": {"status": PENDING, "next_attempt_at": now}})
        if written.matched_count == 0 and self.delivery(delivery_id) is None:
            raise NotFound(f"No delivery {delivery_id}.")
        return self.delivery(delivery_id)


def _lease_id(key: tuple[str, str]) -> str:
    return "|".join(key)


def new_inbox_item(notice_id: str, *, recipient: str, event_id: str, event_type: str, kind: str, rendered: Any,
                   at: datetime) -> dict:
    return {"_id": notice_id, "recipient": recipient, "event_id": event_id, "event_type": event_type, "kind": kind,
            "title": rendered.title, "body": rendered.body, "link": rendered.link, "created_at": at, "read": False,
            "read_at": None}

