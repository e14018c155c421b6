"""City-scale geometry: distances and the box a radius fits in (no geo operators needed in the store)."""
from __future__ import annotations

import math
from dataclasses import dataclass

EARTH_RADIUS_M = 6_371_008.8
# Two reports of one category this close are likely the same problem (DOMAIN: "within 250 m").
DUPLICATE_RADIUS_M = 250.0


def distance_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance (haversine); exact enough at city scale."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlmb = phi2 - phi1, math.radians(lng2 - lng1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


@dataclass(frozen=True)
class BoundingBox:
    min_lat: float
    max_lat: float
    min_lng: float
    max_lng: float


def box_around(lat: float, lng: float, radius_m: float) -> BoundingBox:
    """A box holding every point within `radius_m`: a cheap index-friendly pre-filter."""
    dlat = math.degrees(radius_m / EARTH_RADIUS_M)
    dlng = math.degrees(radius_m / (EARTH_RADIUS_M * max(math.cos(math.radians(lat)), 1e-6)))
    return BoundingBox(lat - dlat, lat + dlat, lng - dlng, lng + dlng)


def nearest_within(lat: float, lng: float, located: list[dict], radius_m: float = DUPLICATE_RADIUS_M) -> dict | None:
    """The item (with a `location` of lat, lng) nearest the point, if within `radius_m`."""
    best: tuple[float, dict] | None = None
    for item in located:
        d = distance_m(lat, lng, item["location"]["lat"], item["location"]["lng"])
        if d <= radius_m and (best is None or d < best[0]):
            best = (d, item)
    return best[1] if best else None


# Latitudes beyond this are outside any city the programme serves; the lattice is sized for them.
MAX_LATITUDE = 60.0


def _lattice_steps(radius_m: float) -> tuple[float, float]:
    """The lattice's spacing in degrees of latitude and longitude: at least `radius_m` along each axis up to
    MAX_LATITUDE, with a margin for rounding near the bounds."""
    step_lat = math.degrees(radius_m / EARTH_RADIUS_M) * 1.01
    return step_lat, step_lat / math.cos(math.radians(MAX_LATITUDE))


def neighbourhood_cells(lat: float, lng: float, radius_m: float = DUPLICATE_RADIUS_M) -> list[str]:
    """Four lattice cells such that any two points within `radius_m` of each other share at least one.

    The lattice's spacing is at least `radius_m` along each axis (up to MAX_LATITUDE), and a point
    takes the 2×2 block of cells around its nearest lattice vertex. Two points closer than one
    spacing along an axis have nearest vertices at most one step apart there, and blocks around
    vertices one step apart overlap; so points within `radius_m` (closer than that along each axis)
    always share a cell. Whatever must not happen twice for one place (opening a case for one
    problem) can therefore be serialised on these cells alone.
    """
    step_lat, step_lng = _lattice_steps(radius_m)
    row, column = math.floor(lat / step_lat + 0.5), math.floor(lng / step_lng + 0.5)
    return [f"{r}:{c}" for r in (row - 1, row) for c in (column - 1, column)]


def cell_of(lat: float, lng: float, radius_m: float = DUPLICATE_RADIUS_M) -> str:
    """The lattice cell the point lies in (the lattice of `neighbourhood_cells`)."""
    step_lat, step_lng = _lattice_steps(radius_m)
    return f"{math.floor(lat / step_lat)}:{math.floor(lng / step_lng)}"


def place_key(kind: str, lat: float, lng: float) -> str:
    """What a store keeps beside a located thing of `kind` (a category) so that looking for things of that kind
    near a point is a list of equalities (`keys_around`), which every store serves from one index."""
    return f"{kind}@{cell_of(lat, lng)}"


def place_key_of(located: dict) -> str:
    """The place key of a stored report or case: its category where it lies."""
    return place_key(located["category"], located["location"]["lat"], located["location"]["lng"])


def keys_around(kind: str, lat: float, lng: float) -> list[str]:
    """The place keys under which every thing of `kind` within DUPLICATE_RADIUS_M of the point is kept."""
    return [f"{kind}@{cell}" for cell in cells_around(lat, lng)]


def cells_around(lat: float, lng: float, radius_m: float = DUPLICATE_RADIUS_M) -> list[str]:
    """The 3×3 block of lattice cells around the point's own: every point within `radius_m` lies in one of
    them (the spacing is at least `radius_m`), so a lookup of these cells' keys finds everything nearby with
    one equality each, however many points a lookup asks about at once."""
    step_lat, step_lng = _lattice_steps(radius_m)
    row, column = math.floor(lat / step_lat), math.floor(lng / step_lng)
    return [f"{r}:{c}" for r in (row - 1, row, row + 1) for c in (column - 1, column, column + 1)]
