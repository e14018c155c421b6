"""The embedded database: SecantusDB, a MongoDB wire-protocol server over WiredTiger, as a process of its own.

`make up` runs it when MONGO_URL is unset, and the test session runs one when no other MongoDB is
given. The services never import it (it is beta software under GPL-2.0): they reach it through
MONGO_URL with plain pymongo, exactly as they reach MongoDB in production.

The URL it hands out carries `retryWrites=false`: the server keeps and scans a record per retryable
write, so with pymongo's default its inserts slow down as they accumulate. That is configuration of
this one server, not code: the services never branch on the backend.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pymongo
from pymongo.errors import PyMongoError

# The version the Makefile installs (deploy/embedded-db.txt) and everything here was measured with.
SERVER = Path(sys.executable).parent / "secantusd-py"
DEFAULT_PORT = 27017
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 20


class EmbeddedDatabaseError(RuntimeError):
    """The embedded database could not be started; the message says why and what to do."""


def url_for(port: int, host: str = "127.0.0.1") -> str:
    return f"mongodb://{host}:{port}/?retryWrites=false"


def answers(url: str, timeout_s: float = 0.5) -> bool:
    client = pymongo.MongoClient(url, serverSelectionTimeoutMS=int(timeout_s * 1000), connect=False)
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class EmbeddedDatabase:
    """One server on `port`, keeping its data in `data_dir` and writing its log to `log_path`.

    `--sync-on-commit` makes every acknowledged write durable: without it a crash of the server
    loses some of the writes it had already acknowledged (measured: 6 to 23 of about 2,000).
    `--standalone` keeps no oplog: nothing here reads change streams, and an oplog entry for every write
    cost the server an eighth to a quarter of its time per report (transactions work without it).
    """

    def __init__(self, data_dir: Path, port: int = DEFAULT_PORT, log_path: Path | None = None):
        self.data_dir = Path(data_dir)
        self.port = port
        self.log_path = Path(log_path) if log_path else self.data_dir.parent / "db.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return url_for(self.port)

    def command(self) -> list[str]:
        return [str(SERVER), "--host", "127.0.0.1", "--port", str(self.port),
                "--storage-path", str(self.data_dir), "--sync-on-commit", "--log-level", "WARNING", "--standalone"]

    def start(self, timeout_s: float = START_TIMEOUT_S) -> int:
        """Start the server and wait until it answers; returns its pid."""
        if not SERVER.exists():
            raise EmbeddedDatabaseError(
                f"{SERVER} is missing. `make up` and `make test` install it (pip install -r deploy/embedded-db.txt);"
                " or set MONGO_URL to a MongoDB of your own.")
        if port_in_use(self.port):
            raise EmbeddedDatabaseError(
                f"Port {self.port} is taken by another program, so the embedded database cannot listen on it. "
                "Stop that program, choose another port with WOODPECKER_DB_PORT=<port>, "
                "or, if it is a MongoDB you want to use, set MONGO_URL=mongodb://127.0.0.1:<port>.")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # the child keeps its own descriptor
        try:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout_s
        while not answers(self.url):
            if self.process.poll() is not None:
                raise EmbeddedDatabaseError(self._why_it_exited())
            if time.monotonic() > deadline:
                self.kill()
                raise EmbeddedDatabaseError(
                    f"The embedded database did not answer on port {self.port} within {timeout_s:.0f} s. "
                    f"Its log: {self.log_path}")
            time.sleep(0.1)
        return self.process.pid

    def _why_it_exited(self) -> str:
        tail = self.log_path.read_text(errors="replace").strip().splitlines()[-1:] if self.log_path.exists() else []
        last = tail[0] if tail else "(no output)"
        if "Address already in use" in last:
            return (f"Port {self.port} is taken, so the embedded database cannot listen on it. "
                    "Choose another with WOODPECKER_DB_PORT=<port>.")
        if "busy" in last.lower() or "lock" in last.lower():
            return (f"The data directory {self.data_dir} is in use by another database server. "
                    "Stop that server (`make down` in the checkout that started it) and try again.")
        return f"The embedded database stopped at start: {last}. Its log: {self.log_path}"

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def kill(self) -> None:
        """SIGKILL, as a crash would: no chance to flush or close anything."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def is_running(pid: int) -> bool:
    """Alive and not merely waiting to be reaped: a process whose parent is gone (as `make up`'s are)
    stays a zombie until init gets round to it, and it has stopped all the same."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc here: the signal's answer is all there is
    return state != "Z"


def stop_pids(pids: list[int], timeout_s: float = STOP_TIMEOUT_S) -> list[int]:
    """SIGTERM processes we did not start, all at once, then SIGKILL whatever still runs after
    `timeout_s`; returns the pids that were running."""
    running = []
    for pid in pids:
        if is_running(pid):
            os.kill(pid, signal.SIGTERM)
            running.append(pid)
    deadline = time.monotonic() + timeout_s
    while any(is_running(pid) for pid in running) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in running:
        if is_running(pid):
            os.kill(pid, signal.SIGKILL)
    return running
