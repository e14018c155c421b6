"""Notify through HTTP with the real broker, beside intake, routing and hours: who hears what, once, on the
channels they chose, and only what is theirs; signed webhooks to real receivers; mail to a real SMTP server, to
proven addresses only; retries, suspension and secrets.

Loopback is a private address: the receivers here are departments' (staff webhooks, which the deployment may let
reach 127.0.0.0/8); a volunteer's webhook may only be https to a public address, which no test can run."""
import itertools
import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from deploy.migrations import migrate
from services.notify.app import create_app
from services.notify.settings import NotifySettings
from services.notify.webhooks import verify
from shared.events import Event
from tests.conftest import bearer, run_service, settings_for_test
from tests.service.conftest import upload_photo
from tests.service.test_routing import fresh_spot
from tests.support import ConsumerDrain, publish_raw, wait_for

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
    env = {"NOTIFY_ALLOWED_NETWORKS": "127.0.0.0/8", "NOTIFY_ATTEMPT_DEADLINE_S": "2",
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
        self.arrivals: list[float] = []  # when each request came in, before any hanging
        self.answers = list(answers)
        self.hang_s = hang_s
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.arrivals.append(time.monotonic())
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


def test_an_event_delivered_twice_reaches_the_inbox_once(city, amqp_url, case_event_marker):
    reporter = bearer("volunteer")
    submitted = report(city, reporter)
    case = case_of(city, submitted["id"])
    wait_for(lambda: len(inbox(city, reporter)) == 1, what="the dispatch in the inbox")
    event = Event.new("case.rejected.traffic-police", "routing", {
        "case_id": case["id"], "report_ids": [submitted["id"]], "category": "traffic.parking",
        "department": "traffic-police", "status": "rejected", "due_at": None, "grid_id": case["grid_id"],
        "location": case["location"], "description": case["description"], "photo_ids": [], "reason": "duplicate",
        "note": "重复上报", "case_version": 99})
    drain = ConsumerDrain(CASE_EVENTS)
    for _ in range(2):  # the broker redelivers, or a publisher retried
        publish_raw(amqp_url, event.routing_key, event.to_dict(), message_id=event.id)
    drain.wait(case_event_marker)  # both copies handled, the second one too
    assert kinds(city, reporter).count("report.rejected") == 1
    assert "重复" in next(i for i in inbox(city, reporter) if i["kind"] == "report.rejected")["body"]


def heard_report(amqp_url, city, reporter_id: str, grid_id: str = "lanshan-01") -> str:
    """A report notify has heard of (as intake would announce it), without routing making a case of it."""
    report_id = f"r-{uuid.uuid4().hex[:12]}"
    event = Event.new("report.submitted", "intake", {
        "id": report_id, "reporter_id": reporter_id, "grid_id": grid_id, "category": "traffic.parking",
        "submitted_at": "2026-11-24T08:00:00Z", "description": "只属于上报人自己的描述"})
    publish_raw(amqp_url, event.routing_key, event.to_dict(), message_id=event.id)
    wait_for(lambda: city["notify"].app.extensions["notify"].store.heard_reports([report_id]),
             what="the report heard of")
    return report_id


CASE_EVENTS = "notify.case-events"


@pytest.fixture(scope="module")
def case_event_marker(city, amqp_url) -> Callable[[], Callable[[], bool]]:
    """Sends a marker through notify's case-event queue, for ConsumerDrain: the next step of a case of its own, about
    a report notify heard of for the purpose, that concerns no reporter and a department no test subscribes. Its
    effect, the report following its case to the step's version, is written after every notice and delivery of the
    events handled with it (`handlers.cases_changed` follows the cases last)."""
    report_id = heard_report(amqp_url, city, f"vol-{uuid.uuid4().hex[:8]}")
    case_id, versions = f"case-{uuid.uuid4().hex[:8]}", itertools.count(1)
    reports = city["notify"].app.extensions["notify"].store.reports

    def send() -> Callable[[], bool]:
        version = next(versions)
        step = Event.new("case.accepted.drain-probe", "routing", {
            "case_id": case_id, "report_ids": [report_id], "category": "traffic.parking", "department": "drain-probe",
            "status": "accepted", "due_at": None, "grid_id": "lanshan-01", "description": "", "photo_ids": [],
            "case_version": version})
        publish_raw(amqp_url, step.routing_key, step.to_dict(), message_id=step.id)
        return lambda: reports.find_one({"_id": report_id, "case_version": version}) is not None

    return send


def settled(city, drain: ConsumerDrain, marker: Callable, recipient: str) -> None:
    """Nothing more goes out to `recipient` of what notify was sent before now: every case event is handled (the
    drain's marker), and every delivery of theirs that was due has been attempted (a mail is recorded delivered only
    once the SMTP server took it, a webhook once the receiver answered)."""
    drain.wait(marker)
    wait_for(lambda: not deliveries(city, recipient=recipient, status="pending"), timeout=60,
             what=f"{recipient}'s deliveries attempted")


def test_the_reporter_of_a_report_joining_a_case_under_way_hears_it_and_the_department_hears_the_join(
        city, amqp_url):
    first_id, joiner_id = f"vol-{uuid.uuid4().hex[:8]}", f"vol-{uuid.uuid4().hex[:8]}"
    first, joiner = heard_report(amqp_url, city, first_id), heard_report(amqp_url, city, joiner_id)
    case_id = f"case-{uuid.uuid4().hex[:8]}"
    event = Event.new("case.joined.traffic-police", "routing", {
        "case_id": case_id, "report_ids": [first, joiner], "report_id": joiner, "category": "traffic.parking",
        "department": "traffic-police", "status": "accepted", "due_at": "2026-11-26T00:31:00Z",
        "grid_id": "lanshan-01", "location": {"lat": 35.06123, "lng": 118.31543},
        "description": "FIRST-REPORTERS-WORDS 第一位上报人的描述", "photo_ids": ["photo-of-the-first"],
        "overdue": False, "escalation_level": 0, "rework_count": 0, "case_version": 3,
        "note": "STAFF-NOTE 派给二中队"})
    publish_raw(amqp_url, event.routing_key, event.to_dict(), message_id=event.id)
    told = wait_for(lambda: inbox(city, bearer("volunteer", joiner_id)), what="the joiner told")
    assert [item["kind"] for item in told] == ["report.joined"]
    assert "FIRST-REPORTERS-WORDS" not in told[0]["body"] and "STAFF-NOTE" not in told[0]["body"]
    assert told[0]["link"].endswith(f"/reports/{joiner}")
    assert inbox(city, bearer("volunteer", first_id)) == []
    wait_for(lambda: any(i["event_type"] == "case.joined.traffic-police" and i["link"].endswith(case_id)
                         for i in inbox(city, POLICE)), what="the department told of the join")


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

def test_a_department_receives_a_correctly_signed_webhook_with_its_case_and_an_email(city, mailbox):
    box, _ = mailbox
    with receiving() as receiver:
        saved = subscribe(city, "department:traffic-police", who=POLICE, webhook_url=receiver.url,
                          email="duty@traffic-police.example", events=["case.dispatched.*"])
        assert saved["email_confirmed"] is True  # staff set staff addresses: no proof asked
        submitted = report(city, bearer("volunteer"))
        wait_for(lambda: any(submitted["id"] in r["body"].decode() for r in receiver.received),
                 what="the webhook POST")
        post = next(r for r in receiver.received if submitted["id"] in r["body"].decode())
        headers = {k.lower(): v for k, v in post["headers"].items()}
        assert verify(saved["secret"], headers, post["body"], time.time())
        assert not verify(saved["secret"], headers, post["body"] + b" ", time.time())
        payload = json.loads(post["body"])
        assert payload["event_type"] == "case.dispatched.traffic-police" and payload["kind"] == "case.event"
        assert payload["data"]["description"] == submitted["description"]  # its own case, whole
        assert headers["x-woodpecker-event-id"] == payload["event_id"]
    mail = wait_for(lambda: next((m for m in box.messages if m["To"] == "duty@traffic-police.example"), None),
                    what="the email")
    assert "派遣" in mail["Subject"] and mail["Auto-Submitted"] == "auto-generated"
    subscribe(city, "department:traffic-police", who=POLICE)  # leave no receiver behind for other tests


# Each delivery test below has a department (and a category that goes to it) of its own.
def department_report(city, category: str) -> dict:
    return report(city, bearer("volunteer"), category=category)


def test_a_receiver_that_fails_twice_gets_the_notice_on_the_third_try(city):
    recipient = "department:sanitation"
    with receiving(answers=(500, 503, 200)) as receiver:
        subscribe(city, recipient, webhook_url=receiver.url, events=["case.dispatched.*"])
        department_report(city, "env.garbage")
        delivered = wait_for(lambda: [d for d in deliveries(city, recipient=recipient)
                                      if d["status"] == "delivered"], timeout=30, what="delivery on the third try")
        assert [a["status_code"] for a in delivered[0]["attempts"]] == [500, 503, 200]
        assert all(a["latency_ms"] >= 0 for a in delivered[0]["attempts"]) and len(receiver.received) == 3
    subscribe(city, recipient)


def test_a_receiver_that_never_answers_is_given_up_at_the_deadline_and_does_not_delay_another(city):
    slow, fast = "department:market-regulation", "department:housing-construction"
    with receiving(hang_s=10) as dead, receiving() as alive:
        subscribe(city, slow, webhook_url=dead.url, events=["case.dispatched.*"])
        subscribe(city, fast, webhook_url=alive.url, events=["case.dispatched.*"])
        department_report(city, "market.disorder")
        wait_for(lambda: dead.arrivals, what="the dead receiver's attempt under way")
        started = time.monotonic()
        department_report(city, "site.construction")
        wait_for(lambda: alive.received, timeout=60, what="the live receiver's POST")
        assert alive.received[0]["at"] - started < 2  # within the dead one's 2 s deadline, not after it
        failed = wait_for(lambda: [a for d in deliveries(city, recipient=slow) for a in d["attempts"]],
                          what="the dead receiver's attempt recorded")
        assert failed[0]["error"] == "no complete answer within the 2 s deadline"
        assert 1900 <= failed[0]["latency_ms"] < 2500
    subscribe(city, slow)
    subscribe(city, fast)


def test_a_receiver_that_keeps_failing_is_suspended_until_its_subscription_is_saved(city):
    recipient = "department:public-security"
    with receiving(answers=(500,)) as receiver:
        subscribe(city, recipient, webhook_url=receiver.url, events=["case.dispatched.*"])
        department_report(city, "civility.dogs")
        wait_for(lambda: city["notify"].client.get(f"/v1/subscriptions/{recipient}", headers=OFFICE)
                 .json["suspended"] == ["webhook"], timeout=30, what="the receiver suspended")
        wait_for(lambda: {d["status"] for d in deliveries(city, recipient=recipient)} == {"suspended"},
                 what="its delivery held")
        assert len(receiver.received) == SUSPEND_AFTER
        receiver.answers = [200]
        resumed = subscribe(city, recipient, webhook_url=receiver.url, events=["case.dispatched.*"])
        assert resumed["suspended"] == []
        wait_for(lambda: {d["status"] for d in deliveries(city, recipient=recipient)} == {"delivered"},
                 timeout=60, what="the held notice delivered after the save")
    subscribe(city, recipient)


def test_the_office_retries_a_failed_delivery_by_hand(city):
    recipient = "department:municipal-works"
    with receiving(answers=(500,)) as receiver:
        subscribe(city, recipient, webhook_url=receiver.url, events=["case.dispatched.*"])
        department_report(city, "infra.damaged")
        delivery = wait_for(lambda: next(iter(deliveries(city, recipient=recipient)), None), what="the delivery")
        wait_for(lambda: receiver.received, what="the first attempt")
        receiver.answers = [200]
        retried = city["notify"].client.post(f"/v1/deliveries/{delivery['id']}/retry", headers=OFFICE)
        assert retried.status_code == 200
        wait_for(lambda: city["notify"].client.get("/v1/deliveries", headers=OFFICE, query_string={
            "recipient": recipient, "status": "delivered"}).json["items"], what="delivered")
    assert city["notify"].client.post(f"/v1/deliveries/{delivery['id']}/retry",
                                      headers=bearer("volunteer")).status_code == 403
    subscribe(city, recipient)


def test_private_receivers_are_refused_unless_the_operator_allows_them_and_nothing_internal_is_named(
        amqp_url, mongo_url):
    strict = create_app(settings_for_test("notify", amqp_url, mongo_url),
                        NotifySettings.from_env({"NOTIFY_ALLOWED_NETWORKS": "",
                                                 "NOTIFY_SECRET_KEY": os.environ["NOTIFY_SECRET_KEY"]}))
    client = strict.test_client()
    for url in ("http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.0.0.8/hook",
                "http://169.254.169.254/latest/meta-data", "ftp://receiver.example/hook"):
        response = client.put("/v1/subscriptions/department:traffic-police", headers=POLICE,
                              json={"webhook_url": url})
        assert response.status_code == 422, url
        assert response.content_type == "application/problem+json"
        assert "webhook_url" in response.json["errors"], url
    named = client.put("/v1/subscriptions/department:traffic-police", headers=POLICE,
                       json={"webhook_url": "http://localhost/hook"}).json
    assert "127.0.0.1" not in json.dumps(named) and "loopback" not in json.dumps(named)


@pytest.mark.parametrize("url, refusal", [
    ("http://hooks.example/volunteer", "only https:// URLs are accepted"),
    ("https://127.0.0.1:8443/hook", "loopback"),  # although the deployment allows 127.0.0.0/8 for staff
])
def test_a_volunteers_or_grid_leaders_webhook_is_https_to_a_public_address_only(city, url, refusal):
    volunteer_id = f"vol-{uuid.uuid4().hex[:8]}"
    for recipient, who in ((f"volunteer:{volunteer_id}", bearer("volunteer", volunteer_id)),
                           ("grid:lanshan-02", bearer("grid_leader", grid="lanshan-02"))):
        response = city["notify"].client.put(f"/v1/subscriptions/{recipient}", headers=who, json={"webhook_url": url})
        assert response.status_code == 422 and refusal in response.json["errors"]["webhook_url"][0], response.json


def test_only_the_office_or_the_recipient_manages_a_subscription(city):
    assert city["notify"].client.put("/v1/subscriptions/department:traffic-police",
                                     headers=bearer("department", dept="sanitation"), json={}).status_code == 403
    assert city["notify"].client.put("/v1/subscriptions/department:nowhere", headers=OFFICE,
                                     json={}).status_code == 422
    subscribe(city, "grid:lanshan-01", who=bearer("grid_leader", grid="lanshan-01"))
    rotated = city["notify"].client.post("/v1/subscriptions/grid:lanshan-01/secret", headers=OFFICE).json
    assert rotated["secret"].startswith("whsec_")
    assert city["notify"].client.post("/v1/subscriptions/grid:lanshan-01/secret",
                                      headers=bearer("volunteer")).status_code == 403


def test_a_new_webhook_url_takes_over_what_waits_and_a_removed_one_gets_nothing_more(city, case_event_marker):
    recipient = "department:urban-management"
    with receiving(answers=(500,)) as old, receiving() as new:
        subscribe(city, recipient, webhook_url=old.url, events=["case.dispatched.*"])
        department_report(city, "env.flyers")
        wait_for(lambda: old.received, what="the first attempt at the old URL")
        subscribe(city, recipient, webhook_url=new.url, events=["case.dispatched.*"])
        wait_for(lambda: new.received, timeout=60, what="the waiting notice at the new URL")
        assert {d["target"] for d in deliveries(city, recipient=recipient)} == {new.url}
        tried_old = len(old.received)
        subscribe(city, recipient)  # no webhook any more
        drain = ConsumerDrain(CASE_EVENTS)
        department_report(city, "env.flyers")
        wait_for(lambda: len([i for i in inbox(city, bearer("department", dept="urban-management"))
                              if i["event_type"] == "case.dispatched.urban-management"]) >= 2,
                 what="the second notice in the inbox")
        settled(city, drain, case_event_marker, recipient)
        assert len(old.received) == tried_old and len(new.received) == 1


# --- webhook secrets -------------------------------------------------------------------------------------

def test_a_secret_is_shown_once_when_made_and_when_rotated_and_stored_sealed(city):
    recipient = "department:community-affairs"
    client = city["notify"].client
    created = subscribe(city, recipient, who=bearer("department", dept="community-affairs"))
    assert created["secret"].startswith("whsec_")
    assert "secret" not in client.get(f"/v1/subscriptions/{recipient}", headers=OFFICE).json
    assert "secret" not in subscribe(city, recipient, language="en")
    rotated = client.post(f"/v1/subscriptions/{recipient}/secret", headers=OFFICE).json
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created["secret"]
    assert "secret" not in client.get(f"/v1/subscriptions/{recipient}", headers=OFFICE).json
    stored = json.dumps(city["notify"].app.extensions["notify"].store.subscription(recipient), default=str)
    assert created["secret"] not in stored and rotated["secret"] not in stored
    assert "secret_sealed" in stored


def test_after_a_rotation_both_secrets_sign_so_the_receiver_may_switch_without_losing_a_notice(city):
    recipient = "department:community-affairs"
    with receiving() as receiver:
        subscribe(city, recipient, webhook_url=receiver.url, events=["case.dispatched.*"])
        before = city["notify"].client.post(f"/v1/subscriptions/{recipient}/secret", headers=OFFICE).json["secret"]
        after = city["notify"].client.post(f"/v1/subscriptions/{recipient}/secret", headers=OFFICE).json["secret"]
        department_report(city, "order.public-place")
        post = wait_for(lambda: next(iter(receiver.received), None), what="the signed POST")
        signatures = post["headers"]["X-Woodpecker-Signature"].split(",")
        assert len(signatures) == 2
        for secret in (after, before):
            assert verify(secret, post["headers"], post["body"], time.time())
    subscribe(city, recipient)


def test_a_secret_stored_in_plain_text_before_is_sealed_by_its_migration_and_still_signs(city, amqp_url, mongo_url):
    store = city["notify"].app.extensions["notify"].store
    recipient = "department:sanitation"
    with receiving() as receiver:
        subscribe(city, recipient, webhook_url=receiver.url, events=["case.dispatched.*"])
        store.subscriptions.update_one({"_id": recipient}, {"$set": {"secret": "whsec_stored-in-plain-text"},
                                                            "$unset": {"secret_sealed": ""}})
        store.db["migrations"].delete_many({})  # as on a database an earlier version wrote
        assert "2026-12-webhook-secrets-sealed" in migrate(store.db, "notify")
        assert store.subscription(recipient).get("secret") is None
        department_report(city, "env.garbage-sorting")
        post = wait_for(lambda: next(iter(receiver.received), None), what="the signed POST")
        assert verify("whsec_stored-in-plain-text", post["headers"], post["body"], time.time())
    subscribe(city, recipient)


# --- proving an email address ----------------------------------------------------------------------------

def mails_to(box, address: str) -> list:
    return [m for m in box.messages if m["To"] == address]


def code_in(mail) -> str:
    return re.search(r"\b(\d{8})\b", mail.get_content()).group(1)


def confirm(city, recipient: str, who, code: str):
    return city["notify"].client.post(f"/v1/subscriptions/{recipient}/email/confirm", headers=who,
                                      json={"code": code})


def test_a_volunteers_address_gets_a_code_and_nothing_else_until_it_is_confirmed(city, mailbox, case_event_marker):
    box, _ = mailbox
    volunteer_id = f"vol-{uuid.uuid4().hex[:8]}"
    volunteer, recipient = bearer("volunteer", volunteer_id), f"volunteer:{volunteer_id}"
    address = f"{volunteer_id}@volunteers.example"
    saved = subscribe(city, recipient, who=volunteer, email=address)
    assert saved["email_confirmed"] is False
    [confirmation] = wait_for(lambda: mails_to(box, address), what="the confirmation mail")
    code = code_in(confirmation)
    assert volunteer_id not in confirmation.get_content() + str(confirmation["Subject"]).replace(address, "")
    drain = ConsumerDrain(CASE_EVENTS)
    report(city, volunteer)
    wait_for(lambda: [d for d in deliveries(city, recipient=recipient, status="held")], what="the notice held")
    settled(city, drain, case_event_marker, recipient)
    assert len(mails_to(box, address)) == 1  # the code, and nothing else
    wrong = confirm(city, recipient, volunteer, f"{(int(code) + 1) % 10**8:08d}")
    assert wrong.status_code == 422 and wrong.content_type == "application/problem+json"
    assert confirm(city, recipient, bearer("volunteer"), code).status_code == 403
    confirmed = confirm(city, recipient, volunteer, code)
    assert confirmed.status_code == 200 and confirmed.json["email_confirmed"] is True
    notice = wait_for(lambda: mails_to(box, address)[1:], what="the held notice mailed")
    assert "派遣" in notice[0]["Subject"]
    assert confirm(city, recipient, volunteer, code).status_code == 422  # used once


def test_a_code_allows_five_guesses_then_a_new_one_must_be_asked_for(city, mailbox):
    box, _ = mailbox
    volunteer_id = f"vol-{uuid.uuid4().hex[:8]}"
    volunteer, recipient = bearer("volunteer", volunteer_id), f"volunteer:{volunteer_id}"
    address = f"{volunteer_id}@volunteers.example"
    subscribe(city, recipient, who=volunteer, email=address)
    code = code_in(wait_for(lambda: mails_to(box, address), what="the code")[0])
    wrong = f"{(int(code) + 1) % 10**8:08d}"
    for _ in range(5):
        assert confirm(city, recipient, volunteer, wrong).status_code == 422
    spent = confirm(city, recipient, volunteer, code)
    assert spent.status_code == 422 and "ask for a new one" in spent.json["errors"]["code"][0]
    assert city["notify"].client.post(f"/v1/subscriptions/{recipient}/email/confirmation",
                                      headers=volunteer).status_code == 200
    fresh = code_in(wait_for(lambda: mails_to(box, address)[1:], what="the new code")[0])
    assert confirm(city, recipient, volunteer, fresh).json["email_confirmed"] is True


def test_confirmation_mails_are_bounded_per_recipient_and_per_address(city, mailbox):
    volunteer_id = f"vol-{uuid.uuid4().hex[:8]}"
    volunteer, recipient = bearer("volunteer", volunteer_id), f"volunteer:{volunteer_id}"
    for n in range(3):
        subscribe(city, recipient, who=volunteer, email=f"{volunteer_id}-{n}@volunteers.example")
    refused = city["notify"].client.put(f"/v1/subscriptions/{recipient}", headers=volunteer,
                                        json={"email": f"{volunteer_id}-3@volunteers.example"})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert city["notify"].client.post(f"/v1/subscriptions/{recipient}/email/confirmation",
                                      headers=volunteer).status_code == 429
    stranger = f"stranger-{uuid.uuid4().hex[:8]}@elsewhere.example"
    for _ in range(3):
        other = f"vol-{uuid.uuid4().hex[:8]}"
        subscribe(city, f"volunteer:{other}", who=bearer("volunteer", other), email=stranger)
    other = f"vol-{uuid.uuid4().hex[:8]}"
    assert city["notify"].client.put(f"/v1/subscriptions/volunteer:{other}", headers=bearer("volunteer", other),
                                     json={"email": stranger}).status_code == 429


def test_a_changed_address_never_receives_what_waited_before_it_is_proven(city, mailbox, case_event_marker):
    box, _ = mailbox
    volunteer_id = f"vol-{uuid.uuid4().hex[:8]}"
    volunteer, recipient = bearer("volunteer", volunteer_id), f"volunteer:{volunteer_id}"
    first, second = f"{volunteer_id}-a@volunteers.example", f"{volunteer_id}-b@volunteers.example"
    subscribe(city, recipient, who=volunteer, email=first)
    confirm(city, recipient, volunteer, code_in(wait_for(lambda: mails_to(box, first), what="the code")[0]))
    with receiving():
        subscribe(city, recipient, who=volunteer, email=second)
    drain = ConsumerDrain(CASE_EVENTS)
    report(city, volunteer)
    wait_for(lambda: [d for d in deliveries(city, recipient=recipient, status="held")], what="the notice held")
    settled(city, drain, case_event_marker, recipient)
    assert len(mails_to(box, first)) == 1 and len(mails_to(box, second)) == 1  # the codes alone
    confirm(city, recipient, volunteer, code_in(mails_to(box, second)[0]))
    wait_for(lambda: mails_to(box, second)[1:], what="the notice at the proven address")
    assert len(mails_to(box, first)) == 1


def test_a_grid_leader_proves_the_grids_address_but_the_office_answers_for_the_one_it_sets(city):
    leader = bearer("grid_leader", grid="lanshan-03")
    assert subscribe(city, "grid:lanshan-03", who=leader,
                     email=f"leader-{uuid.uuid4().hex[:6]}@grid.example")["email_confirmed"] is False
    assert subscribe(city, "grid:lanshan-03", email="lanshan-03@office.example")["email_confirmed"] is True


def test_a_reporters_mail_holds_nothing_of_the_first_reporters_words(city, mailbox, amqp_url):
    box, _ = mailbox
    joiner_id = f"vol-{uuid.uuid4().hex[:8]}"
    joiner, recipient = bearer("volunteer", joiner_id), f"volunteer:{joiner_id}"
    address = f"{joiner_id}@volunteers.example"
    subscribe(city, recipient, who=joiner, email=address)
    confirm(city, recipient, joiner, code_in(wait_for(lambda: mails_to(box, address), what="the code")[0]))
    first, joined = heard_report(amqp_url, city, "someone-else"), heard_report(amqp_url, city, joiner_id)
    event = Event.new("case.joined.traffic-police", "routing", {
        "case_id": f"case-{uuid.uuid4().hex[:8]}", "report_ids": [first, joined], "report_id": joined,
        "category": "traffic.parking", "department": "traffic-police", "status": "dispatched", "due_at": None,
        "grid_id": "lanshan-01", "location": {"lat": 35.06123, "lng": 118.31543},
        "description": "FIRST-REPORTERS-WORDS", "photo_ids": ["photo-of-the-first"], "note": "STAFF-NOTE",
        "case_version": 2})
    publish_raw(amqp_url, event.routing_key, event.to_dict(), message_id=event.id)
    [mail] = wait_for(lambda: mails_to(box, address)[1:], what="the joined notice mailed")
    text = mail.get_content() + str(mail["Subject"])
    assert joined in text and not any(leak in text for leak in ("FIRST-REPORTERS-WORDS", "STAFF-NOTE", first,
                                                                 "photo-of-the-first", "35.06"))


@pytest.mark.parametrize("path, body", [
    ("/v1/subscriptions/volunteer:{id}", []),
    ("/v1/subscriptions/volunteer:{id}", {"email": 5}),
    ("/v1/subscriptions/volunteer:{id}", {"email": "not an address"}),
    ("/v1/subscriptions/volunteer:{id}", {"email": "a@b.example\r\nBcc: all@c.example"}),
    ("/v1/subscriptions/volunteer:{id}", {"preferences": {"report.closed": 1}}),
    ("/v1/subscriptions/volunteer:{id}", {"webhook_url": "https://" + "a" * 3000}),
    ("/v1/subscriptions/volunteer:{id}/email/confirm", {"code": "1234"}),
    ("/v1/subscriptions/volunteer:{id}/email/confirm", {"code": 12345678}),
    ("/v1/subscriptions/volunteer:{id}/email/confirm", {"code": "12345678"}),
    ("/v1/subscriptions/volunteer:{id}/email/confirm", {}),
    ("/v1/subscriptions/volunteer:{id}/email/confirmation", None),
])
def test_bad_input_gets_a_4xx_problem(city, path, body):
    volunteer_id = f"vol-{uuid.uuid4().hex[:8]}"
    url = path.format(id=volunteer_id)
    client, who = city["notify"].client, bearer("volunteer", volunteer_id)
    response = client.put(url, headers=who, json=body) if path.endswith("{id}") else client.post(
        url, headers=who, json=body)
    assert 400 <= response.status_code < 500, response.json
    assert response.content_type == "application/problem+json"
