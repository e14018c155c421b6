"""What the rate limits cost a write, beside 1,000 and 50,000 other counters.

A write that a rate limit applies to costs RateLimiter.admit. Far from its limits it is counted in the process
(the process adds its counts to the store twice a second); a counter's first request in a process, and every
request near a limit, costs one bulk write raising the caller's and the address's counters and one read of both
(plus one more write when it is refused). Both are point operations on `_id`, so their cost should not grow
with the counters other callers and addresses hold; the second row (a caller over its limit) is always the
store's way.
For comparison it times flask-limiter's MongoDB storage (`limits`, not a dependency of ours: `pip install
'limits[mongodb]'` to see it), whose `find_one_and_update` the embedded database serves by scanning.

Each row is the median and 90th percentile of `--repeat` operations per size; the sizes take turns
operation by operation. It prints figures and asserts nothing.

    python -m bench.rate_limits [--sizes 1000,50000] [--repeat 300]
"""
from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pymongo

from bench.harness import bench_store
from shared.config import Rate
from shared.ratelimit import COLLECTION, WRITE, RateLimiter

WRITES, PER_ADDRESS = Rate(60, "minute"), Rate(600, "minute")


def filled(client: pymongo.MongoClient, size: int) -> str:
    """A database whose counters collection holds `size` windows of other callers, as a busy minute leaves."""
    name = f"bench_limits_{uuid.uuid4().hex[:8]}"
    limiter = RateLimiter(client[name][COLLECTION], writes=WRITES, uploads=None, per_address=PER_ADDRESS)
    limiter.prepare()
    expires = datetime.now(UTC) + timedelta(minutes=10)
    window = int(time.time() // 60)
    for start in range(0, size, 5_000):
        limiter.counters.insert_many([{"_id": f"writes|caller:other-{n}|60|{window}", "count": 3, "expires_at": expires}
                                      for n in range(start, min(size, start + 5_000))])
    return name


def writes_by(limiter: RateLimiter, who: Callable[[int], tuple[str, str]]) -> Callable[[int], object]:
    """The n-th write, by the caller and from the address `who(n)` names."""

    def write(n: int) -> object:
        caller, address = who(n)
        return limiter.admit(limiter.quotas(kind=WRITE, caller_id=caller, address=address))

    return write


def timings(operations: dict[int, Callable[[int], object]], repeat: int) -> dict[int, list[float]]:
    taken: dict[int, list[float]] = {size: [] for size in operations}
    for n in range(repeat):
        for size, operation in operations.items():
            started = time.perf_counter()
            operation(n)
            taken[size].append((time.perf_counter() - started) * 1000)
    return taken


def report(what: str, taken: dict[int, list[float]]) -> None:
    for size, ms in taken.items():
        ms.sort()
        print(f"  {what:<56} {size:>7,} counters: median {statistics.median(ms):6.2f} ms, "
              f"p90 {ms[int(len(ms) * 0.9)]:6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,50000")
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    with bench_store() as (mongo_url, store, _):
        print(f"Store: {store}")
        client = pymongo.MongoClient(mongo_url, tz_aware=True)
        names = {size: filled(client, size) for size in sizes}
        try:
            limiters = {size: RateLimiter(client[name][COLLECTION], writes=WRITES, uploads=None,
                                          per_address=PER_ADDRESS) for size, name in names.items()}
            # 20 callers behind 5 addresses take turns, as a busy office would.
            admitted = {size: writes_by(limiter, lambda n: (f"vol-{n % 20}", f"10.0.0.{n % 5}"))
                        for size, limiter in limiters.items()}
            report("admit: a write (caller + address), far from the limits", timings(admitted, args.repeat))
            over = {size: RateLimiter(limiter.counters, writes=Rate(1, "day"), uploads=None, per_address=PER_ADDRESS)
                    for size, limiter in limiters.items()}
            refused = {size: writes_by(limiter, lambda n: ("runaway", "10.0.1.1")) for size, limiter in over.items()}
            report("admit: a write over its caller's limit", timings(refused, args.repeat))
            compare_with_limits(mongo_url, names, args.repeat)
        finally:
            for name in names.values():
                client.drop_database(name)
            client.close()


def compare_with_limits(mongo_url: str, names: dict[int, str], repeat: int) -> None:
    try:
        from limits.storage import MongoDBStorage
    except ImportError:
        print("  (limits is not installed: `pip install 'limits[mongodb]'` to compare with its MongoDB storage)")
        return
    storages = {size: MongoDBStorage(mongo_url, database_name=name, counter_collection_name=COLLECTION)
                for size, name in names.items()}
    increments = {size: (lambda n, storage=storage: storage.incr(f"writes|caller:vol-{n % 20}", 60))
                  for size, storage in storages.items()}
    report("limits' MongoDBStorage.incr (one limit)", timings(increments, repeat))
    for storage in storages.values():
        storage.storage.close()


if __name__ == "__main__":
    main()
