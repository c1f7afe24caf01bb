"""The scout list: ground a person should walk because the air could not decide it.

Two kinds, each with a point to walk to and a sentence saying why:
- **suspect**: ground whose posterior for a disease reaches `prescription.scout_threshold` but did
  not make a zone (below `map.zone_threshold`, or smaller than `map.min_zone_area_m2`): the same
  extraction as the zones (payload/geo/zones.py) at the lower threshold, less what overlaps a zone
  of its class. A zone is the map's confirmation, so everything left here is unconfirmed.
- **gap**: ground that no tile saw but that seen ground surrounds (a hole in the coverage: a missed
  pass, a dropped stretch of frames), at least `scout_min_gap_m2` and 2 m wide: the map says nothing
  there, which is not "healthy". Unseen ground at the edge of the flight is not listed: without the
  field's boundary it cannot be told from the neighbour's field (the flown survey's turns alone
  leave hundreds of square metres of such concavities on the default scenario).

Pure functions in local east/north metres.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import shapely
from shapely.geometry.base import BaseGeometry

from payload.geo.grid import EvidenceGrid
from payload.geo.zones import Zone, extract_zones
from payload.settings.map import MapSection
from payload.settings.prescription import PrescriptionSection

GAP_OPEN_M = 1.0  # gaps are opened by this radius: a strip narrower than 2 m between passes is not a walk


@dataclass
class ScoutItem:
    """One place to walk: where, how large, and why."""

    id: str  # S1, S2, ...
    kind: Literal["suspect", "gap"]
    label: str  # the suspected disease ("" for a gap)
    geometry_en: BaseGeometry
    point_en: tuple[float, float]  # inside the area: where to walk to
    peak_p: float | None
    why: str

    @property
    def area_m2(self) -> float:
        return float(self.geometry_en.area)

    def as_dict(self) -> dict[str, Any]:
        """Flat JSON-ready attributes (the writers add lat, lon of `point_en`)."""
        return {"id": self.id, "kind": self.kind, "label": self.label, "area_m2": round(self.area_m2, 2),
                "peak_p": None if self.peak_p is None else round(self.peak_p, 3), "why": self.why}


def walk_point(geom: BaseGeometry) -> tuple[float, float]:
    """The centroid when it lies inside the area (a C-shaped gap's does not), else a point that does."""
    c = geom.centroid
    p = c if geom.contains(c) else geom.point_on_surface()
    return float(p.x), float(p.y)


def suspect_zones(grid: EvidenceGrid, labels: Sequence[str], map_cfg: MapSection,
                  rx_cfg: PrescriptionSection) -> list[Zone]:
    """Connected ground at or above the scout threshold, per class (no ids; zones.py's extraction)."""
    threshold = min(rx_cfg.scout_threshold, map_cfg.zone_threshold)
    return extract_zones(grid, labels, map_cfg.prior_logodds, threshold, grid.cell_m ** 2, map_cfg.pose_sigma_m)


def flown_gaps(seen_en: BaseGeometry, min_m2: float) -> list[shapely.Polygon]:
    """The holes of the seen ground, opened by GAP_OPEN_M, at least min_m2, largest first."""
    polys = [seen_en] if isinstance(seen_en, shapely.Polygon) else list(getattr(seen_en, "geoms", []))
    holes = shapely.union_all([shapely.Polygon(r) for p in polys if isinstance(p, shapely.Polygon)
                               for r in p.interiors])
    if holes.is_empty:
        return []
    opened = holes.buffer(-GAP_OPEN_M).buffer(GAP_OPEN_M)
    parts = [g for g in getattr(opened, "geoms", [opened]) if isinstance(g, shapely.Polygon) and not g.is_empty]
    return sorted((g for g in parts if g.area >= min_m2), key=lambda g: -g.area)


def scout_list(suspects: Sequence[Zone], zones: Sequence[Zone], seen_en: BaseGeometry, map_cfg: MapSection,
               rx_cfg: PrescriptionSection) -> list[ScoutItem]:
    """Suspects (strongest first) then gaps (largest first), numbered S1, S2, ..."""
    items: list[ScoutItem] = []
    ranked = sorted(suspects, key=lambda z: -z.peak_p)
    for s in ranked:
        if any(z.label == s.label and z.geometry_en.intersection(s.geometry_en).area > 0 for z in zones):
            continue  # the fringe of a zone: the zone is already treated
        if s.peak_p >= map_cfg.zone_threshold:
            why = (f"{s.label} probability {s.peak_p:.2f} over only {s.area_m2:.1f} m2, under the zone minimum "
                   f"of {map_cfg.min_zone_area_m2:g} m2: look for a small patch")
        else:
            why = (f"{s.label} probability up to {s.peak_p:.2f}, under the zone threshold "
                   f"{map_cfg.zone_threshold:.2f}: not confirmed from the air, check the plants")
        items.append(ScoutItem("", "suspect", s.label, s.geometry_en, walk_point(s.geometry_en), s.peak_p, why))
    for g in flown_gaps(seen_en, rx_cfg.scout_min_gap_m2):
        items.append(ScoutItem("", "gap", "", g, walk_point(g), None,
                               f"{g.area:.0f} m2 inside the flown area that no camera tile saw: the map says "
                               "nothing here (not healthy); walk it or fly it again"))
    for k, it in enumerate(items, start=1):
        it.id = f"S{k}"
    return items
