"""GeoTIFF rasters in a local tangent plane: single bands (the disease map) and tiled RGBA (the mosaic).

A grid laid out in east/north metres from an origin is exactly PROJ's ellipsoidal orthographic
projection centred there (the ENU tangent plane), so that is the rasters' CRS and every GIS
reprojects them without resampling surprises. rasterio (GDAL in its wheel) is imported only when a
raster is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np


def tangent_plane_crs(lat0: float, lon0: float) -> str:
    """The tangent plane at (lat0, lon0) as a PROJ string (ellipsoidal orthographic = local east/north)."""
    return (f"+proj=ortho +lat_0={lat0!r} +lon_0={lon0!r} +x_0=0 +y_0=0 +ellps=WGS84 "
            "+units=m +no_defs")


def write_band(path: Path, band: np.ndarray, *, crs: str, west: float, north: float, cell_m: float,
               description: str, nodata: float | None = None) -> None:
    """One band, north up (row 0 is the northern edge), deflate-compressed, in the `crs` PROJ string."""
    import rasterio
    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    extra = {} if nodata is None else {"nodata": nodata}
    transform = from_origin(west, north, cell_m, cell_m)
    with rasterio.open(path, "w", driver="GTiff", width=band.shape[1], height=band.shape[0], count=1,
                       dtype=str(band.dtype), crs=CRS.from_proj4(crs), transform=transform, compress="deflate",
                       **extra) as dst:
        dst.write(band, 1)
        dst.set_band_description(1, description)


def write_tiled_rgba(path: Path, *, width: int, height: int, tile_px: int, crs: str, west: float, north: float,
                     m_per_px: float, tiles: Iterable[tuple[int, int, np.ndarray]], tags: dict[str, str],
                     cache_mb: int) -> None:
    """A tiled RGBA GeoTIFF (deflate, overviews) from (row, col, rgba tile) pixel windows, one tile at a time.

    Written to a temporary file and renamed, so a reader never sees half a mosaic. GDAL caches written
    blocks up to GDAL_CACHEMAX (by default 5 % of the RAM) before compressing them out: `cache_mb`
    caps it, or writing a large raster would hold much of it in memory after all.
    """
    import rasterio
    from rasterio.crs import CRS
    from rasterio.enums import ColorInterp, Resampling
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    tmp = path.with_name(path.name + ".tmp")
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 4, "dtype": "uint8",
               "crs": CRS.from_proj4(crs), "transform": from_origin(west, north, m_per_px, m_per_px),
               "tiled": True, "blockxsize": tile_px, "blockysize": tile_px, "compress": "deflate",
               "photometric": "RGB", "sparse_ok": True}
    with rasterio.Env(GDAL_CACHEMAX=cache_mb), rasterio.open(tmp, "w", **profile) as dst:
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
        for row, col, rgba in tiles:
            dst.write(np.moveaxis(rgba, 2, 0), window=Window(col, row, tile_px, tile_px))
        dst.update_tags(**tags)
        levels = [f for f in (2, 4, 8, 16, 32) if max(height, width) / f >= 256]
        if levels:
            dst.build_overviews(levels, Resampling.average)
    tmp.replace(path)
