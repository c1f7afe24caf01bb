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

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from payload.files.atomic import atomic_write_text
from payload.files.geotiff import tangent_plane_crs, write_band
from payload.files.vector import write_features
from payload.geo.diseasemap import DiseaseMap, zone_features
from payload.geo.frames import LocalFrame
from payload.geo.lonlat import geometry_lonlat
from payload.geo.mapkind import ground_map
from payload.geo.zones import mask_polygon
from payload.settings.sinks import SinksSection
from payload.sinks.base import SinkBase, SinkContext, register_sink

log = logging.getLogger(__name__)

def write_zone_layers(out: Path, features: Sequence[Mapping[str, Any]], formats: Sequence[str]) -> list[Path]:
    """zones.geojson / .kml / .csv from zone features (atomic replaces)."""
    return write_features(out, "zones", features, formats, "cropscout disease zones")


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
    return tangent_plane_crs(origin.lat0, origin.lon0)


def write_rasters(out: Path, dmap: DiseaseMap) -> list[Path]:
    """probability_<class>.tif (float32, 0-1, nodata where never seen) and looks.tif (uint8), north up."""
    b, post, looks = dmap.probability()
    if b is None or dmap.origin is None:
        return []
    r0, r1, c0, _c1 = b
    cell = dmap.grid.cell_m
    crs = local_crs_wkt(dmap.origin)
    seen = looks > 0
    written = []
    for k, label in enumerate(dmap.labels):
        band = np.where(seen, post[k + 1], np.nan).astype(np.float32)[::-1]
        path = out / f"probability_{label}.tif"
        write_band(path, band, crs=crs, west=c0 * cell, north=r1 * cell, cell_m=cell, nodata=float("nan"),
                   description=f"posterior probability of {label}")
        written.append(path)
    path = out / "looks.tif"
    write_band(path, looks[::-1], crs=crs, west=c0 * cell, north=r1 * cell, cell_m=cell,
               description="looks (tiles covering at least half the cell), saturating at 15")
    written.append(path)
    return written


def write_map_products(out: Path, dmap: DiseaseMap, formats: Sequence[str], rasters: bool,
                       zones: bool = True) -> list[Path]:
    """Every map product of a finished map: zones (unless the layers sink writes them), coverage, rasters,
    map.json (the counts and settings)."""
    out.mkdir(parents=True, exist_ok=True)
    written = write_zone_layers(out, zone_features(dmap.zones, dmap.origin), formats) if zones else []
    cov = coverage_features(dmap)
    written += write_features(out, "coverage", cov, [f for f in formats if f != "csv"], "cropscout coverage")
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


@register_sink(70, key="sinks", settings=SinksSection)
class MapLayersSink(SinkBase):
    """The ground map's products at the end of the flight: zones (unless the layers sink writes them), coverage,
    GeoTIFF rasters and map.json. A failure is logged with its fix and re-raised once the other sinks closed."""

    name = "maplayers"

    def __init__(self, out_dir: Path, dmap: DiseaseMap, formats: Sequence[str], rasters: bool, zones: bool) -> None:
        self.out_dir = out_dir
        self.map = dmap
        self.formats = list(formats)
        self.rasters = rasters
        self.zones = zones

    @classmethod
    def from_context(cls, ctx: SinkContext) -> MapLayersSink | None:
        dmap = ground_map(ctx.map) if ctx.map is not None else None
        if dmap is None:
            return None
        # the layers sink, when there is one, writes the zones itself at close, from the final snapshot
        return cls(ctx.out_dir, dmap, ctx.settings(SinksSection).formats, ctx.cfg.map.rasters,
                   zones="layers" not in ctx.built)

    def on_close(self) -> None:
        try:
            write_map_products(self.out_dir, self.map, self.formats, self.rasters, zones=self.zones)
        except Exception:
            log.exception("could not finish the map; `payload export %s` rebuilds it from detections.jsonl",
                          self.out_dir)
            raise
