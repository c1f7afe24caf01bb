"""The hill mission's terrain on the payload's side: the DEM it is given, and the flat-assumption contrast.

`write_scenario_dem` writes the scenario's terrain as a grower would hand it over: a GeoTIFF in the
origin's UTM zone (or the scenario's `dem_crs`), heights in metres above mean sea level, pixels of
`dem_cell_m`. The payload reads it with rasterio and resamples it into its own frame
(payload/geo/terrain.py), so nothing of the simulator's grid leaks into the payload.

`flat_assumption` answers "what would the flat-ground assumption have made of the same flight": every
look's tile footprint corner lies on the DEM on the ray from the camera (the vehicle position in the
look record), so the ray is known without the attitude, and is cut again with flat ground at home
altitude, in the tangent plane under the camera as the payload's flat path does. The re-projected
looks go through `payload export` (the same disease map) into a folder of their own and are scored
like the flight: the same frames and classifier calls, only the ground differs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from flight_sim.scenario import Scenario
from flight_sim.terrain import dem_altitudes, extent_m, scenario_frame, utm_epsg
from payload.demfile import write_dem
from payload.files.jsonl import iter_jsonl
from payload.geo.diseasemap import is_look
from payload.geo.frames import LocalFrame
from payload.geo.surface import HeightField
from payload.geo.terrain import load_dem_surface
from payload.sinks.export import export_layers

DEM_FILE = "terrain_dem.tif"
FLAT_DIR = "flat_assumption"


def write_scenario_dem(s: Scenario, path: Path) -> Path:
    """The scenario's terrain as a north-up GeoTIFF of altitudes above mean sea level, covering field + margin."""
    assert s.terrain is not None
    t = s.terrain
    crs = utm_epsg(s.origin.lat, s.origin.lon) if t.dem_crs == "utm" else t.dem_crs
    fr = scenario_frame(s)
    w, e, so, n = extent_m(s)
    corners_e = np.array([w, e, e, w])
    corners_n = np.array([n, n, so, so])
    lat, lon, _ = fr.to_geodetic(corners_e, corners_n, 0.0)
    from rasterio.warp import transform

    xs, ys = transform("EPSG:4326", crs, np.asarray(lon).tolist(), np.asarray(lat).tolist())
    cell = t.dem_cell_m
    # the raster covers the ENU extent's box in the DEM CRS, snapped outwards to whole pixels
    x0 = math.floor(min(xs) / cell) * cell
    y0 = math.ceil(max(ys) / cell) * cell
    cols = math.ceil((max(xs) - x0) / cell)
    rows = math.ceil((y0 - min(ys)) / cell)
    cx = x0 + (np.arange(cols) + 0.5) * cell
    cy = y0 - (np.arange(rows) + 0.5) * cell
    gx, gy = np.meshgrid(cx, cy)
    glon, glat = transform(crs, "EPSG:4326", gx.ravel().tolist(), gy.ravel().tolist())
    alt = dem_altitudes(s, np.asarray(glat), np.asarray(glon)).reshape(rows, cols)
    return write_dem(path, alt, crs, x0, y0, cell, cell)


def _reproject_look(rec: dict[str, Any], dem: HeightField, home_alt: float) -> dict[str, Any]:
    v = rec.get("vehicle")
    if not v or v.get("lat") is None:
        return rec
    assert dem.frame is not None
    flat = LocalFrame(float(v["lat"]), float(v["lon"]), home_alt)  # the flat path's tangent plane under the camera
    cam_up = float(v["alt_m"]) - home_alt
    tiles = []
    for t in rec["tiles"]:
        fp = t.get("footprint")
        if not fp:
            tiles.append(t)
            continue
        ll = np.asarray(fp, dtype=float)
        e, n, _ = dem.frame.to_enu(ll[:, 0], ll[:, 1], dem.frame.alt0)
        up = dem.height_at(np.asarray(e, dtype=float), np.asarray(n, dtype=float))
        _, _, alt = dem.frame.to_geodetic(e, n, up)  # the corner as the DEM run placed it, in metres MSL
        pe, pn, pu = flat.to_enu(ll[:, 0], ll[:, 1], np.asarray(alt, dtype=float))
        pe, pn, pu = (np.asarray(a, dtype=float) for a in (pe, pn, pu))
        k = cam_up / (cam_up - pu)  # along the ray from the camera (0, 0, cam_up) to the corner, down to up 0
        lat, lon, _ = flat.to_geodetic(pe * k, pn * k, 0.0)
        q = [[round(float(a), 8), round(float(b), 8)] for a, b in zip(np.ravel(lat), np.ravel(lon), strict=True)]
        tiles.append({**t, "footprint": q if all(math.isfinite(x) for x in np.ravel(k)) else None})
    return {**rec, "tiles": tiles}


def flat_assumption(out: Path, dem_path: Path, home_alt: float) -> Path:
    """The run's looks re-projected onto flat ground at home altitude, exported into out/flat_assumption."""
    dem = load_dem_surface(dem_path)
    target = out / FLAT_DIR
    target.mkdir(parents=True, exist_ok=True)
    with (target / "detections.jsonl").open("w", encoding="utf-8") as f:
        for rec in iter_jsonl(out / "detections.jsonl"):
            if is_look(rec):
                rec = _reproject_look(rec, dem, home_alt)
            elif str(rec.get("schema", "")).startswith("cropscout.detection"):
                continue  # the flat contrast is the map's: zones come from looks only
            f.write(json.dumps(rec) + "\n")
    export_layers(target, None, ["geojson"])
    return target
