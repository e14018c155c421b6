"""Notify's HTTP API: the inbox, subscriptions (email, webhooks, preferences) and the delivery log."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from flask import current_app
from flask_smorest import Blueprint

from shared.auth import current_caller, requires
from shared.errors import InvalidFields, NotFound
from shared.openapi import link, links
from shared.pagination import decode_cursor, page
from shared.reference import ReferenceData

from . import domain, schemas
from .store import NotifyStore
from .webhooks import TargetPolicy, UnsafeTarget, check_url

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
    reference: ReferenceData
    policy: TargetPolicy


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
@subscriptions.doc(parameters=[RECIPIENT_PARAMETER])
def save_subscription(body: dict, recipient: str):
    """Set how a recipient hears (the office, or the recipient itself): an email address, a webhook URL
    (https or http; private addresses refused), the routing-key patterns those two receive, the language and
    per-kind preferences. The answer carries the webhook secret; saving resumes a suspended receiver."""
    ctx = notify()
    caller = current_caller()
    domain.may_manage(caller, recipient)
    domain.check_recipient_exists(recipient, ctx.reference)
    if body["webhook_url"]:
        try:
            check_url(body["webhook_url"], ctx.policy)
        except UnsafeTarget as refused:
            raise InvalidFields(str(refused), {"webhook_url": [str(refused)]}) from None
    return ctx.store.save_subscription(recipient, body, now(), f"{caller.role}:{caller.id}")


@subscriptions.route("/<recipient>", methods=["GET"])
@requires(*INBOX_READERS)
@subscriptions.response(200, schemas.SubscriptionSchema)
@subscriptions.doc(parameters=[RECIPIENT_PARAMETER])
def get_subscription(recipient: str):
    """A recipient's subscription, with its secret (the office, or the recipient itself)."""
    domain.may_manage(current_caller(), recipient)
    found = notify().store.subscription(recipient)
    if found is None:
        raise NotFound(f"No subscription for {recipient}.")
    return found


@subscriptions.route("/<recipient>/secret", methods=["POST"])
@requires(*INBOX_READERS)
@subscriptions.response(200, schemas.SubscriptionSchema)
@subscriptions.doc(parameters=[RECIPIENT_PARAMETER])
def rotate_secret(recipient: str):
    """A new webhook secret; deliveries from now on are signed with it."""
    domain.may_manage(current_caller(), recipient)
    return notify().store.rotate_secret(recipient, now())


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
