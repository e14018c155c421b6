#!/usr/bin/env python3
"""Receive your department's Woodpecker cases from RabbitMQ: a small subscriber to copy and adapt.

Woodpecker's routing service publishes every step of a case to the topic exchange `woodpecker.events`
with the routing key `case.<action>.<department>` (action: opened, joined, dispatched, accepted, disputed,
rectified, closed, reopened, rejected, overdue, extension_requested, extension_decided; `joined`: another
report of the same problem joined a case you already have, named by `report_id`). This program
binds a durable queue of your own to `case.*.<your department code>`, prints one line per case event
and acknowledges it only after it was handled. It needs only pika and the standard library.

Usage:

    pip install pika
    python department_subscriber.py --department traffic-police
    python department_subscriber.py --department sanitation --json    # each envelope as JSON too
    python department_subscriber.py --amqp-url amqps://user:secret@mq.example.gov.cn/woodpecker --department sanitation
    python department_subscriber.py --department traffic-police --max-messages 3   # a demo: stop after 3

A line looks like this (due_at in Asia/Shanghai time); with --json the whole envelope follows as JSON:

    [due 2026-05-11 14:00] dispatched case 6650a1 (traffic.parking): 人行道上停放多辆机动车，影响通行

Delivery is AT LEAST ONCE: after a crash or a lost connection, a message that was handled but not yet
acknowledged comes again. Make your handling idempotent by remembering the envelope `id` of every event
you have handled (e.g. a unique key in your database) and skipping ids you have already seen.

A message that is not JSON, or not a Woodpecker envelope, can never be handled: it is logged and rejected
without requeue. If the broker goes away the program reconnects (1 s, doubling to 30 s); meanwhile the
durable queue keeps collecting your cases. SIGINT (Ctrl-C) and SIGTERM stop it cleanly.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from datetime import datetime, timedelta, timezone

import pika

try:
    from zoneinfo import ZoneInfo

    LOCAL_TZ = ZoneInfo("Asia/Shanghai")
except Exception:  # no time-zone database (Windows without tzdata): China has had no DST since 1991
    LOCAL_TZ = timezone(timedelta(hours=8), "CST")

EXCHANGE = "woodpecker.events"
ENVELOPE_KEYS = ("id", "type", "occurred_at", "source", "data")
log = logging.getLogger("department_subscriber")


class NotAnEnvelope(ValueError):  # can never be handled: rejected, rather than received again and again
    pass


def parse(body: bytes) -> dict:
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotAnEnvelope(f"not JSON ({exc})") from exc
    if not isinstance(event, dict) or any(k not in event for k in ENVELOPE_KEYS) or type(event["data"]) is not dict:
        raise NotAnEnvelope(f"not an envelope with {', '.join(ENVELOPE_KEYS)}")
    return event


def local_time(value: str | None) -> str:
    if not value:
        return "no deadline"
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    return moment.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M")


def handle(event: dict, as_json: bool) -> None:
    """Your department's work goes here (open a ticket, page the duty officer, ...); dedupe on event["id"].

    If this raises, the message is not acknowledged: the program reconnects with back-off and gets it again.
    """
    data, parts = event["data"], str(event["type"]).split(".")
    action = parts[1] if len(parts) == 3 else event["type"]
    description = " ".join(str(data.get("description") or "").split())
    joined = f" by report {data.get('report_id')}" if action == "joined" else ""
    print(f"[due {local_time(data.get('due_at'))}] {action} case {data.get('case_id')}{joined} "
          f"({data.get('category')}): {description}", flush=True)
    if as_json:
        print(json.dumps(event, ensure_ascii=False), flush=True)


class Subscriber:
    def __init__(self, args: argparse.Namespace):
        self.args, self.handled, self.stopping, self.delay = args, 0, False, 1.0

    def stop(self, signum: int, _frame: object) -> None:
        self.stopping = True  # seen within a second, between messages or during the back-off

    def run(self) -> None:
        while not self.stopping:
            try:
                self.consume()
                return
            except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as exc:
                log.warning("broker unavailable (%r); reconnecting in %.0f s", exc, self.delay)
            except Exception:
                log.exception("handling failed; the message will come again; reconnecting in %.0f s", self.delay)
            deadline = time.monotonic() + self.delay
            while not self.stopping and time.monotonic() < deadline:
                time.sleep(0.1)
            self.delay = min(self.delay * 2, 30.0)

    def consume(self) -> None:
        """One connection's life; returns when stopped or when --max-messages events were handled."""
        args = self.args
        connection = pika.BlockingConnection(pika.URLParameters(args.amqp_url))
        try:
            channel = connection.channel()
            # The city's exchange exists already; a department's user may not declare it, only check it.
            channel.exchange_declare(EXCHANGE, "topic", passive=True)
            channel.queue_declare(args.queue, durable=True)  # survives restarts: nothing is missed
            channel.queue_bind(args.queue, EXCHANGE, f"case.*.{args.department}")
            channel.basic_qos(prefetch_count=10)
            log.info("receiving case.*.%s on queue %s", args.department, args.queue)
            self.delay = 1.0
            for method, properties, body in channel.consume(args.queue, inactivity_timeout=1):
                if self.stopping:
                    return
                if method is None:  # a quiet second: look at self.stopping again
                    continue
                try:
                    event = parse(body)
                except NotAnEnvelope as exc:
                    log.error("rejected message %s (%s): %s; body: %r", properties.message_id,
                              method.routing_key, exc, body[:200])
                    channel.basic_reject(method.delivery_tag, requeue=False)
                    continue
                handle(event, args.json)
                channel.basic_ack(method.delivery_tag)
                self.handled += 1
                if args.max_messages and self.handled >= args.max_messages:
                    return
        finally:
            if connection.is_open:
                connection.close()  # anything received but not acknowledged goes back to the queue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--amqp-url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"))
    parser.add_argument("--department", required=True, help="your department code, e.g. traffic-police")
    parser.add_argument("--queue", help="your durable queue (default: dept.<department>.cases)")
    parser.add_argument("--max-messages", type=int, default=0, help="stop after N case events (default: never)")
    parser.add_argument("--json", action="store_true", help="also print each envelope as one JSON line")
    args = parser.parse_args(argv)
    args.queue = args.queue or f"dept.{args.department}.cases"
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("pika").setLevel(logging.CRITICAL)  # its connection errors are reported above, once
    subscriber = Subscriber(args)
    signal.signal(signal.SIGINT, subscriber.stop)
    signal.signal(signal.SIGTERM, subscriber.stop)
    subscriber.run()
    log.info("stopped after %d case event(s)", subscriber.handled)
    return 0


if __name__ == "__main__":
    sys.exit(main())
