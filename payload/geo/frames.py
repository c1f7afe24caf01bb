"""Coordinate frames: geodetic (WGS-84 lat/lon/alt) <-> local East-North-Up around an origin.

The one place the repository converts between them (the payload, the simulator and the mission
tools call these, never pymap3d directly), so that a different frame (a GPS-denied local frame
fixed to a site, a terrain model's datum) is added here once instead of in every caller.
Arguments broadcast like numpy arrays; degrees and metres throughout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pymap3d

ArrayOrFloat = Any  # a float or a numpy array of them (pymap3d broadcasts both)


def geodetic_to_enu(
    lat: ArrayOrFloat, lon: ArrayOrFloat, alt: ArrayOrFloat, lat0: float, lon0: float, alt0: float
) -> tuple[ArrayOrFloat, ArrayOrFloat, ArrayOrFloat]:
    """East, north, up metres of a geodetic point from the origin (lat0, lon0, alt0)."""
    e, n, u = pymap3d.geodetic2enu(lat, lon, alt, lat0, lon0, alt0)
    return e, n, u


def enu_to_geodetic(
    e: ArrayOrFloat, n: ArrayOrFloat, u: ArrayOrFloat, lat0: float, lon0: float, alt0: float
) -> tuple[ArrayOrFloat, ArrayOrFloat, ArrayOrFloat]:
    """Latitude, longitude (degrees) and altitude (m) of a point east, north, up of the origin."""
    lat, lon, alt = pymap3d.enu2geodetic(e, n, u, lat0, lon0, alt0)
    return lat, lon, alt


@dataclass(frozen=True)
class LocalFrame:
    """A local East-North-Up frame fixed at a geodetic origin (a field's corner, home, a disease map)."""

    lat0: float
    lon0: float
    alt0: float = 0.0

    def to_enu(
        self, lat: ArrayOrFloat, lon: ArrayOrFloat, alt: ArrayOrFloat = 0.0
    ) -> tuple[ArrayOrFloat, ArrayOrFloat, ArrayOrFloat]:
        """East, north, up of a geodetic point in this frame."""
        return geodetic_to_enu(lat, lon, alt, self.lat0, self.lon0, self.alt0)

    def to_geodetic(
        self, e: ArrayOrFloat, n: ArrayOrFloat, u: ArrayOrFloat = 0.0
    ) -> tuple[ArrayOrFloat, ArrayOrFloat, ArrayOrFloat]:
        """Latitude, longitude, altitude of a point of this frame."""
        return enu_to_geodetic(e, n, u, self.lat0, self.lon0, self.alt0)
