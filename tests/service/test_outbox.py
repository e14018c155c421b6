"""The outbox relay against the real broker: confirmed events leave, refused ones wait, none is lost."""
import contextlib
import threading
import time
import uuid
from datetime import UTC, datetime

import pika
import pymongo
import pytest
from pymongo import monitoring

from shared import deadletters
from shared.bus import EventPublisher
from shared.events import EXCHANGE, UNROUTED, Event
from shared.outbox import ATTEMPTS_FIELD, DUE_FIELD, OUTBOX_FIELD, OutboxRelay, back_off_s, push_events, with_events
from shared.store import connect
from shared.testing import EventTap, wait_for


@pytest.fixture
def things(mongo_url):
    return connect(mongo_url, f"test_outbox_{uuid.uuid4().hex[:8]}")["things"]


@pytest.fixture
def relay(amqp_url, things):
    relay = OutboxRelay([things], EventPublisher(amqp_url, "intake"), "intake", batch_size=10)
    yield relay
    relay.publisher.close()


def key() -> str:
    return f"report.outbox-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def refusing_key(amqp_url):
    """A routing key whose only queue refuses every message: the broker answers the publisher with a nack."""
    routing_key = key()
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    queue = channel.queue_declare("", exclusive=True, arguments={"x-max-length": 0,
                                                                  "x-overflow": "reject-publish"}).method.queue
    channel.queue_bind(queue, EXCHANGE, routing_key)
    yield routing_key
    connection.close()


def unrouted(amqp_url: str, event_ids: set[str]) -> list[str]:
    """Our events waiting in woodpecker.unrouted (the others are put back for their own tests)."""
    ours = [m["message_id"] for m in deadletters.peek(amqp_url, UNROUTED, limit=1000)]
    return [i for i in ours if i in event_ids]


def test_a_batch_mixing_confirmed_nacked_and_unroutable_events_settles_each_as_the_broker_answered(
        amqp_url, things, relay, refusing_key, subscribe):
    bound = key()
    tap = subscribe(bound)
    delivered, refused, nobody = (Event.new(bound, "intake", {}), Event.new(refusing_key, "intake", {}),
                                  Event.new(key(), "intake", {}))
    things.insert_one(with_events({"_id": "mixed"}, delivered, refused, nobody))
    things.insert_one(with_events({"_id": "fine"}, Event.new(bound, "intake", {})))

    assert relay.relay_once() == 3

    assert [e["id"] for e in tap.events(bound)][:1] == [delivered.id]
    mixed = things.find_one({"_id": "mixed"})
    assert [e["id"] for e in mixed[OUTBOX_FIELD]] == [refused.id]  # the refused one stays, alone
    assert mixed[DUE_FIELD] > datetime.now(UTC) and mixed[ATTEMPTS_FIELD] == 1  # and waits its back-off
    fine = things.find_one({"_id": "fine"})
    assert fine[OUTBOX_FIELD] == [] and DUE_FIELD not in fine and ATTEMPTS_FIELD not in fine
    assert unrouted(amqp_url, {nobody.id}) == [nobody.id]  # confirmed by the alternate exchange's queue


def test_an_event_nobody_is_bound_to_is_kept_in_the_unrouted_queue_and_replayed_once_someone_listens(
        amqp_url, things, relay):
    lonely = key()
    event = Event.new(lonely, "intake", {"n": 1})
    things.insert_one(with_events({"_id": "lonely"}, event))
    assert relay.relay_once() == 1
    assert things.find_one({"_id": "lonely"})[OUTBOX_FIELD] == []  # out of the outbox: nothing wedges there
    assert unrouted(amqp_url, {event.id}) == [event.id]

    late = EventTap(amqp_url, lonely)
    try:
        others = len(deadletters.peek(amqp_url, UNROUTED, limit=1000))
        assert deadletters.replay(amqp_url, UNROUTED) == others
        assert [e["id"] for e in late.events(lonely)] == [event.id]
        assert unrouted(amqp_url, {event.id}) == []
    finally:
        late.close()


def test_thousands_of_refusals_keep_the_back_off_bounded_and_the_relay_moving(amqp_url, things, relay, refusing_key):
    """0.5 * 2 ** attempts once overflowed after about 1,024 attempts and wedged the relay for good."""
    assert back_off_s(5_000, cap_s=30.0) == 30.0
    stuck = Event.new(refusing_key, "intake", {})
    things.insert_one({**with_events({"_id": "stuck"}, stuck), ATTEMPTS_FIELD: 5_000})
    moving = Event.new(key(), "intake", {})
    things.insert_one(with_events({"_id": "moving"}, moving))

    assert relay.relay_once() == 1  # the other document's event went out
    assert things.find_one({"_id": "moving"})[OUTBOX_FIELD] == []
    held = things.find_one({"_id": "stuck"})
    assert held[ATTEMPTS_FIELD] == 5_001 and 0 < (held[DUE_FIELD] - datetime.now(UTC)).total_seconds() <= 30
    assert [e["id"] for e in held[OUTBOX_FIELD]] == [stuck.id]



@contextlib.contextmanager
def relaying(relay: OutboxRelay):
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def test_events_stored_while_the_relay_idles_go_out_at_once(amqp_url, things, subscribe):
    """A change stream wakes the relay: it does not wait for its next poll (5 s here) to publish."""
    bound = key()
    tap = subscribe(bound)
    relay = OutboxRelay([things], EventPublisher(amqp_url, "intake"), "intake", interval_s=5.0)
    with relaying(relay):
        time.sleep(1.0)  # the relay has found nothing and idles
        stored = time.monotonic()
        event = Event.new(bound, "intake", {})
        things.insert_one(with_events({"_id": "new"}, event))
        wait_for(lambda: tap.events(bound), timeout=4, what="the event on the broker")
        assert time.monotonic() - stored < 2.5
        pushed = Event.new(bound, "intake", {})
        things.update_one({"_id": "new"}, push_events({"$set": {"seen": True}}, pushed))
        wait_for(lambda: pushed.id in {e["id"] for e in tap.events(bound)}, timeout=4, what="the pushed event")


def test_an_idle_relay_asks_its_store_about_once_a_second(amqp_url, mongo_url, things):
    finds = []

    class Finds(monitoring.CommandListener):
        def started(self, event):
            if event.command_name == "find" and event.command.get("find") == things.name:
                finds.append(time.monotonic())

        def succeeded(self, event):
            pass

        def failed(self, event):
            pass

    client = pymongo.MongoClient(mongo_url, event_listeners=[Finds()])
    watched = client[things.database.name][things.name]
    relay = OutboxRelay([watched], EventPublisher(amqp_url, "intake"), "intake", interval_s=0.05)
    try:
        with relaying(relay):
            time.sleep(2.0)  # it slows down from its busy interval
            finds.clear()
            time.sleep(4.0)
        assert len(finds) <= 5, f"{len(finds)} queries in 4 s while idle"
    finally:
        client.close()


def test_events_written_while_no_relay_ran_go_out_when_one_starts(amqp_url, things, subscribe):
    """A process that died between its write and the publishing leaves the events in the outbox; the next
    relay's first pass (the safety net) sends them."""
    bound = key()
    tap = subscribe(bound)
    event = Event.new(bound, "intake", {})
    things.insert_one(with_events({"_id": "orphan"}, event))
    relay = OutboxRelay([things], EventPublisher(amqp_url, "intake"), "intake")
    with relaying(relay):
        wait_for(lambda: tap.events(bound), timeout=5, what="the orphaned event")
    assert things.find_one({"_id": "orphan"})[OUTBOX_FIELD] == []
