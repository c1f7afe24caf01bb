"""Outputs of an indoor flight in site terms: zones as JSON/CSV by rack, bay and shelf, and an SVG per rack face.

Indoors a grower walks to "rack B, bay 4, shelf 2", so the products say that, with the position
on the face in metres (along from the rack's start, up from the floor). A picture per rack face
(SVG: no plotting library on the drone, readable in any browser) shows the shelves and bays, every
trusted sighting on that face, and the zones. WGS84 layers are written by the layers sink only
when the local frame's origin is known (the layers sink drops GeoJSON/KML otherwise).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from payload.files.atomic import atomic_write_text
from payload.geo.facemap import FaceMap
from payload.geo.mapkind import face_map
from payload.geo.site import RackFace
from payload.sinks.base import SinkBase, SinkContext, register_sink
from payload.sinks.jsonl import DetectionsJsonl, iter_detections

log = logging.getLogger(__name__)

PX_PER_M = 120.0
_MARGIN = 40.0
_COLOURS = ("#d62728", "#1f77b4", "#9467bd", "#ff7f0e", "#8c564b")


def _colour(label: str, labels: Sequence[str]) -> str:
    return _COLOURS[list(labels).index(label) % len(_COLOURS)] if label in labels else "#555555"


def face_svg(face: RackFace, sightings: Iterable[Mapping[str, Any]], zones: Sequence[Mapping[str, Any]],
             labels: Sequence[str], polygons: Mapping[str, Any] | None = None) -> str:
    """One rack face as seen from its aisle: shelves, bays, sightings (dots) and zones (outlines, ids).

    Seen from the aisle, the rack's start is on the left for a right-hand face and on the right for a
    left-hand one; the picture keeps along increasing to the right and says which way it is drawn.
    """
    r = face.rack
    w, h = face.length_m * PX_PER_M, face.height_m * PX_PER_M

    def xy(a: float, u: float) -> tuple[float, float]:
        return _MARGIN + a * PX_PER_M, _MARGIN + h - u * PX_PER_M

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w + 2 * _MARGIN:.0f}" height="{h + 2 * _MARGIN + 20:.0f}" '
           f'font-family="sans-serif" font-size="11">',
           f'<text x="{_MARGIN}" y="16" font-size="13">rack {escape(r.name)} {face.side} face: along (m) from the '
           f'rack start to the right, up (m) from the floor</text>',
           f'<rect x="{_MARGIN}" y="{_MARGIN}" width="{w:.1f}" height="{h:.1f}" fill="#eef5e8" stroke="#333"/>']
    for k, hs in enumerate(r.shelf_heights_m, start=1):
        x0, y = xy(0.0, hs)
        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + w:.1f}" y2="{y:.1f}" stroke="#7a6a50" stroke-width="3"/>')
        out.append(f'<text x="{x0 - 34}" y="{y - 4:.1f}">shelf {k}</text>')
    for b in range(r.bays + 1):
        a = min(b * r.bay_width_m, face.length_m)
        x, y0 = xy(a, 0.0)
        out.append(f'<line x1="{x:.1f}" y1="{y0:.1f}" x2="{x:.1f}" y2="{y0 - h:.1f}" stroke="#999" '
                   'stroke-dasharray="4 3"/>')
        if b < r.bays:
            out.append(f'<text x="{x + 4:.1f}" y="{y0 + 14:.1f}">bay {b + 1}</text>')
    for d in sightings:
        s = d.get("site") or {}
        if s.get("face_id") != face.id or not d.get("trusted"):
            continue
        x, y = xy(float(s["along_m"]), float(s["up_m"]))
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{_colour(str(d.get("label")), labels)}" '
                   f'fill-opacity="0.6"/>')
    for z in zones:
        if z.get("face_id") != face.id:
            continue
        col = _colour(str(z["label"]), labels)
        poly = (polygons or {}).get(str(z["id"]))
        if poly is not None:
            for ring in poly:
                pts = " ".join(f"{xy(a, u)[0]:.1f},{xy(a, u)[1]:.1f}" for a, u in ring)
                out.append(f'<polygon points="{pts}" fill="{col}" fill-opacity="0.15" stroke="{col}" '
                           'stroke-width="2"/>')
        x, y = xy(float(z["along_m"]), float(z["up_m"]))
        out.append(f'<path d="M{x - 6:.1f},{y:.1f}h12M{x:.1f},{y - 6:.1f}v12" stroke="{col}" stroke-width="2"/>')
        out.append(f'<text x="{x + 8:.1f}" y="{y - 8:.1f}" fill="{col}">{escape(str(z["text"]))} '
                   f'(p {float(z["peak_p"]):.2f})</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _zone_rings(fmap: FaceMap) -> dict[str, Any]:
    """Each zone's outline on its face as rings of (along, up)."""
    rings: dict[str, Any] = {}
    for fz in fmap.zones:
        g = fz.zone.geometry_en
        polys = list(getattr(g, "geoms", [g]))
        rings[fz.id] = [list(p.exterior.coords) for p in polys if not p.is_empty]
    return rings


def write_site_products(out: Path, fmap: FaceMap, sightings: Iterable[Mapping[str, Any]]) -> list[Path]:
    """zones_site.json, zones_site.csv and face_<rack>_<side>.svg for every plant face; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    rows = fmap.zone_rows()
    written = []
    info = {"zones": rows, "looks": fmap.counts.looks, "looks_applied": fmap.counts.applied,
            "looks_untrusted": fmap.counts.untrusted, "cell_m": fmap.cfg.cell_m,
            "origin": None if fmap.origin is None else dict(zip(("lat", "lon", "alt"), fmap.origin, strict=True)),
            "faces": [f.id for f in fmap.faces if f.has_plants]}
    atomic_write_text(out / "zones_site.json", json.dumps(info, indent=2) + "\n")
    written.append(out / "zones_site.json")
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols or ["id"], lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in cols})
    atomic_write_text(out / "zones_site.csv", buf.getvalue())
    written.append(out / "zones_site.csv")
    dets = [d for d in sightings if d.get("site")]
    rings = _zone_rings(fmap)
    for f in fmap.faces:
        if not f.has_plants:
            continue
        path = out / f"face_{f.rack.name}_{f.side}.svg"
        atomic_write_text(path, face_svg(f, dets, rows, fmap.labels, rings))
        written.append(path)
    return written


@register_sink(80)
class SiteLayersSink(SinkBase):
    """An indoor run's products in site terms at the end of the flight (the rack-face map only), with the
    sightings read back from detections.jsonl."""

    name = "sitelayers"

    def __init__(self, out_dir: Path, fmap: FaceMap, detections: Path | None) -> None:
        self.out_dir = out_dir
        self.map = fmap
        self.detections = detections

    @classmethod
    def from_context(cls, ctx: SinkContext) -> SiteLayersSink | None:
        fmap = face_map(ctx.map) if ctx.map is not None else None
        if fmap is None:
            return None
        jsonl = ctx.built.get("jsonl")
        return cls(ctx.out_dir, fmap, jsonl.path if isinstance(jsonl, DetectionsJsonl) else None)

    def on_close(self) -> None:
        path = self.detections
        try:
            write_site_products(self.out_dir, self.map, iter_detections(path) if path and path.is_file() else [])
        except Exception:
            log.exception("could not finish the map; `payload export %s` rebuilds it from detections.jsonl",
                          self.out_dir)
            raise
