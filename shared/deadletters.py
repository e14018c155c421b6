"""Inspect and replay parked messages: `python -m shared.deadletters list|replay <queue>`.

`<queue>` is the consumer queue (e.g. `intake.case-events`); its parking queue is `<queue>.dead`.
Replay moves each parked message back to the consumer queue (confirmed, then acked), with its
attempt count reset, once whatever made it fail has been fixed.
"""
from __future__ import annotations

import argparse
import json
import os

import kombu

from shared.bus import ATTEMPT_HEADER, parking_queue
from shared.config import DEFAULT_AMQP_URL


def _decoded(body: bytes) -> object:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


def peek(amqp_url: str, queue: str, limit: int = 100) -> list[dict]:
    """The parked messages, left in place (they return to the queue when the channel closes)."""
    parked = []
    with kombu.Connection(amqp_url) as conn:
        channel = conn.channel()
        for _ in range(limit):
            message = channel.basic_get(parking_queue(queue), no_ack=False)
            if message is None:
                break
            properties = message.properties
            parked.append({"message_id": properties.get("message_id"), "type": properties.get("type"),
                           "headers": dict(properties.get("application_headers") or {}),
                           "body": _decoded(message.body)})
        channel.close()
    return parked


def replay(amqp_url: str, queue: str, limit: int = 1000) -> int:
    moved = 0
    with kombu.Connection(amqp_url, transport_options={"confirm_publish": True}) as conn:
        channel = conn.channel()
        producer = kombu.Producer(conn.channel())
        for _ in range(limit):
            message = channel.basic_get(parking_queue(queue), no_ack=False)
            if message is None:
                break
            properties = message.properties
            headers = {k: v for k, v in (properties.get("application_headers") or {}).items()
                       if not k.startswith("x-woodpecker-") and k != "x-death"}
            headers[ATTEMPT_HEADER] = 0
            producer.publish(message.body, exchange="", routing_key=queue, headers=headers,
                             content_type=properties.get("content_type", "application/json"),
                             content_encoding=properties.get("content_encoding", "utf-8"), delivery_mode=2,
                             message_id=properties.get("message_id"), type=properties.get("type"),
                             correlation_id=properties.get("correlation_id"))
            channel.basic_ack(message.delivery_tag)
            moved += 1
    return moved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["list", "replay"])
    parser.add_argument("queue", help="the consumer queue, e.g. intake.case-events")
    parser.add_argument("--limit", type=int, default=100)
    args = parser.parse_args()
    url = os.environ.get("AMQP_URL", DEFAULT_AMQP_URL)
    if args.action == "list":
        for parked in peek(url, args.queue, args.limit):
            print(json.dumps(parked, ensure_ascii=False, default=str))
    else:
        print(f"replayed {replay(url, args.queue, args.limit)} message(s) into {args.queue}")


if __name__ == "__main__":
    main()
