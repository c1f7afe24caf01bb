"""The field a grower draws (a GeoJSON polygon) and the lawnmower lines over it.

Lines run along the field's longest edge, as a grower's tractor rows usually do and as fewest
turns need; they are `spacing` apart, centred on the field (never wider than asked), and clipped
to the polygon, so every waypoint lies on or inside the field's boundary. Geometry is done in a
local East-North-Up frame (payload/geo/frames.py) whose origin is the south-west corner of the
field's bounding box: the flight simulator's field has its origin there too, and the vehicle
takes off from it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from shapely.geometry import LineString, Polygon
from shapely.ops import linemerge
from shapely.validation import explain_validity

from payload.errors import ConfigError
from payload.geo.frames import LocalFrame


@dataclass(frozen=True)
class Field:
    """The field polygon in a local ENU frame (metres) and that frame's geodetic origin."""

    frame: LocalFrame
    polygon: Polygon  # east, north metres
    source: str

    @property
    def area_ha(self) -> float:
        """The field's area in hectares."""
        return float(self.polygon.area) / 10000.0

    @property
    def extent_m(self) -> tuple[float, float]:
        """(east, north) size of the field's bounding box from the origin."""
        _, _, e, n = self.polygon.bounds
        return float(e), float(n)


def _polygon_coords(data: Any, source: str) -> list[list[list[float]]]:
    """The rings of the one polygon in a GeoJSON geometry, Feature or FeatureCollection."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: not a GeoJSON object; give a Polygon, a Feature or a FeatureCollection")
    kind = data.get("type")
    if kind == "FeatureCollection":
        feats = data.get("features") or []
        if len(feats) != 1:
            raise ConfigError(f"{source}: a FeatureCollection of {len(feats)} features; the field must be exactly "
                              "one polygon")
        return _polygon_coords(feats[0], source)
    if kind == "Feature":
        return _polygon_coords(data.get("geometry"), source)
    if kind == "Polygon":
        rings = data.get("coordinates")
        if not isinstance(rings, list) or not rings:
            raise ConfigError(f"{source}: the Polygon has no coordinates")
        return rings
    if kind == "MultiPolygon" and isinstance(data.get("coordinates"), list) and len(data["coordinates"]) == 1:
        return data["coordinates"][0]
    raise ConfigError(f"{source}: the field is a GeoJSON {kind!r}, not a polygon; draw the field as one Polygon "
                      "(lon, lat in WGS 84)")


def field_from_geojson(data: Any, source: str = "<field>") -> Field:
    """The field of a parsed GeoJSON object (ConfigError naming what is wrong and the fix)."""
    rings = _polygon_coords(data, source)
    try:
        ll = [np.asarray(r, dtype=float)[:, :2] for r in rings]
    except (ValueError, IndexError, TypeError):
        raise ConfigError(f"{source}: the polygon's coordinates are not [lon, lat] pairs") from None
    ext = ll[0]
    if len(ext) < 4:
        raise ConfigError(f"{source}: the polygon's outer ring has {len(ext)} positions; a closed ring needs at "
                          "least 4 (the first repeated last)")
    if not (np.all(np.abs(ext[:, 0]) <= 180) and np.all(np.abs(ext[:, 1]) <= 90)):
        raise ConfigError(f"{source}: positions must be [longitude, latitude] in degrees (GeoJSON's order)")
    frame = LocalFrame(float(ext[:, 1].min()), float(ext[:, 0].min()), 0.0)

    def local(r: np.ndarray) -> list[tuple[float, float]]:
        e, n, _ = frame.to_enu(r[:, 1], r[:, 0], 0.0)
        return list(zip(np.asarray(e, dtype=float).tolist(), np.asarray(n, dtype=float).tolist(), strict=True))

    poly = Polygon(local(ext), [local(h) for h in ll[1:]])
    if not poly.is_valid or poly.area < 1.0:
        why = explain_validity(poly) if not poly.is_valid else f"area {poly.area:.2f} m2"
        raise ConfigError(f"{source}: the field polygon is not usable ({why}); redraw it without self-crossings")
    return Field(frame, poly, source)


def load_field(path: str | Path) -> Field:
    """Read a field GeoJSON file."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: field file not found; pass a GeoJSON polygon") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{p}: not a readable GeoJSON file ({err})") from None
    return field_from_geojson(data, str(p))


def longest_edge_direction(poly: Polygon) -> np.ndarray:
    """Unit vector (east, north) along the outer ring's longest edge."""
    xy = np.asarray(poly.exterior.coords)
    d = np.diff(xy, axis=0)
    k = int(np.argmax(np.hypot(d[:, 0], d[:, 1])))
    return d[k] / math.hypot(*d[k])


def survey_lines(poly: Polygon, spacing_m: float) -> list[list[tuple[float, float]]]:
    """Lawnmower lines along the longest edge, clipped to the field: each a list of (east, north) ends in flight
    order (a line cut by a concave field gives several pieces, flown in order)."""
    if spacing_m <= 0:
        raise ValueError(f"line spacing must be positive, got {spacing_m}")
    u = longest_edge_direction(poly)
    nrm = np.array([-u[1], u[0]])
    xy = np.asarray(poly.exterior.coords)
    across = xy @ nrm
    a, b = float(across.min()), float(across.max())
    n = max(1, math.ceil((b - a) / spacing_m - 1e-9))
    step = (b - a) / n
    reach = float(np.ptp(xy @ u)) + 10.0
    mid_along = float((xy @ u).mean())
    lines: list[list[tuple[float, float]]] = []
    for i in range(n):
        c = a + step * (i + 0.5)
        p0 = c * nrm + (mid_along - reach) * u
        p1 = c * nrm + (mid_along + reach) * u
        cut = poly.intersection(LineString([tuple(p0), tuple(p1)]))
        parts = [g for g in getattr(cut, "geoms", [cut]) if isinstance(g, LineString) and g.length > 0.01]
        if len(parts) > 1:  # pieces that touch (a line along an inner edge) are one piece to fly
            merged = linemerge(parts)
            parts = [g for g in getattr(merged, "geoms", [merged]) if isinstance(g, LineString)]
        ends: list[tuple[float, float]] = []
        for g in sorted(parts, key=lambda g: min(np.asarray(g.coords) @ u)):
            q = sorted(((float(pt[0]), float(pt[1])) for pt in g.coords), key=lambda pt: float(np.dot(pt, u)))
            ends += [q[0], q[-1]]
        if ends:
            lines.append(ends if len(lines) % 2 == 0 else ends[::-1])
    return lines
