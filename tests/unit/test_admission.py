"""Admission by the pipeline's backlog (shared/admission.py): the decision, on readings the test gives it."""
import pytest

from shared.admission import RETRY_AFTER_S, STALE_AFTER_S, BacklogGate
from shared.bus import service_queues
from shared.config import Settings
from shared.errors import ServiceBusy


class Queues:
    """What the broker would say: the ready messages of the watched queues, all together, or no answer."""

    def __init__(self, messages: int = 0):
        self.messages, self.away = messages, False

    def __call__(self) -> int:
        if self.away:
            raise ConnectionRefusedError("the broker does not answer")
        return self.messages


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


def admission(queues: Queues, clock: Clock, limit: int = 100) -> BacklogGate:
    return BacklogGate("intake", queues, limit, read_every_s=3600, clock=clock)


def test_work_is_admitted_while_the_queues_hold_at_most_the_limit(clock):
    queues = Queues(100)
    gate = admission(queues, clock)
    gate.read_once()
    gate.admit()


def test_over_the_limit_work_is_refused_with_503_and_when_to_come_back(clock):
    queues = Queues(101)
    gate = admission(queues, clock)
    gate.read_once()
    refused = pytest.raises(ServiceBusy, gate.admit).value
    assert refused.status == 503 and refused.slug == "busy"
    assert refused.retry_after_s == RETRY_AFTER_S
    assert "101 messages" in refused.detail and "Idempotency-Key" in refused.detail


def test_work_is_admitted_again_once_the_queues_drain(clock):
    queues = Queues(500)
    gate = admission(queues, clock)
    gate.read_once()
    with pytest.raises(ServiceBusy):
        gate.admit()
    queues.messages = 40
    gate.read_once()
    gate.admit()


def test_without_a_reading_work_is_admitted(clock):
    admission(Queues(10_000), clock).admit()


def test_a_reading_grown_old_because_the_broker_went_away_no_longer_refuses(clock):
    queues = Queues(500)
    gate = admission(queues, clock)
    gate.read_once()
    queues.away = True
    clock.now += STALE_AFTER_S / 2
    gate.read_once()  # no answer: the last reading stands for a while
    with pytest.raises(ServiceBusy):
        gate.admit()
    clock.now += STALE_AFTER_S
    gate.read_once()
    gate.admit()


def test_a_limit_of_zero_turns_the_admission_off():
    gate = BacklogGate.from_settings(Settings.from_env("intake", {"WOODPECKER_ADMISSION_BACKLOG": "0"}))
    assert not gate.enabled
    gate.admit()


def test_by_default_the_services_own_queues_are_watched_and_not_the_departments():
    gate = BacklogGate.from_settings(Settings.from_env("intake", {}))
    assert gate.limit == 200
    assert gate.read_depths.queues == tuple(service_queues())
    assert {"routing.report-submitted", "intake.case-events"} <= set(gate.read_depths.queues)
    assert not any(queue.startswith("dept.") for queue in gate.read_depths.queues)


def test_the_environment_names_the_limit_and_the_queues():
    queues = "routing.report-submitted, notify.case-events"
    settings = Settings.from_env("intake", {"WOODPECKER_ADMISSION_BACKLOG": "250",
                                            "WOODPECKER_ADMISSION_QUEUES": queues})
    gate = BacklogGate.from_settings(settings)
    assert gate.limit == 250 and gate.read_depths.queues == ("routing.report-submitted", "notify.case-events")


@pytest.mark.parametrize("raw", ["-1", "many", "1.5"])
def test_a_limit_that_is_not_a_whole_number_is_refused(raw):
    with pytest.raises(ValueError, match="WOODPECKER_ADMISSION_BACKLOG"):
        Settings.from_env("intake", {"WOODPECKER_ADMISSION_BACKLOG": raw})
