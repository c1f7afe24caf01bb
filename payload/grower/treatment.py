"""Treatment zones: the disease zones grown by an agronomic margin, one product per piece of ground.

Pure functions in the map's local east/north metres (payload/geo/frames.py); the writers convert to
WGS84. The rules, in order (docs/PRESCRIPTIONS.md says why):

1. **Margin.** Every disease zone (payload/geo/zones.py) is buffered by `margin_m`: a patch spreads
   beyond what the camera saw, and the zone's own position is uncertain by about a metre. A zone built
   from looks unsure of their place (banked, fast, a sparse telemetry stream: its `place_sigma_m`) is
   buffered by `PLACE_SIGMAS` times that more, so the sprayer still covers where the patch may be.
2. **Merge.** Buffered zones of one class that touch or overlap become one zone: a sprayer cannot
   usefully switch off for the metre between them.
3. **One product per ground.** Where zones of two classes overlap, the overlap goes to the class
   earlier in the priority (`prescription.priority`, default: higher rate first, then the model's
   class order) - except that a disease zone itself always keeps its own class, so every diseased
   patch gets the product for what it has; only margins are given away.
4. **Strict terminal.** With more zones than `terminal.max_zones`, the two nearest zones of a class
   are replaced by their convex hull (the sprayer then treats the ground between them) until the
   count fits, or, with `on_too_many: refuse`, a PrescriptionError names the option and the fix.
5. **Vertex budget.** Each cluster of touching zones is simplified as one coverage (shared borders
   stay shared: no gap or overlap appears between zones) with the smallest tolerance that brings
   every zone under `max_vertices`; the result must still cover every disease zone, or a smaller
   tolerance is used.

Rates come from `prescription.rates` per class (`default_rate` for a class not listed); ground
outside every treatment zone is 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from payload.errors import PrescriptionError
from payload.geo.zones import Zone, polygons
from payload.settings.prescription import PrescriptionSection

QUAD_SEGS = 8  # buffer arcs: 8 segments per quarter circle (a 5 m margin deviates < 4 cm from the true arc)
# A zone's extra margin in its looks' placement sigmas: a 2-D Gaussian error lies within 2 sigma 86 % of
# the time. margin_m already holds the metre of a level survey's pose error (map.pose_sigma_m).
PLACE_SIGMAS = 2.0
# simplification tolerances tried, in metres (about the square root of the triangles removed)
TOLERANCES_M = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0)


@dataclass
class TreatmentZone:
    """One zone of the prescription: a single polygon (holes allowed), its class, product rate and area."""

    id: str  # T1, T2, ... (the Shapefile's numeric ZONE field is the number)
    label: str  # the disease class whose product is applied
    code: int  # the class's number: 1 = the model's first disease class
    rate: float
    unit: str
    geometry_en: shapely.Polygon
    disease_zone_ids: tuple[str, ...] = ()  # the disease zones it treats (payload/geo/zones.py ids)
    merged: bool = False  # made by the strict-terminal merge

    @property
    def area_m2(self) -> float:
        return float(self.geometry_en.area)

    @property
    def area_ha(self) -> float:
        return self.area_m2 / 10_000.0

    @property
    def number(self) -> int:
        return int(self.id[1:])

    def as_dict(self) -> dict[str, Any]:
        """Flat JSON-ready attributes (no geometry): what treatment.geojson, the GeoPackage and the report carry.

        `class` (not the disease zones' `label`) is the name the field report and FMIS imports read: a
        treatment zone's class is the product applied, which near another class's zone is not always the
        disease found on every square metre of it."""
        return {
            "id": self.id,
            "class": self.label,
            "class_code": self.code,
            "rate": self.rate,
            "unit": self.unit,
            "area_m2": round(self.area_m2, 2),
            "area_ha": round(self.area_ha, 4),
            "vertices": vertex_count(self.geometry_en),
            "disease_zones": " ".join(self.disease_zone_ids),
            "merged": self.merged,
        }


@dataclass
class TreatmentPlan:
    """The treatment zones and what was done to make them fit (said in the log and prescription.json)."""

    zones: list[TreatmentZone]
    merges: int = 0
    simplify_tolerance_m: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def treated_m2(self) -> float:
        return float(sum(z.area_m2 for z in self.zones))


def vertex_count(geom: BaseGeometry) -> int:
    """Distinct vertices of a polygon's rings (the closing point is not counted)."""
    return sum(len(r.coords) - 1 for p in polygons(geom) for r in (p.exterior, *p.interiors))


def rate_of(label: str, cfg: PrescriptionSection) -> float:
    """The application rate of a class's zones."""
    return float(cfg.rates.get(label, cfg.default_rate))


def priority(labels: Sequence[str], cfg: PrescriptionSection) -> list[str]:
    """The classes in the order their products win where zones overlap."""
    listed = [c for c in cfg.priority if c in labels]
    rest = sorted((c for c in labels if c not in listed), key=lambda c: (-rate_of(c, cfg), list(labels).index(c)))
    return listed + rest


def check_classes(labels: Sequence[str], cfg: PrescriptionSection) -> None:
    """A rate or priority for a class the model does not have is a typo that would give a wrong dose: refuse it."""
    for option, names in (("rates", list(cfg.rates)), ("products", list(cfg.products)),
                          ("priority", list(cfg.priority))):
        unknown = [n for n in names if n not in labels]
        if unknown:
            raise PrescriptionError(
                f"prescription.{option} names {', '.join(map(repr, unknown))}, not a disease class of this model "
                f"({', '.join(labels)}); fix the spelling in the payload config")


def _nearest_pair(parts: Sequence[BaseGeometry]) -> tuple[int, int, float] | None:
    """The two parts closest to each other (indices, gap in metres), or None with fewer than two."""
    if len(parts) < 2:
        return None
    tree = shapely.STRtree(parts)
    (src, dst), dist = tree.query_nearest(parts, exclusive=True, return_distance=True, all_matches=False)
    k = int(np.argmin(dist))
    return int(src[k]), int(dst[k]), float(dist[k])


def _merge_nearest(parts: dict[str, list[BaseGeometry]]) -> tuple[str, float] | None:
    """Replace the nearest same-class pair by its convex hull (absorbing whatever else of the class it now
    overlaps); returns (class, gap) or None when no class has two parts."""
    best: tuple[float, str, int, int] | None = None
    for label, ps in parts.items():
        pair = _nearest_pair(ps)
        if pair is not None and (best is None or pair[2] < best[0]):
            best = (pair[2], label, pair[0], pair[1])
    if best is None:
        return None
    gap, label, i, j = best
    ps = parts[label]
    hull = shapely.union(ps[i], ps[j]).convex_hull
    rest = [p for k, p in enumerate(ps) if k not in (i, j)]
    touching = [p for p in rest if p.intersects(hull)]
    parts[label] = [p for p in rest if not p.intersects(hull)] + [shapely.union_all([hull, *touching])]
    return label, gap


def _resolve(parts: dict[str, list[BaseGeometry]], cores: dict[str, BaseGeometry], order: Sequence[str],
             min_m2: float) -> list[tuple[str, shapely.Polygon]]:
    """One class per piece of ground: each class in priority order takes its parts minus what earlier classes
    took and minus the later classes' disease zones; returned as single polygons, slivers dropped."""
    claimed: BaseGeometry = shapely.Polygon()
    out: list[tuple[str, shapely.Polygon]] = []
    for i, label in enumerate(order):
        later = shapely.union_all([cores[c] for c in order[i + 1:]])
        taken = []
        for part in parts.get(label, []):
            g = shapely.difference(shapely.difference(part, claimed), later)
            for poly in polygons(shapely.make_valid(g)):
                # a sliver where classes meet is dropped, never a piece holding diseased ground
                if poly.area >= min_m2 or poly.intersection(cores[label]).area > 0:
                    out.append((label, poly))
                    taken.append(poly)
        claimed = shapely.union_all([claimed, *taken])
    return out


def _clusters(polys: Sequence[shapely.Polygon]) -> list[list[int]]:
    """Indices of polygons grouped by touching (each group is simplified as one coverage)."""
    if not polys:
        return []
    tree = shapely.STRtree(polys)
    parent = list(range(len(polys)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    a, b = tree.query(polys, predicate="intersects")
    for i, j in zip(a.tolist(), b.tolist(), strict=True):
        parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(polys)):
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


def _simplify(polys: list[shapely.Polygon], cores: BaseGeometry, budget: int) -> tuple[list[shapely.Polygon], float]:
    """Each touching cluster simplified as a coverage with the smallest tolerance that fits the budget and still
    covers the disease zones; returns the polygons and the largest tolerance used."""
    out = list(polys)
    worst = 0.0
    for group in _clusters(polys):
        geoms = [polys[i] for i in group]
        if all(vertex_count(g) <= budget for g in geoms):
            continue
        must = shapely.intersection(cores, shapely.union_all(geoms))
        chosen: list[shapely.Polygon] | None = None
        for tol in TOLERANCES_M[1:]:
            simple = [_largest(g) for g in shapely.coverage_simplify(geoms, tol)]
            if not all(vertex_count(g) <= budget for g in simple):
                continue
            if shapely.union_all(simple).buffer(1e-6).covers(must):
                chosen, worst = simple, max(worst, tol)
                break
        if chosen is None:
            raise PrescriptionError(
                f"treatment zones cannot be drawn within prescription.max_vertices = {budget} vertices without "
                "uncovering a disease zone; raise max_vertices (terminals commonly take hundreds)")
        for i, g in zip(group, chosen, strict=True):
            out[i] = g
    return out, worst


def _largest(geom: BaseGeometry) -> shapely.Polygon:
    polys = polygons(shapely.make_valid(geom))
    return max(polys, key=lambda p: p.area) if polys else shapely.Polygon()


def zone_margin_m(zone: Zone, cfg: PrescriptionSection) -> float:
    """How far a disease zone is treated beyond its edge: the agronomic margin plus its looks' placement error."""
    return cfg.margin_m + PLACE_SIGMAS * zone.place_sigma_m


def _buffered(zones: Sequence[Zone], label: str, cfg: PrescriptionSection) -> list[BaseGeometry]:
    """The class's zones grown by their margins, touching ones merged."""
    return polygons(shapely.union_all([z.geometry_en.buffer(zone_margin_m(z, cfg), quad_segs=QUAD_SEGS)
                                       for z in zones if z.label == label]))


def plan_treatment(zones: Sequence[Zone], cfg: PrescriptionSection,
                   labels: Sequence[str] | None = None) -> TreatmentPlan:
    """The treatment zones of a map's disease zones (rules in the module docstring).

    `labels` are the model's disease classes in order (class codes and the default priority); by
    default the classes of `zones` in their order.
    """
    labels = list(labels) if labels is not None else list(dict.fromkeys(z.label for z in zones))
    check_classes(labels, cfg)
    order = priority(labels, cfg)
    cores = {c: shapely.union_all([z.geometry_en for z in zones if z.label == c]) for c in labels}
    parts = {c: _buffered(zones, c, cfg) for c in labels}
    plan = TreatmentPlan([])
    limit = cfg.terminal.max_zones
    while True:
        pieces = _resolve(parts, cores, order, cfg.min_zone_m2)
        if limit is None or len(pieces) <= limit:
            break
        if cfg.terminal.on_too_many == "refuse":
            raise PrescriptionError(
                f"{len(pieces)} treatment zones, more than prescription.terminal.max_zones = {limit}; no "
                "prescription written. Set prescription.terminal.on_too_many: merge (nearest zones are joined "
                "until they fit), raise max_zones if the terminal takes more, or raise margin_m so nearby "
                "zones touch and merge")
        merged = _merge_nearest(parts)
        if merged is None:
            raise PrescriptionError(
                f"{len(pieces)} treatment zones cannot be brought under prescription.terminal.max_zones = {limit}: "
                "each class is already one zone and a zone carries one product; raise max_zones")
        plan.merges += 1
        plan.notes.append(f"merged two {merged[0]} zones {merged[1]:.1f} m apart (terminal.max_zones = {limit})")
    polys, plan.simplify_tolerance_m = _simplify([p for _, p in pieces], shapely.union_all(list(cores.values())),
                                                 cfg.max_vertices)
    plain = {c: _buffered(zones, c, cfg) for c in labels}
    # south-west first within each class in priority order, so ids are stable for a given map
    rows = sorted(zip([c for c, _ in pieces], polys, strict=True),
                  key=lambda cp: (order.index(cp[0]), round(cp[1].centroid.y, 3), round(cp[1].centroid.x, 3)))
    for k, (label, poly) in enumerate(rows, start=1):
        treats = tuple(z.id for z in zones if z.id and z.geometry_en.intersection(poly).area > 0)
        slack = 2.0 * plan.simplify_tolerance_m + 1e-3  # simplification may push an outline out this far
        was_merged = not any(p.buffer(slack).covers(poly) for p in plain[label])
        plan.zones.append(TreatmentZone(f"T{k}", label, labels.index(label) + 1, rate_of(label, cfg), cfg.unit,
                                        poly, treats, was_merged and plan.merges > 0))
    return plan


def treatment_zones(zones: Sequence[Zone], cfg: PrescriptionSection,
                    labels: Sequence[str] | None = None) -> list[TreatmentZone]:
    """The treatment zones alone (see `plan_treatment`)."""
    return plan_treatment(zones, cfg, labels).zones
