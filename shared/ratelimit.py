"""Rate limits per caller and per client address, counted where every process of a service sees them.

The counters live in the service's own database (MONGO_URL), so gunicorn's workers and a service's
replicas share one count. Each counter is a fixed window: one document per limit, key and window, whose
`_id` names all three. A request raises its counters with `update_one({_id}, {$inc}, upsert=True)` (one
bulk write) and reads them back with one `find({_id: {$in}})`: point operations on `_id` that MongoDB and
the embedded database both serve from the `_id` index, however many counters exist. (flask-limiter's
MongoDB storage, from `limits`, counts with `find_one_and_update`, which the embedded database serves by
scanning the collection: 47 ms a hit beside 3,000 counters, 736 ms beside 50,000, where this takes 3.5 ms
a write for both its counters at either size; `python -m bench.rate_limits`.) Each service's worker drops
the windows that are over (`drop_ended_windows`, periodic work), with a plain indexed delete: not a TTL index,
because the embedded database's TTL monitor keeps a read snapshot open after it deletes, until its next pass
a minute later, and every write meanwhile keeps history the store cannot evict: after the first windows
ended the whole pipeline slowed to a stall (the pipeline bench's 15 reports/s step, every full run).

Far from its limit a request is counted in the process, not in the store: each process adds what it has
counted to the store every FLUSH_S, for all its counters in one bulk write, and reads back every counter it
holds in one `find`, so it sees the other processes' counts within that time. A counter that every request
writes (a busy office's shared address; a proxy's, when the proxies are not trusted) is then written a few
times a second instead of once a request: on the embedded database one hot document under many writers
retries its write conflicts with sleeps, and the requests queued behind them brought the whole pipeline to a
stall (the pipeline bench's 15 reports/s step). A request whose counter is new to the process, or whose
count as the process sees it has come within the last fifth of the limit (NEAR_SHARE, and never fewer than
NEAR_AT_LEAST requests from it), is counted in the store at once and judged on the store's count, as every
request was before: a limit is exact where it refuses. A burst spread over several processes faster than they
flush can pass a limit by what they admit meanwhile far from it; the next flush shows it to all of them.
"""
from __future__ import annotations

import atexit
import ipaddress
import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pymongo import UpdateOne
from pymongo.collection import Collection

from shared.config import Rate, Settings
from shared.store import connect_failing_fast

log = logging.getLogger(__name__)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# What a request is, for the limits: each kind has its caller's limit; writes and uploads share the address's
# writes limit, reads and exports (spreadsheets, PDFs: costly to build) the address's reads limit.
WRITE, UPLOAD, READ, EXPORT = "write", "upload", "read", "export"
COLLECTION = "rate_limits"
EXPIRES_FIELD = "expires_at"
EXPIRES_INDEX = "expires_at_1"
# How often a process adds what it counted to the store and reads the other processes' counts.
FLUSH_S = 0.5
# A counter the process has not read for this long (no request of it since the last flushes) is read at its next
# request, which is counted in the store.
STALE_AFTER_S = 2 * FLUSH_S
# Within this share of a limit (or this many requests of it, if more) requests are counted in the store at once.
NEAR_SHARE = 0.2
NEAR_AT_LEAST = 2
# What each limit counts, for the problem's detail.
_COUNTED = {"writes": "writes", "uploads": "uploads", "address": "writes and uploads", "reads": "reads",
            "exports": "spreadsheet and PDF downloads", "read_address": "reads"}


@dataclass(frozen=True)
class Quota:
    """One limit as it applies to one request: `rate` for `key` ("caller:vol-1", "address:203.0.113.5")."""

    limit: str  # writes, uploads, address, reads, exports or read_address
    rate: Rate
    key: str

    def window_end(self, now: float) -> float:
        return (now // self.rate.period_s + 1) * self.rate.period_s

    def counter_id(self, now: float) -> str:
        return f"{self.limit}|{self.key}|{self.rate.period_s}|{int(now // self.rate.period_s)}"

    @property
    def counted_locally_up_to(self) -> int:
        """The count below which a request may be counted in the process (see the module's docstring)."""
        return self.rate.limit - max(NEAR_AT_LEAST, math.ceil(self.rate.limit * NEAR_SHARE))


@dataclass
class Tally:
    """A process's view of one counter: the store's count when it last read it (at `read_at`, monotonic), what
    it has counted since (`unflushed`), and what is on its way to the store (`flushing`)."""

    quota: Quota
    window_end: float
    read_at: float
    seen: int = 0
    unflushed: int = 0
    flushing: int = 0
    counted_since_read: int = 0

    @property
    def count(self) -> int:
        return self.seen + self.unflushed + self.flushing

    def counts_locally(self, at: float) -> bool:
        """Whether a request may be counted in the process alone: the store's count was read lately (a counter
        the process flushes is read at each flush), the request is far from the limit, and since that read the
        process has counted less than half the room it then saw (so two processes together never pass it)."""
        room = self.quota.counted_locally_up_to - self.seen
        return (at - self.read_at <= STALE_AFTER_S and self.count + 1 <= self.quota.counted_locally_up_to
                and self.counted_since_read < room // 2)

    def read(self, count: int, at: float) -> None:
        """The store's count, just read, of which `flushing` may not have reached it yet."""
        self.seen = max(self.seen, count - self.flushing)
        self.read_at, self.counted_since_read = at, 0


@dataclass(frozen=True)
class Usage:
    """How much of its quota the current window has used, this request included."""

    quota: Quota
    count: int
    resets_in_s: int

    @property
    def exceeded(self) -> bool:
        return self.count > self.quota.rate.limit

    @property
    def remaining(self) -> int:
        return max(0, self.quota.rate.limit - self.count)

    def describe(self) -> str:
        whose = "this caller" if self.quota.key.startswith("caller:") else "this network address"
        return f"more than {self.quota.rate.limit} {_COUNTED[self.quota.limit]} per {self.quota.rate.per} from {whose}"


@dataclass(frozen=True)
class RateVerdict:
    """The verdict on one request: admitted unless a quota is exceeded."""

    usages: tuple[Usage, ...]

    @property
    def refused_by(self) -> tuple[Usage, ...]:
        return tuple(usage for usage in self.usages if usage.exceeded)

    @property
    def retry_after_s(self) -> int:
        """Long enough for every limit that refused the request to have started a new window."""
        return max((usage.resets_in_s for usage in self.refused_by), default=0)

    def detail(self) -> str:
        reasons = "; ".join(usage.describe() for usage in self.refused_by)
        return f"Too many requests: {reasons}. Retry in {self.retry_after_s} s."

    def headers(self) -> dict[str, str]:
        """RateLimit-* (IETF draft) for the quota closest to its limit; Retry-After when refused."""
        refused = self.refused_by
        usage = (max(refused, key=lambda u: u.resets_in_s) if refused
                 else min(self.usages, key=lambda u: (u.remaining, -u.resets_in_s)))
        headers = {"RateLimit-Limit": str(usage.quota.rate.limit), "RateLimit-Remaining": str(usage.remaining),
                   "RateLimit-Reset": str(usage.resets_in_s)}
        if refused:
            headers["Retry-After"] = str(self.retry_after_s)
        return headers


def address_key(address: str) -> str:
    """An IPv4 address as it is; an IPv6 one by its /64, which a subscriber gets whole (RFC 6177), so that
    stepping through the /64 does not escape the limit."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"address:{address}"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return f"address:{ip.ipv4_mapped}"
        return f"address:{ipaddress.ip_network((ip, 64), strict=False)}"
    return f"address:{ip}"


class RateLimiter:
    """A service's limits, counted in its database's `rate_limits` collection."""

    def __init__(self, counters: Collection, *, writes: Rate | None, uploads: Rate | None, per_address: Rate | None,
                 reads: Rate | None = None, exports: Rate | None = None, reads_per_address: Rate | None = None,
                 flush_every_s: float | None = FLUSH_S):
        """`flush_every_s`: None flushes only when asked (`flush`), for tests that count the store's commands."""
        self.counters = counters
        self.writes, self.uploads, self.per_address = writes, uploads, per_address
        self.reads, self.exports, self.reads_per_address = reads, exports, reads_per_address
        self.flush_every_s = flush_every_s
        self._tallies: dict[str, Tally] = {}
        self._lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        self._atexit_registered = False

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        # When the store is away the limiter lets the request through (fail open).
        return cls(connect_failing_fast(settings.mongo_url, settings.database)[COLLECTION],
                   writes=settings.rate_limit_writes, uploads=settings.rate_limit_uploads,
                   per_address=settings.rate_limit_per_ip, reads=settings.rate_limit_reads,
                   exports=settings.rate_limit_exports, reads_per_address=settings.rate_limit_reads_per_ip)

    def prepare(self) -> None:
        """The index by which a worker finds the windows that are over (windows are in `_id`, so a late removal
        costs space, never a wrong count)."""
        self.counters.create_index(EXPIRES_FIELD, name=EXPIRES_INDEX)

    def _rates(self, kind: str) -> tuple[tuple[str, Rate | None], tuple[str, Rate | None]]:
        """(the caller's limit, the address's limit) that a request of `kind` counts against."""
        if kind in (WRITE, UPLOAD):
            return (("uploads", self.uploads) if kind == UPLOAD else ("writes", self.writes)), \
                ("address", self.per_address)
        return (("exports", self.exports) if kind == EXPORT else ("reads", self.reads)), \
            ("read_address", self.reads_per_address)

    def applies(self, *, kind: str) -> bool:
        return any(rate for _, rate in self._rates(kind))

    def quotas(self, *, kind: str, caller_id: str | None, address: str) -> list[Quota]:
        """A request counts against its caller's limit of its kind (an upload against the uploads limit, any other
        write against the writes limit, an export against the exports limit, any other read against the reads
        limit), and against its address's limit (writes and uploads together, reads and exports together).
        Without a trusted caller the caller is its address."""
        (limit, rate), (address_limit, address_rate) = self._rates(kind)
        quotas = []
        if rate:
            quotas.append(Quota(limit, rate, f"caller:{caller_id}" if caller_id else address_key(address)))
        if address_rate:
            quotas.append(Quota(address_limit, address_rate, address_key(address)))
        return quotas

    def admit(self, quotas: Sequence[Quota]) -> RateVerdict:
        """Count the request against each quota: in the process, if every counter is known to it and far from its
        limit; else in the store at once (raises PyMongoError when the store does not answer)."""
        now, at = time.time(), time.monotonic()
        ids = [quota.counter_id(now) for quota in quotas]
        with self._lock:
            tallies = [self._tallies.get(counter_id) for counter_id in ids]
            if all(tally is not None and tally.counts_locally(at) for tally in tallies):
                for tally in tallies:
                    tally.unflushed += 1
                    tally.counted_since_read += 1
                admission = RateVerdict(tuple(Usage(tally.quota, tally.count, _resets_in_s(tally.window_end, now))
                                            for tally in tallies))
                self._start_flushing()
                return admission
        return self._admit_in_store(quotas, ids, now)

    def _admit_in_store(self, quotas: Sequence[Quota], ids: list[str], now: float) -> RateVerdict:
        """Add the request, and what the process counted of these counters and has not flushed, to the store, and
        judge the request on the store's counts."""
        with self._lock:
            taken = {counter_id: self._take_unflushed(counter_id) for counter_id in ids}
        try:
            self.counters.bulk_write([_raised(counter_id, 1 + taken[counter_id], quota.window_end(now))
                                      for quota, counter_id in zip(quotas, ids, strict=True)], ordered=False)
        except BaseException:
            with self._lock:
                self._give_back(taken)
            raise
        with self._lock:
            self._flushed(taken)
        read_at = time.monotonic()
        counts = {doc["_id"]: doc["count"] for doc in self.counters.find({"_id": {"$in": ids}}, {"count": 1})}
        admission = RateVerdict(tuple(
            Usage(quota, counts.get(counter_id, 1), _resets_in_s(quota.window_end(now), now))
            for quota, counter_id in zip(quotas, ids, strict=True)))
        if admission.refused_by:
            # A refused request uses up only the limits that refused it: a runaway client over its own limit
            # must not spend the limit its office's shared address has too.
            unspent = [UpdateOne({"_id": counter_id}, {"$inc": {"count": -1}})
                       for usage, counter_id in zip(admission.usages, ids, strict=True) if not usage.exceeded]
            if unspent:
                self.counters.bulk_write(unspent, ordered=False)
                for usage, counter_id in zip(admission.usages, ids, strict=True):
                    if not usage.exceeded:
                        counts[counter_id] -= 1
        with self._lock:
            for quota, counter_id in zip(quotas, ids, strict=True):
                tally = self._tallies.setdefault(counter_id, Tally(quota, quota.window_end(now), read_at))
                tally.read(counts.get(counter_id, 1), read_at)
        return admission

    # --- the process's counts -------------------------------------------------------------------------

    def flush(self) -> None:
        """Add what the process counted to the store, read those counters back (with the other processes'
        counts), and forget the counters whose window is over."""
        now = time.time()
        with self._lock:
            self._tallies = {counter_id: tally for counter_id, tally in self._tallies.items()
                             if tally.window_end > now or tally.unflushed}
            taken = {counter_id: self._take_unflushed(counter_id) for counter_id, tally in self._tallies.items()
                     if tally.unflushed}
            window_ends = {counter_id: self._tallies[counter_id].window_end for counter_id in taken}
        if not taken:
            return
        try:
            self.counters.bulk_write([_raised(counter_id, n, window_ends[counter_id])
                                      for counter_id, n in taken.items()], ordered=False)
        except BaseException:
            with self._lock:
                self._give_back(taken)
            raise
        with self._lock:
            self._flushed(taken)
        read_at = time.monotonic()
        counts = {doc["_id"]: doc["count"] for doc in self.counters.find({"_id": {"$in": list(taken)}}, {"count": 1})}
        with self._lock:
            for counter_id, count in counts.items():
                if (tally := self._tallies.get(counter_id)) is not None:
                    tally.read(count, read_at)

    def _take_unflushed(self, counter_id: str) -> int:
        tally = self._tallies.get(counter_id)
        if tally is None:
            return 0
        taken, tally.unflushed = tally.unflushed, 0
        tally.flushing += taken
        return taken

    def _flushed(self, taken: dict[str, int]) -> None:
        for counter_id, n in taken.items():
            if (tally := self._tallies.get(counter_id)) is not None:
                tally.flushing -= n
                tally.seen += n

    def _give_back(self, taken: dict[str, int]) -> None:
        for counter_id, n in taken.items():
            if (tally := self._tallies.get(counter_id)) is not None:
                tally.flushing -= n
                tally.unflushed += n

    def _start_flushing(self) -> None:
        """The flushing thread (its lock held), started by a request counted in the process: after a gunicorn
        fork, and again after a quiet spell in which it stopped."""
        if self._flusher is None and self.flush_every_s is not None:
            if not self._atexit_registered:
                atexit.register(self._flush_quietly)
                self._atexit_registered = True
            self._flusher = threading.Thread(target=self._flush_every, args=(self.flush_every_s,),
                                             name="rate-limit-flush", daemon=True)
            self._flusher.start()

    def _flush_every(self, interval_s: float) -> None:
        """Flush until everything counted has reached the store; a request counted later starts it again."""
        while True:
            time.sleep(interval_s)
            self._flush_quietly()
            with self._lock:
                if not any(tally.unflushed for tally in self._tallies.values()):
                    self._flusher = None
                    return

    def _flush_quietly(self) -> None:
        try:
            self.flush()
        except Exception as exc:  # kept and added at the next flush; meanwhile the process counts on
            log.warning("rate limit counts not flushed: their store does not answer",
                        extra={"error": f"{exc.__class__.__name__}: {exc}"})


def drop_ended_windows(counters: Collection, now: datetime) -> int:
    """Forget the windows that are over (every service's worker does, now and then)."""
    return counters.delete_many({EXPIRES_FIELD: {"$lt": now}}).deleted_count


def _raised(counter_id: str, by: int, window_end: float) -> UpdateOne:
    return UpdateOne({"_id": counter_id}, {"$inc": {"count": by},
                                           "$setOnInsert": {EXPIRES_FIELD: datetime.fromtimestamp(window_end, UTC)}},
                     upsert=True)


def _resets_in_s(window_end: float, now: float) -> int:
    return max(1, math.ceil(window_end - now))
