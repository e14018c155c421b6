"""The outbox relay against the real broker: handed events go out at once, what is left behind is swept up,
refused events wait, none is lost."""
import contextlib
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pika
import pymongo
import pytest

from shared import deadletters
from shared.bus import EventPublisher
from shared.events import EXCHANGE, UNROUTED, Event
from shared.outbox import (
    ATTEMPTS_FIELD,
    DUE_FIELD,
    EVENTS_COLLECTION,
    GRACE_VARIABLE,
    OUTBOX_FIELD,
    SETTLE_EVERY_S,
    OutboxRelay,
    back_off_s,
    consumer_first_s,
    events_document,
    handoff_grace_s,
    publish_after_commit,
    push_events,
    update_settling_delivered,
    with_events,
)
from shared.store import connect, in_transaction
from tests.conftest import TEST_JWT_SECRET, Commands, settings_for_test
from tests.support import EventTap, wait_for


@pytest.fixture
def things(mongo_url):
    return connect(mongo_url, f"test_outbox_{uuid.uuid4().hex[:8]}")["things"]


@pytest.fixture
def relay(amqp_url, things):
    """A worker's relay, sweeping `things`, driven pass by pass by the test."""
    relay = OutboxRelay(EventPublisher(amqp_url, "intake"), "intake", batch_size=10).sweeps(things)
    yield relay
    relay.publisher.close()


@contextlib.contextmanager
def running(relay: OutboxRelay):
    relay.start()
    try:
        yield relay
    finally:
        relay.stop()


def key() -> str:
    return f"report.outbox-test-{uuid.uuid4().hex[:8]}"


def left_behind(document: dict) -> dict:
    """A document whose events nobody published: their grace is over."""
    return {**document, DUE_FIELD: datetime.now(UTC) - timedelta(seconds=1)}


@pytest.fixture
def counted(mongo_url, things):
    """`things` through a client that records every command sent to it."""
    commands = Commands(things.name)
    client = pymongo.MongoClient(mongo_url, event_listeners=[commands])
    yield client[things.database.name][things.name], commands
    client.close()


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


# --- publishing at once ---------------------------------------------------------------------------

def test_handed_events_go_out_at_once_and_leave_their_documents_in_one_read_and_one_write(
        amqp_url, counted, subscribe):
    things, commands = counted
    bound = key()
    tap = subscribe(bound)
    web = OutboxRelay(EventPublisher(amqp_url, "intake"), "intake")  # a web process's relay: it never sweeps
    with running(web):
        events = {}
        started = time.monotonic()
        for name in ("a", "b", "c"):
            events[name] = Event.new(bound, "intake", {"n": name})
            things.insert_one(with_events({"_id": name}, events[name]))
            publish_after_commit(web, things, name, [events[name]])
        wait_for(lambda: len(tap.events(bound)) == 3, timeout=30, what="the handed events on the broker")
        assert time.monotonic() - started < 1.0
        assert {e["id"] for e in tap.events(bound)} == {e.id for e in events.values()}
        wait_for(lambda: things.count_documents({DUE_FIELD: {"$exists": True}}) == 0, timeout=SETTLE_EVERY_S + 3,
                 what="the published events pulled from their documents")
    # The inserts and the test's counting; the relay published without reading, then settled all three with one
    # read of which still held their events and one write.
    assert {c for c in commands.seen if c != "aggregate"} == {"insert", "find", "update"}
    assert commands.seen.count("find") == 1 and commands.seen.count("update") == 1
    assert [things.find_one({"_id": name})[OUTBOX_FIELD] for name in events] == [[], [], []]


def test_an_event_pushed_while_others_were_published_stays_due(amqp_url, things, subscribe):
    bound = key()
    tap = subscribe(bound)
    web = OutboxRelay(EventPublisher(amqp_url, "intake"), "intake")
    first, second = Event.new(bound, "intake", {"n": 1}), Event.new(bound, "intake", {"n": 2})
    things.insert_one(with_events({"_id": "doc"}, first))
    with running(web):
        publish_after_commit(web, things, "doc", [first])
        wait_for(lambda: tap.events(bound), timeout=30, what="the first event")
        things.update_one({"_id": "doc"}, push_events({"$set": {"seen": True}}, second))  # not handed: a crash
        time.sleep(SETTLE_EVERY_S + 0.5)  # the first one's settle has run
    document = things.find_one({"_id": "doc"})
    assert [e["id"] for e in document[OUTBOX_FIELD]] == [second.id] and DUE_FIELD in document


def test_events_handed_inside_a_transaction_go_out_only_once_it_commits(amqp_url, mongo_url, things, subscribe):
    bound, marked = key(), key()
    tap = subscribe(bound, marked)
    web = OutboxRelay(EventPublisher(amqp_url, "intake"), "intake")
    committed, aborted = Event.new(bound, "intake", {"n": "kept"}), Event.new(bound, "intake", {"n": "rolled back"})
    db = things.database

    def work(session, event, fail):
        things.insert_one(with_events({"_id": event.id}, event), session=session)
        publish_after_commit(web, things, event.id, [event])
        assert tap.events(bound) == []  # not before the commit
        if fail:
            raise RuntimeError("the transaction fails")

    with running(web):
        with pytest.raises(RuntimeError):
            in_transaction(db, lambda session: work(session, aborted, fail=True))
        in_transaction(db, lambda session: work(session, committed, fail=False))
        # The relay publishes what it is handed in the order it was handed, on one channel, and the broker keeps
        # that order into the tap's one queue: once a marker handed after the commit is there, anything the rolled
        # back transaction might have handed is there too.
        marker = Event.new(marked, "intake", {})
        things.insert_one(with_events({"_id": marker.id}, marker))
        publish_after_commit(web, things, marker.id, [marker])
        wait_for(lambda: tap.events(marked), timeout=30, what="the marker handed after the commit")
    assert [e["id"] for e in tap.events(bound)] == [committed.id]
    assert things.find_one({"_id": aborted.id}) is None


@pytest.fixture
def events_outbox(mongo_url):
    """A database's collection of documents that hold nothing but a transaction's events, through a client that
    records every command sent to it."""
    commands = Commands(EVENTS_COLLECTION)
    client = pymongo.MongoClient(mongo_url, event_listeners=[commands])
    yield client[f"test_outbox_{uuid.uuid4().hex[:8]}"][EVENTS_COLLECTION], commands
    client.close()


def test_a_transactions_events_document_goes_out_once_it_commits_and_is_then_deleted_unread(
        amqp_url, events_outbox, subscribe):
    outbox, commands = events_outbox
    bound = key()
    tap = subscribe(bound)
    web = OutboxRelay(EventPublisher(amqp_url, "routing"), "routing")
    events = [Event.new(bound, "routing", {"n": n}) for n in range(3)]
    document = events_document(*events)

    def work(session):
        outbox.insert_one(document, session=session)
        publish_after_commit(web, outbox, document["_id"], events)

    with running(web):
        in_transaction(outbox.database, work)
        wait_for(lambda: len(tap.events(bound)) == 3, timeout=30, what="the transaction's events on the broker")
        wait_for(lambda: outbox.count_documents({}) == 0, timeout=SETTLE_EVERY_S + 3, what="the document deleted")
    assert [e["id"] for e in tap.events(bound)] == [e.id for e in events]
    # The insert, the test's counting and one delete: the relay neither read nor rewrote the document.
    assert set(commands.seen) == {"insert", "aggregate", "delete"} and commands.seen.count("delete") == 1


def test_an_events_document_left_behind_goes_out_from_the_sweep_and_is_deleted(amqp_url, events_outbox, subscribe):
    """A process that died between its transaction's commit and the publishing leaves the events document."""
    outbox, _ = events_outbox
    bound = key()
    tap = subscribe(bound)
    event = Event.new(bound, "routing", {})
    outbox.insert_one(left_behind(events_document(event)))
    worker = OutboxRelay(EventPublisher(amqp_url, "routing"), "routing", sweep_every_s=0.2).sweeps(outbox)
    with running(worker):
        wait_for(lambda: tap.events(bound), timeout=30, what="the event left behind")
        wait_for(lambda: outbox.count_documents({}) == 0, what="its document deleted")
    assert [e["id"] for e in tap.events(bound)] == [event.id]


def test_an_events_document_keeps_a_refused_event_for_the_sweep_and_goes_once_it_is_taken(
        amqp_url, events_outbox, refusing_key, subscribe):
    outbox, _ = events_outbox
    bound = key()
    tap = subscribe(bound)
    taken, refused = Event.new(bound, "routing", {}), Event.new(refusing_key, "routing", {})
    document = events_document(taken, refused)
    outbox.insert_one(left_behind(document))
    worker = OutboxRelay(EventPublisher(amqp_url, "routing"), "routing", sweep_every_s=0.2).sweeps(outbox)
    assert worker.sweep_once() == (1, False)
    kept = outbox.find_one({"_id": document["_id"]})
    assert [raw["id"] for raw in kept[OUTBOX_FIELD]] == [refused.id] and kept[ATTEMPTS_FIELD] == 1
    outbox.update_one({"_id": document["_id"]}, {"$set": {OUTBOX_FIELD: [{**kept[OUTBOX_FIELD][0], "type": bound}],
                                                          DUE_FIELD: datetime.now(UTC) - timedelta(seconds=1)}})
    assert worker.sweep_once() == (1, False)  # the broker takes it now
    assert outbox.count_documents({}) == 0
    assert [e["id"] for e in tap.events(bound)] == [taken.id, refused.id]
    worker.publisher.close()


def test_settling_a_document_a_transaction_is_changing_waits_for_it_without_holding_it_up(
        amqp_url, things, subscribe):
    """The settle meets a transaction that has written the document and will write the collection again: the
    transaction goes on and commits, the settle follows, and both writes are kept."""
    bound = key()
    tap = subscribe(bound)
    web = OutboxRelay(EventPublisher(amqp_url, "intake"), "intake")
    event = Event.new(bound, "intake", {"n": 1})
    things.insert_one(with_events({"_id": "busy"}, event))
    finished = threading.Event()

    def transaction(session):
        things.update_one({"_id": "busy"}, {"$set": {"touched": True}}, session=session)
        time.sleep(SETTLE_EVERY_S + 0.5)  # the relay's settle of "busy" starts meanwhile
        things.insert_one({"_id": "next"}, session=session)

    with running(web):
        publish_after_commit(web, things, "busy", [event])
        wait_for(lambda: tap.events(bound), timeout=30, what="the handed event")
        worker = threading.Thread(target=lambda: (in_transaction(things.database, transaction), finished.set()),
                                  daemon=True)
        worker.start()
        worker.join(SETTLE_EVERY_S + 10)
        assert finished.is_set(), "the transaction was held up by the relay's settle"
        wait_for(lambda: things.count_documents({DUE_FIELD: {"$exists": True}}) == 0, timeout=30,
                 what="the settle after the transaction")
    document = things.find_one({"_id": "busy"})
    assert document["touched"] is True and document[OUTBOX_FIELD] == []
    assert things.find_one({"_id": "next"}) is not None


def test_what_a_consumer_usually_pulls_is_left_to_it_and_pulled_by_the_relay_if_it_does_not(
        amqp_url, things, subscribe, monkeypatch):
    monkeypatch.setenv(GRACE_VARIABLE, "9")  # the consumer's share, 3 s, well beyond an ordinary settle
    bound = key()
    tap = subscribe(bound)
    web = OutboxRelay(EventPublisher(amqp_url, "intake"), "intake")
    followed, unfollowed = Event.new(bound, "intake", {"n": 1}), Event.new(bound, "intake", {"n": 2})
    with running(web):
        for name, event in (("followed", followed), ("unfollowed", unfollowed)):
            things.insert_one(with_events({"_id": name}, event))
            publish_after_commit(web, things, name, [event], consumer_settles_first=True)
        wait_for(lambda: len(tap.events(bound)) == 2, timeout=30, what="both events on the broker")
        time.sleep(SETTLE_EVERY_S + 0.5)  # an ordinary settle would have pulled them by now
        assert things.count_documents({DUE_FIELD: {"$exists": True}}) == 2  # left to the consumers
        stored = things.find_one({"_id": "followed"})
        things.update_one({"_id": "followed"}, update_settling_delivered(stored, {"$set": {"seen": True}}, bound))
        wait_for(lambda: things.count_documents({DUE_FIELD: {"$exists": True}}) == 0,
                 timeout=consumer_first_s() + 2, what="the other one pulled by the relay")
    assert [things.find_one({"_id": name})[OUTBOX_FIELD] for name in ("followed", "unfollowed")] == [[], []]
    assert sorted(e["id"] for e in tap.events(bound)) == sorted((followed.id, unfollowed.id))  # once each


# --- sweeping up ----------------------------------------------------------------------------------

def test_a_batch_mixing_confirmed_nacked_and_unroutable_events_settles_each_as_the_broker_answered(
        amqp_url, things, relay, refusing_key, subscribe):
    bound = key()
    tap = subscribe(bound)
    delivered, refused, nobody = (Event.new(bound, "intake", {}), Event.new(refusing_key, "intake", {}),
                                  Event.new(key(), "intake", {}))
    things.insert_one(left_behind(with_events({"_id": "mixed"}, delivered, refused, nobody)))
    things.insert_one(left_behind(with_events({"_id": "fine"}, Event.new(bound, "intake", {}))))

    assert relay.sweep_once() == (3, False)

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
    things.insert_one(left_behind(with_events({"_id": "lonely"}, event)))
    assert relay.sweep_once() == (1, False)
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
    things.insert_one({**left_behind(with_events({"_id": "stuck"}, stuck)), ATTEMPTS_FIELD: 5_000})
    moving = Event.new(key(), "intake", {})
    things.insert_one(left_behind(with_events({"_id": "moving"}, moving)))

    assert relay.sweep_once() == (1, False)  # the other document's event went out
    assert things.find_one({"_id": "moving"})[OUTBOX_FIELD] == []
    held = things.find_one({"_id": "stuck"})
    assert held[ATTEMPTS_FIELD] == 5_001 and 0 < (held[DUE_FIELD] - datetime.now(UTC)).total_seconds() <= 30
    assert [e["id"] for e in held[OUTBOX_FIELD]] == [stuck.id]


def test_a_stored_event_nobody_handed_goes_out_from_the_sweep_once_its_grace_is_over(amqp_url, things, subscribe):
    """A process that died between its write and the publishing leaves the event in the outbox; a worker's
    relay sweeps it up (and until its grace is over leaves it to the process that stored it)."""
    bound = key()
    tap = subscribe(bound)
    event = Event.new(bound, "intake", {})
    things.insert_one(with_events({"_id": "orphan"}, event))
    stored = time.monotonic()
    worker = OutboxRelay(EventPublisher(amqp_url, "intake"), "intake", sweep_every_s=0.2).sweeps(things)
    with running(worker):
        wait_for(lambda: tap.events(bound), timeout=handoff_grace_s() + 5, what="the orphaned event")
    assert time.monotonic() - stored >= handoff_grace_s() - 0.5
    wait_for(lambda: things.find_one({"_id": "orphan"})[OUTBOX_FIELD] == [], what="the orphan settled")


def test_an_idle_worker_relay_sweeps_once_per_interval_and_a_web_relay_never_reads(amqp_url, counted):
    things, commands = counted
    worker = OutboxRelay(EventPublisher(amqp_url, "intake"), "intake", sweep_every_s=1.0).sweeps(things)
    web = OutboxRelay(EventPublisher(amqp_url, "intake"), "intake")
    with running(worker), running(web):
        time.sleep(0.5)
        commands.seen.clear()
        time.sleep(4.0)
    assert 3 <= commands.seen.count("find") <= 5, commands.seen
    assert set(commands.seen) == {"find"}


# --- a process that dies between its write and the publishing ---------------------------------------

DIES_AFTER_STORING = textwrap.dedent("""
    import os, sys
    from dataclasses import replace
    from services.intake.app import create_app
    from shared.config import Settings
    from shared.outbox import OutboxRelay
    from shared.auth import issue_token

    # Dies the moment the report is stored, before its relay may publish: as a crash, a kill -9, a power cut.
    OutboxRelay.publish_soon = lambda *_: os._exit(17)
    settings = replace(Settings.from_env("intake"), rate_limit_writes=None, rate_limit_uploads=None,
                       rate_limit_per_ip=None)
    client = create_app(settings).test_client()
    headers = {"Authorization": "Bearer " + issue_token(os.environ["WOODPECKER_JWT_SECRET"], "v-crash", "volunteer")}
    import io
    from PIL import Image
    jpeg = io.BytesIO()
    Image.new("RGB", (32, 24), "red").save(jpeg, "JPEG")
    photo = client.post("/v1/photos", headers=headers, content_type="multipart/form-data",
                        data={"file": (io.BytesIO(jpeg.getvalue()), "p.jpg")}).json["id"]
    client.post("/v1/reports", headers=headers, json={
        "category": "traffic.parking", "description": "人行道上停放多辆机动车", "photo_ids": [photo],
        "location": {"lat": 35.060, "lng": 118.315}})
    sys.exit("the report was stored and the process is still alive")
""")


def test_a_report_stored_by_a_process_that_died_before_publishing_it_is_published_by_the_workers_sweep(
        amqp_url, mongo_url, subscribe):
    from services.intake.worker import background_work

    tap = subscribe("report.submitted")
    settings = settings_for_test("intake", amqp_url, mongo_url)
    env = {**os.environ, "AMQP_URL": amqp_url, "MONGO_URL": mongo_url, "INTAKE_DATABASE": settings.database,
           "WOODPECKER_JWT_SECRET": TEST_JWT_SECRET}
    died = subprocess.run([sys.executable, "-c", DIES_AFTER_STORING], env=env, capture_output=True, text=True,
                          timeout=60)
    assert died.returncode == 17, died.stderr
    reports = connect(mongo_url, settings.database)["reports"]
    [stored] = list(reports.find())
    assert [e["type"] for e in stored[OUTBOX_FIELD]] == ["report.submitted"]
    assert tap.events("report.submitted", lambda e: e["data"]["id"] == stored["_id"]) == []

    worker = background_work(settings, connect(mongo_url, settings.database)).start()
    try:
        published = wait_for(lambda: tap.events("report.submitted", lambda e: e["data"]["id"] == stored["_id"]),
                             timeout=handoff_grace_s() + 10, what="the report published by the sweep")
        wait_for(lambda: reports.find_one({"_id": stored["_id"]})[OUTBOX_FIELD] == [], what="the outbox emptied")
    finally:
        worker.stop()
    assert [e["id"] for e in published] == [stored[OUTBOX_FIELD][0]["id"]]
