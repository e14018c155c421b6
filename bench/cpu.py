"""The CPU time that processes have used, read from /proc: what a report costs the machine, whoever spends it.

A bench process runs in a session of its own (bench/harness.py), so a gunicorn master and its workers are one
process group; the embedded database is another. Linux only, like the machines the benches run on.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def _stat_fields(pid_dir: Path) -> list[str] | None:
    try:
        text = (pid_dir / "stat").read_text()
    except OSError:  # it exited meanwhile
        return None
    # The command name, in parentheses, may hold spaces; the fields after it are fixed.
    return text[text.rindex(")") + 2:].split()


def group_cpu_s(groups: dict[str, int]) -> Counter:
    """CPU seconds (user + system, children reaped included) of every process in each named process group."""
    wanted = {pgid: name for name, pgid in groups.items()}
    used: Counter = Counter({name: 0.0 for name in groups})
    for pid_dir in PROC.iterdir():
        if not pid_dir.name.isdigit() or (fields := _stat_fields(pid_dir)) is None:
            continue
        # After the name: state, ppid, pgrp, ... utime is the 12th, stime, cutime, cstime follow.
        name = wanted.get(int(fields[2]))
        if name is not None:
            used[name] += sum(int(f) for f in fields[11:15]) / TICKS_PER_S
    return used


def pids_named(command: str) -> list[int]:
    """The processes whose command name is `command` (e.g. RabbitMQ's beam.smp)."""
    found = []
    for pid_dir in PROC.iterdir():
        if pid_dir.name.isdigit():
            try:
                if (pid_dir / "comm").read_text().strip() == command:
                    found.append(int(pid_dir.name))
            except OSError:
                continue
    return found


def process_group(pid: int) -> int | None:
    fields = _stat_fields(PROC / str(pid))
    return int(fields[2]) if fields else None
