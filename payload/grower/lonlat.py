"""Local east/north geometries as WGS84 lon/lat ones (every terminal file is WGS84)."""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from payload.geo.frames import LocalFrame

DECIMALS = 8  # 1.1 mm of latitude: far below the map's cell, and what the GeoJSON layers use


def to_lonlat(geom: BaseGeometry, frame: LocalFrame) -> BaseGeometry:
    """The geometry with every vertex converted to (lon, lat) degrees, rounded to DECIMALS."""

    def convert(en: np.ndarray) -> np.ndarray:
        lat, lon, _ = frame.to_geodetic(en[:, 0], en[:, 1], 0.0)
        return np.round(np.stack([np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)], axis=1),
                        DECIMALS)

    return shapely.transform(geom, convert)


def point_lonlat(e: float, n: float, frame: LocalFrame) -> tuple[float, float]:
    """(lon, lat) of a local point, rounded to DECIMALS."""
    lat, lon, _ = frame.to_geodetic(e, n, 0.0)
    return round(float(lon), DECIMALS), round(float(lat), DECIMALS)
