"""Notices into the store: each rendered in its recipient's language, as an inbox item and the deliveries its
recipient's subscription asks for (a channel suspended for failing keeps its deliveries aside, and mail waits
for an address that is not proven yet)."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from . import domain
from .domain import EMAIL, HELD, INBOX, WEBHOOK, Notice
from .store import NotifyStore, new_inbox_item
from .templates import Templates


@dataclass(frozen=True)
class Heard:
    """The notices of one event, with what the deliveries say of the event."""
    notices: list[Notice]
    event_id: str
    event_type: str
    occurred_at: str


class NoticeWriter:
    def __init__(self, store: NotifyStore, templates: Templates, on_deliveries: Callable[[], None] = lambda: None):
        self.store = store
        self.templates = templates
        # Told when email or webhook deliveries are stored (the dispatcher sends them at once).
        self.on_deliveries = on_deliveries

    def write(self, notices: Iterable[Notice], event_id: str, event_type: str, occurred_at: str,
              now: datetime) -> int:
        """Store every notice of one event; returns how many inbox items are new (0 when redelivered)."""
        return self.write_all([Heard(list(notices), event_id, event_type, occurred_at)], now)

    def write_all(self, heard: list[Heard], now: datetime) -> int:
        """Store every notice of these events with one read of their recipients' subscriptions and one write of
        each kind; returns how many inbox items are new (0 when redelivered)."""
        subscriptions = self.store.subscriptions_of({n.recipient for event in heard for n in event.notices})
        inbox, deliveries = [], []
        for event, notice in ((e, n) for e in heard for n in e.notices):
            subscription = subscriptions.get(notice.recipient)
            language = (subscription or {}).get("language") or "zh"
            rendered = self.templates.render(notice.kind, language, notice.context)
            channels = domain.channels_for(notice, subscription)
            if INBOX in channels:
                inbox.append(new_inbox_item(domain.new_id(), recipient=notice.recipient, event_id=event.event_id,
                                            event_type=event.event_type, kind=notice.kind, rendered=rendered, at=now))
            for channel in (c for c in channels if c in (EMAIL, WEBHOOK)):
                status = domain.first_status(channel, subscription)
                # `data`: what this recipient may see of the event, never the event itself.
                payload = {"event_id": event.event_id, "event_type": event.event_type, "occurred_at": event.occurred_at,
                           "recipient": notice.recipient, "kind": notice.kind, "title": rendered.title,
                           "body": rendered.body, "link": rendered.link, "data": notice.data}
                deliveries.append({
                    "_id": domain.new_id(), "event_id": event.event_id, "recipient": notice.recipient,
                    "channel": channel, "kind": notice.kind, "target": domain.target_of(channel, subscription),
                    "title": rendered.title, "body": rendered.body,
                    "payload": json.dumps(payload, ensure_ascii=False, sort_keys=True, default=str),
                    "status": status, "created_at": now, "next_attempt_at": now if status == domain.PENDING else None,
                    "attempt_count": 0, "attempts": [], "delivered_at": None})
        added = self.store.add_notices(inbox, deliveries)
        held = {d["recipient"] for d in deliveries if d["status"] == HELD}
        if held:
            self.store.release_held_mail_of_confirmed(held, now)
        if deliveries:
            self.on_deliveries()
        return added
