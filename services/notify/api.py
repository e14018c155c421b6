"""Notify's HTTP API: the inbox, subscriptions (email, webhooks, preferences) and the delivery log."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from flask import current_app
from flask_smorest import Blueprint

from shared.auth import current_caller, requires
from shared.openapi import RETRY_AFTER_HEADER, link, links
from shared.pagination import decode_cursor, page

from . import domain, schemas
from .store import NotifyStore
from .subscriptions import Subscriptions

INBOX_READERS = ("volunteer", "grid_leader", "department", "office")
RECIPIENT_PARAMETER = {"in": "path", "name": "recipient", "required": True,
                       "schema": {"type": "string", "pattern": domain.RECIPIENT_PATTERN},
                       "description": "office, department:<code>, grid:<grid id> or volunteer:<user id>"}

inbox = Blueprint("inbox", __name__, url_prefix="/v1/inbox", description="Your notices")
subscriptions = Blueprint("subscriptions", __name__, url_prefix="/v1/subscriptions",
                          description="How a recipient hears: email, a webhook, preferences, language")
deliveries = Blueprint("deliveries", __name__, url_prefix="/v1/deliveries",
                       description="Every email and webhook delivery and its attempts (the office)")


@dataclass
class Notify:
    store: NotifyStore
    subscriptions: Subscriptions


def notify() -> Notify:
    return current_app.extensions["notify"]


def now() -> datetime:
    return datetime.now(UTC)


# --- the inbox ------------------------------------------------------------------------------------

@inbox.route("", methods=["GET"])
@requires(*INBOX_READERS)
@inbox.arguments(schemas.InboxQuerySchema, location="query")
@inbox.response(200, schemas.InboxPageSchema)
@inbox.doc(**links(200, MarkRead=link("/v1/inbox/{item_id}/read", "post", item_id="$response.body#/items/0/id")))
def list_inbox(query: dict):
    """Your notices (a department's are its staff's together; a grid leader's include their grid's), newest
    first."""
    items = notify().store.inbox_page(domain.recipients_of(current_caller()), query.get("unread"),
                                      decode_cursor(query.get("cursor")), query["limit"])
    return page(items, query["limit"], "created_at")


@inbox.route("/unread-count", methods=["GET"])
@requires(*INBOX_READERS)
@inbox.response(200, schemas.UnreadSchema)
def unread_count():
    """How many of your notices are unread (for a badge)."""
    return {"unread": notify().store.unread_count(domain.recipients_of(current_caller()))}


@inbox.route("/<item_id>/read", methods=["POST"])
@requires(*INBOX_READERS)
@inbox.response(200, schemas.InboxItemSchema)
def mark_read(item_id: str):
    """Mark one notice read (again: no change)."""
    return notify().store.mark_read(item_id, domain.recipients_of(current_caller()), now())


@inbox.route("/read-all", methods=["POST"])
@requires(*INBOX_READERS)
@inbox.response(200, schemas.ReadAllSchema)
def mark_all_read():
    """Mark every notice of yours read."""
    return {"marked": notify().store.mark_all_read(domain.recipients_of(current_caller()), now())}


# --- subscriptions --------------------------------------------------------------------------------

@subscriptions.route("/<recipient>", methods=["PUT"])
@requires(*INBOX_READERS)
@subscriptions.arguments(schemas.SubscriptionInSchema, required=False)
@subscriptions.response(200, schemas.SubscriptionSchema)
@subscriptions.alt_response(429, description="Too many confirmation mails to this recipient or address today",
                            headers=RETRY_AFTER_HEADER)
@subscriptions.doc(parameters=[RECIPIENT_PARAMETER])
def save_subscription(body: dict, recipient: str):
    """Set how a recipient hears (the office, or the recipient itself): an email address, a webhook URL, the
    routing-key patterns those two receive, the language and per-kind preferences. Saving resumes a suspended
    receiver.

    An email address set by a volunteer (or for one) gets a code by mail and nothing else until the code is
    confirmed (`POST .../email/confirm`); addresses staff set for staff need no proof. Webhooks of volunteers and
    grid leaders are https to public addresses only. The answer that creates the subscription, or gives it a
    webhook it did not have, carries the new webhook `secret`: the only time it is shown."""
    return notify().subscriptions.save(current_caller(), recipient, body, now())


@subscriptions.route("/<recipient>", methods=["GET"])
@requires(*INBOX_READERS)
@subscriptions.response(200, schemas.SubscriptionSchema)
@subscriptions.doc(parameters=[RECIPIENT_PARAMETER])
def get_subscription(recipient: str):
    """A recipient's subscription (the office, or the recipient itself); never its secret."""
    return notify().subscriptions.read(current_caller(), recipient)


@subscriptions.route("/<recipient>/secret", methods=["POST"])
@requires(*INBOX_READERS)
@subscriptions.response(200, schemas.SubscriptionSchema)
@subscriptions.alt_response(409, description="Another rotation came at the same moment")
@subscriptions.doc(parameters=[RECIPIENT_PARAMETER])
def rotate_secret(recipient: str):
    """A new webhook secret, in this answer only. For the overlap window (NOTIFY_SECRET_OVERLAP_S) every POST is
    signed with both, the new one first, so the receiver can switch without losing a notice."""
    return notify().subscriptions.rotate_secret(current_caller(), recipient, now())


@subscriptions.route("/<recipient>/email/confirm", methods=["POST"])
@requires(*INBOX_READERS)
@subscriptions.arguments(schemas.ConfirmationCodeSchema)
@subscriptions.response(200, schemas.SubscriptionSchema)
@subscriptions.alt_response(422, description="No address waits for a code, or the code is wrong, spent or expired")
@subscriptions.doc(parameters=[RECIPIENT_PARAMETER])
def confirm_email(body: dict, recipient: str):
    """Prove the subscription's email address with the code mailed to it: the mail that waited goes now. A code
    works once, for a day, and for five tries at most."""
    return notify().subscriptions.confirm_email(current_caller(), recipient, body["code"], now())


@subscriptions.route("/<recipient>/email/confirmation", methods=["POST"])
@requires(*INBOX_READERS)
@subscriptions.response(200, schemas.SubscriptionSchema)
@subscriptions.alt_response(409, description="No unconfirmed address waits for a code")
@subscriptions.alt_response(429, description="Too many confirmation mails to this recipient or address today",
                            headers=RETRY_AFTER_HEADER)
@subscriptions.doc(parameters=[RECIPIENT_PARAMETER])
def send_confirmation(recipient: str):
    """Mail a new code to the address waiting to be proven (409 if none waits). At most three confirmation
    mails go to a recipient, and to an address, in a day (429 with Retry-After past that)."""
    return notify().subscriptions.send_confirmation(current_caller(), recipient, now())


# --- deliveries -----------------------------------------------------------------------------------

@deliveries.route("", methods=["GET"])
@requires("office")
@deliveries.arguments(schemas.DeliveryQuerySchema, location="query")
@deliveries.response(200, schemas.DeliveryPageSchema)
def list_deliveries(query: dict):
    """Every email and webhook delivery, newest first, with each attempt's status code and latency."""
    wanted = {k: query[k] for k in ("status", "recipient") if k in query}
    items = notify().store.list_deliveries(wanted, decode_cursor(query.get("cursor")), query["limit"])
    return page(items, query["limit"], "created_at")


@deliveries.route("/<delivery_id>/retry", methods=["POST"])
@requires("office")
@deliveries.response(200, schemas.DeliverySchema)
def retry_delivery(delivery_id: str):
    """Try a failed, suspended or waiting delivery again now (a delivered one stays as it is)."""
    return notify().store.retry(delivery_id, now())
