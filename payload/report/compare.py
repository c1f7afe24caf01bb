"""`payload compare OLD NEW --out D`: what changed in a field between two flights, as files and one page.

Both flights' look records are replayed through the same map code `payload export` uses
(payload/sinks/export.py `replay_map`), the newer one on the older one's origin, so the two evidence
grids share one lattice; payload/geo/change.py matches their zones. Written to D:

- changes.json: the totals per change and every group's attributes;
- changes.geojson: one polygon per group (the union of its old and new outlines) with a `change`
  attribute (new, grown, shrunk, gone, not_seen, same), WGS84 as every layer;
- compare.html: one self-contained page like report.html (inline SVG, inline CSS, no JavaScript).
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import shapely

from payload.errors import UserError
from payload.files.atomic import atomic_write_text
from payload.files.vector import write_features
from payload.geo.change import CHANGES, ChangeSummary, compare_zones
from payload.geo.diseasemap import DiseaseMap
from payload.geo.lonlat import geometries_lonlat
from payload.geo.zones import mask_polygon
from payload.report.html import CSS, scale_bar, svg_path
from payload.sinks.export import replay_map

CHANGES_JSON = "changes.json"
CHANGES_STEM = "changes"
COMPARE_HTML = "compare.html"

CHANGE_COLOURS = {"new": "#d32f2f", "grown": "#f57c00", "shrunk": "#1976d2", "gone": "#388e3c",
                  "not_seen": "#757575", "same": "#9e9e9e"}
CHANGE_WORDS = {"new": "new", "grown": "grown", "shrunk": "shrunk", "gone": "gone (seen healthy)",
                "not_seen": "not seen again", "same": "unchanged"}


class CompareError(UserError):
    """The two flights cannot be laid on one grid (no trusted look, other cell sizes)."""


@dataclass(frozen=True)
class Comparison:
    """The two finished maps (on one lattice) and what changed between them."""

    old: DiseaseMap
    new: DiseaseMap
    summary: ChangeSummary
    old_name: str
    new_name: str


def compare_folders(old_dir: str | Path, new_dir: str | Path) -> Comparison:
    """Replay both folders on the older one's origin and match their zones."""
    old = replay_map(old_dir)
    if old.origin is None:
        raise CompareError(f"{old_dir}: no trusted look, so the flight has no place on the ground to compare")
    new = replay_map(new_dir, old.origin)
    if old.grid.cell_m != new.grid.cell_m:
        raise CompareError(f"the flights' map cells differ ({old.grid.cell_m} m and {new.grid.cell_m} m): cell by "
                           "cell comparison needs one cell size; fly both with the same map.cell_m")
    if list(old.labels) != list(new.labels):
        raise CompareError(f"the flights' disease classes differ ({', '.join(old.labels)} and "
                           f"{', '.join(new.labels)}): their zones cannot be matched")
    summary = compare_zones(old.zones, new.zones, old.labels, new.grid)
    return Comparison(old, new, summary, Path(old_dir).name or str(old_dir), Path(new_dir).name or str(new_dir))


def change_features(c: Comparison) -> list[dict[str, Any]]:
    """The groups as layer features: attributes with `change`, WGS84 polygons."""
    assert c.old.origin is not None  # compare_folders refuses a map without one
    polys = geometries_lonlat([z.geometry_en for z in c.summary.changes], c.old.origin)
    return [{"properties": z.as_dict(), "polygons": p} for z, p in zip(c.summary.changes, polys, strict=True)]


def changes_json(c: Comparison) -> dict[str, Any]:
    """What changes.json holds: the flights, the totals and each group."""
    return {
        "old": {"folder": c.old_name, "zones": len(c.old.zones), "looks": c.old.counts.looks},
        "new": {"folder": c.new_name, "zones": len(c.new.zones), "looks": c.new.counts.looks},
        "origin": None if c.old.origin is None else {"lat": c.old.origin.lat0, "lon": c.old.origin.lon0},
        "cell_m": c.old.grid.cell_m,
        "changed": c.summary.changed,
        "counts": c.summary.counts,
        "area_m2": c.summary.area_m2,
        "changes": [z.as_dict() for z in c.summary.changes],
    }


def _coverage(dmap: DiseaseMap) -> Any:
    b = dmap.grid.extent()
    if b is None:
        return None
    _ev, looks = dmap.grid.dense(b)
    return mask_polygon(looks > 0, b[0], b[2], dmap.grid.cell_m)


def svg_changes(c: Comparison) -> str:
    """The two flights' coverage and zones and the change groups, north up, in the older map's metres."""
    covs = [(_coverage(c.old), "#dfe6d6", c.old_name), (_coverage(c.new), "#cfdcf0", c.new_name)]
    geoms = [g for g, _, _ in covs if g is not None and not g.is_empty]
    geoms += [z.geometry_en for z in c.summary.changes]
    if not geoms:
        return '<p class="none">Neither flight has a trusted look on the ground.</p>'
    w0, s0, e0, n0 = shapely.union_all(geoms).bounds
    w0, s0, e0, n0 = w0 - 5, s0 - 5, e0 + 5, n0 + 5
    w, h = e0 - w0, n0 - s0
    font = max(w, h) / 60
    parts = [f'<svg class="map" xmlns="http://www.w3.org/2000/svg" viewBox="{w0:.2f} {-n0:.2f} {w:.2f} {h:.2f}">']
    for cov, fill, name in covs:
        if cov is not None and not cov.is_empty:
            parts.append(f'<path d="{svg_path(cov)}" fill="{fill}" fill-opacity="0.6" fill-rule="evenodd" '
                         f'stroke="none"><title>seen by {html.escape(name)}</title></path>')
    for z in c.old.zones:
        parts.append(f'<path d="{svg_path(z.geometry_en)}" fill="none" stroke="#333" stroke-dasharray="4 3" '
                     f'vector-effect="non-scaling-stroke" fill-rule="evenodd"><title>{html.escape(z.id)} '
                     f'({html.escape(c.old_name)})</title></path>')
    for z in c.new.zones:
        parts.append(f'<path d="{svg_path(z.geometry_en)}" fill="#333" fill-opacity="0.25" stroke="#000" '
                     f'vector-effect="non-scaling-stroke" fill-rule="evenodd"><title>{html.escape(z.id)} '
                     f'({html.escape(c.new_name)})</title></path>')
    for g in c.summary.changes:
        if g.change == "same":
            continue
        colour = CHANGE_COLOURS[g.change]
        pt = g.geometry_en.centroid
        parts.append(f'<path class="change {g.change}" d="{svg_path(g.geometry_en)}" fill="{colour}" '
                     f'fill-opacity="0.35" stroke="{colour}" stroke-width="3" vector-effect="non-scaling-stroke" '
                     f'fill-rule="evenodd"><title>{g.id}: {g.label} {CHANGE_WORDS[g.change]}</title></path>')
        parts.append(f'<text class="zlabel" x="{pt.x:.2f}" y="{-pt.y:.2f}" font-size="{font:.2f}" '
                     f'fill="{colour}">{g.id}</text>')
    parts.append(scale_bar(w, w0, s0, font))
    parts.append("</svg>")
    return "".join(parts)


def _table(rows: Iterable[Sequence[Any]], head: Sequence[str]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def render_compare(c: Comparison) -> str:
    """compare.html: the headline, the map, the totals and the table of groups."""
    s = c.summary
    headline = ("No change: the same zones, within a fifth of their area." if not s.changed else
                ", ".join(f"{s.counts[k]} {CHANGE_WORDS[k]}" for k in CHANGES if s.counts[k] and k != "same"))
    legend = "".join(f'<span><i class="key" style="border-color:{CHANGE_COLOURS[k]};background:'
                     f'{CHANGE_COLOURS[k]}55"></i>{CHANGE_WORDS[k]}</span>' for k in CHANGES if k != "same")
    totals = _table(([CHANGE_WORDS[k], s.counts[k], f"{s.area_m2[k]:.1f}"] for k in CHANGES),
                    ["change", "zones", "area (m²)"])
    groups = _table(([g.id, g.label, CHANGE_WORDS[g.change], " ".join(g.old_ids) or "-", " ".join(g.new_ids) or "-",
                      f"{g.old_area_m2:.1f}", f"{g.new_area_m2:.1f}", f"{g.added_m2:.1f}", f"{g.removed_m2:.1f}"]
                     for g in s.changes),
                    ["group", "class", "change", f"zones in {c.old_name}", f"zones in {c.new_name}",
                     "old area (m²)", "new area (m²)", "added (m²)", "removed (m²)"])
    facts = _table([[c.old_name, len(c.old.zones), c.old.counts.looks], [c.new_name, len(c.new.zones),
                                                                          c.new.counts.looks]],
                   ["flight", "zones", "looks"])
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Change: {html.escape(c.old_name)} '
            f'to {html.escape(c.new_name)}</title><style>{CSS}</style></head><body>'
            f'<header><h1>What changed: {html.escape(c.old_name)} → {html.escape(c.new_name)}</h1>'
            f'<p id="headline">{html.escape(headline)}</p></header><main>'
            f'<h2>Map</h2><div class="legend">{legend}<span>dashed: zones of {html.escape(c.old_name)}; '
            f'grey: zones of {html.escape(c.new_name)}</span></div>{svg_changes(c)}'
            f'<h2>Totals</h2>{totals}<h2>Zones by change</h2>{groups}<h2>Flights</h2>{facts}'
            '<p>A zone is new, grown or shrunk only where its diseased area changed by more than a fifth '
            '(and two cells); gone only where the newer flight saw at least half of it.</p>'
            '</main><footer>cropscout payload compare</footer></body></html>\n')


def write_compare(c: Comparison, out: str | Path) -> list[Path]:
    """changes.json, changes.geojson and compare.html into `out` (each replaced atomically)."""
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target / CHANGES_JSON, json.dumps(changes_json(c), indent=2) + "\n")
    written = [target / CHANGES_JSON]
    written += write_features(target, CHANGES_STEM, change_features(c), ["geojson"], "cropscout changes")
    atomic_write_text(target / COMPARE_HTML, render_compare(c))
    written.append(target / COMPARE_HTML)
    return written


def compare_from_cli(old_dir: str, new_dir: str, out: str) -> int:
    """`payload compare OLD NEW --out D`: print the totals and the files written."""
    c = compare_folders(old_dir, new_dir)
    written = write_compare(c, out)
    s = c.summary
    print(f"compared {c.old_name} ({len(c.old.zones)} zones) with {c.new_name} ({len(c.new.zones)} zones): "
          + ", ".join(f"{s.counts[k]} {k}" for k in CHANGES))
    for p in written:
        print(f"  wrote {p}")
    return 0
