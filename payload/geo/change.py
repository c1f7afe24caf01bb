"""What changed between two flights of one field: the zones new, grown, shrunk and gone, with their areas.

Pure: two disease maps in, plain data out (no I/O). The maps must share one local frame (the same
origin and cell size: `payload compare` replays the newer flight's looks with the older one's origin,
so both grids lie on one lattice and a cell means the same ground in both).

The unit of change is a group of zones, not a single zone: per class, the old and new zones whose
outlines overlap are joined into one group (a patch that split in two, or two that merged, is one
change, not a "gone" and two "new"). A group with only new zones is `new`; with only old ones it is
`gone` when the new flight saw at least half of that ground, and `not_seen` otherwise (an unflown
strip is not a healed patch); with both it is `grown` or `shrunk` when its diseased area changed by
more than `tolerance` (a share of the larger area, and never less than two cells, so one cell flipping
at a zone's fringe is not news), else `same`. Areas added and removed are exact cell sets: the new
zones' outline minus the old ones', and the other way round.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from payload.geo.grid import EvidenceGrid
from payload.geo.zones import Zone

CHANGES = ("new", "grown", "shrunk", "gone", "not_seen", "same")
TOLERANCE = 0.2  # a group's area must change by more than this share of the larger area to be grown or shrunk
MIN_CHANGE_CELLS = 2  # ... and by more than this many cells
SEEN_SHARE = 0.5  # an old zone is gone only where the new flight saw at least this share of it


@dataclass
class ZoneChange:
    """One group of overlapping zones of a class across the two flights, and what happened to it."""

    label: str
    change: str
    old_ids: list[str]
    new_ids: list[str]
    old_area_m2: float
    new_area_m2: float
    added_m2: float
    removed_m2: float
    geometry_en: BaseGeometry  # the union of the old and new outlines (east/north metres)
    id: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Flat JSON-ready attributes (no geometry)."""
        return {
            "id": self.id, "label": self.label, "change": self.change,
            "old_ids": " ".join(self.old_ids), "new_ids": " ".join(self.new_ids),
            "old_area_m2": round(self.old_area_m2, 2), "new_area_m2": round(self.new_area_m2, 2),
            "added_m2": round(self.added_m2, 2), "removed_m2": round(self.removed_m2, 2),
        }


@dataclass
class ChangeSummary:
    """Every group's change and the totals the page and changes.json open with."""

    changes: list[ZoneChange]
    counts: dict[str, int] = field(default_factory=dict)
    area_m2: dict[str, float] = field(default_factory=dict)  # per change: the larger of the old and new areas

    @property
    def changed(self) -> bool:
        """Whether anything but `same` was found."""
        return any(c.change != "same" for c in self.changes)


def _groups(old: Sequence[Zone], new: Sequence[Zone]) -> list[tuple[list[Zone], list[Zone]]]:
    """Connected groups of one class's old and new zones under 'outlines intersect'."""
    zones = [*old, *new]
    parent = list(range(len(zones)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if old and new:
        tree = shapely.STRtree([z.geometry_en for z in old])
        for j, z in enumerate(new):
            for i in tree.query(z.geometry_en, predicate="intersects"):
                parent[root(len(old) + j)] = root(int(i))
    groups: dict[int, tuple[list[Zone], list[Zone]]] = {}
    for i, z in enumerate(zones):
        g = groups.setdefault(root(i), ([], []))
        (g[0] if i < len(old) else g[1]).append(z)
    return list(groups.values())


def seen_share(geom: BaseGeometry, grid: EvidenceGrid) -> float:
    """The share of a local outline's cells that a grid has looked at least once."""
    if geom.is_empty:
        return 0.0
    cell = grid.cell_m
    e0, n0, e1, n1 = geom.bounds
    b = (int(np.floor(n0 / cell)), int(np.ceil(n1 / cell)), int(np.floor(e0 / cell)), int(np.ceil(e1 / cell)))
    _ev, looks = grid.dense(b)
    rows, cols = np.mgrid[b[0]:b[1], b[2]:b[3]]
    centres = shapely.points((cols.ravel() + 0.5) * cell, (rows.ravel() + 0.5) * cell)
    inside = shapely.contains_xy(geom, shapely.get_x(centres), shapely.get_y(centres)).reshape(looks.shape)
    n = int(inside.sum())
    return float((looks[inside] > 0).sum()) / n if n else 0.0


def _classify(old_a: float, new_a: float, cell_m2: float, seen: float) -> str:
    if old_a == 0.0:
        return "new"
    if new_a == 0.0:
        return "gone" if seen >= SEEN_SHARE else "not_seen"
    delta = new_a - old_a
    if abs(delta) <= max(TOLERANCE * max(old_a, new_a), MIN_CHANGE_CELLS * cell_m2):
        return "same"
    return "grown" if delta > 0 else "shrunk"


def compare_zones(old: Sequence[Zone], new: Sequence[Zone], labels: Sequence[str], new_grid: EvidenceGrid,
                  ) -> ChangeSummary:
    """The change of every group of overlapping zones, per class; ids `change-1`... south-west first."""
    cell_m2 = new_grid.cell_m ** 2
    out: list[ZoneChange] = []
    for label in labels:
        for olds, news in _groups([z for z in old if z.label == label], [z for z in new if z.label == label]):
            g_old = shapely.union_all([z.geometry_en for z in olds]) if olds else shapely.Polygon()
            g_new = shapely.union_all([z.geometry_en for z in news]) if news else shapely.Polygon()
            old_a, new_a = float(g_old.area), float(g_new.area)
            seen = seen_share(g_old, new_grid) if olds and not news else 1.0
            out.append(ZoneChange(
                label, _classify(old_a, new_a, cell_m2, seen), [z.id for z in olds], [z.id for z in news],
                old_a, new_a, float(g_new.difference(g_old).area), float(g_old.difference(g_new).area),
                shapely.union(g_old, g_new)))
    out.sort(key=lambda c: (list(labels).index(c.label), round(c.geometry_en.centroid.y, 6),
                            round(c.geometry_en.centroid.x, 6)))
    for k, c in enumerate(out, start=1):
        c.id = f"change-{k}"
    counts = {name: sum(c.change == name for c in out) for name in CHANGES}
    area = {name: round(sum(max(c.old_area_m2, c.new_area_m2) for c in out if c.change == name), 2)
            for name in CHANGES}
    return ChangeSummary(out, counts, area)
