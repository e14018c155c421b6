"""The console shows exactly the case commands routing allows: its table (clients/console/src/cases/actions.json)
is checked here against routing itself, by sending every command as every role to a case in every state."""
import json
from pathlib import Path

import pytest

from tests.conftest import bearer
from tests.service import test_routing
from tests.service.conftest import upload_photo
from tests.service.test_routing import OFFICE, POLICE, act, new_case

city = test_routing.city  # the same fixture: intake and routing in this process

TABLE = json.loads((Path(__file__).resolve().parents[2] / "clients/console/src/cases/actions.json").read_text())
ACTIONS = [name for name in TABLE if not name.startswith("$")]
REFUSALS = (403, 404, 409)  # the role may not; the case is not the caller's to see; the state does not allow it


def callers(case: dict) -> dict[str, dict]:
    """Each role as a caller who can see the case where the role sees any: its department, its grid's leader."""
    return {"office": OFFICE, "department": POLICE, "grid_leader": bearer("grid_leader", grid=case["grid_id"]),
            "association": bearer("association"), "service": bearer("service"), "volunteer": bearer("volunteer")}


def body(city, action: str) -> dict:
    photo = upload_photo(city[0].client, POLICE)["id"] if action == "rectify" else None
    if action == "merge":  # into another open case of the same category
        return {"into": new_case(city)[1]["id"]}
    return {"dispatch": {"department": "traffic-police"}, "accept": {}, "dispute": {"reason": "不属于本部门职责"},
            "rectify": {"note": "已整改完毕", "photo_ids": [photo]}, "extension": {"hours": 24, "reason": "需协调拖车"},
            "extension/decision": {"approved": True}, "verify": {"passed": True, "note": "复核通过"},
            "reject": {"reason": "invalid", "note": "不属实"}}[action]


def ok(response) -> dict:
    assert response.status_code == 200, response.json
    return response.json


# Each state the table distinguishes, and how a case gets there through the API.
STATES = {
    ("pending_triage", None): lambda city, case: ok(act(city, case["id"], "dispute", POLICE, body(city, "dispute"))),
    ("dispatched", None): lambda city, case: case,
    ("dispatched", "requested"): lambda city, case: ok(act(city, case["id"], "extension", POLICE,
                                                           body(city, "extension"))),
    ("accepted", None): lambda city, case: ok(act(city, case["id"], "accept", POLICE)),
    ("accepted", "requested"): lambda city, case: STATES[("dispatched", "requested")](
        city, STATES[("accepted", None)](city, case)),
    ("rectified", None): lambda city, case: ok(act(city, STATES[("accepted", None)](city, case)["id"], "rectify",
                                                   POLICE, body(city, "rectify"))),
    ("closed", None): lambda city, case: ok(act(city, STATES[("rectified", None)](city, case)["id"], "verify",
                                                OFFICE, body(city, "verify"))),
    ("rejected", None): lambda city, case: ok(act(city, case["id"], "reject", OFFICE, body(city, "reject"))),
}


def allowed_by_table(action: str, role: str, status: str, extension: str | None) -> bool:
    rule = TABLE[action]
    waiting = extension == "requested"
    return (role in rule["roles"] and status in rule["statuses"]
            and (rule["extension"] == "any" or (rule["extension"] == "waiting") == waiting))


def case_in(city, state: tuple[str, str | None]) -> dict:
    _, case = new_case(city)
    made = STATES[state](city, case)
    assert (made["status"], (made["extension"] or {}).get("status")) == state
    return made


@pytest.mark.parametrize("state", list(STATES), ids=lambda s: "+".join(filter(None, s)))
def test_the_consoles_table_allows_exactly_what_routing_allows(city, state):
    probe = case_in(city, state)
    pairs = [(role, action) for role in callers(probe) for action in ACTIONS]
    allowed = [(role, action) for role, action in pairs if allowed_by_table(action, role, *state)]
    for role, action in pairs:
        if (role, action) not in allowed:
            refused = act(city, probe["id"], action, callers(probe)[role], body(city, action))
            assert refused.status_code in REFUSALS, (role, action, refused.status_code, refused.json)
    seen = city[1].client.get(f"/v1/cases/{probe['id']}", headers=OFFICE).json
    assert (seen["status"], (seen["extension"] or {}).get("status")) == state
    for n, (role, action) in enumerate(allowed):
        case = probe if n == 0 else case_in(city, state)
        answered = act(city, case["id"], action, callers(case)[role], body(city, action))
        assert answered.status_code == 200, (role, action, answered.status_code, answered.json)
