"""Zones: connected ground whose posterior for a disease passes the threshold, with extent and uncertainty.

A zone is what an agronomist walks to and a sprayer treats: a polygon, not a point. It is cut from
the evidence grid (payload/geo/grid.py) per disease class: 4-connected cells whose posterior for
the class is at least `threshold` (chosen for recall first: a false zone costs a walk, a missed
patch costs a field). Each zone carries its area, a centroid weighted by how far each cell's
probability passes the threshold (the patch's core pulls harder than its fringe), peak and mean
probability, look counts, the 1-sigma ellipse of that weighting and a position uncertainty that
adds the pose's error (`pose_sigma_m`) and the looks' own placement error (`place_sigma_m`: how sure
the looks that built it were of their place, payload/geo/placeerror.py) to the spread.

`ZoneBook` keeps zone identity across re-extractions, so the live alert goes out once per zone
even as the zone grows, and `payload export`, which replays the same schedule, gives the same ids.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from payload.geo.grid import EvidenceGrid, posterior


def mask_polygon(mask: np.ndarray, row0: int, col0: int, cell_m: float) -> BaseGeometry:
    """The exact outline (cell edges) of the True cells of a mask, in east/north metres.

    Built as the union of each row's runs of True cells, so the cost grows with the outline, not
    the area; row 0 of the mask is the southernmost row `row0`.
    """
    boxes = []
    m = np.asarray(mask, dtype=bool)
    for r in range(m.shape[0]):
        row = np.concatenate([[False], m[r], [False]])
        edges = np.flatnonzero(row[1:] != row[:-1])
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            boxes.append(shapely.box((col0 + a) * cell_m, (row0 + r) * cell_m,
                                     (col0 + b) * cell_m, (row0 + r + 1) * cell_m))
    if not boxes:
        return shapely.Polygon()
    return shapely.union_all(boxes)


@dataclass(slots=True)
class Zone:
    """One zone in the map's local east/north frame (the layers convert it to WGS84).

    The outline is held packed, as its WKB bytes (`outline`: exact, 16 bytes a vertex, no GEOS object
    alive between cuts), and `geometry_en` makes the shapely geometry when asked, the same one every
    time: a field full of zones kept a GEOS polygon of about 1.1 kB per zone alive for the whole
    flight, scattered through the heap. The constructor takes a geometry (or WKB bytes) as before.
    """

    label: str
    outline: bytes  # the east/north outline as WKB; given a shapely geometry, it is packed (__post_init__)
    area_m2: float
    centroid_en: tuple[float, float]
    peak_p: float
    mean_p: float
    looks_max: int
    looks_mean: float
    ellipse_m: tuple[float, float, float]  # 1-sigma semi-major, semi-minor (m), major axis bearing (deg from north)
    uncertainty_m: float
    cells: int
    id: str = ""
    place_sigma_m: float = 0.0  # the evidence-weighted rms placement error of the looks around it (m)

    def __post_init__(self) -> None:
        if not isinstance(self.outline, bytes):
            self.outline = shapely.to_wkb(self.outline)

    @property
    def geometry_en(self) -> BaseGeometry:
        """The outline as a shapely geometry in east/north metres (made from `outline` at each call)."""
        return shapely.from_wkb(self.outline)

    def as_dict(self) -> dict[str, Any]:
        """The zone's attributes as flat JSON-ready columns (no geometry)."""
        return {name: get(self) for name, get in ZONE_COLUMNS}


# A zone's attributes, in order: (name, value). One list for `Zone.as_dict` and the live snapshot, which
# builds them column by column (payload/geo/zonetable.py) rather than a dict per zone.
ZONE_COLUMNS: tuple[tuple[str, Callable[[Zone], Any]], ...] = (
    ("id", lambda z: z.id),
    ("label", lambda z: z.label),
    ("area_m2", lambda z: round(z.area_m2, 3)),
    ("peak_p", lambda z: round(z.peak_p, 4)),
    ("mean_p", lambda z: round(z.mean_p, 4)),
    ("looks_max", lambda z: z.looks_max),
    ("looks_mean", lambda z: round(z.looks_mean, 2)),
    ("ellipse_major_m", lambda z: round(z.ellipse_m[0], 3)),
    ("ellipse_minor_m", lambda z: round(z.ellipse_m[1], 3)),
    ("ellipse_bearing_deg", lambda z: round(z.ellipse_m[2], 1)),
    ("uncertainty_m", lambda z: round(z.uncertainty_m, 3)),
    ("place_sigma_m", lambda z: round(z.place_sigma_m, 3)),
    ("cells", lambda z: z.cells),
)


def _ellipse(e: np.ndarray, n: np.ndarray, w: np.ndarray, ce: float, cn: float) -> tuple[float, float, float]:
    de, dn = e - ce, n - cn
    sw = float(w.sum())
    cov = np.array([[np.sum(w * de * de), np.sum(w * de * dn)],
                    [np.sum(w * de * dn), np.sum(w * dn * dn)]]) / sw
    vals, vecs = np.linalg.eigh(cov)
    major = vecs[:, 1]
    bearing = math.degrees(math.atan2(major[0], major[1])) % 180.0
    return math.sqrt(max(vals[1], 0.0)), math.sqrt(max(vals[0], 0.0)), bearing


def group_cells(pose_sigma_m: float, cell_m: float) -> int:
    """How far a zone's pieces may be dilated (cells) to meet: pieces up to twice the pose error apart are one zone.

    Two footprints placed by poses each off by sigma can be off by about 1.4 sigma from each other,
    so pieces of a patch within 2 sigma cannot be told apart by the evidence: a sliver cut off a
    patch's edge by a row or three of undecided cells is part of that patch's zone, not a zone of
    its own to spray or walk to.
    """
    return max(0, round(pose_sigma_m / cell_m))


def _zone_groups(mask: np.ndarray, r: int) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Labels of the mask's cells grouped within r cells of each other, and each group's (x, y, w, h)."""
    near = mask if r == 0 else cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * r + 1, 2 * r + 1)))
    n_comp, comp, stats, _ = cv2.connectedComponentsWithStats(near, connectivity=4)
    return comp, [tuple(int(v) for v in stats[c, :4]) for c in range(1, int(n_comp))]  # type: ignore[misc]


def extract_zones(
    grid: EvidenceGrid,
    labels: Sequence[str],
    prior_logodds: float,
    threshold: float,
    min_area_m2: float,
    pose_sigma_m: float,
    outlines: dict[bytes, bytes] | None = None,
    place_sigma: Callable[[tuple[float, float, float, float]], float] | None = None,
) -> list[Zone]:
    """Every zone of the grid (without ids), in a deterministic order: by class, then south-west first.

    `outlines`, when given, keeps each zone's outline (WKB, `Zone.outline`) between calls keyed by its
    cells (one bytes object: the cell box's corner and shape, then the cells' bits): most zones of a big
    map do not change from one cut to the next, and tracing the outline is the costliest step. It is
    replaced by this call's outlines (so it holds one cut's worth). `place_sigma`, when given,
    answers the looks' placement error over a zone's bounds (min e, min n, max e, max n).
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    # p_k >= t needs prior + evidence_k >= logit(t): a cheap bound to skip chunks with no candidate
    min_ev = math.log(threshold / (1.0 - threshold)) - prior_logodds
    cell = grid.cell_m
    out: list[Zone] = []
    kept: dict[bytes, bytes] = {}
    for bounds in grid.chunk_groups(min_ev):
        r0, _r1, c0, _c1 = bounds
        ev, looks = grid.dense(bounds)
        post = posterior(ev, prior_logodds)
        for k, label in enumerate(labels):
            p = post[k + 1]
            mask = ((p >= threshold) & (looks > 0)).astype(np.uint8)
            if not mask.any():
                continue
            comp, boxes = _zone_groups(mask, group_cells(pose_sigma_m, cell))
            for c, (x, y, bw, bh) in enumerate(boxes, start=1):
                # work on the group's bounding box only: cost follows the zone, not the chunk group
                sel = (comp[y:y + bh, x:x + bw] == c) & (mask[y:y + bh, x:x + bw] > 0)
                cells = int(sel.sum())
                area = cells * cell * cell
                if area < min_area_m2:
                    continue
                pc = p[y:y + bh, x:x + bw][sel].astype(np.float64)
                rr, cc = np.nonzero(sel)
                e = (c0 + x + cc + 0.5) * cell
                n = (r0 + y + rr + 0.5) * cell
                w = pc - threshold + 1e-6
                ce, cn = float(np.sum(w * e) / w.sum()), float(np.sum(w * n) / w.sum())
                ell = _ellipse(e, n, w, ce, cn)
                lk = looks[y:y + bh, x:x + bw][sel].astype(np.float64)
                box = ((c0 + x) * cell, (r0 + y) * cell, (c0 + x + bw) * cell, (r0 + y + bh) * cell)
                placed = place_sigma(box) if place_sigma is not None else 0.0
                # the centroid is as good as the pose that placed the footprints and the looks' placement
                # error, plus the spread of the evidence over the number of independent looks that built it
                unc = math.sqrt(pose_sigma_m ** 2 + placed ** 2 + cell * cell / 12.0
                                + ell[0] ** 2 / max(1.0, float(lk.mean())))
                key = np.array([r0 + y, c0 + x, *sel.shape], dtype=np.int64).tobytes() + np.packbits(sel).tobytes()
                geom = outlines.get(key) if outlines is not None else None
                if geom is None:
                    geom = shapely.to_wkb(mask_polygon(sel, r0 + y, c0 + x, cell))
                kept[key] = geom
                out.append(Zone(label, geom, area, (ce, cn), float(pc.max()), float(pc.mean()), int(lk.max()),
                                float(lk.mean()), ell, unc, cells, place_sigma_m=placed))
    out.sort(key=lambda z: (list(labels).index(z.label), round(z.centroid_en[1], 6), round(z.centroid_en[0], 6)))
    if outlines is not None:
        outlines.clear()
        outlines.update(kept)
    return out


# A zone no cut has found for this many cuts is forgotten: its outline is dropped and only its
# bounding box is kept (ZoneBook). At the default `map.zones_every_frames` that is minutes of flight,
# longer than a pass's evidence takes to settle, so a zone that flickers between cuts keeps its outline.
FORGET_AFTER_CUTS = 20


@dataclass(slots=True)
class _Known:
    """A zone id the book holds with its last outline (WKB, the zone's own bytes), and the cut that last found it."""

    label: str
    id: str
    outline: bytes
    seen_cut: int


@dataclass
class ZoneBook:
    """Zone ids that last across re-extractions: a zone overlapping a known zone of its class keeps its id.

    Memory follows the zones alive, not every zone ever cut: a zone absent from `forget_after` cuts
    in a row is forgotten, keeping only its label, id and bounding box (40 bytes in arrays). A known
    zone's outline is its zone's WKB bytes (no shapely object between cuts: the geometries a cut
    searches are made at its start and dropped at its end). The id rule stays one rule: a zone takes
    the oldest id of its class whose last outline it touches; failing that, the oldest forgotten id
    of its class whose bounding box it touches (a patch refuted and later seen again is the same
    patch to the grower); failing that, a new id. Ids are never reused for another place, and
    `payload export`, which replays the same cuts, forgets and revives the same ids.
    """

    forget_after: int = FORGET_AFTER_CUTS
    known: list[_Known] = field(default_factory=list)
    _per_label: dict[str, int] = field(default_factory=dict)
    _cut: int = 0
    # forgotten zones: bounding boxes (N, 4) min e, min n, max e, max n; label and id as parallel lists
    _gone_box: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), dtype=np.float64))
    _gone_ids: list[tuple[str, str]] = field(default_factory=list)

    @property
    def forgotten(self) -> int:
        """How many ids the book holds as bounding boxes only."""
        return len(self._gone_ids)

    def assign(self, zones: Sequence[Zone]) -> list[Zone]:
        """Give every zone its id; returns the zones seen for the first time (to alert once).

        Highest peak first, each zone takes the oldest known id of its class whose last outline it
        touches and that no zone of this cut has taken yet, else a forgotten one (class docstring).
        The known outlines are searched through an R-tree, so a cut costs ~Z log Z, not Z x known: a
        noisy field keeps thousands of zones.
        """
        self._cut += 1
        new: list[Zone] = []
        used: set[str] = set()
        tree = shapely.STRtree(outline_geometries([k.outline for k in self.known])) if self.known else None
        geoms = outline_geometries([z.outline for z in zones])  # each zone's shapely outline, made once for this cut
        revived: list[_Known] = []  # joined to `known` after the cut: the R-tree's indices are the cut's start
        for zi in sorted(range(len(zones)), key=lambda i: -zones[i].peak_p):
            z, geom = zones[zi], geoms[zi]
            match: str | None = None
            if tree is not None:
                # candidates as of the cut's start (an id taken in this cut is `used`, so later outlines do not matter)
                for i in sorted(int(j) for j in tree.query(geom, predicate="intersects")):
                    k = self.known[i]
                    if k.label == z.label and k.id not in used:
                        match = k.id
                        k.outline, k.seen_cut = z.outline, self._cut
                        break
            if match is None:
                back = self._revive(z, geom)
                if back is not None:
                    revived.append(back)
                    match = back.id
            if match is None:
                n = self._per_label.get(z.label, 0) + 1
                self._per_label[z.label] = n
                match = f"{z.label}-{n}"
                self.known.append(_Known(z.label, match, z.outline, self._cut))
                new.append(z)
            z.id = match
            used.add(match)
        if revived:
            self.known += revived
            self.known.sort(key=lambda k: _id_order(k.id))  # oldest first within a class, as the search expects
        self._forget()
        return new

    def _revive(self, z: Zone, geom: BaseGeometry) -> _Known | None:
        """The oldest forgotten id of the zone's class whose bounding box the zone (outline `geom`) touches,
        out of the store."""
        if not self._gone_ids or geom.is_empty:
            return None
        e0, n0, e1, n1 = geom.bounds
        b = self._gone_box
        hit = np.flatnonzero((b[:, 0] <= e1) & (b[:, 2] >= e0) & (b[:, 1] <= n1) & (b[:, 3] >= n0))
        for i in sorted(hit.tolist(), key=lambda i: _id_order(self._gone_ids[i][1])):
            label, zid = self._gone_ids[i]
            if label == z.label:
                del self._gone_ids[i]
                self._gone_box = np.delete(self._gone_box, i, axis=0)
                return _Known(label, zid, z.outline, self._cut)
        return None

    def _forget(self) -> None:
        """Move the zones no cut has found for `forget_after` cuts to the bounding-box store."""
        stale = [k for k in self.known if self._cut - k.seen_cut >= self.forget_after]
        if not stale:
            return
        self.known = [k for k in self.known if self._cut - k.seen_cut < self.forget_after]
        boxes = np.array([g.bounds if not g.is_empty else (np.inf, np.inf, -np.inf, -np.inf)
                          for g in outline_geometries([k.outline for k in stale])], dtype=np.float64)
        self._gone_box = np.concatenate([self._gone_box, boxes])
        self._gone_ids += [(k.label, k.id) for k in stale]


def outline_geometries(outlines: Sequence[bytes]) -> list[BaseGeometry]:
    """Shapely geometries of many WKB outlines, in one call."""
    return list(shapely.from_wkb(np.array(outlines, dtype=object))) if len(outlines) else []


def _id_order(zid: str) -> int:
    """An id's age within its class (`rust-12` -> 12): lower is older."""
    return int(zid.rsplit("-", 1)[1])


def polygons(geom: BaseGeometry | None) -> list[shapely.Polygon]:
    """The polygons of a geometry, found however deep collections nest (empty and None: none)."""
    if geom is None or geom.is_empty:
        return []
    if isinstance(geom, shapely.Polygon):
        return [geom]
    return [g for part in getattr(geom, "geoms", []) for g in polygons(part)]
