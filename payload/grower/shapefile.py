"""The zipped ESRI Shapefile that sprayer terminals and farm-management systems load.

What the strictest terminals accept, so every terminal does (docs/PRESCRIPTIONS.md): polygon shape
type 5 only (one single polygon per record, holes allowed), WGS84 with a .prj, numeric attributes
only and at most three of them (ZONE, CLASS, RATE; field names of at most 10 characters), and the
four files .shp .shx .dbf .prj and nothing else. With `terminal.short_names` the member and zip
names are 8.3 upper case. Written with pyshp (pure Python, on the drone); every check runs before
a byte is written, and the zip is replaced atomically.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import shapefile
import shapely

from payload.errors import PrescriptionError

# ESRI's WKT for WGS84 (what ArcGIS writes; GDAL reads it as EPSG:4326)
WGS84_PRJ = ('GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137.0,298.257223563]],'
             'PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]]')
# (name, dBASE type, width, decimals): numeric only, names of at most 10 characters
FIELDS = (("ZONE", "N", 9, 0), ("CLASS", "N", 3, 0), ("RATE", "N", 14, 4))
MAX_FIELD_NAME = 10
SHORT_NAME = re.compile(r"^[A-Z0-9_]{1,8}$")


@dataclass(frozen=True)
class ShpRecord:
    """One record: a single lon/lat polygon and its numeric attributes."""

    polygon: shapely.Polygon
    zone: int  # the treatment zone's number (T3 -> 3), or the grid cell's number
    code: int  # class code: 1 = the model's first disease class, 0 = untreated
    rate: float


def shapefile_names(base: str, short: str, short_names: bool) -> tuple[str, str]:
    """(zip name, member stem): `base`.zip with `base`.shp..., or SHORT.ZIP with SHORT.SHP... in 8.3."""
    if short_names:
        if not SHORT_NAME.match(short):
            raise ValueError(f"{short!r} is not an 8.3 stem")
        return f"{short}.ZIP", short
    return f"{base}.zip", base


def _rings(poly: shapely.Polygon) -> list[list[tuple[float, float]]]:
    # the Shapefile spec: outer rings clockwise, holes counter-clockwise
    p = shapely.orient_polygons(poly, exterior_cw=True)
    return [list(p.exterior.coords)] + [list(r.coords) for r in p.interiors]


def check_records(records: Sequence[ShpRecord], max_zones: int | None) -> None:
    """What a strict terminal would reject, refused before writing: multipart or empty geometry, too many zones."""
    for name, _t, _w, _d in FIELDS:
        assert len(name) <= MAX_FIELD_NAME
    for r in records:
        if not isinstance(r.polygon, shapely.Polygon) or r.polygon.is_empty or not r.polygon.is_valid:
            raise PrescriptionError(f"zone {r.zone} is not a single valid polygon; a terminal would reject the file")
    if max_zones is not None and len(records) > max_zones:
        raise PrescriptionError(f"{len(records)} records, more than prescription.terminal.max_zones = {max_zones}")


def shapefile_bytes(records: Sequence[ShpRecord], stem: str) -> dict[str, bytes]:
    """The four member files (name -> bytes) of a polygon (type 5) Shapefile."""
    shp, shx, dbf = io.BytesIO(), io.BytesIO(), io.BytesIO()
    with shapefile.Writer(shp=shp, shx=shx, dbf=dbf, shapeType=shapefile.POLYGON) as w:
        for name, kind, width, decimals in FIELDS:
            w.field(name, kind, size=width, decimal=decimals)
        for r in records:
            w.poly(_rings(r.polygon))
            w.record(r.zone, r.code, round(float(r.rate), 4))
    ext = str.upper if stem.isupper() else str.lower
    return {f"{stem}.{ext('shp')}": shp.getvalue(), f"{stem}.{ext('shx')}": shx.getvalue(),
            f"{stem}.{ext('dbf')}": dbf.getvalue(), f"{stem}.{ext('prj')}": WGS84_PRJ.encode("ascii")}


def write_shapefile_zip(path: Path, records: Sequence[ShpRecord], stem: str, max_zones: int | None = None) -> Path:
    """Check, then write the zip (atomically: a terminal never sees half a file)."""
    check_records(records, max_zones)
    members = shapefile_bytes(records, stem)
    fd, tmp = tempfile.mkstemp(prefix=".rx-", suffix=".zip", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in members.items():
                z.writestr(name, data)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the file from the grower's other accounts
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
