"""Notify through HTTP with the real broker, beside intake, routing and hours: who hears what, once, on the
channels they chose; signed webhooks to real receivers; mail to a real SMTP server; retries and suspension."""
import json
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from services.notify.app import create_app
from services.notify.settings import NotifySettings
from services.notify.webhooks import verify
from shared.events import Event
from shared.testing import publish_raw, wait_for
from tests.conftest import bearer, run_service, settings_for_test
from tests.service.conftest import upload_photo
from tests.service.test_routing import fresh_spot

OFFICE = bearer("office", "office-1")
ASSOCIATION = bearer("association", "assoc-1")
POLICE = bearer("department", "police-1", dept="traffic-police")
SUSPEND_AFTER = 3


class Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


@pytest.fixture(scope="module")
def mailbox():
    box = Mailbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


@pytest.fixture(scope="module")
def city(amqp_url, mongo_url, mailbox, tmp_path_factory):
    _, port = mailbox
    env = {"NOTIFY_ALLOWED_NETWORKS": "127.0.0.0/8", "NOTIFY_WEBHOOK_TIMEOUT_S": "2",
           "NOTIFY_SUSPEND_AFTER": str(SUSPEND_AFTER), "SMTP_URL": f"smtp://127.0.0.1:{port}?starttls=false",
           "NOTIFY_MAIL_DIR": str(tmp_path_factory.mktemp("mail")), "NOTIFY_LINK_BASE": "https://linyi.example"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        services = {name: run_service(settings_for_test(name, amqp_url, mongo_url))
                    for name in ("intake", "routing", "hours", "notify")}
    finally:
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    yield services
    for service in reversed(list(services.values())):
        service.stop()


class Receiver:
    """A department's system: a real HTTP server that answers as told and keeps what it received."""

    def __init__(self, answers=(200,), hang_s: float = 0):
        self.received: list[dict] = []
        self.answers = list(answers)
        self.hang_s = hang_s
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.hang_s:
                    time.sleep(receiver.hang_s)
                receiver.received.append({"headers": dict(self.headers), "body": body, "at": time.monotonic()})
                status = receiver.answers.pop(0) if len(receiver.answers) > 1 else receiver.answers[0]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def receiving(**kwargs):
    receiver = Receiver(**kwargs)
    try:
        yield receiver
    finally:
        receiver.close()


def report(city, token, category="traffic.parking") -> dict:
    lat, lng = fresh_spot()
    photo = upload_photo(city["intake"].client, token)["id"]
    response = city["intake"].client.post("/v1/reports", headers=token, json={
        "category": category, "description": "路口乱停车辆堵塞通道", "location": {"lat": lat, "lng": lng},
        "photo_ids": [photo]})
    assert response.status_code == 201, response.json
    return response.json


def case_of(city, report_id: str) -> dict:
    def found():
        items = city["routing"].client.get("/v1/cases?limit=200", headers=OFFICE).json["items"]
        return next((c for c in items if report_id in c["report_ids"]), None)

    return wait_for(found, what=f"the case of report {report_id}")


def inbox(city, token, **query) -> list[dict]:
    response = city["notify"].client.get("/v1/inbox", headers=token, query_string={"limit": 200, **query})
    assert response.status_code == 200, response.json
    return response.json["items"]


def kinds(city, token) -> list[str]:
    return sorted(item["kind"] for item in inbox(city, token))


def subscribe(city, recipient: str, who=OFFICE, **body):
    response = city["notify"].client.put(f"/v1/subscriptions/{recipient}", headers=who, json=body)
    assert response.status_code == 200, response.json
    return response.json


def deliveries(city, **query) -> list[dict]:
    return city["notify"].client.get("/v1/deliveries", headers=OFFICE,
                                     query_string={"limit": 200, **query}).json["items"]


def close_case(city, case_id: str) -> None:
    routing = city["routing"].client
    assert routing.post(f"/v1/cases/{case_id}/accept", headers=POLICE, json={}).status_code == 200
    after = upload_photo(city["intake"].client, POLICE)["id"]
    assert routing.post(f"/v1/cases/{case_id}/rectify", headers=POLICE,
                        json={"note": "已拖移", "photo_ids": [after]}).status_code == 200
    assert routing.post(f"/v1/cases/{case_id}/verify", headers=OFFICE,
                        json={"passed": True, "note": "已整改"}).json["status"] == "closed"


# --- who hears what ---------------------------------------------------------------------------------

def test_a_reporter_hears_the_dispatch_the_rectification_and_the_closure_once_each(city):
    reporter = bearer("volunteer")
    submitted = report(city, reporter)
    case = case_of(city, submitted["id"])
    wait_for(lambda: kinds(city, reporter) == ["report.dispatched"], what="the dispatch in the reporter's inbox")
    item = inbox(city, reporter)[0]
    assert "交警" in item["title"] and item["link"] == f"https://linyi.example/reports/{submitted['id']}"
    assert item["event_type"] == "case.dispatched.traffic-police" and item["read_at"] is None
    close_case(city, case["id"])
    wait_for(lambda: kinds(city, reporter) == ["report.closed", "report.dispatched", "report.rectified"],
             what="the rectification and closure in the reporter's inbox")


def test_an_event_delivered_twice_reaches_the_inbox_once(city, amqp_url):
    reporter = bearer("volunteer")
    submitted = report(city, reporter)
    case = case_of(city, submitted["id"])
    wait_for(lambda: len(inbox(city, reporter)) == 1, what="the dispatch in the inbox")
    event = Event.new("case.rejected.traffic-police", "routing", {
        "case_id": case["id"], "report_ids": [submitted["id"]], "category": "traffic.parking",
        "department": "traffic-police", "status": "rejected", "due_at": None, "grid_id": case["grid_id"],
        "location": case["location"], "description": case["description"], "photo_ids": [], "reason": "duplicate",
        "note": "重复上报", "case_version": 99})
    for _ in range(2):  # the broker redelivers, or a publisher retried
        publish_raw(amqp_url, event.routing_key, event.to_dict(), message_id=event.id)
    wait_for(lambda: "report.rejected" in kinds(city, reporter), what="the rejection in the inbox")
    time.sleep(1)
    assert kinds(city, reporter).count("report.rejected") == 1
    assert "重复" in next(i for i in inbox(city, reporter) if i["kind"] == "report.rejected")["body"]


def test_a_report_that_joins_a_case_under_way_hears_it_and_then_its_outcome(city):
    first, second = bearer("volunteer"), bearer("volunteer")
    lat, lng = fresh_spot()
    photo = upload_photo(city["intake"].client, first)["id"]
    one = city["intake"].client.post("/v1/reports", headers=first, json={
        "category": "traffic.parking", "description": "路口乱停车辆堵塞通道", "location": {"lat": lat, "lng": lng},
        "photo_ids": [photo]}).json
    case = case_of(city, one["id"])
    photo = upload_photo(city["intake"].client, second)["id"]
    two = city["intake"].client.post("/v1/reports", headers=second, json={
        "category": "traffic.parking", "description": "同一路口仍有车辆违停",
        "location": {"lat": lat, "lng": lng + 0.0002}, "photo_ids": [photo]}).json
    wait_for(lambda: two["id"] in case_of(city, one["id"])["report_ids"], what="the second report joining")
    wait_for(lambda: kinds(city, second) == ["report.joined"], what="the joiner told")
    close_case(city, case["id"])
    for reporter in (first, second):
        wait_for(lambda reporter=reporter: "report.closed" in kinds(city, reporter), what="the closure told")


def test_the_department_and_the_office_hear_what_concerns_them(city):
    submitted = report(city, bearer("volunteer"))
    case = case_of(city, submitted["id"])
    wait_for(lambda: any(i["link"].endswith(case["id"]) for i in inbox(city, POLICE)), what="the department told")
    routing = city["routing"].client
    routing.post(f"/v1/cases/{case['id']}/accept", headers=POLICE, json={})
    assert routing.post(f"/v1/cases/{case['id']}/extension", headers=POLICE,
                        json={"hours": 24, "reason": "需协调拖车"}).status_code == 200
    wait_for(lambda: any(i["kind"] == "office.extension_requested" and i["link"].endswith(case["id"])
                         for i in inbox(city, OFFICE)), what="the office told of the extension request")
    other = bearer("department", dept="sanitation")
    assert not any(i["link"].endswith(case["id"]) for i in inbox(city, other))


def test_a_volunteer_hears_of_hours_credited_and_a_new_star_level(city):
    volunteer = city["hours"].client.post("/v1/volunteers", headers=ASSOCIATION, json={
        "name": "王小明", "phone": f"139{uuid.uuid4().int % 10**8:08d}", "organization": "金雀山街道志愿服务队",
        "grid_id": "lanshan-01"}).json
    token = bearer("volunteer", volunteer["id"])
    city["hours"].client.post("/v1/adjustments", headers=ASSOCIATION, json={
        "volunteer_id": volunteer["id"], "hours": 100, "reason": "补录往年服务时长"})
    wait_for(lambda: kinds(city, token) == ["hours.credited", "volunteer.level_changed"],
             what="the hours and the level in the volunteer's inbox")
    assert "一星" in next(i for i in inbox(city, token) if i["kind"] == "volunteer.level_changed")["title"]


# --- the inbox --------------------------------------------------------------------------------------

def test_the_inbox_marks_items_read_counts_the_unread_and_keeps_each_to_its_owner(city):
    reporter = bearer("volunteer")
    for _ in range(2):
        report(city, reporter)
    wait_for(lambda: len(inbox(city, reporter)) == 2, what="two dispatches")
    client = city["notify"].client
    assert client.get("/v1/inbox/unread-count", headers=reporter).json == {"unread": 2}
    first = inbox(city, reporter)[0]
    assert client.post(f"/v1/inbox/{first['id']}/read", headers=bearer("volunteer")).status_code == 404
    read = client.post(f"/v1/inbox/{first['id']}/read", headers=reporter)
    assert read.status_code == 200 and read.json["read_at"]
    assert [i["id"] for i in inbox(city, reporter, unread="true")] != [first["id"]]
    assert client.get("/v1/inbox/unread-count", headers=reporter).json == {"unread": 1}
    assert client.post("/v1/inbox/read-all", headers=reporter).json == {"marked": 1}
    assert inbox(city, reporter, unread="true") == []


def test_a_muted_kind_stays_out_of_the_inbox_but_an_outcome_cannot_be_muted(city):
    reporter_id = f"vol-{uuid.uuid4().hex[:8]}"
    reporter = bearer("volunteer", reporter_id)
    subscribe(city, f"volunteer:{reporter_id}", who=reporter, preferences={
        "report.dispatched": {"muted": True}, "hours.credited": {"muted": True}})
    report(city, reporter)
    wait_for(lambda: kinds(city, reporter) == ["report.dispatched"], what="the dispatch despite the mute")


# --- webhooks and mail ------------------------------------------------------------------------------

def test_a_department_receives_a_correctly_signed_webhook_and_an_email(city, mailbox):
    box, _ = mailbox
    with receiving() as receiver:
        saved = subscribe(city, "department:traffic-police", who=POLICE, webhook_url=receiver.url,
                          email="duty@traffic-police.example", events=["case.dispatched.*"])
        submitted = report(city, bearer("volunteer"))
        wait_for(lambda: any(submitted["id"] in r["body"].decode() for r in receiver.received),
                 what="the webhook POST")
        post = next(r for r in receiver.received if submitted["id"] in r["body"].decode())
        headers = {k.lower(): v for k, v in post["headers"].items()}
        assert verify(saved["secret"], headers, post["body"], time.time())
        assert not verify(saved["secret"], headers, post["body"] + b" ", time.time())
        payload = json.loads(post["body"])
        assert payload["event_type"] == "case.dispatched.traffic-police" and payload["kind"] == "case.event"
        assert headers["x-woodpecker-event-id"] == payload["event_id"]
    mail = wait_for(lambda: next((m for m in box.messages if m["To"] == "duty@traffic-police.example"), None),
                    what="the email")
    assert "派遣" in mail["Subject"] and mail["Auto-Submitted"] == "auto-generated"
    subscribe(city, "department:traffic-police", who=POLICE)  # leave no receiver behind for other tests


def test_a_receiver_that_fails_twice_gets_the_notice_on_the_third_try(city):
    recipient_id = f"vol-{uuid.uuid4().hex[:8]}"
    reporter = bearer("volunteer", recipient_id)
    with receiving(answers=(500, 503, 200)) as receiver:
        subscribe(city, f"volunteer:{recipient_id}", who=reporter, webhook_url=receiver.url)
        report(city, reporter)
        delivered = wait_for(lambda: [d for d in deliveries(city, recipient=f"volunteer:{recipient_id}")
                                      if d["status"] == "delivered"], timeout=30, what="delivery on the third try")
        assert [a["status_code"] for a in delivered[0]["attempts"]] == [500, 503, 200]
        assert all(a["latency_ms"] >= 0 for a in delivered[0]["attempts"]) and len(receiver.received) == 3


def test_a_receiver_that_never_answers_does_not_delay_another(city):
    slow_id, fast_id = f"vol-{uuid.uuid4().hex[:8]}", f"vol-{uuid.uuid4().hex[:8]}"
    slow, fast = bearer("volunteer", slow_id), bearer("volunteer", fast_id)
    with receiving(hang_s=10) as dead, receiving() as alive:
        subscribe(city, f"volunteer:{slow_id}", who=slow, webhook_url=dead.url)
        subscribe(city, f"volunteer:{fast_id}", who=fast, webhook_url=alive.url)
        report(city, slow)
        time.sleep(0.5)  # the dead receiver's delivery is under way
        started = time.monotonic()
        report(city, fast)
        wait_for(lambda: alive.received, timeout=20, what="the live receiver's POST")
        assert alive.received[0]["at"] - started < 2  # within the dead one's 2 s timeout, not after it
    subscribe(city, f"volunteer:{slow_id}", who=slow)


def test_a_receiver_that_keeps_failing_is_suspended_until_its_subscription_is_saved(city):
    recipient_id = f"vol-{uuid.uuid4().hex[:8]}"
    reporter = bearer("volunteer", recipient_id)
    recipient = f"volunteer:{recipient_id}"
    with receiving(answers=(500,)) as receiver:
        subscribe(city, recipient, who=reporter, webhook_url=receiver.url)
        report(city, reporter)
        wait_for(lambda: city["notify"].client.get(f"/v1/subscriptions/{recipient}", headers=reporter)
                 .json["suspended"] == ["webhook"], timeout=30, what="the receiver suspended")
        wait_for(lambda: {d["status"] for d in deliveries(city, recipient=recipient)} == {"suspended"},
                 what="its delivery held")
        assert len(receiver.received) == SUSPEND_AFTER
        receiver.answers = [200]
        resumed = subscribe(city, recipient, who=reporter, webhook_url=receiver.url)
        assert resumed["suspended"] == []
        wait_for(lambda: {d["status"] for d in deliveries(city, recipient=recipient)} == {"delivered"},
                 timeout=20, what="the held notice delivered after the save")


def test_the_office_retries_a_failed_delivery_by_hand(city):
    recipient_id = f"vol-{uuid.uuid4().hex[:8]}"
    reporter = bearer("volunteer", recipient_id)
    with receiving(answers=(500,)) as receiver:
        subscribe(city, f"volunteer:{recipient_id}", who=reporter, webhook_url=receiver.url)
        report(city, reporter)
        delivery = wait_for(lambda: next(iter(deliveries(city, recipient=f"volunteer:{recipient_id}")), None),
                            what="the delivery")
        wait_for(lambda: receiver.received, what="the first attempt")
        receiver.answers = [200]
        retried = city["notify"].client.post(f"/v1/deliveries/{delivery['id']}/retry", headers=OFFICE)
        assert retried.status_code == 200
        wait_for(lambda: city["notify"].client.get("/v1/deliveries", headers=OFFICE, query_string={
            "recipient": f"volunteer:{recipient_id}", "status": "delivered"}).json["items"], what="delivered")
    assert city["notify"].client.post(f"/v1/deliveries/{delivery['id']}/retry", headers=reporter).status_code == 403


def test_private_receivers_are_refused_unless_the_operator_allows_them(amqp_url, mongo_url):
    strict = create_app(settings_for_test("notify", amqp_url, mongo_url),
                        NotifySettings.from_env({"NOTIFY_ALLOWED_NETWORKS": ""}))
    client = strict.test_client()
    for url in ("http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.0.0.8/hook",
                "http://169.254.169.254/latest/meta-data", "ftp://receiver.example/hook"):
        response = client.put("/v1/subscriptions/department:traffic-police", headers=POLICE,
                              json={"webhook_url": url})
        assert response.status_code == 422, url
        assert "webhook_url" in response.json["errors"], url


def test_only_the_office_or_the_recipient_manages_a_subscription(city):
    assert city["notify"].client.put("/v1/subscriptions/department:traffic-police",
                                     headers=bearer("department", dept="sanitation"), json={}).status_code == 403
    assert city["notify"].client.put("/v1/subscriptions/department:nowhere", headers=OFFICE,
                                     json={}).status_code == 422
    first = subscribe(city, "grid:lanshan-01", who=bearer("grid_leader", grid="lanshan-01"))
    rotated = city["notify"].client.post("/v1/subscriptions/grid:lanshan-01/secret", headers=OFFICE).json
    assert rotated["secret"] != first["secret"] and rotated["secret"].startswith("whsec_")


def test_a_new_webhook_url_takes_over_what_waits_and_a_removed_one_gets_nothing_more(city):
    recipient_id = f"vol-{uuid.uuid4().hex[:8]}"
    reporter = bearer("volunteer", recipient_id)
    recipient = f"volunteer:{recipient_id}"
    with receiving(answers=(500,)) as old, receiving() as new:
        subscribe(city, recipient, who=reporter, webhook_url=old.url)
        report(city, reporter)
        wait_for(lambda: old.received, what="the first attempt at the old URL")
        subscribe(city, recipient, who=reporter, webhook_url=new.url)
        wait_for(lambda: new.received, timeout=20, what="the waiting notice at the new URL")
        assert {d["target"] for d in deliveries(city, recipient=recipient)} == {new.url}
        tried_old = len(old.received)
        subscribe(city, recipient, who=reporter)  # no webhook any more
        report(city, reporter)
        wait_for(lambda: len(inbox(city, reporter)) == 2, what="the second notice in the inbox")
        time.sleep(1)
        assert len(old.received) == tried_old and len(new.received) == 1
