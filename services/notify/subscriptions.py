"""Subscriptions' use cases: saving one, proving its email address, rotating its webhook secret.

Each loads what it needs, asks the domain, and stores the outcome; the HTTP views only translate.
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.auth import Caller
from shared.errors import Conflict, InvalidFields, NotFound
from shared.outbound import TargetPolicy, UnsafeTarget, check_url
from shared.reference import ReferenceData, local_text

from . import domain
from .domain import EMAIL, PENDING, WEBHOOK
from .sealing import Sealer
from .store import NotifyStore
from .templates import Templates

STAFF_RECIPIENTS = ("office", "department:")


@dataclass
class Subscriptions:
    store: NotifyStore
    reference: ReferenceData
    policy: TargetPolicy  # staff webhooks'; volunteers' are stricter (domain.webhook_policy)
    sealer: Sealer
    templates: Templates
    links: domain.Links
    secret_overlap_s: float

    def read(self, caller: Caller, recipient: str) -> dict:
        domain.may_manage(caller, recipient)
        found = self.store.subscription(recipient)
        if found is None:
            raise NotFound(f"No subscription for {recipient}.")
        return domain.public_subscription(found)

    def save(self, caller: Caller, recipient: str, fields: dict, now: datetime) -> dict:
        """Create or replace a subscription. A new webhook secret is made, and shown in this answer only, when the
        subscription is new or gains a webhook; an address that needs proof gets a code by mail."""
        domain.may_manage(caller, recipient)
        domain.check_recipient_exists(recipient, self.reference)
        if fields["webhook_url"]:
            try:
                check_url(fields["webhook_url"], domain.webhook_policy(recipient, self.policy))
            except UnsafeTarget as refused:
                raise InvalidFields("The webhook URL is refused.", {"webhook_url": [str(refused)]}) from None
        existing = self.store.subscription(recipient) or {}
        email = fields["email"]
        same_address = bool(email) and existing.get("email") == email
        proven = bool(email) and (not domain.needs_confirmation(caller, recipient)
                                  or (same_address and bool(existing.get("email_confirmed"))))
        keeps_waiting = same_address and not proven and bool(existing.get("confirmation"))
        asks_proof = bool(email) and not proven and not keeps_waiting
        if asks_proof:
            self._take_confirmation_slots(recipient, email, now)
        changes = {**fields, "email_confirmed": proven, "updated_at": now,
                   "updated_by": f"{caller.role}:{caller.id}", "suspended": [], "failures": {}}
        unset = () if keeps_waiting else ("confirmation",)
        shown = None
        if not existing or (fields["webhook_url"] and not existing.get("webhook_url")):
            shown = domain.new_secret()
            changes["secret_sealed"] = self.sealer.seal(shown, recipient)
            unset = (*unset, "secret", "previous_secret_sealed", "previous_secret_until")
        saved = self.store.save_subscription(recipient, changes, unset)
        self._move_waiting(recipient, email, proven, fields["webhook_url"], now)
        if asks_proof:
            self._send_code(saved, now)
        return domain.public_subscription(self.store.subscription(recipient), shown)

    def _move_waiting(self, recipient: str, email: str | None, proven: bool, webhook_url: str | None,
                      now: datetime) -> None:
        """What waits goes where the recipient now says, or nowhere: an address they removed (or that was
        compromised) must not keep receiving for the rest of the retry window, and mail waits for a new address
        until it is proven."""
        if not email:
            self.store.fail_waiting(recipient, EMAIL)
        else:
            self.store.retarget_waiting(recipient, EMAIL, email)
            if proven:
                self.store.release_held_mail(recipient, now)
            else:
                self.store.hold_waiting_mail(recipient, email)
        if webhook_url:
            self.store.retarget_waiting(recipient, WEBHOOK, webhook_url)
        else:
            self.store.fail_waiting(recipient, WEBHOOK)
        self.store.resume_suspended(recipient, now)

    def send_confirmation(self, caller: Caller, recipient: str, now: datetime) -> dict:
        """A new code for the address waiting to be proven (the last one expired, was spent, or never came)."""
        domain.may_manage(caller, recipient)
        found = self.store.subscription(recipient)
        if not found or not found.get("email") or found.get("email_confirmed"):
            raise Conflict("There is no unconfirmed email address to confirm; set one first.")
        self._take_confirmation_slots(recipient, found["email"], now)
        self._send_code(found, now)
        return domain.public_subscription(self.store.subscription(recipient))

    def confirm_email(self, caller: Caller, recipient: str, code: str, now: datetime) -> dict:
        """The code mailed to the address proves it: mail that waited for it goes now. Each try spends one of the
        code's guesses before the code is compared, so that requests sent together cannot try more."""
        domain.may_manage(caller, recipient)
        confirmation = domain.waiting_confirmation(self.store.subscription(recipient), now)
        if not self.store.spend_guess(recipient, confirmation["code_hash"]):
            raise domain.refused_code(domain.SPENT_CODE)
        if not hmac.compare_digest(self.sealer.code_hash(recipient, code), confirmation["code_hash"]):
            raise domain.refused_code(domain.WRONG_CODE)
        if not self.store.confirm_email(recipient, confirmation, now):
            raise domain.refused_code("the address changed meanwhile; ask for a new code")
        self.store.release_held_mail(recipient, now)
        return domain.public_subscription(self.store.subscription(recipient))

    def rotate_secret(self, caller: Caller, recipient: str, now: datetime) -> dict:
        """A new webhook secret, shown in this answer only; the old one still signs beside it for the overlap
        window, so that the receiver can be given the new one without losing a notice."""
        domain.may_manage(caller, recipient)
        found = self.store.subscription(recipient)
        if found is None:
            raise NotFound(f"No subscription for {recipient}.")
        shown = domain.new_secret()
        changes = {"secret_sealed": self.sealer.seal(shown, recipient), "updated_at": now,
                   "previous_secret_sealed": found.get("secret_sealed"),
                   "previous_secret_until": now + timedelta(seconds=self.secret_overlap_s)}
        if not self.store.rotate_secret(recipient, found.get("secret_sealed"), changes):
            raise Conflict("The secret was rotated by another request at the same moment; rotate again.")
        return domain.public_subscription(self.store.subscription(recipient), shown)

    def _take_confirmation_slots(self, recipient: str, address: str, now: datetime) -> None:
        keys = [f"recipient:{recipient}", f"address:{self.sealer.address_key(address)}"]
        if all(self.store.take_confirmation_slot(key, now) for key in keys):
            return
        free_at = self.store.next_confirmation_slot(keys) or now + domain.CONFIRMATION_WINDOW
        raise domain.TooManyConfirmations(
            f"At most {domain.CONFIRMATIONS_PER_DAY} confirmation mails go to a recipient, or to an address, in a "
            "day; try again later.", max(1, int((free_at - now).total_seconds()) + 1))

    def _send_code(self, subscription: dict, now: datetime) -> None:
        """A fresh code, kept only as its keyed hash, in a mail that quotes nothing a caller typed."""
        recipient, address = subscription["_id"], subscription["email"]
        code = domain.new_code()
        expires_at = now + domain.CODE_LIFETIME
        rendered = self.templates.render(domain.CONFIRMATION_KIND, subscription.get("language") or "zh", {
            "code": code, "expires_at": local_text(expires_at, self.reference.timezone),
            "link": self.links.notification_settings()})
        mail_id = domain.new_id()
        self.store.start_confirmation(recipient, {
            "address": address, "code_hash": self.sealer.code_hash(recipient, code), "expires_at": expires_at,
            "guesses": 0, "sent_at": now}, {
            "_id": mail_id, "event_id": f"confirmation:{mail_id}", "recipient": recipient, "channel": EMAIL,
            "kind": domain.CONFIRMATION_KIND, "target": address, "title": rendered.title,
            "body": self.sealer.seal(rendered.body, mail_id), "sealed": True, "status": PENDING,
            "created_at": now, "next_attempt_at": now, "attempt_count": 0, "attempts": [], "delivered_at": None})
