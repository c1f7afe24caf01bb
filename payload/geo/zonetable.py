"""The live zone snapshot, compact: the zones' attributes in columns and their WGS84 outlines in arrays.

The writer rebuilds the snapshot at every zone cut and hands it to the sinks (alerts, camera protocol,
the layer writer's thread), and it holds every zone alive for the rest of the flight. As a list of
feature dicts it cost about 4 kB a zone in small Python objects (a dict of 15 attributes, an object
per number, a list and an array header per ring), made again at every cut: on a field full of zones
(`make soak`'s 10 % flight) that, and the heap it left fragmented, was most of what the flight grew by.
Here a zone costs its numbers (8 bytes each), a reference to its id and label, and 16 bytes a vertex
(payload/geo/lonlat.py PackedRings); a feature dict, the same one as before
(`{"properties": {...}, "polygons": [polygon][ring] = (n, 2) [lon, lat] array}`), is made only when a
reader asks for it and is the reader's to drop.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, overload

import numpy as np

from payload.geo.lonlat import PackedRings


class ZoneTable(Sequence[dict[str, Any]]):
    """Zone features as a read-only sequence over columns (module docstring); `feature(id)` finds one by id."""

    __slots__ = ("_cols", "_ids", "_keys", "_poly_end", "_ring_end", "_rings", "_zone_end")

    def __init__(self, columns: Mapping[str, Sequence[Any]], rings: PackedRings) -> None:
        """`columns`: attribute name -> one value per zone, in the features' key order; `rings`: their outlines."""
        self._keys: tuple[str, ...] = tuple(columns)
        self._cols = [column(v) for v in columns.values()]
        if any(len(c) != len(rings.geom_polys) for c in self._cols):
            raise ValueError(f"{len(rings.geom_polys)} outlines but columns of {[len(c) for c in self._cols]}")
        ids = self._cols[self._keys.index("id")] if "id" in self._keys else []
        self._ids: list[Any] = ids if isinstance(ids, list) else ids.tolist()
        self._rings = rings
        # end offsets: zone z's polygons are [zone_end[z-1], zone_end[z]), and so on down to the vertices
        self._zone_end = np.cumsum(rings.geom_polys)
        self._poly_end = np.cumsum(rings.poly_rings)
        self._ring_end = np.cumsum(rings.ring_len)

    def __len__(self) -> int:
        return len(self._rings.geom_polys)

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("zone index out of range")
        props = {k: (c[i].item() if isinstance(c, np.ndarray) else c[i]) for k, c in zip(self._keys, self._cols,
                                                                                        strict=True)}
        return {"properties": props, "polygons": self._polygons(i)}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self[i]

    def _polygons(self, i: int) -> list[list[np.ndarray]]:
        p0 = int(self._zone_end[i - 1]) if i else 0
        out = []
        for p in range(p0, int(self._zone_end[i])):
            r0 = int(self._poly_end[p - 1]) if p else 0
            rings = []
            for r in range(r0, int(self._poly_end[p])):
                v0 = int(self._ring_end[r - 1]) if r else 0
                rings.append(self._rings.lonlat[v0:int(self._ring_end[r])])  # a view: the reader's, for a while
            out.append(rings)
        return out

    def feature(self, zone_id: str) -> dict[str, Any]:
        """The feature of the zone with that id (KeyError when there is none)."""
        try:
            return self[self._ids.index(zone_id)]
        except ValueError:
            raise KeyError(zone_id) from None

    @property
    def nbytes(self) -> int:
        """The arrays' bytes (the columns of numbers and the outlines); ids and labels are the zones' own strings."""
        arrays = [c for c in self._cols if isinstance(c, np.ndarray)]
        return int(sum(a.nbytes for a in arrays) + self._rings.nbytes + self._zone_end.nbytes
                   + self._poly_end.nbytes + self._ring_end.nbytes)


def column(values: Sequence[Any]) -> np.ndarray | list[Any]:
    """Floats or ints (not bools) as an array, which gives the same Python numbers back; anything else (ids and
    labels: the zones' own strings; no value at all) as a list."""
    if isinstance(values, np.ndarray):
        return values
    if not values:
        return list(values)
    if all(type(v) is float for v in values):
        return np.array(values, dtype=np.float64)
    if all(type(v) is int for v in values):
        return np.array(values, dtype=np.int64)
    return list(values)
