"""The report pipeline as `make up` runs it, measured in one run: latency, store round trips, idleness, capacity.

All four services run as in production (gunicorn web process and worker process each, bench/harness.py) on
MONGO_URL or, as `make up` runs them, an embedded database of each service's own (the bench's, on free ports),
in a RabbitMQ vhost of the bench's own; every process
counts the store commands it sends (pymongo's command monitoring, bench/counted.py). Volunteers POST reports
at spots of their own (no report joins another's case), so each one opens a case that routing dispatches to
the category's department; a plain pika subscriber stands in for the departments' systems
(`case.dispatched.*`).

1. Idle: store commands per second of each process while nothing happens.
2. Capacity: the offered rate rises by `--step` every `--step-seconds`; each second the bench prints what
   waits in every queue and outbox and how many reports await their dispatch. The highest steady rate is
   the highest one intake keeps (every POST accepted, on schedule) with nothing accumulating: the backlog
   (reports not yet dispatched, messages in queues, events left in outboxes longer than STALE_AFTER_S) is no
   larger in the step's second half than in its first, give or take a second's worth of reports, and a
   second after the last POST at most a second's worth of reports awaits its dispatch.
3. At each of `--rates` (20 and 50 reports/s): the time from a report's POST to its `case.dispatched` at the
   subscriber (p50, p99), split at the POST's answer and at its `report.submitted` reaching a subscriber
   (intake's share, its relay's, routing's), the store commands per report of each service and thread (and
   the documents their writes name), and the CPU time per report of every process (the services', the
   embedded databases', the local broker's: bench/cpu.py), all counted until every service has done all its
   work (queues drained, outboxes empty).
4. Overload (`--overload`, 100 reports/s by default, for `--overload-seconds`): far more than the pipeline
   carries. Intake refuses what its admission does not take (503, shared/admission.py); each second the bench
   prints what waits, as in 2, and at the end how many reports were taken, how many refused, and how long
   the taken ones took to reach the department.

It prints figures and asserts nothing. First it prints how fast this machine runs the embedded database (the
store's CPU for an insert, as `bench.index_cost` measures it): the same code's figures move with it.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import resource
import shlex
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pika
import pymongo

from bench import cpu
from bench.counted import read_counts
from bench.harness import (
    ROOT,
    bench_databases,
    bench_stores,
    bench_vhost,
    drop_databases,
    running,
    service_env,
)
from bench.index_cost import insert_cost_ms
from bench.intake_throughput import intake_volunteers
from bench.traffic import DispatchTap, Latency, Sent, Spots, cuts, send_paced
from shared.bus import service_queues
from shared.outbox import handoff_grace_s

SERVICES = ("intake", "routing", "hours", "notify")
# Where each service keeps events waiting to be published (shared/outbox.py: documents with a due time).
OUTBOXES = {"intake": ("reports",), "routing": ("cases", "outbox"), "hours": ("volunteers", "entries", "patrols")}
DUE_FIELD = "outbox_due"
# An event still in its document this long after its write has been neither published and settled by the process
# that stored it (within about a second) nor pulled by the consumer that hears of it: it was left waiting.
STALE_AFTER_S = 5.0
QUIET_FOR_S = 1.5            # nothing waiting anywhere for this long: the pipeline has done its work
FILLING_S = 2.0              # the first seconds of a step, in which queues and outboxes fill to their level
COUNTS_SETTLE_S = 1.2        # the processes write their counts every 0.5 s


# --- the system -----------------------------------------------------------------------------------

@dataclass
class Waiting:
    """What waits, at one moment: ready messages per queue; per service, documents with events to publish, and of
    those the documents whose events have waited there longer than STALE_AFTER_S."""
    queues: dict[str, int]
    outboxes: dict[str, int]
    stale: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.queues.values()) + sum(self.outboxes.values())

    @property
    def backlog(self) -> int:
        """What is left waiting rather than under way: a published event awaiting its settle is neither."""
        return sum(self.queues.values()) + sum(self.stale.values())


class System:
    """The four services, their counts folder, and the bench's own view of their queues and outboxes."""

    def __init__(self, stack: contextlib.ExitStack, mongo_urls: dict[str, str], amqp_url: str, counts: Path,
                 services: tuple[str, ...], store_pids: dict[str, int]):
        self.amqp_url, self.counts = amqp_url, counts
        databases = bench_databases(services)
        stack.callback(drop_databases, mongo_urls, databases)
        self.env = service_env(mongo_urls, amqp_url, databases)
        self.services = {name: stack.enter_context(running(name, self.env, counts)) for name in services}
        clients = {name: pymongo.MongoClient(mongo_urls[name]) for name in services}
        for client in clients.values():
            stack.callback(client.close)
        self.databases = {name: clients[name][databases[f"{name.upper()}_DATABASE"]] for name in services}
        # The queues of the services that run (the others' are declared too, and fill with what nobody takes).
        self.queues = sorted(q for q in service_queues() if q.split(".", 1)[0] in services)
        # The bench looks at the queues only now and then, and a busy machine can hold it past a heartbeat.
        parameters = pika.URLParameters(amqp_url)
        parameters.heartbeat = 0
        self.broker = pika.BlockingConnection(parameters)
        stack.callback(self.broker.close)
        self.channel = self.broker.channel()
        # Every process that works for a report, by process group: the services' own, the embedded database's,
        # the local broker's (if it runs here); the bench's own threads are counted apart.
        self.groups = {f"{name}-{role}": process.process.pid for name, service in self.services.items()
                       for role, process in (("web", service.web), ("worker", service.worker))}
        self.groups.update({f"store-{name}": pid for name, pid in store_pids.items()})
        if (broker := next(iter(cpu.pids_named("beam.smp")), None)) is not None:
            self.groups["broker"] = cpu.process_group(broker) or broker

    def port(self, service: str) -> int:
        return self.services[service].port

    def waiting(self) -> Waiting:
        queues = {queue: self.channel.queue_declare(queue, passive=True).method.message_count for queue in self.queues}
        stale_due = datetime.now(UTC) + timedelta(seconds=handoff_grace_s() - STALE_AFTER_S)
        outboxes, stale = {}, {}
        for service, collections in OUTBOXES.items():
            if service in self.databases:
                counted = [self.databases[service][name].count_documents for name in collections]
                outboxes[service] = sum(count({DUE_FIELD: {"$exists": True}}) for count in counted)
                stale[service] = sum(count({DUE_FIELD: {"$lte": stale_due}}) for count in counted)
        return Waiting(queues, outboxes, stale)

    def wait_quiet(self, timeout_s: float = 900.0) -> float:
        """Until nothing has waited anywhere for QUIET_FOR_S; returns how long that took."""
        started = time.monotonic()
        quiet_since = None
        while time.monotonic() - started < timeout_s:
            if self.waiting().total == 0:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= QUIET_FOR_S:
                    return time.monotonic() - started
            else:
                quiet_since = None
            time.sleep(0.2)
        raise SystemExit(f"the pipeline did not drain within {timeout_s:g} s: {self.waiting()}")

    def count_snapshot(self) -> Commands:
        time.sleep(COUNTS_SETTLE_S)
        return Commands(*read_counts(self.counts))

    def cpu_snapshot(self) -> Counter:
        used = cpu.group_cpu_s(self.groups)
        own = resource.getrusage(resource.RUSAGE_SELF)
        used["bench"] = own.ru_utime + own.ru_stime
        return used

    def check_alive(self) -> None:
        for service in self.services.values():
            for process in (service.web, service.worker):
                if process.process.poll() is not None:
                    raise SystemExit(f"{shlex.join(process.command)} exited; log:\n{process.log_tail()}")


# --- reading the counts ---------------------------------------------------------------------------

@dataclass
class Commands:
    """Store commands so far, the microseconds they took as their process saw them (sent to answered), and the
    documents their writes name, by (label, pid, database, thread, command, collection)."""
    counts: Counter
    micros: Counter
    written: Counter

    def __sub__(self, earlier: Commands) -> Commands:
        return Commands(self.counts - earlier.counts, self.micros - earlier.micros, self.written - earlier.written)


def by(counts: Counter, key) -> Counter:
    grouped: Counter = Counter()
    for fields, n in counts.items():
        grouped[key(*fields)] += n
    return grouped


def service_and_process(label: str) -> tuple[str, str]:
    service, process = label.rsplit("-", 1)
    return service, process


def service_of_database(databases: dict[str, pymongo.database.Database]) -> dict[str, str]:
    return {db.name: service for service, db in databases.items()}


def print_commands_per_report(delta: Commands, reports: int, system: System) -> None:
    """Per report: the commands of each service, process, thread, command and collection, and how long they took
    as their process saw them. (A transaction's commit goes to the admin database, from the process of the
    service that ran it.)"""
    owned = {name for name in service_of_database(system.databases)} | {"admin"}
    def row(label, pid, db, thread, command, collection):
        return *service_and_process(label), thread, command, collection

    counts = by(Counter({k: n for k, n in delta.counts.items() if k[2] in owned}), row)
    micros = by(Counter({k: n for k, n in delta.micros.items() if k[2] in owned}), row)
    written = by(Counter({k: n for k, n in delta.written.items() if k[2] in owned}), row)
    print(f"  {'service':8} {'process':7} {'thread':18} {'command':17} {'collection':16} {'per report':>10} "
          f"{'ms per report':>13} {'documents written':>17}")
    for key, n in sorted(counts.items()):
        service, process, thread, command, collection = key
        documents = f"{written[key] / reports:>17.2f}" if written[key] else ""
        print(f"  {service:8} {process:7} {thread:18} {command:17} {collection:16} {n / reports:>10.2f} "
              f"{micros[key] / 1000 / reports:>13.2f} {documents}".rstrip())
    totals = by(counts, lambda service, *_: service)
    spent = by(micros, lambda service, *_: service)
    print("  per service, commands (ms): " + ", ".join(
        f"{s} {totals[s] / reports:.2f} ({spent[s] / 1000 / reports:.1f})" for s in system.services))
    pipeline = totals["intake"] + totals["routing"]
    print(f"  report -> department (intake + routing): {pipeline / reports:.2f} per report; "
          f"all the services that run: {sum(totals.values()) / reports:.2f}")


def print_cpu_per_report(used: Counter, reports: int, cores: int) -> None:
    """CPU milliseconds per report of each process group, and the rates at which the machine's cores, and the
    store's one, would be all busy: ceilings that no tuning of the others lifts."""
    per_report = {name: 1000 * seconds / reports for name, seconds in used.items()}
    working = {name: ms for name, ms in sorted(per_report.items()) if name != "bench"}
    print("  CPU ms per report: " + ", ".join(f"{name} {ms:.1f}" for name, ms in working.items())
          + f"; the bench's sender {per_report.get('bench', 0.0):.1f}")
    total_ms = sum(working.values())
    ceilings = [f"{cores} cores are all busy at {1000 * cores / total_ms:.0f} reports/s"] if total_ms else []
    stores = {name: ms for name, ms in working.items() if name.startswith("store")}
    if stores:
        busiest = max(stores, key=stores.get)
        ceilings.append(f"the stores {sum(stores.values()):.1f} ms; the busiest ({busiest}, one process) takes a "
                        f"whole core at {1000 / stores[busiest]:.0f} reports/s")
    print(f"  all of them: {total_ms:.1f} ms per report" + "".join(f"; {c}" for c in ceilings))


# --- the phases -----------------------------------------------------------------------------------

def measure_idle(system: System, seconds: float) -> None:
    print(f"\n1. idle for {seconds:g} s: store commands per second of each process", flush=True)
    system.wait_quiet()
    before = system.count_snapshot()
    time.sleep(seconds)
    delta = (system.count_snapshot() - before).counts
    per_process = by(delta, lambda label, pid, *_: (label, pid))
    per_thread = by(delta, lambda label, pid, db, thread, command, collection: (label, pid, thread, command))
    processes = sorted({(label, pid) for label, pid, *_ in before.counts} | set(per_process))
    for label, pid in processes:
        detail = ", ".join(f"{thread} {command} {n / seconds:.2f}" for (lb, p, thread, command), n
                           in sorted(per_thread.items()) if (lb, p) == (label, pid))
        print(f"  {label:15} pid {pid:<7} {per_process[(label, pid)] / seconds:5.2f}/s  {detail}")
    busiest = max((per_process[p] / seconds for p in processes), default=0.0)
    print(f"  busiest process: {busiest:.2f} commands/s")


def measure_rate(system: System, spots: Spots, people, rate: float, seconds: float, senders: int) -> None:
    print(f"\n3. {rate:g} reports/s for {seconds:g} s", flush=True)
    system.wait_quiet()
    before = system.count_snapshot()
    cpu_before = system.cpu_snapshot()
    planned = spots.take(int(rate * seconds))
    tap = DispatchTap(system.amqp_url, "case.dispatched.*", "report.submitted")
    try:
        sent = send_paced(system.port("intake"), people, planned, rate, senders)
        deadline = time.perf_counter() + 30
        while time.perf_counter() < deadline and not all(r in tap.snapshot()[1] for r in sent.at):
            time.sleep(0.05)
        _, arrivals = tap.snapshot()
        submissions = tap.submitted()
    finally:
        tap.close()
    drained = system.wait_quiet()
    cpu_used = system.cpu_snapshot() - cpu_before
    delta = system.count_snapshot() - before
    result = Latency(sent, arrivals, len(planned), submissions)
    latencies = result.latencies_ms()
    p50, p90, p99 = cuts(latencies, 50, 90, 99)
    window = sent.last - sent.first
    achieved = (len(sent.at) - 1) / window if window > 0 else float("nan")
    print(f"  accepted {len(sent.at)} of {len(planned)} (POSTs at {achieved:.1f}/s, p99 "
          f"{cuts(sent.behind_ms, 99)[0]:.0f} ms behind schedule), failed {sum(sent.errors.values())}"
          + (f" {dict(sent.errors)}" if sent.errors else ""))
    print(f"  POST -> case.dispatched at the subscriber: p50 {p50:.1f} ms, p90 {p90:.1f} ms, p99 {p99:.1f} ms, "
          f"max {max(latencies, default=float('nan')):.1f} ms; never arrived: {result.missing()}")
    answered, onwards = cuts(result.answers_ms(), 50, 99), cuts(result.after_answer_ms(), 50, 99)
    print(f"    of which the POST's answer p50 {answered[0]:.1f} ms, p99 {answered[1]:.1f} ms; "
          f"answer -> subscriber p50 {onwards[0]:.1f} ms, p99 {onwards[1]:.1f} ms")
    relayed, routed = cuts(result.to_submission_ms(), 50, 99), cuts(result.routing_ms(), 50, 99)
    print(f"    answer -> report.submitted at a subscriber (intake's relay, the broker) p50 {relayed[0]:.1f} ms, "
          f"p99 {relayed[1]:.1f} ms; report.submitted -> case.dispatched (routing, the broker) p50 "
          f"{routed[0]:.1f} ms, p99 {routed[1]:.1f} ms")
    print(f"  everything done {drained:.1f} s after the last dispatch arrived; store commands per report:")
    print_commands_per_report(delta, len(sent.at), system)
    print_cpu_per_report(cpu_used, len(sent.at), len(os.sched_getaffinity(0)))


@dataclass
class Step:
    rate: float
    seconds: float
    accepted: int
    planned: int
    behind_p99_ms: float
    backlog: list[tuple[float, int]]  # (t, reports not yet dispatched + queued messages + stale outbox documents)
    undispatched_at_end: int
    sending_s: float  # from the first taken report's POST to the last's

    @property
    def intake_keeps_up(self) -> bool:
        return self.accepted == self.planned and self.behind_p99_ms < 1000

    def largest_backlog(self, since: float, until: float) -> int:
        return max((n for t, n in self.backlog if since <= t < until), default=0)

    @property
    def nothing_accumulates(self) -> bool:
        """The backlog in the step's second half is no larger than in its first (after the first seconds, in which
        the pipeline fills), give or take a second's worth of reports; and a second after the last POST no more
        than a second's worth of reports awaits its dispatch."""
        first = self.largest_backlog(FILLING_S, self.seconds / 2)
        second = self.largest_backlog(self.seconds / 2, float("inf"))
        return second <= first + self.rate and self.undispatched_at_end <= self.rate


def run_step(system: System, spots: Spots, people, rate: float, seconds: float, senders: int) -> Step:
    system.wait_quiet()
    planned = spots.take(int(rate * seconds))
    tap = DispatchTap(system.amqp_url, "case.dispatched.*")
    samples: list[tuple[float, Waiting, int]] = []
    done = threading.Event()
    result: dict = {}

    taken = Sent()

    def send() -> None:
        result["sent"] = send_paced(system.port("intake"), people, planned, rate, senders, taken)
        done.set()

    sender = threading.Thread(target=send, name="sender", daemon=True)
    started = time.monotonic()
    sender.start()
    queues = "  ".join(system.queues)
    print(f"\n  {rate:g} reports/s offered for {seconds:g} s. Each second: t (s), reports not yet dispatched, "
          f"messages ready in {queues}; documents with events to publish / of those, stale (> {STALE_AFTER_S:g} s)",
          flush=True)
    while not done.wait(1.0) or not samples:
        system.check_alive()
        waiting = system.waiting()
        dispatched = len(tap.snapshot()[1])
        # Those taken, not those offered: a report intake refused (503) is nobody's work.
        samples.append((time.monotonic() - started, waiting, len(taken.at) - dispatched))
        print(f"    {samples[-1][0]:5.1f}  {max(0, samples[-1][2]):6d}  " +
              "  ".join(f"{waiting.queues[q]:4d}" for q in system.queues) + "  " +
              " ".join(f"{s}:{n}/{waiting.stale[s]}" for s, n in waiting.outboxes.items()), flush=True)
    sender.join()
    sent = result["sent"]
    time.sleep(1.0)  # the last second's reports are still on their way: a second's worth is not accumulation
    waiting = system.waiting()
    arrivals = tap.snapshot()[1]
    undispatched = sum(1 for r in sent.at if r not in arrivals)
    tap.close()
    p50, p99 = cuts(Latency(sent, arrivals, len(planned)).latencies_ms(), 50, 99)
    backlog = [(t, max(0, undispatched_then) + waiting_then.backlog) for t, waiting_then, undispatched_then in samples]
    step = Step(rate, seconds, len(sent.at), len(planned), cuts(sent.behind_ms, 99)[0], backlog, undispatched,
                sent.last - sent.first)
    failed = f" (failed: {dict(sent.errors)})" if sent.errors else ""
    print(f"    end: POST -> case.dispatched p50 {p50:.0f} ms, p99 {p99:.0f} ms (of those that arrived); "
          f"accepted {step.accepted}/{step.planned}{failed}, POSTs p99 {step.behind_p99_ms:.0f} ms behind schedule; "
          f"largest backlog {step.largest_backlog(FILLING_S, seconds / 2)} in the first half, "
          f"{step.largest_backlog(seconds / 2, float('inf'))} in the second; a second after the last POST "
          f"{waiting.backlog} waiting, {step.undispatched_at_end} reports not yet dispatched -> intake "
          f"{'keeps up' if step.intake_keeps_up else 'falls behind'}, "
          f"{'nothing accumulates' if step.nothing_accumulates else 'work accumulates'}")
    return step


def measure_overload(system: System, spots: Spots, people, rate: float, seconds: float, senders: int) -> None:
    print(f"\n4. overload: {rate:g} reports/s offered for {seconds:g} s", flush=True)
    step = run_step(system, spots, people, rate, seconds, senders)
    taken_per_s = step.accepted / step.sending_s if step.sending_s else float("nan")
    largest = max((n for _, n in step.backlog), default=0)
    print(f"\n  taken {taken_per_s:.1f} reports/s over {step.sending_s:.0f} s; refused "
          f"{step.planned - step.accepted} of {step.planned}; the backlog's largest {largest}, "
          f"{step.undispatched_at_end} taken reports not yet dispatched a second after the last POST")


def measure_capacity(system: System, spots: Spots, people, first: float, step: float, seconds: float,
                     senders: int) -> None:
    print(f"\n2. capacity: the offered rate rises from {first:g} reports/s by {step:g} every {seconds:g} s", flush=True)
    steps: list[Step] = []
    for rate in itertools.count(first, step):
        steps.append(run_step(system, spots, people, rate, seconds, senders))
        if not (steps[-1].intake_keeps_up and steps[-1].nothing_accumulates):
            break
    kept = [s.rate for s in steps if s.intake_keeps_up]
    steady = [s.rate for s in steps if s.intake_keeps_up and s.nothing_accumulates]
    print(f"\n  highest rate intake kept: {f'{max(kept):g} reports/s' if kept else 'none tried'}; highest steady rate "
          f"with nothing accumulating: {f'{max(steady):g} reports/s' if steady else 'none tried'}")


# --- the run --------------------------------------------------------------------------------------

def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="20,50", help="reports per second of the latency and round-trip phases")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long each of those phases sends")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idleness to count")
    parser.add_argument("--first", type=float, default=5.0, help="the capacity ramp's first rate")
    parser.add_argument("--step", type=float, default=5.0, help="how much the rate rises each step")
    parser.add_argument("--step-seconds", type=float, default=15.0, help="how long each step sends")
    parser.add_argument("--volunteers", type=int, default=16, help="volunteers (one photo each) taking turns")
    parser.add_argument("--senders", type=int, default=16, help="concurrent HTTP connections of the sender")
    parser.add_argument("--no-capacity", action="store_true", help="skip the capacity ramp")
    parser.add_argument("--overload", type=float, default=100.0, help="reports/s of the overload phase (0: none)")
    parser.add_argument("--overload-seconds", type=float, default=30.0, help="how long the overload phase sends")
    parser.add_argument("--services", default=",".join(SERVICES),
                        help="the services to run (intake and routing at least: the report's way to the department)")
    args = parser.parse_args()
    args.services = tuple(s.strip() for s in args.services.split(",") if s.strip())
    if not {"intake", "routing"} <= set(args.services) or not set(args.services) <= set(SERVICES):
        parser.error(f"--services: intake and routing, and any of {', '.join(SERVICES[2:])}")
    return args


def main() -> None:
    args = parse_args()
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    python = os.path.relpath(sys.executable, ROOT)
    print(f"machine: nproc={len(os.sched_getaffinity(0))}, Python {sys.version.split()[0]}")
    options = ["--rates", args.rates, "--seconds", f"{args.seconds:g}", "--idle", f"{args.idle:g}", "--first",
               f"{args.first:g}", "--step", f"{args.step:g}", "--step-seconds", f"{args.step_seconds:g}",
               "--overload", f"{args.overload:g}", "--overload-seconds", f"{args.overload_seconds:g}",
               "--services", ",".join(args.services)] + (["--no-capacity"] if args.no_capacity else [])
    print("reproduce: " + f"cd {shlex.quote(str(ROOT))} && " + shlex.join([python, "-m", "bench.pipeline", *options]))
    with contextlib.ExitStack() as stack:
        mongo_urls, store, store_pids = stack.enter_context(bench_stores(args.services))
        vhost, amqp_url = stack.enter_context(bench_vhost())
        counts = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="woodpecker-bench-counts-")))
        print(f"store: {store}; broker vhost {vhost}, deleted at the end", flush=True)
        if "intake" in store_pids:
            print(f"machine speed: an insert into a collection of 3 indexes costs the embedded database "
                  f"{insert_cost_ms(mongo_urls['intake'], store_pids['intake']):.2f} ms of CPU (`python -m "
                  "bench.index_cost`; the figures below move with it)", flush=True)
        system = System(stack, mongo_urls, amqp_url, counts, args.services, store_pids)
        for name, service in system.services.items():
            print(f"  {name}: {service.describe()}")
        people = intake_volunteers(system.port("intake"), args.volunteers)
        spots = Spots()
        warm = send_paced(system.port("intake"), people, spots.take(20), 10.0, 4)
        if warm.errors:
            raise SystemExit(f"the warm-up reports failed: {dict(warm.errors)}")
        measure_idle(system, args.idle)
        # The ramp first: it stops one step past the steady rate, a mild overload, where 50 reports/s is a deep
        # one whose aftermath in the store (it drains, then stays slow for a while) slowed the ramp after it.
        if not args.no_capacity:
            measure_capacity(system, spots, people, args.first, args.step, args.step_seconds, args.senders)
        for rate in rates:
            measure_rate(system, spots, people, rate, args.seconds, args.senders)
        if args.overload:
            measure_overload(system, spots, people, args.overload, args.overload_seconds, args.senders)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted (the services were stopped and the vhost deleted)")
