"""The grid prescription: square cells with one rate each, for spot-spray drones and ISO-XML grids.

One grid serves every file (Shapefile, GeoPackage, ISO-XML type-1 grid), so they agree cell for
cell. ISO 11783-10 lays a grid out in degrees from its south-west corner, so the grid is aligned
with latitude and longitude: the cell's sides are `cell_m` metres at the grid's centre (over a
field the difference elsewhere is far below a millimetre). A cell is treated when any of it lies
in a treatment zone (a spot sprayer treats whole cells, so it errs towards treating), with the
product of the highest-priority class there; every other cell has rate 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from payload.errors import PrescriptionError
from payload.geo.frames import LocalFrame
from payload.grower.treatment import TreatmentZone

MIN_SHARE = 1e-4  # a cell merely touching a zone's edge (float noise) is not in it
# 100 ha in 2 m cells: a bigger grid costs the companion computer seconds and hundreds of MB at the end of
# the flight, and makes a Shapefile that spot-spray planners choke on
MAX_CELLS = 250_000


@dataclass
class GridPrescription:
    """Cells south to north (row 0 is the southernmost), west to east; codes 0 = untreated, else class code."""

    south: float  # latitude of the grid's south edge (degrees)
    west: float  # longitude of its west edge
    dlat: float  # cell size in degrees
    dlon: float
    cell_m: float
    codes: np.ndarray  # (rows, cols) uint8: the class code of the treatment, 0 none
    rates: np.ndarray  # (rows, cols) float64: the rate, 0 outside every zone

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.codes.shape[0]), int(self.codes.shape[1])

    def cell_box(self, row: int, col: int) -> tuple[float, float, float, float]:
        """(west, south, east, north) of a cell in degrees."""
        w, s = self.west + col * self.dlon, self.south + row * self.dlat
        return w, s, w + self.dlon, s + self.dlat

    def lonlat_polygons(self) -> list[tuple[int, int, shapely.Polygon]]:
        """Every cell as (row, col, lon/lat rectangle), south-west first."""
        rows, cols = self.shape
        return [(r, c, shapely.box(*self.cell_box(r, c))) for r in range(rows) for c in range(cols)]


def _nodes_en(frame: LocalFrame, south: float, west: float, dlat: float, dlon: float, rows: int,
              cols: int) -> np.ndarray:
    lat = south + dlat * np.arange(rows + 1)
    lon = west + dlon * np.arange(cols + 1)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    e, n, _ = frame.to_enu(la, lo, 0.0)
    return np.stack([e, n], axis=-1)  # (rows+1, cols+1, 2)


def grid_prescription(tzones: Sequence[TreatmentZone], extent_en: BaseGeometry, cell_m: float, frame: LocalFrame,
                      order: Sequence[str]) -> GridPrescription:
    """The grid over `extent_en` and the treatment zones (local metres), each cell's rate and class code.

    `order` is the class priority (payload/grower/treatment.py `priority`): where a cell meets zones of
    two classes, the earlier class's product is applied, as for the zones themselves.
    """
    geoms = [z.geometry_en for z in tzones]
    area = shapely.union_all([extent_en, *geoms])
    e0, n0, e1, n1 = area.bounds
    ce, cn = 0.5 * (e0 + e1), 0.5 * (n0 + n1)
    lat_c, lon_c, _ = frame.to_geodetic(np.array([ce, ce, ce + cell_m]), np.array([cn, cn + cell_m, cn]), 0.0)
    # rounded to what ISO-XML carries (9 decimals for a position, plain decimals for a size), so every file
    # describes exactly the same cells
    dlat, dlon = round(float(lat_c[1] - lat_c[0]), 12), round(float(lon_c[2] - lon_c[0]), 12)
    south_f, west_f, _ = frame.to_geodetic(e0, n0, 0.0)
    south, west = round(float(south_f), 9), round(float(west_f), 9)
    rows = max(1, math.ceil((n1 - n0) / cell_m))
    cols = max(1, math.ceil((e1 - e0) / cell_m))
    if rows * cols > MAX_CELLS:
        raise PrescriptionError(
            f"a {cell_m:g} m grid over {(e1 - e0):.0f} x {(n1 - n0):.0f} m is {rows * cols} cells, more than "
            f"{MAX_CELLS}; raise prescription.grid_cell_m (or set it to null for no grid)")
    nodes = _nodes_en(frame, south, west, dlat, dlon, rows, cols)
    rings = np.stack([nodes[:-1, :-1], nodes[:-1, 1:], nodes[1:, 1:], nodes[1:, :-1], nodes[:-1, :-1]], axis=2)
    cells = shapely.polygons(rings.reshape(-1, 5, 2))
    codes = np.zeros(rows * cols, dtype=np.uint8)
    rates = np.zeros(rows * cols, dtype=np.float64)
    rank = np.full(rows * cols, len(order), dtype=np.int64)
    if geoms:
        tree = shapely.STRtree(geoms)
        ci, zi = tree.query(cells, predicate="intersects")
        share = shapely.area(shapely.intersection(cells[ci], np.asarray(geoms, dtype=object)[zi])) / (cell_m * cell_m)
        for c, z in zip(ci[share > MIN_SHARE].tolist(), zi[share > MIN_SHARE].tolist(), strict=True):
            r = list(order).index(tzones[z].label)
            if r < rank[c]:
                rank[c], codes[c], rates[c] = r, tzones[z].code, tzones[z].rate
    return GridPrescription(south, west, dlat, dlon, cell_m, codes.reshape(rows, cols),
                            rates.reshape(rows, cols))
