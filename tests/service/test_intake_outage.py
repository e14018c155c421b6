"""A broker outage as intake sees it (a TCP proxy in front of the broker, cut and restored).

Its own module: the intake here must be the only consumer of intake's queue in this vhost.
"""
import pytest

from shared.events import Event
from tests.conftest import run_service, settings_for_test
from tests.service.conftest import outbox_empty, submit_report, upload_photo
from tests.support import TcpProxy, publish_raw, wait_for


@pytest.fixture
def intake_behind_proxy(amqp_url, mongo_url):
    proxy = TcpProxy(amqp_url).start()
    service = run_service(settings_for_test("intake", proxy.url, mongo_url))
    yield service, proxy
    service.stop()
    proxy.close()


def test_a_report_accepted_while_the_broker_is_away_is_published_after_it_returns(
        intake_behind_proxy, tap, amqp_url, volunteer):
    service, proxy = intake_behind_proxy
    photo = upload_photo(service.client, volunteer)["id"]
    proxy.cut()
    ready = service.client.get("/readyz")
    assert ready.status_code == 503 and ready.json["errors"] == {"reasons": ["broker unavailable"]}
    assert str(proxy.port) not in ready.get_data(as_text=True)  # where the broker lives is nobody's business
    report = submit_report(service.client, volunteer, [photo])
    assert not outbox_empty(service)  # kept, waiting for the broker
    proxy.restore()
    wait_for(lambda: outbox_empty(service), timeout=30, what="outbox drained after reconnection")
    events = wait_for(lambda: tap.events("report.submitted", lambda e: e["data"]["id"] == report["id"]),
                      what="the event")
    assert len(events) == 1
    # The consumer reconnected too: a case event reaches the report.
    publish_raw(amqp_url, "case.opened.none", Event.new("case.opened.none", "routing", {
        "case_id": "case-after-outage", "report_ids": [report["id"]], "status": "pending_triage"}).to_dict())
    wait_for(lambda: service.client.get(f"/v1/reports/{report['id']}", headers=volunteer).json["case_id"],
             timeout=30, what="case event handled after reconnection")
