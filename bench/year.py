"""A year of a city's reports, as intake stores them, for benches that need a realistic collection.

Loaded in bulk (insert_many) straight into intake's `reports` collection: most of them closed, spread
over the past year, the demo city's grid cells and categories, and a few hundred volunteers.
"""
from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta

from pymongo.collection import Collection

from services.intake.domain import CLOSED, IN_PROGRESS, SUBMITTED, GridMap
from shared import reference
from shared.events import utcnow

OPEN_SHARE = 0.05
VOLUNTEERS = 500
BATCH = 5_000


def spots(rng: random.Random, grids: GridMap, bounds: tuple[float, float, float, float]) -> Iterator[tuple]:
    """Random points inside the city's grid cells: (grid, lat, lng)."""
    min_lng, min_lat, max_lng, max_lat = bounds
    while True:
        lat, lng = round(rng.uniform(min_lat, max_lat), 6), round(rng.uniform(min_lng, max_lng), 6)
        if (grid := grids.locate(lat, lng)) is not None:
            yield grid, lat, lng


def reports(count: int, seed: int = 7, now: datetime | None = None) -> Iterator[dict]:
    """`count` stored reports, newest last, about 5 % still open."""
    from shapely.geometry import shape

    rng = random.Random(seed)
    now = now or utcnow()
    city = reference.load(None)
    categories = [c for c in city.categories.values() if c.department]
    shapes = [shape(g.geometry) for g in city.grids.values()]
    bounds = (min(s.bounds[0] for s in shapes), min(s.bounds[1] for s in shapes),
              max(s.bounds[2] for s in shapes), max(s.bounds[3] for s in shapes))
    places = spots(rng, GridMap(city.grids), bounds)
    for i in range(count):
        grid, lat, lng = next(places)
        category = rng.choice(categories)
        submitted = now - timedelta(days=365) * (1 - i / count) - timedelta(minutes=rng.random())
        is_open = rng.random() < OPEN_SHARE
        status = rng.choice((SUBMITTED, IN_PROGRESS)) if is_open else CLOSED
        report_id = f"year-{seed}-{i:07d}"
        yield {
            "_id": report_id, "reporter_id": f"bench-volunteer-{rng.randrange(VOLUNTEERS)}",
            "category": category.code, "description": "人行道上停放多辆机动车，影响通行",
            "location": {"lat": lat, "lng": lng, "address": None}, "grid_id": grid.id, "district": grid.district,
            "photo_ids": [f"photo-{report_id}"], "observed_at": submitted, "submitted_at": submitted,
            "patrol_id": None, "status": status, "open": is_open, "case_id": f"case-{report_id}",
            "department": None if status == SUBMITTED else category.department, "duplicate_of": None,
            "closed_at": None if is_open else submitted + timedelta(hours=rng.uniform(2, 72)),
            "after_photo_ids": [], "timeline": [{"at": submitted, "status": SUBMITTED, "note": "已提交，等待分派"}],
            "case_version": 0, "applied_events": [], "revision": 0, "request_fingerprint": "",
        }


def load(collection: Collection, documents: Iterator[dict], progress=lambda done: None) -> int:
    batch, done = [], 0
    for document in documents:
        batch.append(document)
        if len(batch) == BATCH:
            collection.insert_many(batch, ordered=False)
            done += len(batch)
            batch = []
            progress(done)
    if batch:
        collection.insert_many(batch, ordered=False)
        done += len(batch)
        progress(done)
    return done
