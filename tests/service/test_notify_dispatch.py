"""The dispatcher against the real store and real receivers: one attempt per recipient and channel at a time
across dispatchers (a lease in the store), and mail on threads of its own."""
from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from services.notify.dispatch import Dispatcher
from services.notify.mail import mailer_from
from services.notify.sealing import Sealer
from services.notify.settings import NotifySettings
from services.notify.store import NotifyStore
from shared.outbound import TargetPolicy
from shared.store import connect
from tests.support import wait_for

SEALER = Sealer(f"dispatch-test-key-{uuid.uuid4().hex}")
DEADLINE_S = 2.0


class CountingReceiver:
    """Answers every POST after `answer_s`, and keeps the most requests it ever had under way at once, per path."""

    def __init__(self, answer_s: float = 0.0):
        self.lock = threading.Lock()
        self.under_way: dict[str, int] = {}
        self.most: dict[str, int] = {}
        self.received: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.under_way[self.path] = receiver.under_way.get(self.path, 0) + 1
                    receiver.most[self.path] = max(receiver.most.get(self.path, 0), receiver.under_way[self.path])
                time.sleep(answer_s)
                with receiver.lock:
                    receiver.under_way[self.path] -= 1
                    receiver.received.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def store(mongo_url) -> NotifyStore:
    return NotifyStore.prepared(connect(mongo_url, f"test_dispatch_{uuid.uuid4().hex[:10]}"))


def settings(**env) -> NotifySettings:
    return NotifySettings.from_env({"NOTIFY_ALLOWED_NETWORKS": "127.0.0.0/8",
                                    "NOTIFY_ATTEMPT_DEADLINE_S": str(DEADLINE_S), **env})


def subscribed(store: NotifyStore, recipient: str, **fields) -> None:
    store.save_subscription(recipient, {"events": [], "language": "zh", "preferences": {}, "suspended": [],
                                        "failures": {}, "updated_at": datetime.now(UTC),
                                        "secret_sealed": SEALER.seal("whsec_test", recipient), **fields}, ())


def waiting(store: NotifyStore, recipient: str, channel: str, target: str, count: int) -> list[str]:
    now = datetime.now(UTC)
    ids = [uuid.uuid4().hex for _ in range(count)]
    store.add_notices([], [{
        "_id": delivery_id, "event_id": f"evt-{delivery_id}", "recipient": recipient, "channel": channel,
        "kind": "case.event", "target": target, "title": "新派遣", "body": "案卷",
        "payload": json.dumps({"event_id": f"evt-{delivery_id}"}), "status": "pending", "created_at": now,
        "next_attempt_at": now, "attempt_count": 0, "attempts": [], "delivered_at": None} for delivery_id in ids])
    return ids


def running(dispatcher: Dispatcher, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=dispatcher.run, args=(stop,), daemon=True)
    thread.start()
    return thread


def statuses(store: NotifyStore, ids: list[str]) -> set[str]:
    return {store.delivery(delivery_id)["status"] for delivery_id in ids}


def test_two_dispatchers_on_one_store_never_attempt_one_recipient_at_once(store):
    receiver = CountingReceiver(answer_s=0.3)
    stop = threading.Event()
    try:
        for name in ("sanitation", "traffic-police"):
            subscribed(store, f"department:{name}", webhook_url=receiver.url(f"/{name}"))
        sanitation = waiting(store, "department:sanitation", "webhook", receiver.url("/sanitation"), 6)
        police = waiting(store, "department:traffic-police", "webhook", receiver.url("/traffic-police"), 6)
        dispatchers = [Dispatcher(store, mailer_from(None, "n <n@w.example>", "/tmp"),
                                  TargetPolicy.from_setting("127.0.0.0/8", DEADLINE_S), settings(), SEALER,
                                  idle_poll_s=0.05) for _ in range(2)]  # two worker processes' worth
        threads = [running(dispatcher, stop) for dispatcher in dispatchers]
        wait_for(lambda: statuses(store, sanitation + police) == {"delivered"}, timeout=30,
                 what="every delivery made")
    finally:
        stop.set()
        receiver.close()
    for thread in threads:
        thread.join(10)
    assert receiver.most == {"/sanitation": 1, "/traffic-police": 1}
    assert sorted(receiver.received) == ["/sanitation"] * 6 + ["/traffic-police"] * 6
    assert list(store.leases.find()) == []  # every lease released


def test_a_lease_is_taken_only_when_free_or_run_out(store):
    now = datetime.now(UTC)
    key = ("department:sanitation", "webhook")
    assert store.take_lease(key, "one", now, 12)
    assert not store.take_lease(key, "two", now, 12)
    store.release_lease(key, "two")  # not two's to release
    assert not store.take_lease(key, "two", now, 12)
    assert store.take_lease(key, "two", datetime.fromtimestamp(now.timestamp() + 13, UTC), 12)  # one's ran out
    store.release_lease(key, "two")
    assert store.take_lease(key, "three", now, 12)


def test_mail_goes_out_on_threads_of_its_own_so_a_hanging_mail_server_holds_no_webhook(store):
    receiver = CountingReceiver()
    stop = threading.Event()
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never greets
    try:
        port = silent.getsockname()[1]
        chosen = settings(NOTIFY_MAIL_THREADS="1", NOTIFY_DELIVERY_THREADS="1")
        for n in range(3):
            subscribed(store, f"volunteer:v{n}", email=f"v{n}@volunteers.example", email_confirmed=True)
        mails = [waiting(store, f"volunteer:v{n}", "email", f"v{n}@volunteers.example", 1)[0] for n in range(3)]
        subscribed(store, "department:sanitation", webhook_url=receiver.url("/sanitation"))
        dispatcher = Dispatcher(store, mailer_from(f"smtp://127.0.0.1:{port}?starttls=false", "n <n@w.example>",
                                                   "/tmp", DEADLINE_S),
                                TargetPolicy.from_setting("127.0.0.0/8", DEADLINE_S), chosen, SEALER,
                                idle_poll_s=0.05)
        thread = running(dispatcher, stop)
        wait_for(lambda: store.delivery(mails[0])["attempt_count"] + store.delivery(mails[1])["attempt_count"] == 0
                 and store.leases.count_documents({}) == 1, what="the mail thread busy with the silent server")
        started = time.monotonic()
        hooks = waiting(store, "department:sanitation", "webhook", receiver.url("/sanitation"), 3)
        dispatcher.wake()
        wait_for(lambda: statuses(store, hooks) == {"delivered"}, what="the webhooks delivered meanwhile")
        assert time.monotonic() - started < DEADLINE_S
        attempt = wait_for(lambda: next((store.delivery(m)["attempts"] for m in mails
                                         if store.delivery(m)["attempts"]), None), what="a mail attempt recorded")
        assert attempt[0]["error"] == f"no complete answer from 127.0.0.1:{port} within the 2 s deadline"
    finally:
        stop.set()
        silent.close()
        receiver.close()
    thread.join(10)
