"""A grower's DEM as a `HeightField` in a local ENU frame: what a DEM run's rays are cut with.

The DEM is resampled once, when the run starts, onto a square grid in a local East-North-Up frame
centred on the DEM (payload/geo/frames.py `LocalFrame`), so that every ray of the flight is cut in
metres without touching the DEM's CRS again. Each grid node's latitude/longitude is looked up in the
DEM (bilinear, payload/demfile.py) and its height, in metres above mean sea level plus
`vertical_offset_m`, becomes the node's up in the frame through the exact geodetic conversion, so
the Earth's curvature over the DEM (8 cm at 1 km from its centre) is part of the surface, not an
error. Nodes outside the DEM or next to no-data are NaN: a ray that needs them is OUTSIDE.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from payload.demfile import DemRaster, read_dem
from payload.geo.frames import LocalFrame
from payload.geo.surface import HeightField

MIN_CELL_M = 0.25
MAX_NODES = 16_000_000  # the resampled grid's budget (128 MB of float64); coarser cells beyond that


def dem_height_field(raster: DemRaster, vertical_offset_m: float = 0.0, cell_m: float | None = None,
                     frame: LocalFrame | None = None) -> HeightField:
    """The DEM as a HeightField in `frame` (default: a frame at the DEM's centre, up 0 at its median height)."""
    corners = raster.corners_lonlat()
    if frame is None:
        lon_c, lat_c = corners.mean(axis=0)
        frame = LocalFrame(float(lat_c), float(lon_c), float(round(np.nanmedian(raster.heights) + vertical_offset_m)))
    cell = max(MIN_CELL_M, float(cell_m) if cell_m else raster.resolution_m())
    e, n, _ = frame.to_enu(corners[:, 1], corners[:, 0], frame.alt0)
    e, n = np.asarray(e, dtype=float), np.asarray(n, dtype=float)
    west, east, south, north = float(e.min()), float(e.max()), float(n.min()), float(n.max())
    while (math.floor((east - west) / cell) + 1) * (math.floor((north - south) / cell) + 1) > MAX_NODES:
        cell *= 1.5
    cols = math.floor((east - west) / cell) + 1
    rows = math.floor((north - south) / cell) + 1
    ee = west + np.arange(cols) * cell
    nn = north - np.arange(rows) * cell
    eg, ng = np.meshgrid(ee, nn)
    lat, lon, _ = frame.to_geodetic(eg, ng, 0.0)
    h = raster.sample(lon, lat) + float(vertical_offset_m)
    _, _, up = frame.to_enu(lat, lon, h)
    up = np.where(np.isfinite(h), np.asarray(up, dtype=float), np.nan)
    return HeightField(up.reshape(rows, cols), west, north, cell, frame=frame, source=raster.path.name)


def load_dem_surface(path: str | Path, vertical_offset_m: float = 0.0, cell_m: float | None = None) -> HeightField:
    """Read a DEM GeoTIFF and resample it into its local frame (DemError naming the file when unusable)."""
    return dem_height_field(read_dem(path), vertical_offset_m, cell_m)
