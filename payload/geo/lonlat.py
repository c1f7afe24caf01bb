"""Local east/north geometries as WGS84 lon/lat ones (every layer and terminal file is WGS84)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from payload.geo.frames import LocalFrame
from payload.geo.zones import polygons

DECIMALS = 8  # 1.1 mm of latitude: far below the map's cell, and what the GeoJSON layers use


def en_to_lonlat(en: np.ndarray, frame: LocalFrame) -> np.ndarray:
    """(n, 2) east/north metres to (n, 2) float64 [lon, lat] degrees, rounded to DECIMALS: the one conversion."""
    lat, lon, _ = frame.to_geodetic(en[:, 0], en[:, 1], 0.0)
    return np.round(np.stack([np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)], axis=1),
                    DECIMALS)


def to_lonlat(geom: BaseGeometry, frame: LocalFrame) -> BaseGeometry:
    """The geometry with every vertex converted to (lon, lat) degrees, rounded to DECIMALS."""
    return shapely.transform(geom, lambda en: en_to_lonlat(en, frame))


def point_lonlat(e: float, n: float, frame: LocalFrame) -> tuple[float, float]:
    """(lon, lat) of a local point, rounded to DECIMALS."""
    lat, lon, _ = frame.to_geodetic(e, n, 0.0)
    return round(float(lon), DECIMALS), round(float(lat), DECIMALS)




def _rings_lonlat(rings: Sequence[np.ndarray], origin: LocalFrame) -> list[np.ndarray]:
    """Many east/north rings to (n, 2) float64 [lon, lat] arrays through ONE geodetic conversion.

    The conversion is elementwise, so one call over every vertex gives exactly the numbers a call per
    ring would; what it saves is the per-call overhead, which made the live zone snapshot of a field
    with hundreds of zones (a noisy model, widespread disease) cost more than the map update itself.
    Arrays, not lists of Python floats: the live snapshot holds every zone's outline for the whole
    flight, and a vertex costs 16 bytes in an array against about 120 as a list of two floats.
    """
    if not rings:
        return []
    ll = en_to_lonlat(np.concatenate([np.asarray(r, dtype=np.float64).reshape(-1, 2) for r in rings]), origin)
    out, k = [], 0
    for r in rings:
        n = len(r)
        out.append(ll[k:k + n].copy())  # a copy: a view would keep the whole flight's vertex array alive
        k += n
    return out


def _polygon_rings(geom: BaseGeometry) -> list[list[np.ndarray]]:
    """Per polygon, its exterior then its holes as east/north arrays; exteriors counter-clockwise."""
    # east/north and lon/lat have the same handedness: counter-clockwise here is counter-clockwise there
    return [[np.asarray(poly.exterior.coords, dtype=np.float64)]
            + [np.asarray(r.coords, dtype=np.float64) for r in poly.interiors]
            for poly in polygons(shapely.orient_polygons(geom))]


def geometry_lonlat(geom: BaseGeometry, origin: LocalFrame) -> list[list[list[list[float]]]]:
    """A local geometry as RFC 7946 polygons: [polygon][ring][point] = [lon, lat]; exteriors counter-clockwise."""
    return [[ring.tolist() for ring in poly] for poly in geometries_lonlat([geom], origin)[0]]


def geometries_lonlat(geoms: Sequence[BaseGeometry], origin: LocalFrame) -> list[list[list[np.ndarray]]]:
    """`geometry_lonlat` of many geometries through one geodetic conversion, each ring an (n, 2) [lon, lat] array.

    The layer writers (payload/files/vector.py) take rings as arrays or lists alike.
    """
    polys = [_polygon_rings(g) for g in geoms]
    flat = [ring for p in polys for poly in p for ring in poly]
    conv = iter(_rings_lonlat(flat, origin))
    return [[[next(conv) for _ in poly] for poly in p] for p in polys]


@dataclass(frozen=True)
class PackedRings:
    """Many geometries' WGS84 outlines in four arrays: no Python object per ring or vertex.

    `lonlat` (V, 2) every vertex, ring after ring; `ring_len` (R,) each ring's vertex count; `poly_rings`
    (P,) each polygon's ring count (exterior first, then its holes); `geom_polys` (G,) each geometry's
    polygon count. The numbers are `geometries_lonlat`'s, exactly.
    """

    lonlat: np.ndarray
    ring_len: np.ndarray
    poly_rings: np.ndarray
    geom_polys: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.lonlat.nbytes + self.ring_len.nbytes + self.poly_rings.nbytes + self.geom_polys.nbytes)


def packed_lonlat(geoms: Sequence[BaseGeometry], origin: LocalFrame) -> PackedRings:
    """`geometries_lonlat` packed (PackedRings): one conversion, and the result held in four arrays."""
    polys = [_polygon_rings(g) for g in geoms]
    flat = [ring for p in polys for poly in p for ring in poly]
    ll = en_to_lonlat(np.concatenate([r.reshape(-1, 2) for r in flat]), origin) if flat \
        else np.zeros((0, 2), dtype=np.float64)
    return PackedRings(ll, np.array([len(r) for r in flat], dtype=np.int64),
                       np.array([len(poly) for p in polys for poly in p], dtype=np.int64),
                       np.array([len(p) for p in polys], dtype=np.int64))
