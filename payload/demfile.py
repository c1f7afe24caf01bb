"""A grower's terrain model (DEM / DSM GeoTIFF) read with rasterio: the one place the payload opens one.

A DEM arrives in whatever CRS its maker chose (SRTM in EPSG:4326 degrees, a photogrammetry DSM
in UTM metres) with heights in metres above mean sea level, the datum the autopilot's altitude
uses (docs/TERRAIN.md). This module only reads it and answers "how high is the ground at this
latitude/longitude" (bilinear between pixel centres, NaN outside or in no-data); turning that into
a surface in a local frame is payload/geo/terrain.py. Every way a file can be unusable is a
`DemError` (a ValueError, so a config validator reports it as a bad value of its field) naming the
file and what to do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MAX_DEM_PIXELS = 50_000_000  # ~400 MB as float64: a field's DEM is far smaller; a whole SRTM tile is 13 Mpx
WGS84 = "EPSG:4326"


class DemError(ValueError):
    """A DEM file that cannot be used (missing, not a raster, no CRS, too big, no data)."""


@dataclass(frozen=True)
class DemInfo:
    """What the header says: enough to reject a wrong file before the flight."""

    path: Path
    width: int
    height: int
    crs: str
    res: tuple[float, float]  # pixel size in CRS units (x, y)
    geographic: bool  # CRS units are degrees


def _open(path: Path) -> Any:
    import rasterio  # at the edge: only a DEM run needs it
    from rasterio.errors import RasterioIOError

    if not path.is_file():
        raise DemError(f"{path}: DEM file not found; give the path of a GeoTIFF")
    try:
        return rasterio.open(path)
    except RasterioIOError as err:
        raise DemError(f"{path}: cannot be read as a raster ({err}); give a GeoTIFF DEM") from None


def check_dem(path: str | Path) -> DemInfo:
    """Read the header only: a single-band raster with a CRS and a north-up transform, of sane size."""
    p = Path(path).expanduser().absolute()
    with _open(p) as src:
        if src.crs is None:
            raise DemError(f"{p}: the raster has no CRS; write the DEM as a GeoTIFF with its coordinate system")
        t = src.transform
        if abs(t.b) > 1e-12 or abs(t.d) > 1e-12 or t.a <= 0 or t.e >= 0:
            raise DemError(f"{p}: the raster is rotated or not north-up (transform {tuple(t)[:6]}); warp it to "
                           "north-up first (gdalwarp)")
        if src.width < 2 or src.height < 2:
            raise DemError(f"{p}: {src.width} x {src.height} pixels is too small to interpolate a terrain")
        if src.width * src.height > MAX_DEM_PIXELS:
            raise DemError(f"{p}: {src.width} x {src.height} pixels is too large (limit {MAX_DEM_PIXELS / 1e6:.0f} "
                           "Mpx); clip it to the field and its surroundings (gdal_translate -projwin)")
        return DemInfo(p, int(src.width), int(src.height), src.crs.to_string(), (float(t.a), float(-t.e)),
                       bool(src.crs.is_geographic))


@dataclass(frozen=True, eq=False)
class DemRaster:
    """A DEM's heights (m, NaN = no data) with its CRS and north-up pixel grid."""

    path: Path
    heights: np.ndarray  # (rows, cols) float64
    crs: str
    x0: float  # CRS x of the top-left corner
    y0: float  # CRS y of the top-left corner
    dx: float  # pixel width (CRS units)
    dy: float  # pixel height (CRS units, positive: rows go south)
    geographic: bool

    def to_crs(self, lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
        """CRS x, y of WGS84 longitude, latitude."""
        lo = np.asarray(lon, dtype=float).ravel()
        la = np.asarray(lat, dtype=float).ravel()
        if self.crs == WGS84:
            return lo, la
        from rasterio.warp import transform

        xs, ys = transform(WGS84, self.crs, lo.tolist(), la.tolist())
        return np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)

    def to_lonlat(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """WGS84 longitude, latitude of CRS x, y."""
        xx = np.asarray(x, dtype=float).ravel()
        yy = np.asarray(y, dtype=float).ravel()
        if self.crs == WGS84:
            return xx, yy
        from rasterio.warp import transform

        lo, la = transform(self.crs, WGS84, xx.tolist(), yy.tolist())
        return np.asarray(lo, dtype=float), np.asarray(la, dtype=float)

    def corners_lonlat(self) -> np.ndarray:
        """(4, 2) lon, lat of the outer corners of the raster (NW, NE, SE, SW)."""
        rows, cols = self.heights.shape
        xs = [self.x0, self.x0 + cols * self.dx, self.x0 + cols * self.dx, self.x0]
        ys = [self.y0, self.y0, self.y0 - rows * self.dy, self.y0 - rows * self.dy]
        lo, la = self.to_lonlat(xs, ys)
        return np.stack([lo, la], axis=1)

    def resolution_m(self) -> float:
        """The smaller pixel side in metres (degrees converted at the raster's middle latitude)."""
        if not self.geographic:
            return float(min(self.dx, self.dy))
        rows = self.heights.shape[0]
        lat = math.radians(self.y0 - rows * self.dy / 2.0)
        return float(min(self.dx * 111_320.0 * math.cos(lat), self.dy * 110_574.0))

    def sample(self, lon: Any, lat: Any) -> np.ndarray:
        """Heights (m) at WGS84 points, bilinear between pixel centres; NaN outside the centres or next to no data."""
        shape = np.broadcast(np.asarray(lon), np.asarray(lat)).shape
        x, y = self.to_crs(*np.broadcast_arrays(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)))
        col = (x - self.x0) / self.dx - 0.5
        row = (self.y0 - y) / self.dy - 0.5
        rows, cols = self.heights.shape
        inside = (col >= 0) & (col <= cols - 1) & (row >= 0) & (row <= rows - 1)
        c = np.where(inside, col, 0.0)
        r = np.where(inside, row, 0.0)
        c0 = np.minimum(np.floor(c).astype(np.int64), cols - 2)
        r0 = np.minimum(np.floor(r).astype(np.int64), rows - 2)
        fc, fr = c - c0, r - r0
        h = self.heights
        top = h[r0, c0] * (1 - fc) + h[r0, c0 + 1] * fc
        bot = h[r0 + 1, c0] * (1 - fc) + h[r0 + 1, c0 + 1] * fc
        return np.where(inside, top * (1 - fr) + bot * fr, np.nan).reshape(shape)


def read_dem(path: str | Path) -> DemRaster:
    """The DEM's first band as float64 metres with no-data as NaN (DemError naming the file when unusable)."""
    info = check_dem(path)
    with _open(info.path) as src:
        band = src.read(1, masked=True)
        heights = np.ma.filled(band.astype(np.float64), np.nan)
        t = src.transform
    heights[~np.isfinite(heights)] = np.nan
    if not np.isfinite(heights).any():
        raise DemError(f"{info.path}: every pixel is no-data; the DEM holds no heights")
    return DemRaster(info.path, heights, info.crs, float(t.c), float(t.f), float(t.a), float(-t.e), info.geographic)


def write_dem(path: str | Path, heights: np.ndarray, crs: str, x0: float, y0: float, dx: float, dy: float,
              nodata: float = -9999.0) -> Path:
    """Write heights (rows north to south) as a float32 GeoTIFF, as a grower's GIS would (tests, the simulator)."""
    import rasterio
    from rasterio.transform import from_origin

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    data = np.where(np.isfinite(heights), heights, nodata).astype(np.float32)
    with rasterio.open(p, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                       dtype="float32", crs=crs, transform=from_origin(x0, y0, dx, dy), nodata=nodata,
                       compress="deflate") as dst:
        dst.write(data, 1)
    return p
