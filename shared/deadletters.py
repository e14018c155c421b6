"""Inspect and replay messages that could not be delivered: `python -m shared.deadletters list|replay <queue>`.

`<queue>` is a consumer queue (e.g. `intake.case-events`), whose parked messages wait in
`<queue>.dead`; replay moves them back to the consumer queue with their attempt count reset. Or it is
`woodpecker.unrouted`, where events wait that no queue was bound to when they were published; replay
publishes them again to `woodpecker.events` with their routing key, once someone listens for them.
Each message moves only after the broker confirmed its copy. Run it with the broker's administrator's
AMQP_URL: a service's own user may not read other queues.
"""
from __future__ import annotations

import argparse
import json
import os

import kombu

from shared.bus import ATTEMPT_HEADER, parking_queue
from shared.config import DEFAULT_AMQP_URL
from shared.events import EXCHANGE, UNROUTED


def _decoded(body: bytes) -> object:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


def waiting_in(queue: str) -> str:
    """The queue whose messages `queue` names: its parking queue, or the unrouted queue itself."""
    return UNROUTED if queue == UNROUTED else parking_queue(queue)


def peek(amqp_url: str, queue: str, limit: int = 100) -> list[dict]:
    """The waiting messages, left in place (they return to the queue when the channel closes)."""
    waiting = []
    with kombu.Connection(amqp_url) as conn:
        channel = conn.channel()
        for _ in range(limit):
            message = channel.basic_get(waiting_in(queue), no_ack=False)
            if message is None:
                break
            properties = message.properties
            waiting.append({"message_id": properties.get("message_id"), "type": properties.get("type"),
                            "routing_key": message.delivery_info.get("routing_key"),
                            "headers": dict(properties.get("application_headers") or {}),
                            "body": _decoded(message.body)})
        channel.close()
    return waiting


def replay(amqp_url: str, queue: str, limit: int = 1000) -> int:
    source = waiting_in(queue)
    moved = 0
    with kombu.Connection(amqp_url, transport_options={"confirm_publish": True}) as conn:
        channel = conn.channel()
        producer = kombu.Producer(conn.channel())
        # Only what waits now: an event still unroutable comes straight back, and must not be taken again.
        _, waiting, _ = channel.queue_declare(source, passive=True)
        for _ in range(min(limit, waiting)):
            message = channel.basic_get(source, no_ack=False)
            if message is None:
                break
            properties = message.properties
            headers = {k: v for k, v in (properties.get("application_headers") or {}).items()
                       if not k.startswith("x-woodpecker-") and k != "x-death"}
            if queue == UNROUTED:
                exchange, routing_key = EXCHANGE, message.delivery_info["routing_key"]
            else:
                exchange, routing_key = "", queue
                headers[ATTEMPT_HEADER] = 0
            producer.publish(message.body, exchange=exchange, routing_key=routing_key, headers=headers,
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
    parser.add_argument("queue", help=f"a consumer queue, e.g. intake.case-events, or {UNROUTED}")
    parser.add_argument("--limit", type=int, default=100)
    args = parser.parse_args()
    url = os.environ.get("AMQP_URL", DEFAULT_AMQP_URL)
    if args.action == "list":
        for waiting in peek(url, args.queue, args.limit):
            print(json.dumps(waiting, ensure_ascii=False, default=str))
    else:
        print(f"replayed {replay(url, args.queue, args.limit)} message(s) from {waiting_in(args.queue)}")


if __name__ == "__main__":
    main()
