"""Notices into the store: each rendered in its recipient's language, as an inbox item and the deliveries its
recipient's subscription asks for (a channel suspended for failing keeps its deliveries aside)."""
from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime

from . import domain
from .domain import EMAIL, INBOX, PENDING, SUSPENDED, WEBHOOK, Notice
from .store import NotifyStore, new_inbox_item
from .templates import Templates


class NoticeWriter:
    def __init__(self, store: NotifyStore, templates: Templates):
        self.store = store
        self.templates = templates

    def write(self, notices: Iterable[Notice], event_id: str, event_type: str, occurred_at: str, data: dict,
              now: datetime) -> int:
        """Store every notice of one event; returns how many inbox items are new (0 when redelivered)."""
        notices = list(notices)
        subscriptions = self.store.subscriptions_of({n.recipient for n in notices})
        inbox, deliveries = [], []
        for notice in notices:
            subscription = subscriptions.get(notice.recipient)
            language = (subscription or {}).get("language") or "zh"
            rendered = self.templates.render(notice.kind, language, notice.context)
            channels = domain.channels_for(notice, subscription)
            if INBOX in channels:
                inbox.append(new_inbox_item(domain.new_id(), notice.recipient, event_id, event_type, notice.kind,
                                            rendered, now))
            for channel in (c for c in channels if c in (EMAIL, WEBHOOK)):
                suspended = channel in (subscription.get("suspended") or [])
                payload = {"event_id": event_id, "event_type": event_type, "occurred_at": occurred_at,
                           "recipient": notice.recipient, "kind": notice.kind, "title": rendered.title,
                           "body": rendered.body, "link": rendered.link, "data": data}
                deliveries.append({
                    "_id": domain.new_id(), "event_id": event_id, "recipient": notice.recipient, "channel": channel,
                    "kind": notice.kind, "target": domain.target_of(channel, subscription),
                    "title": rendered.title, "body": rendered.body,
                    "payload": json.dumps(payload, ensure_ascii=False, sort_keys=True, default=str),
                    "status": SUSPENDED if suspended else PENDING, "created_at": now,
                    "next_attempt_at": None if suspended else now, "attempt_count": 0, "attempts": [],
                    "delivered_at": None})
        return self.store.add_notices(inbox, deliveries)
