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
from shared.errors import Forbidden, InvalidFields
from shared.events import topic_matches
from shared.reference import ReferenceData

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

RECIPIENT_PATTERN = r"^(office|department:[a-z0-9-]{1,40}|grid:[a-z0-9-]{1,40}|volunteer:[!-~]{1,100})$"
PATTERN_PATTERN = r"^([a-z0-9_-]+|\*|#)(\.([a-z0-9_-]+|\*|#)){0,3}$"


@dataclass(frozen=True)
class Notice:
    recipient: str
    kind: str
    routing_key: str
    context: dict = field(default_factory=dict)


# --- who hears what -------------------------------------------------------------------------------

def local_text(moment: datetime | None, zone: ZoneInfo) -> str | None:
    return None if moment is None else moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def case_context(data: dict, action: str, city: ReferenceData, zone: ZoneInfo, links: Links,
                 due_at: datetime | None) -> dict:
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


def case_notices(action: str, department: str | None, routing_key: str, data: dict, reporters: dict[str, str],
                 city: ReferenceData, zone: ZoneInfo, links: Links, due_at: datetime | None) -> list[Notice]:
    """`case.<action>.<department>`: the reporters of its reports (outcomes, or joining a case under way),
    the department holding it, and the office for what needs it."""
    context = case_context(data, action, city, zone, links, due_at)
    notices = []
    reporter_kind = JOINED if action == "opened" and data.get("attached") else REPORTER_KINDS.get(action)
    if reporter_kind:
        for report_id in data.get("report_ids", []):
            reporter = reporters.get(report_id)
            if reporter:
                notices.append(Notice(f"volunteer:{reporter}", reporter_kind, routing_key,
                                      {**context, "report_id": report_id, "reason": data.get("reason"),
                                       "link": links.report(report_id)}))
    if department:
        notices.append(Notice(f"department:{department}", DEPARTMENT_KIND, routing_key, context))
    if action in OFFICE_KINDS:
        extension = data.get("extension") or {}
        notices.append(Notice("office", OFFICE_KINDS[action], routing_key,
                              {**context, "hours": extension.get("hours"), "reason": extension.get("reason", "")}))
    return notices


def volunteer_notices(routing_key: str, data: dict, links: Links) -> list[Notice]:
    """Hours and levels reach the volunteer they concern."""
    kind = VOLUNTEER_KINDS.get(routing_key)
    volunteer = data.get("volunteer_id")
    if kind is None or not volunteer:
        return []
    context = {**data, "link": links.volunteer(volunteer)}
    return [Notice(f"volunteer:{volunteer}", kind, routing_key, context)]


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


# --- delivery ---------------------------------------------------------------------------------------

PENDING, DELIVERED, FAILED, SUSPENDED = "pending", "delivered", "failed", "suspended"
DELIVERY_STATUSES = (PENDING, DELIVERED, FAILED, SUSPENDED)
FIRST_RETRY_S = 2.0
LONGEST_RETRY_S = 1800.0


def retry_delay_s(attempts: int, draw: float) -> float:
    """Exponential back-off with jitter: half the doubled delay for sure, the other half drawn (`draw` in
    [0, 1)), so receivers that failed together do not all come back at the same instant."""
    ceiling = min(LONGEST_RETRY_S, FIRST_RETRY_S * 2 ** min(attempts - 1, 20))
    return ceiling / 2 + draw * ceiling / 2


def after_attempt(delivery: dict, delivered: bool, permanent: bool, now: datetime, retry_for_s: float,
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
