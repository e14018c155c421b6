"""What a written document costs the store, by how many indexes its collection has.

Intake's `reports` has 17 indexes and routing's `cases` 16: each list of issue 6 is served from an index of its
own. This bench writes the same documents into two collections that differ only in their indexes, one with as
many as `reports` and one with three, and prints for each operation the store's CPU time per document (from
/proc, the embedded database's process; MongoDB's server is not on this machine, so with MONGO_URL it prints
the client's wall time instead) and the difference per index. The collections take turns operation by
operation, so whatever else the machine does weighs on both alike. It prints figures and asserts nothing.

    python -m bench.index_cost [--documents 1000] [--indexes 3,17]
"""
from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pymongo
from pymongo import ASCENDING, DESCENDING
from pymongo.collection import Collection

from bench.cpu import group_cpu_s, process_group
from bench.harness import bench_store


def document(n: int, fields: int) -> dict:
    """A report-sized document with a value for every field an index may cover."""
    at = datetime(2026, 3, 1, tzinfo=UTC) + timedelta(seconds=n)
    return {"_id": uuid.uuid4().hex, "at": at, "status": "submitted", "open": True, "note": "占道经营，" * 20,
            **{f"key{i}": f"value-{n % (i + 7)}" for i in range(fields)}}


def indexed(collection: Collection, indexes: int, fields: int) -> Collection:
    """`indexes` in all, `_id` counted: compound ones of a key and the time, newest first, like the lists'."""
    for i in range(indexes - 1):
        collection.create_index([(f"key{i % fields}", ASCENDING), ("status", ASCENDING), ("at", DESCENDING)],
                                name=f"list-{i}")
    return collection


class Clock:
    """The store's CPU seconds when it is the embedded database of this bench; else the wall clock."""

    def __init__(self, server_pid: int | None):
        self.group = process_group(server_pid) if server_pid else None
        self.what = "the store's CPU" if self.group else "wall time at the client"

    def now(self) -> float:
        return group_cpu_s({"store": self.group})["store"] if self.group else time.perf_counter()


def per_document(clock: Clock, collections: dict[int, Collection], documents: int,
                 operation: Callable[[Collection, int], object]) -> dict[int, float]:
    """Milliseconds per document of `operation` on each collection, taking turns in chunks of 100."""
    spent = dict.fromkeys(collections, 0.0)
    for start in range(0, documents, 100):
        for indexes, collection in collections.items():
            before = clock.now()
            for n in range(start, min(start + 100, documents)):
                operation(collection, n)
            spent[indexes] += clock.now() - before
    return {indexes: seconds * 1000 / documents for indexes, seconds in spent.items()}


def insert_cost_ms(mongo_url: str, server_pid: int, documents: int = 300) -> float:
    """How fast this machine runs the embedded database: the store's CPU per `insert_one` into a collection of
    three indexes (other benches print it beside their figures, which move with it)."""
    client = pymongo.MongoClient(mongo_url, tz_aware=True)
    database = client[f"bench_machine_speed_{uuid.uuid4().hex[:8]}"]
    try:
        collections = {3: indexed(database["indexes_3"], 3, 3)}
        return per_document(Clock(server_pid), collections, documents, lambda c, n: c.insert_one(document(n, 3)))[3]
    finally:
        client.drop_database(database.name)
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--indexes", default="3,17", help="index counts to compare, _id included")
    args = parser.parse_args()
    counts = [int(count) for count in args.indexes.split(",")]
    fields = max(counts)
    with bench_store() as (mongo_url, store, server_pid):
        clock = Clock(server_pid)
        print(f"store: {store}; figures: {clock.what}, ms per document, {args.documents} documents")
        client = pymongo.MongoClient(mongo_url, tz_aware=True)
        database = client[f"bench_index_cost_{uuid.uuid4().hex[:8]}"]
        try:
            collections = {count: indexed(database[f"indexes_{count}"], count, fields) for count in counts}
            ids: dict[str, list[str]] = {collection.name: [] for collection in collections.values()}

            def insert(collection: Collection, n: int) -> None:
                written = document(n, fields)
                collection.insert_one(written)
                ids[collection.name].append(written["_id"])

            def id_of(collection: Collection, n: int) -> str:
                return ids[collection.name][n]

            operations: dict[str, Callable[[Collection, int], object]] = {
                "insert_one": insert,
                "find_one by _id": lambda c, n: c.find_one({"_id": id_of(c, n)}),
                "update_one by _id, one unindexed field": lambda c, n: c.update_one(
                    {"_id": id_of(c, n)}, {"$set": {"note": "已整改"}}),
                "update_one by _id, the status every index covers": lambda c, n: c.update_one(
                    {"_id": id_of(c, n)}, {"$set": {"status": "dispatched"}}),
            }
            print(f"  {'operation':<52}" + "".join(f"{f'{count} indexes':>12}" for count in counts)
                  + f"{'per index':>12}")
            for name, operation in operations.items():
                costs = per_document(clock, collections, args.documents, operation)
                low, high = counts[0], counts[-1]
                slope = (costs[high] - costs[low]) / (high - low) if high != low else 0.0
                print(f"  {name:<52}" + "".join(f"{costs[count]:>12.2f}" for count in counts) + f"{slope:>12.3f}")
        finally:
            client.drop_database(database.name)
            client.close()


if __name__ == "__main__":
    main()
