"""The scenario's terrain as a surface the renderer drapes the field on, and as a DEM grid for the payload.

The truth is the analytic `flight_sim.scenario.terrain_height` (metres above home); the renderer cuts
its rays with a fine `HeightField` of it (payload/geo/surface.py, the surface the payload inverts),
in the scenario's local frame: origin at the field's south-west corner (home), up 0 at home altitude.
The payload never sees that grid: the mission writes the terrain as a GeoTIFF in a projected CRS
(`dem_grid` here, written by tools/mission/terrain.py) and the payload reads it back with rasterio,
as it would read a grower's DEM, so a CRS, datum or resampling slip shows up as a position error.
"""

from __future__ import annotations

import math

import numpy as np

from flight_sim.scenario import Scenario, terrain_height
from payload.geo.frames import LocalFrame, enu_to_geodetic
from payload.geo.surface import HeightField


def scenario_frame(s: Scenario) -> LocalFrame:
    """The scenario's local ENU frame: east/north of the field's south-west corner, up from home altitude."""
    return LocalFrame(s.origin.lat, s.origin.lon, s.origin.alt)


def extent_m(s: Scenario) -> tuple[float, float, float, float]:
    """(west, east, south, north) the terrain covers: the field plus the terrain's margin."""
    assert s.terrain is not None
    m = s.terrain.margin_m
    return -m, s.field.width_m + m, -m, s.field.height_m + m


def scenario_surface(s: Scenario) -> HeightField | None:
    """The terrain the renderer draws on (None: flat ground, rendered as ever)."""
    if s.terrain is None:
        return None
    w, e, so, n = extent_m(s)
    cell = s.terrain.cell_m
    cols = math.ceil((e - w) / cell) + 1
    rows = math.ceil((n - so) / cell) + 1
    ee = w + np.arange(cols) * cell
    nn = n - np.arange(rows) * cell
    h = terrain_height(s, ee[None, :], nn[:, None])
    return HeightField(h, w, n, cell, frame=scenario_frame(s), source="scenario terrain")


def utm_epsg(lat: float, lon: float) -> str:
    """The WGS84 UTM zone's EPSG code at a point (what a grower's GIS would write a field DEM in)."""
    zone = int((lon + 180.0) // 6.0) % 60 + 1
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


def dem_altitudes(s: Scenario, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Ground altitude (m above mean sea level) of the scenario's terrain at WGS84 points (exact geodesy)."""
    fr = scenario_frame(s)
    e, n, _ = fr.to_enu(lat, lon, fr.alt0)
    e, n = np.asarray(e, dtype=float), np.asarray(n, dtype=float)
    up = terrain_height(s, e, n)
    _, _, alt = enu_to_geodetic(e, n, up, fr.lat0, fr.lon0, fr.alt0)
    return np.asarray(alt, dtype=float)
