"""zones.gpkg: every grower layer in one GeoPackage (what QGIS and most FMIS open first).

Layers, all WGS84 (EPSG:4326): `treatment_zones` (Polygon), `disease_zones` (MultiPolygon),
`scout` (Point), and `prescription_grid` (Polygon) when a grid was made. Written with pyogrio
(GDAL in its wheel): too heavy for the drone's image, so it is a workstation dependency; on the
drone the file is skipped with a warning and `payload export --prescription` writes it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

GPKG_FILE = "zones.gpkg"


@dataclass
class Layer:
    """A layer: its name, geometry type, and rows of (lon/lat geometry, attributes)."""

    name: str
    geometry_type: str  # Polygon, MultiPolygon, Point
    rows: Sequence[tuple[BaseGeometry, Mapping[str, Any]]]


def _column(values: list[Any]) -> np.ndarray:
    """A typed column: bools as 0/1 integers, ints, floats (None as NaN), else text."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return np.asarray([int(bool(v)) for v in values], dtype=np.int32)
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present) and len(present) == len(values):
        return np.asarray(values, dtype=np.int64)
    if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return np.asarray([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return np.asarray(["" if v is None else str(v) for v in values], dtype=object)


def write_gpkg(path: Path, layers: Sequence[Layer]) -> Path:
    """Write every layer (an empty one keeps its name and type) to a new GeoPackage, replaced atomically."""
    import logging

    from pyogrio.raw import write

    # pyogrio logs every layer at INFO ("Created 3 records"): noise in the flight's log
    logging.getLogger("pyogrio").setLevel(logging.WARNING)

    fd, tmp_name = tempfile.mkstemp(prefix=".zones-", suffix=".gpkg", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # GDAL creates the file itself
    try:
        for k, layer in enumerate(layers):
            cols: list[str] = []
            for _g, attrs in layer.rows:
                cols += [c for c in attrs if c not in cols]
            geoms = [g if layer.geometry_type != "MultiPolygon" or isinstance(g, shapely.MultiPolygon)
                     else shapely.MultiPolygon([g]) for g, _a in layer.rows]
            wkb = np.asarray(shapely.to_wkb(np.asarray(geoms, dtype=object)) if geoms else [], dtype=object)
            data = [_column([a.get(c) for _g, a in layer.rows]) for c in cols]
            # GeoPackage 1.2: GDAL's default 1.4 makes older readers (Debian's GDAL 3.6 ogrinfo, older QGIS and
            # FMIS) warn that the file "may only be partially supported"
            write(str(tmp), wkb, data, cols, layer=layer.name, driver="GPKG", geometry_type=layer.geometry_type,
                  crs="EPSG:4326", append=k > 0, dataset_options=None if k else {"VERSION": "1.2"})
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
