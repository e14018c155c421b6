"""Run one of a service's processes with every store command it sends counted (pymongo's command monitoring).

    python -m bench.counted DIR LABEL gunicorn ARGS...        a web process: each gunicorn worker counts its own
    python -m bench.counted DIR LABEL -m MODULE ARGS...       e.g. -m services.intake.worker

Counts, the time the commands took as the process saw it (sent to answered) and the documents their writes
name (an insert's documents, an update's or delete's statements) are kept by database, thread, command and
collection, and written twice a second to `DIR/LABEL-<pid>.json` (`read_counts` sums
them). The listener is registered before the service creates any client, so nothing escapes it; a forked
gunicorn worker starts counting afresh under its own pid.
"""
from __future__ import annotations

import json
import os
import re
import runpy
import sys
import threading
from collections import Counter
from pathlib import Path

from pymongo import monitoring

WRITE_EVERY_S = 0.5
# The field of each write command that lists what it writes, one entry per document or statement.
WRITTEN_FIELDS = {"insert": "documents", "update": "updates", "delete": "deletes"}
# gunicorn's gthread workers answer requests on a ThreadPoolExecutor's threads.
THREAD_KINDS = {"ThreadPoolExecutor": "request"}


def thread_kind(name: str) -> str:
    """"ThreadPoolExecutor-0_3" → "request", "notify-delivery_2" → "notify-delivery", "outbox-relay" as it is."""
    base = re.sub(r"(-\d+)?(_\d+)?$", "", name)
    return THREAD_KINDS.get(base, base)


class CommandCounter(monitoring.CommandListener):
    def __init__(self, directory: Path, label: str):
        self.directory, self.label = directory, label
        self.lock = threading.Lock()
        self.counts: Counter = Counter()
        self.micros: Counter = Counter()
        self.written: Counter = Counter()
        self.keys: dict[int, tuple] = {}  # request id → key, until the answer comes
        self.pid: int | None = None

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.pid != os.getpid():
            self._start_counting_here()
        target = event.command.get(event.command_name)
        key = (event.database_name, thread_kind(threading.current_thread().name), event.command_name,
               target if isinstance(target, str) else "")
        written = event.command.get(WRITTEN_FIELDS.get(event.command_name, ""), ())
        with self.lock:
            self.counts[key] += 1
            self.written[key] += len(written)
            self.keys[event.request_id] = key

    def succeeded(self, event) -> None:
        self._answered(event)

    def failed(self, event) -> None:
        self._answered(event)

    def _answered(self, event) -> None:
        with self.lock:
            if (key := self.keys.pop(event.request_id, None)) is not None:
                self.micros[key] += event.duration_micros

    def _start_counting_here(self) -> None:
        """In a process of our own (the first command, or the first after a fork): fresh counts, our own writer."""
        with self.lock:
            if self.pid == os.getpid():
                return
            self.pid, self.counts, self.micros, self.written = os.getpid(), Counter(), Counter(), Counter()
            self.keys = {}
        threading.Thread(target=self._write_forever, name="bench-counter", daemon=True).start()

    def _write_forever(self) -> None:
        path = self.directory / f"{self.label}-{os.getpid()}.json"
        stop = threading.Event()
        while not stop.wait(WRITE_EVERY_S):
            with self.lock:
                rows = [[*key, n, self.micros[key], self.written[key]] for key, n in self.counts.items()]
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps({"label": self.label, "pid": os.getpid(), "counts": rows}))
            temporary.replace(path)


def read_counts(directory: Path) -> tuple[Counter, Counter, Counter]:
    """(label, pid, database, thread, command, collection) → (commands so far, their microseconds so far, the
    documents they wrote so far), over every counted process."""
    counts: Counter = Counter()
    micros: Counter = Counter()
    written: Counter = Counter()
    for path in directory.glob("*.json"):
        try:
            file = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # replaced while we read it: the next reading has it
        for database, thread, command, collection, n, spent, documents in file["counts"]:
            key = (file["label"], file["pid"], database, thread, command, collection)
            counts[key] += n
            micros[key] += spent
            written[key] += documents
    return counts, micros, written


def main() -> None:
    directory, label, *command = sys.argv[1:]
    monitoring.register(CommandCounter(Path(directory), label))
    if command[0] == "-m":
        sys.argv = command[1:]
        runpy.run_module(command[1], run_name="__main__", alter_sys=True)
    elif command[0] == "gunicorn":
        from gunicorn.app.wsgiapp import run

        sys.argv = command
        sys.exit(run())
    else:
        raise SystemExit(f"usage: {__doc__}")


if __name__ == "__main__":
    main()
