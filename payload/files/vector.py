"""Feature layers as files: GeoJSON (RFC 7946), KML and CSV, whole or streamed feature by feature.

A feature here is plain data: `{"properties": {...}, "polygons": [polygon][ring][point] = [lon, lat]}`
(and optionally `"point": [lon, lat]` when it has no polygon). A ring is a list of [lon, lat] pairs or
an (n, 2) array (the live zone snapshot keeps arrays: payload/geo/lonlat.py). Whole layers are
replaced atomically.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import geojson
import numpy as np

from payload.files.atomic import atomic_write_text
from payload.files.kml import LABEL_COLOURS, Kml

VECTOR_FORMATS = ("geojson", "kml", "csv")


Ring = Sequence[Sequence[float]] | np.ndarray


def ring_list(ring: Ring) -> list[list[float]]:
    """A ring as a list of [lon, lat] Python floats (JSON and KML print those, not numpy scalars)."""
    if isinstance(ring, np.ndarray):
        return ring.tolist()
    return [[float(x), float(y)] for x, y in ring]


def geojson_geometry(polys: Sequence[Sequence[Ring]]) -> dict[str, Any] | None:
    """RFC 7946 polygons as a Polygon, a MultiPolygon, or None when there are none."""
    if not polys:
        return None
    polys = [[ring_list(r) for r in rings] for rings in polys]
    if len(polys) == 1:
        return {"type": "Polygon", "coordinates": polys[0]}
    return {"type": "MultiPolygon", "coordinates": polys}


def _point(f: Mapping[str, Any]) -> dict[str, Any] | None:
    """A feature's WGS84 point (rack-face zones: payload/geo/facemap.py), when it has one."""
    pt = f.get("point")
    return None if not pt else {"type": "Point", "coordinates": [float(pt[0]), float(pt[1])]}


def features_geojson(features: Sequence[Mapping[str, Any]]) -> str:
    """An RFC 7946 FeatureCollection (no crs member: WGS84 lon, lat)."""
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": f["properties"].get("id"), "properties": f["properties"],
         "geometry": geojson_geometry(f["polygons"]) or _point(f)} for f in features]}
    return json.dumps(fc, allow_nan=False) + "\n"


def features_kml(features: Sequence[Mapping[str, Any]], name: str) -> str:
    """Polygons (with holes) as KML placemarks, a folder per label, attributes in the balloon."""
    labels = sorted({str(f["properties"].get("label", "")) for f in features})
    buf = io.StringIO()
    k = Kml(buf)
    k.begin_document(name)
    for i, lab in enumerate(labels):
        colour = LABEL_COLOURS[i % len(LABEL_COLOURS)]
        k.polygon_style(f"z{i}", colour, "55", width="2")
        k.start("Folder")
        k.leaf("name", lab or "coverage")
        for f in (f for f in features if str(f["properties"].get("label", "")) == lab):
            p = f["properties"]
            k.start("Placemark")
            k.leaf("name", str(p.get("id", lab)))
            k.leaf("styleUrl", f"#z{i}")
            k.extended_data(p.items())
            k.start("MultiGeometry")
            for rings in f["polygons"]:
                k.polygon([[(x, y) for x, y in ring_list(ring)] for ring in rings])
            k.end("MultiGeometry")
            k.end("Placemark")
        k.end("Folder")
    k.end_document()
    return buf.getvalue() + "\n"


def features_csv(features: Sequence[Mapping[str, Any]]) -> str:
    """The attributes, one row per feature (the centroid as lat, lon)."""
    rows = [f["properties"] for f in features]
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in cols})
    return buf.getvalue()


def write_features(out: Path, stem: str, features: Sequence[Mapping[str, Any]], formats: Sequence[str],
                   title: str) -> list[Path]:
    """`stem`.geojson / .kml / .csv (those in `formats`, in that order) from features, each replaced atomically."""
    written = []
    for fmt, text in (("geojson", lambda: features_geojson(features)),
                      ("kml", lambda: features_kml(features, title)),
                      ("csv", lambda: features_csv(features))):
        if fmt in formats:
            path = out / f"{stem}.{fmt}"
            atomic_write_text(path, text())
            written.append(path)
    return written


class FeatureStream:
    """A GeoJSON FeatureCollection written feature by feature (each checked), so no layer is held whole."""

    _HEAD = '{"type": "FeatureCollection", "features": ['
    _TAIL = "\n]}\n"

    def __init__(self, f: IO[str]) -> None:
        self.f = f
        self._first = True
        f.write(self._HEAD)

    def add(self, feature: geojson.Feature) -> None:
        if not feature.is_valid:
            raise ValueError(f"invalid GeoJSON feature {feature.get('id')}: {feature.errors()}")
        self.f.write("\n" if self._first else ",\n")
        self.f.write(geojson.dumps(feature, allow_nan=False))
        self._first = False

    def close(self) -> None:
        self.f.write(self._TAIL)
