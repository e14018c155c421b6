"""The consumer base against the real broker: retry with back-off, parking, replay, idempotency."""
import threading
import uuid
from datetime import UTC, datetime

import pytest

from shared import deadletters
from shared.bus import ATTEMPT_HEADER, EventConsumer, Subscription
from shared.events import Event
from shared.store import connect
from shared.testing import publish_raw, wait_for


@pytest.fixture
def consume(amqp_url, mongo_url):
    started = []

    def start(handler, queue=None):
        queue = queue or f"test.{uuid.uuid4().hex[:8]}"
        key = f"test.{uuid.uuid4().hex[:8]}"
        db = connect(mongo_url, f"test_bus_{uuid.uuid4().hex[:8]}")
        consumer = EventConsumer(amqp_url, db, [Subscription(queue, (key,), handler)], (50, 100), prefetch=4)
        thread = threading.Thread(target=consumer.run, daemon=True)
        thread.start()
        wait_for(consumer.ready.is_set, timeout=20, what="consumer ready")
        started.append((consumer, thread))
        return queue, key

    yield start
    for consumer, thread in started:
        consumer.should_stop = True
        thread.join(5)


def event(key: str) -> Event:
    return Event.new(key, "test", {"n": 1})


def test_a_failing_handler_is_retried_with_back_off_until_it_succeeds(consume, amqp_url):
    calls = []

    def flaky(e):
        calls.append(e.id)
        if len(calls) < 3:
            raise RuntimeError("store briefly away")

    _, key = consume(flaky)
    sent = event(key)
    publish_raw(amqp_url, key, sent.to_dict(), sent.id)
    wait_for(lambda: len(calls) == 3, what="two retries and a success")
    assert set(calls) == {sent.id}


def test_a_handler_that_keeps_failing_parks_the_event_and_replay_brings_it_back(consume, amqp_url):
    healed = threading.Event()
    handled = []

    def broken_until_healed(e):
        if not healed.is_set():
            raise ValueError("bug")
        handled.append(e.id)

    queue, key = consume(broken_until_healed)
    sent = event(key)
    publish_raw(amqp_url, key, sent.to_dict(), sent.id)
    parked = wait_for(lambda: deadletters.peek(amqp_url, queue), what="event parked")
    assert parked[0]["message_id"] == sent.id
    assert parked[0]["headers"][ATTEMPT_HEADER] == 3  # the first try and two delayed retries
    assert "ValueError: bug" in parked[0]["headers"]["x-woodpecker-error"]
    assert handled == []
    healed.set()
    assert deadletters.replay(amqp_url, queue) == 1
    wait_for(lambda: handled == [sent.id], what="replayed event handled")
    assert deadletters.peek(amqp_url, queue) == []


def test_a_malformed_message_is_parked_at_once(consume, amqp_url):
    calls = []
    queue, key = consume(calls.append)
    publish_raw(amqp_url, key, b"{not json", "poison-1")
    parked = wait_for(lambda: deadletters.peek(amqp_url, queue), what="poison parked")
    assert parked[0]["body"] == "{not json"
    assert calls == []


def test_a_redelivered_event_is_handled_once(consume, amqp_url):
    calls = []
    _, key = consume(lambda e: calls.append(e.id))
    sent = event(key)
    publish_raw(amqp_url, key, sent.to_dict(), sent.id)
    publish_raw(amqp_url, key, sent.to_dict(), sent.id)
    after = event(key)
    publish_raw(amqp_url, key, after.to_dict(), after.id)
    wait_for(lambda: after.id in calls, what="the later event")
    assert calls == [sent.id, after.id]


def test_documents_whose_events_nobody_is_bound_to_do_not_hold_up_the_rest(amqp_url, mongo_url):
    """The relay's batch once filled up with unroutable events and never reached the next document."""
    from shared.bus import EventPublisher
    from shared.outbox import DUE_FIELD, OutboxRelay, with_events
    from shared.testing import EventTap

    collection = connect(mongo_url, f"test_outbox_{uuid.uuid4().hex[:8]}")["things"]
    nobody, somebody = f"unbound.{uuid.uuid4().hex[:8]}", f"bound.{uuid.uuid4().hex[:8]}"
    collection.insert_many([with_events({"_id": f"a{i:02d}"}, Event.new(nobody, "test", {})) for i in range(15)])
    wanted = Event.new(somebody, "test", {})
    collection.insert_one(with_events({"_id": "b"}, wanted))
    tap = EventTap(amqp_url, somebody)
    relay = OutboxRelay([collection], EventPublisher(amqp_url, "test"), "test", batch_size=10)
    try:
        for _ in range(3):
            relay.relay_once()
        assert [e["id"] for e in tap.events(somebody)] == [wanted.id]
        held = collection.find_one({"_id": "a00"})
        assert held["outbox"] and held[DUE_FIELD] > datetime.now(UTC)  # kept, and waiting before the next try
    finally:
        tap.close()
        relay.publisher.close()
