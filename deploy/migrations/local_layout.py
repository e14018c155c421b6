"""`make up`'s one-off change of its own data layout: from one embedded database for every service to one each.

Not a database migration (deploy.migrations): it moves data between the embedded database servers `make up`
runs, before the services' migrations."""
from __future__ import annotations

import sys
from pathlib import Path

import pymongo
import pymongo.errors

from deploy.embedded_db import EmbeddedDatabase, EmbeddedDatabaseError, free_port
from shared.config import Settings


def move_shared_data(shared_before: Path, urls: dict[str, str], env: dict[str, str], log: Path) -> None:
    """Copy each service's database out of the one embedded database that served them all before (its data
    directly in .run/db/, which `make up` renamed to `shared_before`) into the service's own, once; the old data
    stays in `shared_before` until `make reset`. The marker file there records the move."""
    if not shared_before.exists():
        return
    marker = shared_before / "moved"
    if marker.exists():
        return
    print(f"  moving each service's data out of the embedded database all of them shared ({shared_before}) ...")
    shared = EmbeddedDatabase(shared_before, free_port(), log)
    try:
        shared.start()
    except EmbeddedDatabaseError as exc:
        sys.exit(f"Could not open the earlier embedded database in {shared_before} to move its data. {exc}")
    try:
        for service, url in urls.items():
            database = Settings.from_env(service, env).database
            copied = copy_database(shared.url, url, database)
            print(f"    {service}: {copied} documents of {database}")
    finally:
        shared.stop()
    marker.write_text("each service's database was copied into .run/db/<service>/\n")


def copy_database(source_url: str, target_url: str, name: str) -> int:
    """Every collection of database `name`, with its indexes, from one server to another; returns the documents."""
    source, target = pymongo.MongoClient(source_url), pymongo.MongoClient(target_url)
    copied = 0
    try:
        for collection in source[name].list_collection_names():
            into = target[name][collection]
            for index in source[name][collection].list_indexes():
                options = {k: v for k, v in index.items() if k not in ("key", "v", "ns")}
                if options["name"] != "_id_":
                    into.create_index(list(index["key"].items()), **options)
            batch = []
            for document in source[name][collection].find():
                batch.append(document)
                if len(batch) == 500:
                    copied += _insert_missing(into, batch)
                    batch = []
            copied += _insert_missing(into, batch)
    finally:
        source.close()
        target.close()
    return copied


def _insert_missing(collection, documents: list[dict]) -> int:
    """Insert what the collection lacks (a move cut short and run again copies only the rest)."""
    if not documents:
        return 0
    try:
        collection.insert_many(documents, ordered=False)
    except pymongo.errors.BulkWriteError as exc:
        if any(error["code"] != 11000 for error in exc.details["writeErrors"]):
            raise
        return exc.details["nInserted"]
    return len(documents)
