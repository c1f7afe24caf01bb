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

import logging
import math
from pathlib import Path

import numpy as np

from payload.demfile import DemRaster, read_dem
from payload.errors import ConfigError
from payload.geo.frames import LocalFrame
from payload.geo.surface import GroundSurface, HeightField
from payload.settings.view import ConfigView
from payload.types import PoseEstimate

log = logging.getLogger(__name__)

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


DEM_HOME_MISMATCH_M = 3.0  # DEM height at home vs the autopilot's home altitude beyond this: a datum problem


def ground_surface(cfg: ConfigView) -> GroundSurface | None:
    """The terrain the rays are cut with (geotag.ground: dem), loaded and resampled once; None: flat ground."""
    g = cfg.geotag
    if g.ground != "dem" or g.dem is None:
        return None
    try:
        dem = load_dem_surface(g.dem, g.dem_vertical_offset_m, g.dem_cell_m)
    except ValueError as err:  # DemError, or a DEM with no usable node in its own frame
        raise ConfigError(f"field 'geotag.dem': bad value '{g.dem}'; {err}") from None
    w, e, s, n = dem.bounds
    log.info("terrain: %s resampled to %.2f m cells in a frame at %.6f, %.6f: %.0f x %.0f m, relief %.1f m",
             g.dem, dem.cell_m, dem.frame.lat0 if dem.frame else 0.0, dem.frame.lon0 if dem.frame else 0.0,
             e - w, n - s, dem.relief_m)
    return dem


def check_home_on_dem(dem: GroundSurface, est: PoseEstimate) -> str | None:
    """A warning when the DEM's height where the vehicle stands on the ground disagrees with home altitude.

    Both are the ground's altitude above mean sea level at take-off; metres apart means the DEM is in
    another vertical datum (ellipsoidal heights: set geotag.dem_vertical_offset_m) or the field is off
    it. None when they agree, and for a pose in the air (only the ground under a landed vehicle is home).
    """
    p = est.pose
    if dem.frame is None or est.is_local or not abs(est.relative_alt_m) < 1.0:
        return None
    e, n, _ = dem.frame.to_enu(p.lat_deg, p.lon_deg, est.home_alt_m)
    h = float(np.asarray(dem.height_at(float(e), float(n))).reshape(-1)[0])
    if not math.isfinite(h):
        return f"the take-off point ({p.lat_deg:.6f}, {p.lon_deg:.6f}) is outside {dem.name}: does it cover the field?"
    _, _, alt = dem.frame.to_geodetic(float(e), float(n), h)
    diff = float(alt) - float(est.home_alt_m)
    if abs(diff) > DEM_HOME_MISMATCH_M:
        return (f"{dem.name} puts the ground at take-off {diff:+.1f} m from the autopilot's home altitude "
                f"({est.home_alt_m:.1f} m): a vertical datum mismatch? (geotag.dem_vertical_offset_m)")
    return None


class HomeOnDem:
    """The take-off check against the DEM, made once: on the first pose of the vehicle on the ground."""

    def __init__(self, dem: GroundSurface | None) -> None:
        self.dem = dem
        self.done = dem is None

    def see(self, est: PoseEstimate | None) -> None:
        if self.done or est is None or self.dem is None:
            return
        warning = check_home_on_dem(self.dem, est)
        self.done = warning is not None or abs(est.relative_alt_m) < 1.0
        if warning:
            log.warning("terrain: %s", warning)
