"""What a caller may see, stated once per service and used both to filter lists and to check one document.

A scope is a set of alternatives, each a flat equality filter (`{"grid_id": "lanshan-01"}`); a
document is visible when any alternative matches it, and everything is visible when there are none.
Flat filters are the shape every store serves from an index: a top-level `$or`/`$and` makes the
embedded database scan the whole collection.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Scope:
    alternatives: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def everything(cls) -> Scope:
        return cls()

    @classmethod
    def any_of(cls, *filters: Mapping[str, Any]) -> Scope:
        return cls(tuple(dict(f) for f in filters))

    @property
    def unlimited(self) -> bool:
        return not self.alternatives

    def admits(self, document: Mapping[str, Any]) -> bool:
        return self.unlimited or any(all(document.get(k) == v for k, v in alternative.items())
                                     for alternative in self.alternatives)

    def within(self, wanted: Mapping[str, Any]) -> list[dict[str, Any]]:
        """`wanted` (flat equalities) narrowed to each alternative: the filters to query, one per
        alternative that does not contradict it (none at all when every alternative does)."""
        if self.unlimited:
            return [dict(wanted)]
        narrowed = []
        for alternative in self.alternatives:
            if all(wanted.get(k, v) == v for k, v in alternative.items()):
                narrowed.append({**wanted, **alternative})
        return narrowed
