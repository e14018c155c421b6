"""The one event envelope (docs/contract.md, "Events on RabbitMQ")."""
from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

EXCHANGE = "woodpecker.events"
# The alternate exchange, and queue, of events no queue was bound to when they were published.
UNROUTED = "woodpecker.unrouted"
ENVELOPE_VERSION = 1
# Who may publish what (docs/contract.md, "Events on RabbitMQ"): the first word of a routing key names the one
# service that owns it. The broker enforces it on publishing (deploy/broker.py), consumers on receipt.
PUBLISHERS = {"report": "intake", "case": "routing", "hours": "hours", "volunteer": "hours"}


def publisher_of(routing_key: str) -> str | None:
    return PUBLISHERS.get(routing_key.split(".", 1)[0])


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: `*` is one word, `#` zero or more."""
    def match(words: list[str], keys: list[str]) -> bool:
        if not words:
            return not keys
        if words[0] == "#":
            return any(match(words[1:], keys[i:]) for i in range(len(keys) + 1))
        return bool(keys) and words[0] in ("*", keys[0]) and match(words[1:], keys[1:])

    return match(pattern.split("."), routing_key.split("."))


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class MalformedEvent(ValueError):
    """A message that is not a Woodpecker envelope; it can never succeed, so it is parked at once."""


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    occurred_at: str
    source: str
    version: int
    correlation_id: str | None
    data: dict[str, Any]

    @property
    def routing_key(self) -> str:
        return self.type

    @classmethod
    def new(cls, type: str, source: str, data: dict[str, Any], correlation_id: str | None = None) -> Event:
        return cls(id=str(uuid.uuid4()), type=type, occurred_at=rfc3339(utcnow()), source=source,
                   version=ENVELOPE_VERSION, correlation_id=correlation_id, data=data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), ensure_ascii=False, default=_json_default).encode()

    @classmethod
    def from_dict(cls, raw: Any) -> Event:
        if not isinstance(raw, dict):
            raise MalformedEvent("the envelope is not a JSON object")
        missing = [k for k in ("id", "type", "occurred_at", "source", "data") if not raw.get(k) and raw.get(k) != {}]
        if missing:
            raise MalformedEvent(f"the envelope lacks {', '.join(missing)}")
        if not isinstance(raw["data"], dict):
            raise MalformedEvent("the envelope's data is not an object")
        version = raw.get("version") or ENVELOPE_VERSION
        if not isinstance(version, int) or isinstance(version, bool):
            raise MalformedEvent(f"the envelope's version is not an integer: {version!r}")
        return cls(id=str(raw["id"]), type=str(raw["type"]), occurred_at=str(raw["occurred_at"]),
                   source=str(raw["source"]), version=version,
                   correlation_id=raw.get("correlation_id"), data=raw["data"])

    @classmethod
    def from_json(cls, body: bytes | str) -> Event:
        try:
            raw = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedEvent(f"the body is not JSON: {exc}") from exc
        return cls.from_dict(raw)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return rfc3339(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def event_time(value: Any, field: str) -> datetime | None:
    """An RFC 3339 time an event's data carries, in UTC (None stays None); anything else is a malformed event."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        raise MalformedEvent(f"{field} is not an RFC 3339 time: {value!r}") from None


class ReportNotYetHeard(Exception):
    """A case event names a report whose `report.submitted` has not reached this service yet: retried later,
    so that nothing the report's reporter is owed is lost to the order the events arrived in."""


def submitted_report(data: dict) -> dict:
    """What a service that follows reports keeps of a `report.submitted`: who reported, where, what and when."""
    missing = [k for k in ("id", "reporter_id", "grid_id", "submitted_at") if not isinstance(data.get(k), str)]
    if missing:
        raise MalformedEvent(f"report.submitted lacks {', '.join(missing)}")
    return {"id": data["id"], "reporter_id": data["reporter_id"], "grid_id": data["grid_id"],
            "category": data.get("category"), "submitted_at": event_time(data["submitted_at"], "submitted_at")}
