"""Rate limits per caller and per client address, counted where every process of a service sees them.

The counters live in the service's own database (MONGO_URL), so gunicorn's workers and a service's
replicas share one count. Each counter is a fixed window: one document per limit, key and window, whose
`_id` names all three. A request raises its counters with `update_one({_id}, {$inc}, upsert=True)` (one
bulk write) and reads them back with one `find({_id: {$in}})`: point operations on `_id` that MongoDB and
the embedded database both serve from the `_id` index, however many counters exist. (flask-limiter's
MongoDB storage, from `limits`, counts with `find_one_and_update`, which the embedded database serves by
scanning the collection: 47 ms a hit beside 3,000 counters, 736 ms beside 50,000, where this takes 3.5 ms
a write for both its counters at either size; `python -m bench.rate_limits`.) A TTL index drops each
window once it is over.
"""
from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pymongo
from pymongo import UpdateOne
from pymongo.collection import Collection

from shared.config import Rate, Settings

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
COLLECTION = "rate_limits"
# What each limit counts, for the problem's detail.
_COUNTED = {"writes": "writes", "uploads": "uploads", "address": "writes and uploads"}


@dataclass(frozen=True)
class Quota:
    """One limit as it applies to one request: `rate` for `key` ("caller:vol-1", "address:203.0.113.5")."""

    limit: str  # writes, uploads or address
    rate: Rate
    key: str

    def window_end(self, now: float) -> float:
        return (now // self.rate.period_s + 1) * self.rate.period_s

    def counter_id(self, now: float) -> str:
        return f"{self.limit}|{self.key}|{self.rate.period_s}|{int(now // self.rate.period_s)}"


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
class Admission:
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

    def __init__(self, counters: Collection, *, writes: Rate | None, uploads: Rate | None, per_address: Rate | None):
        self.counters = counters
        self.writes, self.uploads, self.per_address = writes, uploads, per_address

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        # A client of its own with short timeouts: when the store is away the limiter gives up within a
        # second and lets the request through (fail open) instead of holding it for pymongo's defaults.
        client = pymongo.MongoClient(settings.mongo_url, tz_aware=True, connect=False, serverSelectionTimeoutMS=500,
                                     connectTimeoutMS=500, socketTimeoutMS=3_000)
        return cls(client[settings.database][COLLECTION], writes=settings.rate_limit_writes,
                   uploads=settings.rate_limit_uploads, per_address=settings.rate_limit_per_ip)

    def prepare(self) -> None:
        """The TTL index that removes windows once they are over (windows are in `_id`, so a late removal
        costs space, never a wrong count)."""
        self.counters.create_index("expires_at", expireAfterSeconds=0)

    def applies(self, *, upload: bool) -> bool:
        return bool((self.uploads if upload else self.writes) or self.per_address)

    def quotas(self, *, upload: bool, caller_id: str | None, address: str) -> list[Quota]:
        """An upload counts against its caller's uploads limit, any other write against the writes limit, and
        both against the address's limit. Without a trusted caller the caller is its address."""
        limit, rate = ("uploads", self.uploads) if upload else ("writes", self.writes)
        quotas = []
        if rate:
            quotas.append(Quota(limit, rate, f"caller:{caller_id}" if caller_id else address_key(address)))
        if self.per_address:
            quotas.append(Quota("address", self.per_address, address_key(address)))
        return quotas

    def admit(self, quotas: Sequence[Quota]) -> Admission:
        """Count the request against each quota; raises PyMongoError when the store does not answer."""
        now = time.time()
        ids = [quota.counter_id(now) for quota in quotas]
        self.counters.bulk_write([UpdateOne({"_id": counter_id}, {
            "$inc": {"count": 1}, "$setOnInsert": {"expires_at": datetime.fromtimestamp(quota.window_end(now), UTC)},
        }, upsert=True) for quota, counter_id in zip(quotas, ids, strict=True)], ordered=False)
        counts = {doc["_id"]: doc["count"] for doc in self.counters.find({"_id": {"$in": ids}}, {"count": 1})}
        admission = Admission(tuple(
            Usage(quota, counts.get(counter_id, 1), max(1, math.ceil(quota.window_end(now) - now)))
            for quota, counter_id in zip(quotas, ids, strict=True)))
        if admission.refused_by:
            # A refused request uses up only the limits that refused it: a runaway client over its own limit
            # must not spend the limit its office's shared address has too.
            unspent = [UpdateOne({"_id": counter_id}, {"$inc": {"count": -1}})
                       for usage, counter_id in zip(admission.usages, ids, strict=True) if not usage.exceeded]
            if unspent:
                self.counters.bulk_write(unspent, ordered=False)
        return admission
