"""The notify domain: who hears what, on which channels, and what each caller's inbox holds.

Pure: no I/O. An event becomes notices (recipient, kind, template context); a notice becomes one inbox
item and, per the recipient's subscription and preferences, an email and a webhook delivery. Recipients
are strings: `volunteer:<user id>` (a reporter, or a volunteer's hours), `department:<code>`, `office`,
`grid:<grid id>` (its leader).
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from shared.auth import Caller
from shared.errors import DomainError, Forbidden, InvalidFields
from shared.events import topic_matches
from shared.outbound import TargetPolicy
from shared.reference import ReferenceData, local_text

INBOX, EMAIL, WEBHOOK = "inbox", "email", "webhook"
CHANNELS = (INBOX, EMAIL, WEBHOOK)
LANGUAGES = ("zh", "en")

# What a reporter hears of their report's case (the inbox can't be muted for these: they are the outcome).
REPORTER_KINDS = {"dispatched": "report.dispatched", "rectified": "report.rectified", "closed": "report.closed",
                  "rejected": "report.rejected"}
JOINED = "report.joined"
OUTCOMES = (*REPORTER_KINDS.values(), JOINED)
# What the office hears: cases falling due (and escalated), extension requests, disputes.
OFFICE_KINDS = {"overdue": "office.overdue", "extension_requested": "office.extension_requested",
                "disputed": "office.disputed"}
DEPARTMENT_KIND = "case.event"
VOLUNTEER_KINDS = {"hours.credited": "hours.credited", "hours.reversed": "hours.reversed",
                   "volunteer.level_changed": "volunteer.level_changed",
                   "volunteer.minimum_at_risk": "volunteer.minimum_at_risk"}
DIGEST_KIND = "grid.digest"
KINDS = (*OUTCOMES, DEPARTMENT_KIND, *OFFICE_KINDS.values(), *VOLUNTEER_KINDS.values(), DIGEST_KIND)
# Not a notice: the mail that proves an address, sent only to the address it proves.
CONFIRMATION_KIND = "email.confirmation"
DELIVERY_KINDS = (*KINDS, CONFIRMATION_KIND)

RECIPIENT_PATTERN = r"^(office|department:[a-z0-9-]{1,40}|grid:[a-z0-9-]{1,40}|volunteer:[!-~]{1,100})$"
PATTERN_PATTERN = r"^([a-z0-9_-]+|\*|#)(\.([a-z0-9_-]+|\*|#)){0,3}$"


@dataclass(frozen=True)
class Notice:
    """One recipient's notice: `context` is what its templates render (title, body and link of the inbox item and
    the mail), `data` what its webhook's body carries; both hold only what this recipient may see."""
    recipient: str
    kind: str
    routing_key: str
    context: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)


# --- who hears what, and what each may see -----------------------------------------------------------

# What a department's system hears of its own case: the case event's fields (docs/contract.md), and what a step adds.
CASE_EVENT_FIELDS = ("case_id", "report_ids", "report_id", "category", "department", "status", "due_at", "grid_id",
                     "location", "description", "photo_ids", "overdue", "escalation_level", "rework_count",
                     "case_version", "note", "after_photo_ids", "reason", "extension", "approved")
# What a volunteer hears of their own hours and level: the entry or the figures, never who recorded them.
VOLUNTEER_FIELDS = {
    "hours.credited": ("id", "volunteer_id", "hours", "kind", "source", "source_id", "service_date", "recorded_at",
                       "note", "reverses"),
    "volunteer.level_changed": ("volunteer_id", "star_level", "previous_level", "total_hours"),
    "volunteer.minimum_at_risk": ("volunteer_id", "year", "year_hours", "minimum_hours", "hours_short", "week"),
}
VOLUNTEER_FIELDS["hours.reversed"] = VOLUNTEER_FIELDS["hours.credited"]


def only(data: dict, fields: tuple[str, ...]) -> dict:
    return {name: data[name] for name in fields if name in data}


def case_context(data: dict, action: str, city: ReferenceData, zone: ZoneInfo, links: Links,
                 due_at: datetime | None) -> dict:
    """What the department holding a case and the office read of it: the whole case."""
    category = city.categories.get(data.get("category", ""))
    department = city.departments.get(data.get("department") or "")
    grid = city.grids.get(data.get("grid_id", ""))
    return {"case_id": data["case_id"], "action": action, "status": data.get("status"),
            "category_name": category.name_zh if category else data.get("category", ""),
            "department_name": department.name_zh if department else (data.get("department") or ""),
            "grid_name": grid.name if grid else data.get("grid_id", ""), "due_at": local_text(due_at, zone),
            "description": data.get("description", ""), "overdue": bool(data.get("overdue")),
            "escalation_level": int(data.get("escalation_level") or 0), "note": data.get("note") or "",
            "link": links.case(data["case_id"])}


def public_outcome(action: str, data: dict) -> dict:
    """The part of a step a reporter is told, as intake shows it on their report: the department's answer when
    it reports the problem fixed, the reason (and its explanation) when the case is rejected. Every other note
    (a dispatch, a check, a dispute, an extension) is the staff's own."""
    if action == "rectified":
        return {"note": data.get("note") or ""}
    if action == "rejected":
        return {"reason": data.get("reason") or "", "note": data.get("note") or ""}
    return {}


def reporter_view(action: str, data: dict, report_id: str) -> dict:
    """What a reporter's webhook carries of a case step: their own report and the case's public status; never
    the other reports, the first reporter's words, the exact place, the photos or the staff's notes."""
    return {"report_id": report_id, "case_id": data["case_id"], "status": data.get("status"),
            "category": data.get("category"), "department": data.get("department"), "due_at": data.get("due_at"),
            **public_outcome(action, data)}


def reporter_context(action: str, data: dict, report_id: str, city: ReferenceData, zone: ZoneInfo, links: Links,
                     due_at: datetime | None) -> dict:
    """What a reporter's notice renders: `reporter_view` in words."""
    category = city.categories.get(data.get("category", ""))
    department = city.departments.get(data.get("department") or "")
    return {"report_id": report_id, "case_id": data["case_id"], "status": data.get("status"),
            "category_name": category.name_zh if category else data.get("category", ""),
            "department_name": department.name_zh if department else (data.get("department") or ""),
            "due_at": local_text(due_at, zone), "link": links.report(report_id), **public_outcome(action, data),
            **({"merged_from": data.get("merged_from")} if action == "joined" else {})}


def case_notices(action: str, department: str | None, routing_key: str, data: dict, *, reporters: dict[str, str],
                 city: ReferenceData, zone: ZoneInfo, links: Links, due_at: datetime | None) -> list[Notice]:
    """`case.<action>.<department>`: the reporters of its reports (outcomes; for `joined`, the reporter of the
    report that joined), the department holding it, and the office for what needs it."""
    notices = []
    for report_id, kind in reporters_told(action, data):
        reporter = reporters.get(report_id)
        if reporter:
            notices.append(Notice(f"volunteer:{reporter}", kind, routing_key,
                                  reporter_context(action, data, report_id, city, zone, links, due_at),
                                  reporter_view(action, data, report_id)))
    context = case_context(data, action, city, zone, links, due_at)
    if department:
        notices.append(Notice(f"department:{department}", DEPARTMENT_KIND, routing_key, context,
                              only(data, CASE_EVENT_FIELDS)))
    if action in OFFICE_KINDS:
        extension = data.get("extension") or {}
        notices.append(Notice("office", OFFICE_KINDS[action], routing_key,
                              {**context, "hours": extension.get("hours"), "reason": extension.get("reason", "")},
                              dict(data)))
    return notices


def reporters_told(action: str, data: dict) -> list[tuple[str, str]]:
    """(report id, kind) for each report whose reporter hears of this step. The reporters of a case merged into
    another hear that their report joined that case (its `joined`), not that it was refused."""
    if action == "rejected" and data.get("merged_into"):
        return []
    if action == "joined":
        return [(data["report_id"], JOINED)] if isinstance(data.get("report_id"), str) else []
    kind = REPORTER_KINDS.get(action)
    return [(report_id, kind) for report_id in data.get("report_ids", [])] if kind else []


def volunteer_notices(routing_key: str, data: dict, links: Links) -> list[Notice]:
    """Hours and levels reach the volunteer they concern, and only what is theirs."""
    kind = VOLUNTEER_KINDS.get(routing_key)
    volunteer = data.get("volunteer_id")
    if kind is None or not volunteer:
        return []
    own = only(data, VOLUNTEER_FIELDS[kind])
    return [Notice(f"volunteer:{volunteer}", kind, routing_key, {**own, "link": links.volunteer(volunteer)}, own)]


# --- channels -------------------------------------------------------------------------------------

def channels_for(notice: Notice, subscription: dict | None) -> list[str]:
    """The inbox always (unless muted, which outcomes can't be); email and webhook when the recipient set them
    up, asked for this event, and did not switch the kind off."""
    preference = ((subscription or {}).get("preferences") or {}).get(notice.kind, {})
    muted = preference.get("muted", False) and notice.kind not in OUTCOMES
    if muted:
        return []
    # No preference: every channel; an explicit empty list: none (but the outcomes' inbox).
    chosen = set(preference["channels"]) if "channels" in preference else set(CHANNELS)
    channels = [INBOX] if INBOX in chosen or notice.kind in OUTCOMES else []
    if subscription is None:
        return channels
    patterns = subscription.get("events") or ["#"]
    if not any(topic_matches(pattern, notice.routing_key) for pattern in patterns) and notice.kind != DIGEST_KIND:
        return channels
    if subscription.get("email") and EMAIL in chosen:
        channels.append(EMAIL)
    if subscription.get("webhook_url") and WEBHOOK in chosen:
        channels.append(WEBHOOK)
    return channels


# --- recipients and callers -----------------------------------------------------------------------

def recipients_of(caller: Caller) -> list[str]:
    """Whose inbox a caller reads: their own, and their role's (a department's staff share theirs)."""
    own = [f"volunteer:{caller.id}"] if caller.role in ("volunteer", "grid_leader") else []
    if caller.role == "department" and caller.dept:
        return [f"department:{caller.dept}"]
    if caller.role == "grid_leader" and caller.grid:
        return [*own, f"grid:{caller.grid}"]
    if caller.role == "office":
        return ["office"]
    return own


def may_manage(caller: Caller, recipient: str) -> None:
    if not re.fullmatch(RECIPIENT_PATTERN, recipient):
        raise InvalidFields("Not a recipient.", {"recipient": [
            "office, department:<code>, grid:<grid id> or volunteer:<user id>"]})
    if caller.role != "office" and recipient not in recipients_of(caller):
        raise Forbidden("Only the office or the recipient itself manages a subscription.")


def check_recipient_exists(recipient: str, city: ReferenceData) -> None:
    kind, _, name = recipient.partition(":")
    if kind == "department" and name not in city.departments:
        raise InvalidFields("Unknown department.", {"recipient": [f"one of {', '.join(city.departments)}"]})
    if kind == "grid" and name not in city.grids:
        raise InvalidFields("Unknown grid cell.", {"recipient": [f"one of {', '.join(city.grids)}"]})


# --- addresses: who must prove theirs ---------------------------------------------------------------

STAFF_ROLES = ("office", "department")
# Recipients whose webhooks go to the public internet over https only, whatever the deployment allows staff.
STRICT_WEBHOOK_RECIPIENTS = ("volunteer", "grid")
CODE_DIGITS = 8
CODE_LIFETIME = timedelta(hours=24)
GUESSES_PER_CODE = 5
# Confirmation mails per recipient, and per address, in any 24 hours: enough to fix a typo, too few to bomb anyone.
CONFIRMATIONS_PER_DAY = 3
CONFIRMATION_WINDOW = timedelta(days=1)


class TooManyConfirmations(DomainError):
    status, slug, title = 429, "rate-limited", "Too many requests"

    def __init__(self, detail: str, retry_after_s: int):
        super().__init__(detail)
        self.retry_after_s = retry_after_s


def needs_confirmation(caller: Caller, recipient: str) -> bool:
    """Whether an address set by `caller` for `recipient` gets mail only once its owner proves it: always for a
    volunteer's own address, and for any address a volunteer sets (a grid leader's grid's included). Staff set
    staff addresses (the office any, a department's staff their department's) and answer for them."""
    return recipient.startswith("volunteer:") or caller.role not in STAFF_ROLES


def webhook_policy(recipient: str, staff: TargetPolicy) -> TargetPolicy:
    """Volunteers' and grid leaders' webhooks: https to public addresses only. Staff webhooks: the deployment's
    policy (which may allow a private network, e.g. a department's system inside the city's network)."""
    return staff.strict() if recipient.partition(":")[0] in STRICT_WEBHOOK_RECIPIENTS else staff


def new_code() -> str:
    return f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"


def waiting_confirmation(document: dict | None, now: datetime) -> dict:
    """The confirmation a code may be given for: one waiting for the subscription's address, not yet expired."""
    confirmation = (document or {}).get("confirmation")
    if not confirmation or confirmation.get("address") != (document or {}).get("email"):
        raise InvalidFields("No address is waiting to be confirmed.",
                            {"code": ["there is no confirmation waiting; set an email address first"]})
    if confirmation["expires_at"] <= now:
        raise refused_code("the code has expired; ask for a new one")
    return confirmation


def refused_code(reason: str) -> InvalidFields:
    return InvalidFields("The confirmation code is not accepted.", {"code": [reason]})


WRONG_CODE = "not the code that was mailed"
SPENT_CODE = f"{GUESSES_PER_CODE} wrong codes were given; ask for a new one"


# --- subscriptions as callers see them -----------------------------------------------------------------

def public_subscription(document: dict, shown_secret: str | None = None) -> dict:
    """A subscription as its manager reads it: never its secret, except in the one answer that made it."""
    view = {"recipient": document["_id"], "email": document.get("email"),
            "email_confirmed": bool(document.get("email") and document.get("email_confirmed")),
            "webhook_url": document.get("webhook_url"), "events": document.get("events") or [],
            "language": document.get("language") or "zh", "preferences": document.get("preferences") or {},
            "suspended": document.get("suspended") or [], "updated_at": document["updated_at"]}
    if shown_secret is not None:
        view["secret"] = shown_secret
    return view


def new_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


def new_id() -> str:
    return secrets.token_hex(12)


# --- links ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Links:
    """Where a notice points a person: the city's front end (NOTIFY_LINK_BASE)."""
    base: str

    def report(self, report_id: str) -> str:
        return f"{self.base.rstrip('/')}/reports/{report_id}"

    def case(self, case_id: str) -> str:
        return f"{self.base.rstrip('/')}/cases/{case_id}"

    def volunteer(self, volunteer_id: str) -> str:
        return f"{self.base.rstrip('/')}/volunteers/{volunteer_id}"

    def grid(self, grid_id: str) -> str:
        return f"{self.base.rstrip('/')}/grids/{grid_id}"

    def notification_settings(self) -> str:
        """Where a person enters the code that proves their address."""
        return f"{self.base.rstrip('/')}/me/notifications"


# --- delivery ---------------------------------------------------------------------------------------

PENDING, DELIVERED, FAILED, SUSPENDED, HELD = "pending", "delivered", "failed", "suspended", "held"
DELIVERY_STATUSES = (PENDING, DELIVERED, FAILED, SUSPENDED, HELD)
FIRST_RETRY_S = 2.0
LONGEST_RETRY_S = 1800.0
SEND, HOLD, DROP = "send", "hold", "drop"


def retry_delay_s(attempts: int, draw: float) -> float:
    """Exponential back-off with jitter: half the doubled delay for sure, the other half drawn (`draw` in
    [0, 1)), so receivers that failed together do not all come back at the same instant."""
    ceiling = min(LONGEST_RETRY_S, FIRST_RETRY_S * 2 ** min(attempts - 1, 20))
    return ceiling / 2 + draw * ceiling / 2


def after_attempt(delivery: dict, *, delivered: bool, permanent: bool, now: datetime, retry_for_s: float,
                  draw: float) -> dict:
    """The delivery's next state after an attempt: delivered, retried later, or failed for good (a permanent
    refusal, or past the retry window)."""
    if delivered:
        return {"status": DELIVERED, "delivered_at": now, "next_attempt_at": None}
    attempts = delivery.get("attempt_count", 0) + 1
    age_s = (now - delivery["created_at"]).total_seconds()
    if permanent or age_s >= retry_for_s:
        return {"status": FAILED, "next_attempt_at": None}
    return {"status": PENDING, "next_attempt_at": now + timedelta(seconds=retry_delay_s(attempts, draw))}


def target_of(channel: str, subscription: dict) -> str:
    return subscription["email"] if channel == EMAIL else subscription["webhook_url"]


def first_status(channel: str, subscription: dict) -> str:
    """A new delivery's status: held while its email address is not confirmed, suspended with its channel."""
    if channel == EMAIL and not subscription.get("email_confirmed"):
        return HELD
    return SUSPENDED if channel in (subscription.get("suspended") or []) else PENDING


def destination(delivery: dict, subscription: dict | None) -> tuple[str, str | None]:
    """What to do with a due delivery now, and where it goes: the recipient's address as it is at this moment
    (an address changed since the notice was written is not sent to), a mail only to a confirmed address, a
    confirmation mail only to the address still waiting for it."""
    found = subscription or {}
    if delivery["channel"] == WEBHOOK:
        return (SEND, found["webhook_url"]) if found.get("webhook_url") else (DROP, None)
    if delivery["kind"] == CONFIRMATION_KIND:
        waiting = (found.get("confirmation") or {}).get("address")
        return (SEND, delivery["target"]) if waiting == delivery["target"] else (DROP, None)
    if not found.get("email"):
        return DROP, None
    return (SEND, found["email"]) if found.get("email_confirmed") else (HOLD, found["email"])


def signing_secrets(current: str, previous: str | None, previous_until: datetime | None,
                    now: datetime) -> list[str]:
    """The secrets a webhook is signed with now: the current one, and the one it replaced during the overlap
    window after a rotation (so that a receiver still holding it keeps accepting)."""
    if previous and previous_until and now < previous_until:
        return [current, previous]
    return [current]
