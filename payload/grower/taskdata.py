"""ISO 11783-10 TASKDATA (ISO-XML) for ISOBUS terminals: one planned task with treatment zones and rates.

Built with `isoxml` (Josephinum Research, PyPI; xsdata bindings generated from the standard's XSD,
version 4.3) and checked against the rules those bindings carry (required attributes, ranges, id
patterns, lengths) before anything is written. The task:

- one product (PDT) per disease class that has zones (`prescription.products` names them);
- one treatment zone (TZN) per class, code = the class code (1 = the model's first disease class),
  holding that class's polygons (PLN type 2) and the rate as a ProcessDataVariable: DDI 1 (setpoint
  volume per area, l/ha) or DDI 6 (setpoint mass per area, kg/ha) in the DDI's own units;
- TZN 0 with rate 0 for every product: the task's default, position-lost and out-of-field zone,
  so ground outside the zones (or a lost GNSS fix) is never sprayed;
- or, with `taskdata: grid`, a type-1 grid (GRD00001.bin: one TZN code per cell, rows south to north)
  instead of the polygons.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import isoxml.models.base.v4 as iso
import numpy as np
import shapely
from isoxml.converter.shapely_geom import ShapelyConverterV4
from isoxml.models.ddi_entities import DDEntity
from isoxml.util.isoxml_io import isoxml_to_dir

from payload import __version__
from payload.errors import PrescriptionError
from payload.grower.gridrx import GridPrescription

TASKDATA_DIR = "TASKDATA"
# the unit a rate is given in -> (DDI, factor to the DDI's unit): 1 l/ha = 100 mm3/m2, 1 kg/ha = 100 mg/m2
UNIT_DDI = {"l/ha": (1, 100.0), "kg/ha": (6, 100.0)}
GRID_FILE = "GRD00001"


@dataclasses.dataclass(frozen=True)
class TaskZone:
    """What the task needs of a treatment zone: its class, rate and lon/lat polygon."""

    label: str
    code: int
    rate: float
    polygon_lonlat: shapely.Polygon


def process_value(rate: float, unit: str) -> tuple[bytes, int]:
    """(DDI as 2 bytes, integer ProcessDataValue) of a rate in `unit`, at the DDI's bit resolution."""
    ddi, factor = UNIT_DDI[unit]
    ent = DDEntity.from_id(ddi)
    return bytes(ent), int(round(rate * factor / ent.bit_resolution))


def _designator(text: str) -> str:
    return text[:32]


def build_task(zones: Sequence[TaskZone], products: dict[str, str], unit: str, labels: Sequence[str],
               task_name: str, grid: GridPrescription | None = None) -> tuple[iso.Iso11783TaskData, dict[str, bytes]]:
    """The TaskData object and its binary files (name -> bytes; the grid when given)."""
    used = [c for c in labels if any(z.label == c for z in zones)]
    pdts = {c: iso.Product(id=f"PDT{k}", designator=_designator(products.get(c, f"{c} treatment")),
                           type=iso.ProductF.Single) for k, c in enumerate(used, start=1)}
    ddi_bytes, _ = process_value(0.0, unit)
    outside = iso.TreatmentZone(code=0, designator="untreated", process_data_variables=[
        iso.ProcessDataVariable(process_data_ddi=ddi_bytes, process_data_value=0, product_id_ref=p.id)
        for p in pdts.values()])
    conv = ShapelyConverterV4()
    tzns = [outside]
    for c in used:
        mine = [z for z in zones if z.label == c]
        _, value = process_value(mine[0].rate, unit)
        polys = [] if grid is not None else [
            conv.to_iso_polygon(shapely.orient_polygons(z.polygon_lonlat), iso.PolygonType.TreatmentZone)
            for z in mine]
        tzns.append(iso.TreatmentZone(code=mine[0].code, designator=_designator(c), polygons=polys,
                                      process_data_variables=[iso.ProcessDataVariable(
                                          process_data_ddi=ddi_bytes, process_data_value=value,
                                          product_id_ref=pdts[c].id)]))
    bins: dict[str, bytes] = {}
    grids = []
    if grid is not None:
        rows, cols = grid.shape
        data = np.ascontiguousarray(grid.codes, dtype=np.uint8).tobytes(order="C")
        grids.append(iso.Grid(minimum_north_position=round(Decimal(grid.south), 9),
                              minimum_east_position=round(Decimal(grid.west), 9),
                              cell_north_size=Decimal(f"{grid.dlat:.12f}"), cell_east_size=Decimal(f"{grid.dlon:.12f}"),
                               maximum_column=cols,
                              maximum_row=rows, filename=GRID_FILE, filelength=len(data), type=iso.GridType.GridType1))
        bins[GRID_FILE] = data
    task = iso.Task(id="TSK1", designator=_designator(task_name), status=iso.TaskStatus.Planned,
                    treatment_zones=tzns, grids=grids, default_treatment_zone_code=0,
                    position_lost_treatment_zone_code=0, out_of_field_treatment_zone_code=0)
    td = iso.Iso11783TaskData(management_software_manufacturer="cropscout", management_software_version=__version__,
                              data_transfer_origin=iso.Iso11783TaskDataDataTransferOrigin.FMIS,
                              products=list(pdts.values()), tasks=[task])
    return td, bins


def _value_problems(obj: Any, meta: dict[str, Any], value: Any, where: str) -> list[str]:
    name = meta.get("name", "?")
    out: list[str] = []
    if isinstance(value, Enum):
        # an enumeration member is valid by being one; the facets belong to the union's other (text) member
        return out
    v = value
    if isinstance(v, int | float | Decimal) and not isinstance(v, bool):
        if "min_inclusive" in meta and v < meta["min_inclusive"]:
            out.append(f"{where}@{name}={v} < {meta['min_inclusive']}")
        if "max_inclusive" in meta and v > meta["max_inclusive"]:
            out.append(f"{where}@{name}={v} > {meta['max_inclusive']}")
    if isinstance(v, str | bytes):
        n = len(v)
        if "length" in meta and n != meta["length"]:
            out.append(f"{where}@{name} has length {n}, not {meta['length']}")
        if "max_length" in meta and n > meta["max_length"]:
            out.append(f"{where}@{name} longer than {meta['max_length']}")
        if "min_length" in meta and n < meta["min_length"]:
            out.append(f"{where}@{name} shorter than {meta['min_length']}")
        if isinstance(v, str) and "pattern" in meta and not re.fullmatch(meta["pattern"], v):
            out.append(f"{where}@{name}={v!r} does not match {meta['pattern']}")
    return out


def schema_problems(obj: Any, where: str = "") -> list[str]:
    """Every violation of the rules the isoxml bindings carry from the XSD (required, ranges, lengths,
    id patterns), walking the whole object tree; [] when the data is valid."""
    if not dataclasses.is_dataclass(obj):
        return []
    here = f"{where}/{getattr(getattr(obj, 'Meta', None), 'name', type(obj).__name__)}"
    out: list[str] = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        meta = dict(f.metadata)
        if value is None or (isinstance(value, list) and not value):
            if meta.get("required"):
                out.append(f"{here}@{meta.get('name', f.name)} is required")
            continue
        for item in value if isinstance(value, list) else [value]:
            if dataclasses.is_dataclass(item):
                out += schema_problems(item, here)
            else:
                out += _value_problems(obj, meta, item, here)
    return out


def write_taskdata(out: Path, td: iso.Iso11783TaskData, bins: dict[str, bytes]) -> Path:
    """Check, then write out/TASKDATA/ (TASKDATA.XML and its .bin files), replacing an older one whole."""
    problems = schema_problems(td)
    if problems:
        raise PrescriptionError("the ISO-XML task breaks ISO 11783-10: " + "; ".join(problems[:5]))
    target = out / TASKDATA_DIR
    tmp = Path(tempfile.mkdtemp(prefix=".taskdata-", dir=out))
    try:
        isoxml_to_dir(tmp, td, dict(bins))
        tmp.chmod(0o755)  # mkdtemp's 0700 would hide it from the grower's other accounts
        old = None
        if target.exists():
            old = out / f".{TASKDATA_DIR}.old-{os.getpid()}"
            target.rename(old)
        tmp.rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target / "TASKDATA.XML"
