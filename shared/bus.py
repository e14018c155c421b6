"""The event bus on RabbitMQ: topology, the one publisher and the one consumer base.

Reliability follows the RabbitMQ guide: durable exchange and queues, persistent messages, publisher
confirms, `mandatory` publishing, manual ack after the handler's work is stored, bounded prefetch.
A failing message is retried through delay queues (per-queue TTL, one per back-off tier) and then
parked in `<queue>.dead`, where `python -m shared.deadletters` can list and replay it.
"""
from __future__ import annotations

import functools
import importlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import amqp
import kombu
from kombu.mixins import ConsumerMixin

from shared import logs, metrics
from shared.config import SERVICE_PORTS
from shared.events import EXCHANGE, Event, MalformedEvent, publisher_of, rfc3339, topic_matches, utcnow

log = logging.getLogger(__name__)

ATTEMPT_HEADER = "x-woodpecker-attempt"
# Quorum queues in RabbitMQ 3.10 have no default delivery limit; without one a message that kills
# its consumer would be redelivered forever.
DELIVERY_LIMIT = 20
# How long the consumer waits for more of what the broker is sending before it handles what has arrived: long
# enough to take what is already on its way (events published together, a case's opened and dispatched, come
# back to back), no longer, for a handler that does not linger: routing's, on every report's way to its
# department (2 ms there cost the way 2 ms at the median, `python -m bench.pipeline`; batches grew no smaller).
GATHER_S = 0.0002
# How long a batched handler of work nobody is waiting for (what notify and hours remember of a report, the
# notices of its case) lets its events gather: half a second later, in a few writes a second instead of a few
# a report (the pipeline bench: 12 store commands a report across the four services at 0.1 s, 8 at 0.5 s).
UNHURRIED_LINGER_S = 0.5
# ... unless its writes go where reports are being submitted: a batch there holds up every submission (and
# the case it opens) meeting it in the store, so it stays small (`python -m bench.pipeline`: the reports
# submitted while such a batch of half a second's case events was written took twice as long as the others).
BESIDE_SUBMISSIONS_LINGER_S = 0.1


class BrokerUnavailable(ConnectionError):
    pass


def service_queues() -> dict[str, tuple[str, ...]]:
    """Every service's consumer queues and their routing keys, from the services' subscription tables."""
    queues: dict[str, tuple[str, ...]] = {}
    for service in SERVICE_PORTS:
        try:
            handlers = importlib.import_module(f"services.{service}.handlers")
        except ModuleNotFoundError:
            continue  # a service that consumes nothing yet
        queues.update({queue: keys for queue, keys, _ in handlers.SUBSCRIPTIONS})
    return queues


def declare_exchange(channel) -> None:
    channel.exchange_declare(EXCHANGE, "topic", durable=True, auto_delete=False)


def parking_queue(queue: str) -> str:
    return f"{queue}.dead"


def retry_queue(queue: str, delay_ms: int) -> str:
    # The delay is in the name: a changed back-off makes new queues instead of clashing with old ones.
    return f"{queue}.retry-{delay_ms}ms"


def moves_exchange(queue: str) -> str:
    """Where a consumer sends a failed message on to its delay and parking queues. An exchange of the
    queue's own, so that a service needs no right to publish to the default exchange, which reaches
    every queue on the broker, other services' included."""
    return f"{queue}.moves"


def declare_queue(channel, queue: str, routing_keys: Iterable[str], retry_delays_ms: Iterable[int]) -> None:
    declare_exchange(channel)
    moves = moves_exchange(queue)
    channel.exchange_declare(moves, "direct", durable=True, auto_delete=False)
    channel.queue_declare(parking_queue(queue), durable=True, auto_delete=False)
    channel.queue_bind(parking_queue(queue), moves, parking_queue(queue))
    channel.queue_declare(queue, durable=True, auto_delete=False, arguments={
        "x-queue-type": "quorum",
        "x-delivery-limit": DELIVERY_LIMIT,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": parking_queue(queue),
    })
    for key in routing_keys:
        channel.queue_bind(queue, EXCHANGE, key)
    for delay in retry_delays_ms:
        channel.queue_declare(retry_queue(queue, delay), durable=True, auto_delete=False, arguments={
            "x-message-ttl": delay,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": queue,
        })
        channel.queue_bind(retry_queue(queue, delay), moves, retry_queue(queue, delay))


def broker_problem(amqp_url: str, timeout: float = 2.0) -> str | None:
    """None when the broker accepts a connection, else why not (for /readyz)."""
    try:
        with kombu.Connection(amqp_url, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as exc:  # readiness reports any failure as a reason, never raises
        log.warning("readiness: the broker does not answer", extra={"error": f"{exc.__class__.__name__}: {exc}"})
        return "broker unavailable"
    return None


@dataclass
class PublishOutcome:
    confirmed: list[str] = field(default_factory=list)
    unroutable: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


class EventPublisher:
    """Publishes envelopes to `woodpecker.events`: persistent, mandatory, with batched confirms.

    The whole batch is sent, then the broker's acks are awaited together, which is what makes the
    outbox relay fast; an event counts as published only once its ack has arrived.
    """

    def __init__(self, amqp_url: str, service: str, confirm_timeout_s: float = 10.0):
        self.amqp_url = amqp_url
        self.service = service
        self.confirm_timeout_s = confirm_timeout_s
        self._connection: kombu.Connection | None = None
        self._channel = None
        self._acked_up_to = 0
        self._acked: set[int] = set()
        self._nacked: set[int] = set()
        self._returned: set[str] = set()

    def _ensure_channel(self):
        if self._channel is not None:
            return self._channel
        try:
            self._connection = kombu.Connection(self.amqp_url, connect_timeout=3)
            self._connection.ensure_connection(max_retries=1, timeout=3)
            channel = self._connection.channel()
            declare_exchange(channel)
            channel.confirm_select()
            channel.events["basic_ack"].add(self._on_ack)
            channel.events["basic_nack"].add(self._on_nack)
            channel.events["basic_return"].add(self._on_return)
        except Exception as exc:
            self.close()
            raise BrokerUnavailable(str(exc)) from exc
        self._channel = channel
        self._next_tag = 1
        return channel

    def _on_ack(self, tag: int, multiple: bool) -> None:
        if multiple:
            self._acked_up_to = max(self._acked_up_to, tag)
        else:
            self._acked.add(tag)

    def _on_nack(self, tag: int, multiple: bool) -> None:
        self._nacked.add(tag)
        if multiple:
            self._acked_up_to = max(self._acked_up_to, tag)

    def _on_return(self, exc, exchange, routing_key, message) -> None:
        self._returned.add(message.properties.get("message_id"))

    def _settled(self, tag: int) -> bool:
        return tag <= self._acked_up_to or tag in self._acked or tag in self._nacked

    def publish(self, events: list[Event]) -> PublishOutcome:
        """Publish a batch; raises BrokerUnavailable if the broker cannot be reached or confirm."""
        channel = self._ensure_channel()
        self._returned.clear()
        tags: dict[int, Event] = {}
        try:
            for event in events:
                message = amqp.Message(
                    event.to_json(), content_type="application/json", content_encoding="utf-8",
                    delivery_mode=2, message_id=event.id, type=event.type,
                    correlation_id=event.correlation_id or event.id,
                    timestamp=int(time.time()), app_id=self.service,
                )
                channel.basic_publish(message, exchange=EXCHANGE, routing_key=event.routing_key, mandatory=True)
                tags[self._next_tag] = event
                self._next_tag += 1
            deadline = time.monotonic() + self.confirm_timeout_s
            while not all(self._settled(tag) for tag in tags):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("the broker did not confirm in time")
                try:
                    self._connection.drain_events(timeout=min(remaining, 1.0))
                except TimeoutError:
                    continue
        except Exception as exc:
            self.close()
            raise BrokerUnavailable(f"{exc.__class__.__name__}: {exc}") from exc
        outcome = PublishOutcome()
        for tag, event in tags.items():
            if tag in self._nacked:
                outcome.refused.append(event.id)
            elif event.id in self._returned:
                outcome.unroutable.append(event.id)
                metrics.events_unroutable.labels(self.service, event.type).inc()
            else:
                outcome.confirmed.append(event.id)
                metrics.events_published.labels(self.service, event.type).inc()
        self._acked = {t for t in self._acked if t > max(tags, default=0)}
        self._nacked.clear()
        return outcome

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.release()
            except Exception:  # closing a broken connection may fail again; it is gone either way
                pass
        self._connection = None
        self._channel = None
        self._acked_up_to = 0
        self._acked.clear()
        self._nacked.clear()


@dataclass(frozen=True)
class Subscription:
    """One consumer queue: who consumes (`queue`), what (`routing_keys`) and how (`handler`). A `batched`
    handler takes a list of the queue's events, in the order they came, and stores their work together;
    with `linger_s`, once one of its events has come the consumer waits that long for more (work nobody
    waits for, done in fewer and larger writes)."""

    queue: str
    routing_keys: tuple[str, ...]
    handler: Callable
    batched: bool = False
    linger_s: float = 0.0


def handles_batches(linger_s: float = 0.0) -> Callable[[Callable], Callable]:
    """Mark an event handler that takes a list of its queue's events (Subscription.batched, .linger_s)."""
    def mark(handler: Callable) -> Callable:
        handler.batch_linger_s = linger_s
        return handler

    return mark


def subscriptions_from(table: Iterable[tuple[str, tuple[str, ...], Callable]], **dependencies) -> list[Subscription]:
    """A service's subscription table (queue, routing keys, handler), each handler given its `dependencies`."""
    return [Subscription(queue, keys, functools.partial(handler, **dependencies),
                         batched=hasattr(handler, "batch_linger_s"), linger_s=getattr(handler, "batch_linger_s", 0.0))
            for queue, keys, handler in table]


def _provenance_problem(event: Event, routing_keys: tuple[str, ...]) -> str | None:
    """Why an event cannot be trusted, if it cannot: a type this queue is not bound to, or a source that
    does not own the type (a case event only routing may send; it can move reports and grant access)."""
    if not any(topic_matches(pattern, event.type) for pattern in routing_keys):
        return f"type {event.type!r} is not one this queue is bound to"
    if publisher_of(event.type) != event.source:
        return f"{event.source!r} may not publish {event.type!r}"
    return None


class EventConsumer(ConsumerMixin):
    """Consumes a service's subscriptions; acks after the handler has stored its work.

    Idempotent on the event: every handler's writes carry the event's identity (the event id recorded
    with the change it made, or a unique key of what it creates, such as the report a case opens for), so
    an event delivered again, or handled again after a crash halfway, changes nothing the second time.

    What has arrived is handled together: the consumer takes every message already delivered to it (up to
    the prefetch of each queue) and gives a batched handler all of its queue's events at once. If a batch
    fails, its events are handled one by one, so that only the one that fails is retried or parked.
    """

    def __init__(self, amqp_url: str, subscriptions: Iterable[Subscription], retry_delays_ms: tuple[int, ...],
                 prefetch: int = 16):
        self.amqp_url = amqp_url
        self.subscriptions = {s.queue: s for s in subscriptions}
        self.retry_delays_ms = retry_delays_ms
        self.prefetch = prefetch
        self.connection = kombu.Connection(amqp_url, heartbeat=30)
        # A separate connection moves failed messages, so waiting for its confirms never re-enters
        # the consuming connection's delivery loop.
        self._mover = kombu.Connection(amqp_url, transport_options={"confirm_publish": True})
        self._arrived: list[tuple[Subscription, kombu.Message]] = []
        self.ready = threading.Event()

    def on_connection_error(self, exc, interval):
        self.ready.clear()
        log.warning("broker unreachable, consumer reconnecting", extra={"retry_in_s": interval, "error": str(exc)})

    def get_consumers(self, Consumer, channel):
        consumers = []
        for subscription in self.subscriptions.values():
            declare_queue(channel, subscription.queue, subscription.routing_keys, self.retry_delays_ms)
            queue = kombu.Queue(subscription.queue, no_declare=True)
            consumers.append(Consumer(queues=[queue], on_message=self._receiver(subscription),
                                      prefetch_count=self.prefetch, accept=["application/json"]))
        return consumers

    def on_consume_ready(self, connection, channel, consumers, **kwargs):
        self.ready.set()

    def _receiver(self, subscription: Subscription) -> Callable:
        return lambda message: self._arrived.append((subscription, message))

    def consume(self, limit=None, timeout=None, safety_interval=1, **kwargs):
        """ConsumerMixin's loop, handling everything that has arrived once nothing more is waiting."""
        # What arrived on a connection that was lost is delivered again on the next one, and acked there.
        self._arrived = []
        with self.consumer_context(**kwargs) as (connection, _, _):
            while not self.should_stop:
                # What the broker delivered while the consumers were being set up is handled without waiting for
                # more: with a backlog it fills the prefetch, and the broker sends nothing more until it is acked.
                if not self._arrived:
                    try:
                        connection.drain_events(timeout=safety_interval)
                    except TimeoutError:
                        connection.heartbeat_check()
                        continue
                    except OSError:
                        if self.should_stop:
                            break
                        raise
                self._gather(connection)
                self._handle_arrived()
                yield

    def _gather(self, connection) -> None:
        """Take what else the broker has already sent, up to a prefetch's worth per queue, and what comes while a
        queue that has something lingers, until one queue has a prefetch's worth: the broker sends it nothing
        more before those are acked, so lingering on would only slow it down."""
        limit = self.prefetch * len(self.subscriptions)
        started = time.monotonic()
        while len(self._arrived) < limit:
            per_queue = Counter(subscription.queue for subscription, _ in self._arrived)
            if per_queue and max(per_queue.values()) >= self.prefetch:
                return
            until = started + max((subscription.linger_s for subscription, _ in self._arrived), default=0.0)
            try:
                connection.drain_events(timeout=max(GATHER_S, until - time.monotonic()))
            except TimeoutError:
                if time.monotonic() >= until:
                    return

    def _handle_arrived(self) -> None:
        arrived, self._arrived = self._arrived, []
        by_queue: dict[str, list[tuple[kombu.Message, Event]]] = {}
        for subscription, message in arrived:
            if (event := self._trusted(subscription, message)) is not None:
                by_queue.setdefault(subscription.queue, []).append((message, event))
        for queue, received in by_queue.items():
            subscription = self.subscriptions[queue]
            if subscription.batched and len(received) > 1 and self._handled_together(subscription, received):
                continue
            for message, event in received:
                self._handle(subscription, message, event)

    def _trusted(self, subscription: Subscription, message: kombu.Message) -> Event | None:
        """The message's event, or None when it can never be handled (parked at once)."""
        queue = subscription.queue
        try:
            event = Event.from_json(message.body)
        except MalformedEvent as exc:
            log.error("malformed message parked", extra={"queue": queue, "error": str(exc)})
            metrics.events_consumed.labels(queue, "malformed").inc()
            message.reject(requeue=False)
            return None
        if problem := _provenance_problem(event, subscription.routing_keys):
            log.error("event from the wrong publisher parked", extra={"queue": queue, "event_id": event.id,
                                                                       "error": problem})
            metrics.events_consumed.labels(queue, "forged").inc()
            message.reject(requeue=False)
            return None
        return event

    def _handled_together(self, subscription: Subscription, received: list[tuple[kombu.Message, Event]]) -> bool:
        try:
            subscription.handler([event for _, event in received])
        except Exception as exc:  # one of them, at least, fails: find which, one by one
            log.info("a batch failed; its events are handled one by one",
                     extra={"queue": subscription.queue, "events": len(received), "error": str(exc)})
            return False
        for message, _ in received:
            message.ack()
        metrics.events_consumed.labels(subscription.queue, "handled").inc(len(received))
        return True

    def _handle(self, subscription: Subscription, message: kombu.Message, event: Event) -> None:
        queue = subscription.queue
        token = logs.correlation_id.set(event.correlation_id or event.id)
        try:
            subscription.handler([event] if subscription.batched else event)
        except MalformedEvent as exc:
            log.error("event the handler cannot understand parked", extra={"queue": queue, "error": str(exc)})
            metrics.events_consumed.labels(queue, "malformed").inc()
            message.reject(requeue=False)
            return
        except Exception as exc:
            self._retry_or_park(subscription, message, event, exc)
            return
        finally:
            logs.correlation_id.reset(token)
        metrics.events_consumed.labels(queue, "handled").inc()
        message.ack()

    def _retry_or_park(self, subscription: Subscription, message: kombu.Message, event: Event,
                       error: Exception) -> None:
        queue = subscription.queue
        attempt = int((message.headers or {}).get(ATTEMPT_HEADER, 0)) + 1
        headers = dict(message.headers or {})
        headers[ATTEMPT_HEADER] = attempt
        headers["x-woodpecker-error"] = f"{error.__class__.__name__}: {error}"[:500]
        context = {"queue": queue, "event_id": event.id, "attempt": attempt}
        if attempt <= len(self.retry_delays_ms):
            target, outcome = retry_queue(queue, self.retry_delays_ms[attempt - 1]), "retried"
            log.warning("handler failed, will retry", exc_info=error, extra=context)
        else:
            target, outcome = parking_queue(queue), "parked"
            headers["x-woodpecker-parked-at"] = rfc3339(utcnow())
            log.error("handler failed for the last time, event parked", exc_info=error, extra=context)
        try:
            self._publish_copy(queue, message, target, headers)
        except Exception:
            # Not moved anywhere: hand it back to the broker, whose delivery limit parks it eventually.
            log.exception("could not move a failed message; returning it to its queue", extra=context)
            time.sleep(1)
            message.reject(requeue=True)
            return
        metrics.events_consumed.labels(queue, outcome).inc()
        message.ack()

    def _publish_copy(self, queue: str, message: kombu.Message, target: str, headers: dict) -> None:
        """A confirmed publish to a delay or parking queue, before the original is acked."""
        producer = self._mover.Producer()
        publish = self._mover.ensure(producer, producer.publish, max_retries=3, interval_start=0.5)
        properties = message.properties or {}
        publish(message.body, exchange=moves_exchange(queue), routing_key=target, headers=headers,
                content_type=message.content_type or "application/json",
                content_encoding=message.content_encoding or "utf-8", delivery_mode=2,
                message_id=properties.get("message_id"), type=properties.get("type"),
                correlation_id=properties.get("correlation_id"))
