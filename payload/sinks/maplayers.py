"""The map's products: zones and coverage as GeoJSON (RFC 7946) and KML polygons, and GeoTIFF rasters.

Written from a `DiseaseMap` at the end of a run and by `payload export` (the same function, the same
map, so the same files). Zones are polygons with their attributes (payload/geo/zones.py);
coverage is the ground seen at least once and at least `map.coverage_min_looks` times.

The rasters are in the map's own tangent plane: the grid is laid out in east/north metres from its
origin, which is exactly PROJ's ellipsoidal orthographic projection centred there (the ENU tangent
plane), so the GeoTIFF's CRS is that projection and every GIS reprojects it without resampling
surprises. rasterio (GDAL in its wheel) is imported only here, when rasters are written.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from payload.geo.diseasemap import DiseaseMap, zone_rows
from payload.geo.frames import LocalFrame
from payload.geo.zones import Zone, mask_polygon
from payload.sinks.layers import _LABEL_COLOURS, _Kml, atomic_write_text

log = logging.getLogger(__name__)

COORD_DECIMALS = 8


def _polygons(geom: BaseGeometry) -> list[shapely.Polygon]:
    if geom.is_empty:
        return []
    if isinstance(geom, shapely.Polygon):
        return [geom]
    return [g for g in getattr(geom, "geoms", []) if isinstance(g, shapely.Polygon)]


def _rings_lonlat(rings: Sequence[np.ndarray], origin: LocalFrame) -> list[list[list[float]]]:
    """Many east/north rings to [lon, lat] lists through ONE geodetic conversion.

    The conversion is elementwise, so one call over every vertex gives exactly the numbers a call per
    ring would; what it saves is the per-call overhead, which made the live zone snapshot of a field
    with hundreds of zones (a noisy model, widespread disease) cost more than the map update itself.
    """
    if not rings:
        return []
    en = np.concatenate([np.asarray(r, dtype=np.float64).reshape(-1, 2) for r in rings])
    lat, lon, _ = origin.to_geodetic(en[:, 0], en[:, 1], 0.0)
    lon_r = [round(v, COORD_DECIMALS) for v in np.asarray(lon, dtype=np.float64).tolist()]
    lat_r = [round(v, COORD_DECIMALS) for v in np.asarray(lat, dtype=np.float64).tolist()]
    out, k = [], 0
    for r in rings:
        n = len(r)
        out.append([[a, b] for a, b in zip(lon_r[k:k + n], lat_r[k:k + n], strict=True)])
        k += n
    return out


def _polygon_rings(geom: BaseGeometry) -> list[list[np.ndarray]]:
    """Per polygon, its exterior then its holes as east/north arrays; exteriors counter-clockwise."""
    # east/north and lon/lat have the same handedness: counter-clockwise here is counter-clockwise there
    return [[np.asarray(poly.exterior.coords, dtype=np.float64)]
            + [np.asarray(r.coords, dtype=np.float64) for r in poly.interiors]
            for poly in _polygons(shapely.orient_polygons(geom))]


def geometry_lonlat(geom: BaseGeometry, origin: LocalFrame) -> list[list[list[list[float]]]]:
    """A local geometry as RFC 7946 polygons: [polygon][ring][point] = [lon, lat]; exteriors counter-clockwise."""
    return geometries_lonlat([geom], origin)[0]


def geometries_lonlat(geoms: Sequence[BaseGeometry], origin: LocalFrame) -> list[list[list[list[list[float]]]]]:
    """`geometry_lonlat` of many geometries through one geodetic conversion."""
    polys = [_polygon_rings(g) for g in geoms]
    flat = [ring for p in polys for poly in p for ring in poly]
    conv = iter(_rings_lonlat(flat, origin))
    return [[[next(conv) for _ in poly] for poly in p] for p in polys]


def _geojson_geometry(polys: list[list[list[list[float]]]]) -> dict[str, Any] | None:
    if not polys:
        return None
    if len(polys) == 1:
        return {"type": "Polygon", "coordinates": polys[0]}
    return {"type": "MultiPolygon", "coordinates": polys}


def zone_features(zones: Sequence[Zone], origin: LocalFrame | None) -> list[dict[str, Any]]:
    """Zones as plain data (attributes + WGS84 polygons): what the layer writers and other threads take."""
    if origin is None:
        return []
    rows = zone_rows(zones, origin)
    polys = geometries_lonlat([z.geometry_en for z in zones], origin)
    return [{"properties": r, "polygons": p} for r, p in zip(rows, polys, strict=True)]


def _point(f: Mapping[str, Any]) -> dict[str, Any] | None:
    """A feature's WGS84 point (rack-face zones: payload/geo/facemap.py), when it has one."""
    pt = f.get("point")
    return None if not pt else {"type": "Point", "coordinates": [float(pt[0]), float(pt[1])]}


def features_geojson(features: Sequence[Mapping[str, Any]]) -> str:
    """An RFC 7946 FeatureCollection (no crs member: WGS84 lon, lat)."""
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": f["properties"].get("id"), "properties": f["properties"],
         "geometry": _geojson_geometry(f["polygons"]) or _point(f)} for f in features]}
    return json.dumps(fc, allow_nan=False) + "\n"


def features_kml(features: Sequence[Mapping[str, Any]], name: str) -> str:
    """Polygons (with holes) as KML placemarks, a folder per label, attributes in the balloon."""
    labels = sorted({str(f["properties"].get("label", "")) for f in features})
    buf = io.StringIO()
    k = _Kml(buf)
    k.g.startDocument()
    k.start("kml", xmlns="http://www.opengis.net/kml/2.2")
    k.start("Document")
    k.leaf("name", name)
    for i, lab in enumerate(labels):
        colour = _LABEL_COLOURS[i % len(_LABEL_COLOURS)]
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
                k.polygon([[(x, y) for x, y in ring] for ring in rings])
            k.end("MultiGeometry")
            k.end("Placemark")
        k.end("Folder")
    k.end("Document")
    k.end("kml")
    k.g.endDocument()
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


def write_zone_layers(out: Path, features: Sequence[Mapping[str, Any]], formats: Sequence[str]) -> list[Path]:
    """zones.geojson / .kml / .csv from zone features (atomic replaces)."""
    written = []
    for fmt, name, text in (("geojson", "zones.geojson", lambda: features_geojson(features)),
                            ("kml", "zones.kml", lambda: features_kml(features, "cropscout disease zones")),
                            ("csv", "zones.csv", lambda: features_csv(features))):
        if fmt in formats:
            atomic_write_text(out / name, text())
            written.append(out / name)
    return written


def coverage_features(dmap: DiseaseMap) -> list[dict[str, Any]]:
    """The ground seen at least once and at least coverage_min_looks times, as two polygon features."""
    b = dmap.grid.extent()
    if b is None or dmap.origin is None:
        return []
    _ev, looks = dmap.grid.dense(b)
    cell = dmap.grid.cell_m
    feats = []
    for n in sorted({1, dmap.cfg.coverage_min_looks}):
        geom = mask_polygon(looks >= n, b[0], b[2], cell)
        feats.append({"properties": {"id": f"seen_{n}", "label": f"seen at least {n}x", "min_looks": n,
                                     "area_m2": round(float(geom.area), 2)},
                      "polygons": geometry_lonlat(geom, dmap.origin)})
    return feats


def local_crs_wkt(origin: LocalFrame) -> str:
    """The map's tangent plane as a PROJ string (ellipsoidal orthographic = local east/north)."""
    return (f"+proj=ortho +lat_0={origin.lat0!r} +lon_0={origin.lon0!r} +x_0=0 +y_0=0 +ellps=WGS84 "
            "+units=m +no_defs")


def write_rasters(out: Path, dmap: DiseaseMap) -> list[Path]:
    """probability_<class>.tif (float32, 0-1, nodata where never seen) and looks.tif (uint8), north up."""
    import rasterio
    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    b, post, looks = dmap.probability()
    if b is None or dmap.origin is None:
        return []
    r0, r1, c0, _c1 = b
    cell = dmap.grid.cell_m
    transform = from_origin(c0 * cell, r1 * cell, cell, cell)
    crs = CRS.from_proj4(local_crs_wkt(dmap.origin))
    seen = looks > 0
    written = []
    for k, label in enumerate(dmap.labels):
        band = np.where(seen, post[k + 1], np.nan).astype(np.float32)[::-1]
        path = out / f"probability_{label}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=band.shape[1], height=band.shape[0], count=1,
                           dtype="float32", crs=crs, transform=transform, nodata=float("nan"),
                           compress="deflate") as dst:
            dst.write(band, 1)
            dst.set_band_description(1, f"posterior probability of {label}")
        written.append(path)
    path = out / "looks.tif"
    with rasterio.open(path, "w", driver="GTiff", width=looks.shape[1], height=looks.shape[0], count=1,
                       dtype="uint8", crs=crs, transform=transform, compress="deflate") as dst:
        dst.write(looks[::-1], 1)
        dst.set_band_description(1, "looks (tiles covering at least half the cell), saturating at 15")
    written.append(path)
    return written


def write_map_products(out: Path, dmap: DiseaseMap, formats: Sequence[str], rasters: bool,
                       zones: bool = True) -> list[Path]:
    """Every map product of a finished map: zones (unless the layers sink writes them), coverage, rasters,
    map.json (the counts and settings)."""
    out.mkdir(parents=True, exist_ok=True)
    written = write_zone_layers(out, zone_features(dmap.zones, dmap.origin), formats) if zones else []
    cov = coverage_features(dmap)
    if "geojson" in formats:
        atomic_write_text(out / "coverage.geojson", features_geojson(cov))
        written.append(out / "coverage.geojson")
    if "kml" in formats:
        atomic_write_text(out / "coverage.kml", features_kml(cov, "cropscout coverage"))
        written.append(out / "coverage.kml")
    if rasters:
        try:
            written += write_rasters(out, dmap)
        except ImportError as err:
            log.warning("GeoTIFF rasters not written (%s); `payload export` on a machine with rasterio writes them",
                        err)
    info = {
        "origin": None if dmap.origin is None else {"lat": dmap.origin.lat0, "lon": dmap.origin.lon0},
        "cell_m": dmap.grid.cell_m,
        "crs": None if dmap.origin is None else local_crs_wkt(dmap.origin),
        "sensor_model": dmap.sensor.to_dict(),
        "looks": dmap.counts.looks,
        "looks_applied": dmap.counts.applied,
        "looks_untrusted": dmap.counts.untrusted,
        "grid_bytes": dmap.grid.nbytes,
        "zones": len(dmap.zones),
        "coverage_m2": {f["properties"]["id"]: f["properties"]["area_m2"] for f in cov},
    }
    atomic_write_text(out / "map.json", json.dumps(info, indent=2) + "\n")
    written.append(out / "map.json")
    return written
