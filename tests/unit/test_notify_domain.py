"""Who hears what, what each may see, and on which channels, without I/O."""
import json
from datetime import UTC, datetime, timedelta

import pytest

from services.notify import domain
from services.notify.domain import Notice
from services.notify.templates import Templates
from shared import reference
from shared.auth import Caller
from shared.outbound import TargetPolicy

CITY = reference.load(None)
LINKS = domain.Links("https://linyi.example/")
CASE = {"case_id": "c1", "report_ids": ["r1", "r2"], "category": "traffic.parking", "department": "traffic-police",
        "status": "dispatched", "grid_id": "lanshan-01", "description": "违停", "overdue": False,
        "escalation_level": 0, "note": ""}


def notices(action, department="traffic-police", reporters=None, **data):
    return domain.case_notices(action, department, f"case.{action}.{department or 'none'}", {**CASE, **data},
                               reporters=reporters if reporters is not None else {"r1": "u1", "r2": "u2"}, city=CITY,
                               zone=CITY.timezone, links=LINKS, due_at=datetime(2026, 11, 25, 0, 31, tzinfo=UTC))


@pytest.mark.parametrize("action, kind", [("dispatched", "report.dispatched"), ("rectified", "report.rectified"),
                                          ("closed", "report.closed"), ("rejected", "report.rejected")])
def test_every_reporter_of_the_case_hears_its_outcome(action, kind):
    heard = [(n.recipient, n.kind) for n in notices(action) if n.recipient.startswith("volunteer:")]
    assert heard == [("volunteer:u1", kind), ("volunteer:u2", kind)]


def test_the_reporter_of_a_report_joining_a_case_under_way_hears_that_and_the_others_do_not():
    joined = notices("joined", report_ids=["r1", "r2"], report_id="r2")
    assert [(n.recipient, n.kind) for n in joined] == [("volunteer:u2", "report.joined"),
                                                       ("department:traffic-police", "case.event")]
    assert next(n for n in joined if n.recipient == "department:traffic-police").context["action"] == "joined"
    assert not [n for n in notices("opened") if n.recipient.startswith("volunteer:")]


def test_an_opened_case_marked_attached_is_no_longer_a_join():
    heard = notices("opened", report_ids=["r2"], attached=True)
    assert [(n.recipient, n.kind) for n in heard] == [("department:traffic-police", "case.event")]


def test_the_department_hears_its_case_and_the_office_what_needs_it():
    assert {(n.recipient, n.kind) for n in notices("accepted")} == {("department:traffic-police", "case.event")}
    overdue = {(n.recipient, n.kind) for n in notices("overdue", overdue=True, escalation_level=1)}
    assert overdue == {("department:traffic-police", "case.event"), ("office", "office.overdue")}
    assert ("office", "office.disputed") in {(n.recipient, n.kind) for n in notices("disputed", department=None)}


def test_a_notice_carries_local_times_and_links_for_people():
    dispatched = next(n for n in notices("dispatched") if n.recipient == "volunteer:u1")
    assert dispatched.context["due_at"] == "2026-11-25 08:31"  # Linyi's time
    assert dispatched.context["link"] == "https://linyi.example/reports/r1"
    assert dispatched.context["department_name"] == CITY.departments["traffic-police"].name_zh


def test_hours_reach_the_volunteer_they_concern():
    heard = domain.volunteer_notices("hours.credited", {"volunteer_id": "v9", "hours": 2}, LINKS)
    assert [(n.recipient, n.kind) for n in heard] == [("volunteer:v9", "hours.credited")]
    assert domain.volunteer_notices("volunteer.registered", {"volunteer_id": "v9"}, LINKS) == []


OUTCOME = Notice("volunteer:u1", "report.closed", "case.closed.traffic-police")
CREDIT = Notice("volunteer:u1", "hours.credited", "hours.credited")


def test_without_a_subscription_everything_goes_to_the_inbox_only():
    assert domain.channels_for(CREDIT, None) == ["inbox"]


def test_a_subscription_adds_email_and_webhook_for_the_events_it_asks_for():
    subscription = {"email": "a@b.example", "webhook_url": "https://h.example/x", "events": ["hours.*"]}
    assert domain.channels_for(CREDIT, subscription) == ["inbox", "email", "webhook"]
    assert domain.channels_for(OUTCOME, subscription) == ["inbox"]  # case events not asked for


def test_a_muted_kind_is_silent_but_an_outcome_always_reaches_the_inbox():
    muted = {"preferences": {"hours.credited": {"muted": True}, "report.closed": {"muted": True}},
             "webhook_url": "https://h.example/x"}
    assert domain.channels_for(CREDIT, muted) == []
    assert domain.channels_for(OUTCOME, muted) == ["inbox", "webhook"]


def test_an_empty_channel_list_means_none_and_no_preference_means_all():
    subscription = {"webhook_url": "https://h.example/x", "preferences": {"hours.credited": {"channels": []}}}
    assert domain.channels_for(CREDIT, subscription) == []
    assert domain.channels_for(Notice("volunteer:u1", "hours.reversed", "hours.reversed"), subscription) == [
        "inbox", "webhook"]


@pytest.mark.parametrize("caller, recipients", [
    (Caller("u1", "volunteer"), ["volunteer:u1"]),
    (Caller("l1", "grid_leader", grid="lanshan-01"), ["volunteer:l1", "grid:lanshan-01"]),
    (Caller("p1", "department", dept="traffic-police"), ["department:traffic-police"]),
    (Caller("o1", "office"), ["office"]),
])
def test_whose_inbox_a_caller_reads(caller, recipients):
    assert domain.recipients_of(caller) == recipients


def test_back_off_doubles_with_jitter_and_gives_up_after_the_window():
    assert domain.retry_delay_s(1, 0.0) == 1.0 and domain.retry_delay_s(1, 0.999) < 2.0
    assert domain.retry_delay_s(5, 0.0) == 16.0 and domain.retry_delay_s(30, 0.5) <= domain.LONGEST_RETRY_S
    created = datetime(2026, 11, 24, tzinfo=UTC)
    young = domain.after_attempt({"created_at": created, "attempt_count": 0}, delivered=False, permanent=False,
                                 now=datetime(2026, 11, 24, 1, tzinfo=UTC), retry_for_s=86400, draw=0.5)
    assert young["status"] == "pending" and young["next_attempt_at"] > datetime(2026, 11, 24, 1, tzinfo=UTC)
    old = domain.after_attempt({"created_at": created, "attempt_count": 9}, delivered=False, permanent=False,
                               now=datetime(2026, 11, 25, 0, 0, 1, tzinfo=UTC), retry_for_s=86400, draw=0.5)
    assert old["status"] == "failed"
    gone = domain.after_attempt({"created_at": created}, delivered=False, permanent=True, now=created,
                                retry_for_s=86400, draw=0.5)
    assert gone["status"] == "failed"


# --- what each recipient may see ----------------------------------------------------------------------

# What the first reporter wrote and where, the case's photos and reports, and the staff's own notes: a case event
# carries all of it, and none of it may reach another reporter.
FIRST_REPORTERS_CASE = {
    "case_id": "c7", "report_ids": ["r-first", "r-other", "r-joiner"], "report_id": "r-joiner",
    "category": "traffic.parking", "department": "traffic-police", "status": "accepted",
    "due_at": "2026-11-26T00:31:00Z", "grid_id": "lanshan-01",
    "location": {"lat": 35.0612345, "lng": 118.3154321, "address": "金雀山路17号楼下东侧"},
    "description": "FIRST-REPORTERS-OWN-WORDS 楼下那辆车每天都停在盲道上",
    "photo_ids": ["photo-first-1", "photo-first-2"],
    "after_photo_ids": ["photo-after-1"], "overdue": False, "escalation_level": 0, "rework_count": 0,
    "case_version": 5, "note": "STAFF-NOTE 请交警二中队处理，联系人王队长 13900000000",
    "extension": {"hours": 24, "reason": "STAFF-EXTENSION-REASON 需协调拖车", "status": "requested"},
}
FORBIDDEN_TO_REPORTERS = ("FIRST-REPORTERS-OWN-WORDS", "35.06", "118.31", "金雀山路17号", "photo-first", "photo-after",
                          "r-first", "r-other", "STAFF-NOTE", "STAFF-EXTENSION-REASON", "lanshan-01")
REPORTERS = {"r-first": "u-first", "r-other": "u-other", "r-joiner": "u-joiner"}


def reporter_notice(action: str, **data) -> Notice:
    heard = domain.case_notices(action, "traffic-police", f"case.{action}.traffic-police",
                                {**FIRST_REPORTERS_CASE, **data}, reporters=REPORTERS, city=CITY, zone=CITY.timezone,
                                links=LINKS, due_at=datetime(2026, 11, 26, 0, 31, tzinfo=UTC))
    return next(n for n in heard if n.recipient == "volunteer:u-joiner")


@pytest.mark.parametrize("action", ["joined", "dispatched", "closed", "accepted_then_dispatched"])
def test_a_reporters_notice_and_webhook_hold_nothing_of_the_other_reports_the_place_photos_or_staff_notes(action):
    notice = reporter_notice("dispatched" if action == "accepted_then_dispatched" else action)
    shown = json.dumps([notice.context, notice.data], ensure_ascii=False)
    for language in ("zh", "en"):
        rendered = Templates().render(notice.kind, language, notice.context)
        shown += rendered.title + rendered.body + rendered.link
    assert [leak for leak in FORBIDDEN_TO_REPORTERS if leak in shown] == []
    assert notice.data["report_id"] == "r-joiner" and notice.data["case_id"] == "c7"


def test_a_reporter_sees_the_cases_public_status():
    notice = reporter_notice("joined")
    assert notice.data == {"report_id": "r-joiner", "case_id": "c7", "status": "accepted",
                           "category": "traffic.parking", "department": "traffic-police",
                           "due_at": "2026-11-26T00:31:00Z"}
    assert notice.context["department_name"] == CITY.departments["traffic-police"].name_zh
    assert notice.context["due_at"] == "2026-11-26 08:31"


@pytest.mark.parametrize("action, outcome", [
    ("rectified", {"note": "已拖移车辆"}),
    ("rejected", {"reason": "out_of_scope", "note": "私人院内"}),
])
def test_a_reporter_hears_the_public_outcome_the_department_gives_them_and_no_other_note(action, outcome):
    notice = reporter_notice(action, report_ids=["r-first", "r-joiner"], note=outcome["note"],
                             **({"reason": outcome["reason"]} if "reason" in outcome else {}))
    assert {k: notice.data[k] for k in outcome} == outcome
    assert "STAFF-NOTE" not in json.dumps(notice.data, ensure_ascii=False)


@pytest.mark.parametrize("kind", sorted(domain.OUTCOMES))
def test_the_reporters_templates_render_from_what_a_reporter_may_see_alone(kind):
    """Rendered with strict variables: a template that used anything else (a description, a location) fails."""
    action = {v: k for k, v in domain.REPORTER_KINDS.items()}.get(kind, "joined")
    context = reporter_notice(action).context
    for language in ("zh", "en"):
        assert Templates().render(kind, language, context).link == "https://linyi.example/reports/r-joiner"


def test_the_department_holding_the_case_sees_the_case_events_fields():
    heard = domain.case_notices("accepted", "traffic-police", "case.accepted.traffic-police",
                                {**FIRST_REPORTERS_CASE, "internal_trace": "x"}, reporters=REPORTERS, city=CITY,
                                zone=CITY.timezone, links=LINKS, due_at=None)
    [department] = heard
    assert department.data == {k: v for k, v in FIRST_REPORTERS_CASE.items()}
    assert department.context["description"] == FIRST_REPORTERS_CASE["description"]


def test_the_office_sees_everything():
    heard = domain.case_notices("overdue", "traffic-police", "case.overdue.traffic-police",
                                {**FIRST_REPORTERS_CASE, "internal_trace": "x"}, reporters=REPORTERS, city=CITY,
                                zone=CITY.timezone, links=LINKS, due_at=None)
    office = next(n for n in heard if n.recipient == "office")
    assert office.data == {**FIRST_REPORTERS_CASE, "internal_trace": "x"}


def test_a_volunteer_hears_their_own_entry_and_not_who_recorded_it():
    entry = {"id": "e1", "volunteer_id": "v9", "hours": 2.5, "kind": "patrol", "source": "patrol", "source_id": "p1",
             "service_date": "2026-11-24", "recorded_by": "association:assoc-7", "rule_version": "2026-1",
             "note": "巡访", "recorded_at": "2026-11-24T08:00:00Z"}
    [notice] = domain.volunteer_notices("hours.credited", entry, LINKS)
    assert notice.data == {k: v for k, v in entry.items() if k not in ("recorded_by", "rule_version")}
    assert "recorded_by" not in notice.context


# --- addresses, webhooks and deliveries ------------------------------------------------------------------

OFFICER, POLICE = Caller("o1", "office"), Caller("p1", "department", dept="traffic-police")
VOLUNTEER, LEADER = Caller("u1", "volunteer"), Caller("l1", "grid_leader", grid="lanshan-01")


@pytest.mark.parametrize("caller, recipient, needed", [
    (VOLUNTEER, "volunteer:u1", True),
    (LEADER, "volunteer:l1", True),
    (LEADER, "grid:lanshan-01", True),  # a grid leader is a volunteer, not staff
    (OFFICER, "volunteer:u1", True),  # a volunteer's own mailbox: only its owner can prove it
    (OFFICER, "grid:lanshan-01", False),
    (OFFICER, "department:traffic-police", False),
    (OFFICER, "office", False),
    (POLICE, "department:traffic-police", False),
])
def test_who_must_prove_an_address(caller, recipient, needed):
    assert domain.needs_confirmation(caller, recipient) is needed


def test_volunteers_and_grid_leaders_webhooks_are_https_to_public_addresses_only():
    staff = TargetPolicy.from_setting("127.0.0.0/8", deadline_s=3)
    for recipient in ("volunteer:u1", "grid:lanshan-01"):
        assert domain.webhook_policy(recipient, staff) == TargetPolicy(https_only=True, deadline_s=3)
    for recipient in ("department:traffic-police", "office"):
        assert domain.webhook_policy(recipient, staff) is staff


MAIL = {"channel": "email", "kind": "report.closed", "target": "old@a.example"}
HOOK = {"channel": "webhook", "kind": "case.event", "target": "https://old.example/hook"}
CONFIRMATION = {"channel": "email", "kind": domain.CONFIRMATION_KIND, "target": "new@a.example"}


@pytest.mark.parametrize("delivery, subscription, expected", [
    (MAIL, {"email": "new@a.example", "email_confirmed": True}, ("send", "new@a.example")),
    (MAIL, {"email": "new@a.example", "email_confirmed": False}, ("hold", "new@a.example")),
    (MAIL, {"email": None}, ("drop", None)),
    (MAIL, None, ("drop", None)),
    (HOOK, {"webhook_url": "https://new.example/hook"}, ("send", "https://new.example/hook")),
    (HOOK, {"webhook_url": None}, ("drop", None)),
    (CONFIRMATION, {"email": "new@a.example", "confirmation": {"address": "new@a.example"}},
     ("send", "new@a.example")),
    (CONFIRMATION, {"email": "other@a.example", "confirmation": {"address": "other@a.example"}}, ("drop", None)),
    (CONFIRMATION, {"email": "new@a.example", "email_confirmed": True}, ("drop", None)),
], ids=["confirmed", "unproven", "removed", "no-subscription", "webhook", "webhook-removed", "confirmation",
        "confirmation-superseded", "confirmation-done"])
def test_where_a_due_delivery_goes_is_decided_by_the_subscription_as_it_is_now(delivery, subscription, expected):
    assert domain.destination(delivery, subscription) == expected


def test_new_mail_waits_for_an_unproven_address_and_a_suspended_channel_keeps_its_deliveries_aside():
    assert domain.first_status("email", {"email": "a@b.example", "email_confirmed": False}) == "held"
    assert domain.first_status("email", {"email": "a@b.example", "email_confirmed": True}) == "pending"
    assert domain.first_status("webhook", {"suspended": ["webhook"]}) == "suspended"


def test_both_secrets_sign_during_the_overlap_window_only():
    now = datetime(2026, 11, 24, tzinfo=UTC)
    assert domain.signing_secrets("new", "old", now + timedelta(seconds=1), now) == ["new", "old"]
    assert domain.signing_secrets("new", "old", now, now) == ["new"]
    assert domain.signing_secrets("new", None, None, now) == ["new"]


def test_a_code_is_eight_random_digits():
    codes = {domain.new_code() for _ in range(50)}
    assert all(len(code) == 8 and code.isdigit() for code in codes) and len(codes) > 45


def test_a_code_is_taken_only_for_the_address_waiting_and_only_before_it_expires():
    now = datetime(2026, 11, 24, tzinfo=UTC)
    waiting = {"address": "a@b.example", "code_hash": "h", "expires_at": now + timedelta(hours=1), "guesses": 0}
    assert domain.waiting_confirmation({"email": "a@b.example", "confirmation": waiting}, now) == waiting
    for document in ({"email": "other@b.example", "confirmation": waiting}, {"email": "a@b.example"}, None,
                     {"email": "a@b.example", "confirmation": {**waiting, "expires_at": now}}):
        with pytest.raises(domain.InvalidFields):
            domain.waiting_confirmation(document, now)


# --- a case merged into another -------------------------------------------------------------------

def test_the_reporters_of_a_merged_case_hear_that_their_report_joined_the_other_case_not_a_refusal():
    ended = notices("rejected", status="rejected", reason="duplicate", merged_into="c9")
    assert [(n.recipient, n.kind) for n in ended] == [("department:traffic-police", "case.event")]
    moved = reporter_notice("joined", report_ids=["r-first", "r-joiner"], merged_from="c2")
    for language, words in (("zh", "原案卷 c2 已并入"), ("en", "case c2 has been merged")):
        rendered = Templates().render(moved.kind, language, moved.context)
        assert words in rendered.body and "未予受理" not in rendered.body, rendered.body


def test_a_plain_rejection_still_tells_every_reporter():
    heard = [n.kind for n in notices("rejected", reason="duplicate") if n.recipient.startswith("volunteer:")]
    assert heard == ["report.rejected", "report.rejected"]
