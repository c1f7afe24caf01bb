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
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import geojson
import numpy as np

from payload.files.atomic import atomic_open
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


def _geojson_feature(f: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "Feature", "id": f["properties"].get("id"), "properties": f["properties"],
            "geometry": geojson_geometry(f["polygons"]) or _point(f)}


def stream_geojson(out: IO[str], features: Iterable[Mapping[str, Any]]) -> None:
    """An RFC 7946 FeatureCollection (no crs member: WGS84 lon, lat), written feature by feature.

    The bytes are `json.dumps` of the whole collection; only one feature's Python objects exist at a
    time (a layer of thousands of zones, rewritten in flight, must not build itself in memory first).
    """
    out.write('{"type": "FeatureCollection", "features": [')
    for i, f in enumerate(features):
        out.write((", " if i else "") + json.dumps(_geojson_feature(f), allow_nan=False))
    out.write("]}\n")


def features_geojson(features: Iterable[Mapping[str, Any]]) -> str:
    """An RFC 7946 FeatureCollection (no crs member: WGS84 lon, lat)."""
    buf = io.StringIO()
    stream_geojson(buf, features)
    return buf.getvalue()


def stream_kml(out: IO[str], features: Sequence[Mapping[str, Any]], name: str) -> None:
    """Polygons (with holes) as KML placemarks, a folder per label, attributes in the balloon; streamed."""
    labels = sorted({str(f["properties"].get("label", "")) for f in features})
    k = Kml(out)
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
    out.write("\n")


def features_kml(features: Sequence[Mapping[str, Any]], name: str) -> str:
    """Polygons (with holes) as KML placemarks, a folder per label, attributes in the balloon."""
    buf = io.StringIO()
    stream_kml(buf, features, name)
    return buf.getvalue()


def stream_csv(out: IO[str], features: Sequence[Mapping[str, Any]]) -> None:
    """The attributes, one row per feature (the centroid as lat, lon); two passes, one row in memory."""
    cols: list[str] = []
    seen: set[str] = set()
    for f in features:
        for c in f["properties"]:
            if c not in seen:
                seen.add(c)
                cols.append(c)
    w = csv.DictWriter(out, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for f in features:
        r = f["properties"]
        w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in cols})


def features_csv(features: Sequence[Mapping[str, Any]]) -> str:
    """The attributes, one row per feature (the centroid as lat, lon)."""
    buf = io.StringIO()
    stream_csv(buf, features)
    return buf.getvalue()


def write_features(out: Path, stem: str, features: Sequence[Mapping[str, Any]], formats: Sequence[str],
                   title: str) -> list[Path]:
    """`stem`.geojson / .kml / .csv (those in `formats`, in that order) from features, each replaced atomically.

    Streamed into the file (`features` is read once per pass, as a ZoneTable makes its feature dicts):
    the layer writer's thread rewrites zones.* in flight, and a whole layer built as Python objects
    first was a burst of small objects as large as every outline of the flight.
    """
    written = []
    for fmt, stream in (("geojson", lambda f: stream_geojson(f, features)),
                        ("kml", lambda f: stream_kml(f, features, title)),
                        ("csv", lambda f: stream_csv(f, features))):
        if fmt in formats:
            path = out / f"{stem}.{fmt}"
            with atomic_open(path) as f:
                stream(f)
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
