"""The demo city's reference data: departments, problem categories and grid cells.

Shipped as data files beside this module and loaded at start; a deployment replaces them by
pointing WOODPECKER_REFERENCE_DIR at a folder holding its own `departments.json`,
`categories.json` and `grids.geojson` (any file missing there falls back to the demo city's).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DEMO_DIR = Path(__file__).parent


@dataclass(frozen=True)
class Department:
    code: str
    name_zh: str
    name_en: str


@dataclass(frozen=True)
class Category:
    code: str
    name_zh: str
    name_en: str
    department: str | None
    deadline_hours: int | None
    urgent: bool


@dataclass(frozen=True)
class Grid:
    id: str
    name: str
    district: str
    district_name: str
    leader_id: str | None
    geometry: dict


@dataclass(frozen=True)
class ReferenceData:
    departments: dict[str, Department]
    categories: dict[str, Category]
    grids: dict[str, Grid]


class ReferenceDataError(ValueError):
    pass


def _read(directory: Path | None, name: str):
    path = directory / name if directory and (directory / name).exists() else DEMO_DIR / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReferenceDataError(f"cannot read reference file {path}: {exc}") from exc


def load(directory: str | None = None) -> ReferenceData:
    folder = Path(directory) if directory else None
    if folder and not folder.is_dir():
        raise ReferenceDataError(f"WOODPECKER_REFERENCE_DIR={directory} is not a folder")
    departments = {d["code"]: Department(**d) for d in _read(folder, "departments.json")["departments"]}
    categories = {c["code"]: Category(**c) for c in _read(folder, "categories.json")["categories"]}
    for category in categories.values():
        if category.department and category.department not in departments:
            raise ReferenceDataError(f"category {category.code} names unknown department {category.department}")
    grids = {}
    for feature in _read(folder, "grids.geojson")["features"]:
        props = feature["properties"]
        grids[props["id"]] = Grid(id=props["id"], name=props["name"], district=props["district"],
                                  district_name=props.get("district_name", props["district"]),
                                  leader_id=props.get("leader_id"), geometry=feature["geometry"])
    if not grids:
        raise ReferenceDataError("the grid file holds no grid cells")
    return ReferenceData(departments=departments, categories=categories, grids=grids)
