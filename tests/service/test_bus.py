"""The consumer base against the real broker: retry with back-off, parking, replay, batches."""
import threading
import time
import uuid

import kombu
import pytest

from shared import deadletters
from shared.bus import ATTEMPT_HEADER, EventConsumer, Subscription, declare_queue
from shared.events import Event
from tests.support import messages_ready, publish_raw, wait_for


@pytest.fixture
def consume(amqp_url):
    started = []

    def start(handler, queue=None, batched=False, linger_s=0.0, quiet_queues=0, key=None):
        """Consume `queue` with `handler`, and `quiet_queues` more queues that nothing is published to."""
        queue = queue or f"test.{uuid.uuid4().hex[:8]}"
        key = key or f"report.test-{uuid.uuid4().hex[:8]}"
        quiet = [Subscription(f"test.{uuid.uuid4().hex[:8]}", (f"report.test-{uuid.uuid4().hex[:8]}",), handler)
                 for _ in range(quiet_queues)]
        consumer = EventConsumer(amqp_url, [Subscription(queue, (key,), handler, batched, linger_s), *quiet],
                                 (50, 100), prefetch=4)
        thread = threading.Thread(target=consumer.run, daemon=True)
        thread.start()
        wait_for(consumer.ready.is_set, timeout=60, what="consumer ready")
        started.append((consumer, thread))
        return queue, key

    yield start
    for consumer, thread in started:
        consumer.should_stop = True
        thread.join(5)


def event(key: str) -> Event:
    return Event.new(key, "intake", {"n": 1})


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


def test_events_that_arrived_while_the_handler_worked_reach_a_batched_handler_together_in_order(consume, amqp_url):
    busy, calls = threading.Event(), []

    def handler(events):
        calls.append([e.id for e in events])
        busy.wait(10)

    queue, key = consume(handler, batched=True)
    first, *waiting = [event(key) for _ in range(5)]
    publish_raw(amqp_url, key, first.to_dict(), first.id)
    wait_for(lambda: calls, what="the first event")
    for sent in waiting:  # the handler is busy: these wait in the consumer's prefetch (4)
        publish_raw(amqp_url, key, sent.to_dict(), sent.id)
    wait_for(lambda: messages_ready(amqp_url, queue) == 0, what="the others delivered into the prefetch")
    busy.set()
    wait_for(lambda: sum(map(len, calls)) == 5, what="the others")
    # The broker has handed all four over, but the last may still be on its way through the client when the
    # handler returns (a machine under load): it then comes in a batch of its own, after the others.
    assert calls[0] == [first.id] and len(calls[1]) >= 3
    assert [i for batch in calls[1:] for i in batch] == [e.id for e in waiting]


@pytest.mark.parametrize("batched", [False, True])
def test_a_backlog_beyond_the_prefetch_is_handled_when_the_consumer_starts(consume, amqp_url, batched):
    """What the broker delivers while the consumer starts fills its prefetch: handled at once, not after the next
    delivery, which the broker holds back until those are acked."""
    queue, key = f"test.{uuid.uuid4().hex[:8]}", f"report.test-{uuid.uuid4().hex[:8]}"
    with kombu.Connection(amqp_url) as connection:
        declare_queue(connection.default_channel, queue, (key,), (50, 100))
    backlog = [event(key) for _ in range(10)]  # the consumer's prefetch is 4
    for sent in backlog:
        publish_raw(amqp_url, key, sent.to_dict(), sent.id)
    handled = []

    def handler(events):
        handled.extend(e.id for e in (events if batched else [events]))

    consume(handler, queue=queue, batched=batched, quiet_queues=1, key=key)
    wait_for(lambda: len(handled) == len(backlog), what="the whole backlog")
    assert sorted(handled) == sorted(e.id for e in backlog)


def test_a_lingering_handler_takes_what_comes_within_its_linger_as_one_batch(consume, amqp_url):
    calls = []
    _, key = consume(lambda events: calls.append([e.id for e in events]), batched=True, linger_s=2.0)
    sent = [event(key) for _ in range(3)]
    for one in sent:
        publish_raw(amqp_url, key, one.to_dict(), one.id)
        time.sleep(0.1)
    wait_for(lambda: calls, what="the batch")
    assert calls == [[e.id for e in sent]]


def test_a_lingering_handler_stops_lingering_once_a_prefetch_has_come(consume, amqp_url):
    """The broker sends no more until those are acked: lingering on would only hold the queue up."""
    calls = []
    _, key = consume(lambda events: calls.append([e.id for e in events]), batched=True, linger_s=30.0,
                     quiet_queues=1)
    sent = [event(key) for _ in range(4)]  # the prefetch
    for one in sent:
        publish_raw(amqp_url, key, one.to_dict(), one.id)
    wait_for(lambda: calls, timeout=10, what="a prefetch's worth handled well before the linger ends")
    assert calls == [[e.id for e in sent]]


def test_a_failing_batch_is_handled_one_by_one_so_only_its_bad_event_is_retried_and_parked(consume, amqp_url):
    busy, calls = threading.Event(), []
    bad = {"n": -1}

    def handler(events):
        calls.append([e.id for e in events])
        busy.wait(10)
        if any(e.data == bad for e in events):
            raise ValueError("bad event")

    queue, key = consume(handler, batched=True)
    first, good, poison, later = event(key), event(key), Event.new(key, "intake", bad), event(key)
    publish_raw(amqp_url, key, first.to_dict(), first.id)
    wait_for(lambda: calls, what="the first event")
    for sent in (good, poison, later):
        publish_raw(amqp_url, key, sent.to_dict(), sent.id)
    busy.set()
    parked = wait_for(lambda: deadletters.peek(amqp_url, queue), what="the bad event parked")
    assert [p["message_id"] for p in parked] == [poison.id]
    # The batch, then each of its events alone; the bad one is tried twice more from the delay queues.
    assert calls[1:5] == [[good.id, poison.id, later.id], [good.id], [poison.id], [later.id]]
    assert calls[5:] == [[poison.id], [poison.id]]


@pytest.mark.parametrize("source, type_of", [("routing", None), ("intake", "case.closed.sanitation")])
def test_an_event_its_sender_may_not_send_is_parked_not_handled(consume, amqp_url, source, type_of):
    """A report event that claims another source, or an envelope of another type than the queue is bound
    to: either could move a report or grant access if applied."""
    calls = []
    queue, key = consume(lambda e: calls.append(e.id))
    forged = Event.new(type_of or key, source, {"n": 1})
    publish_raw(amqp_url, key, forged.to_dict(), forged.id)
    genuine = event(key)
    publish_raw(amqp_url, key, genuine.to_dict(), genuine.id)
    wait_for(lambda: genuine.id in calls, what="the genuine event")
    assert calls == [genuine.id]
    assert [p["message_id"] for p in wait_for(lambda: deadletters.peek(amqp_url, queue), what="parked")] == [forged.id]
