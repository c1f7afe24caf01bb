"""The prescription files of a finished map: what the grower loads into a sprayer, and where to walk.

Written at the end of a run (`PrescriptionSink`, at close) and by
`payload export --prescription` (the same function on the same replayed map, so the same files).
Everything is computed and checked first (payload/grower/: treatment zones, strict-terminal limits,
the ISO-XML rules), then written; a prescription that cannot be made raises PrescriptionError and
removes an older prescription from the folder, so no file a terminal would reject stays there.

Files (docs/PRESCRIPTIONS.md): treatment.geojson, scout.geojson, scout.csv, prescription.zip
(Shapefile), prescription_grid.zip (with a grid), TASKDATA/TASKDATA.XML (ISO 11783-10), zones.gpkg
(all layers; needs pyogrio, so `payload export` writes it when the drone cannot), prescription.json
(the figures: treated area, zones, merges, class codes).

Placeholder rates (a class missing from `prescription.rates`, so it gets `default_rate`) are said in the
files that carry attributes: each treatment zone's `rates` is "placeholder" or "set" (treatment.geojson,
the GeoPackage), prescription.json's `rates_placeholder` is true when no rate is set at all, and the log
says it at WARNING. The Shapefiles keep their three numeric fields (what the strictest terminals accept)
and say it in their name instead: a zip holding a placeholder rate is `prescription_placeholder_rates.zip`
with `prescription_placeholder_rates.shp`... (8.3: `RXNORATE`; the grid's `RXGNORAT`), the name a
terminal lists the file by. Readers find either name with `shapefile_zip`.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import shapely

from payload.errors import PrescriptionError
from payload.files.atomic import atomic_write_text
from payload.files.vector import features_csv, features_geojson
from payload.geo.diseasemap import DiseaseMap, zone_rows
from payload.geo.frames import LocalFrame
from payload.geo.lonlat import geometry_lonlat, point_lonlat, to_lonlat
from payload.geo.mapkind import ground_map
from payload.geo.zones import mask_polygon
from payload.grower.gpkg import GPKG_FILE, Layer, write_gpkg
from payload.grower.gridrx import GridPrescription, grid_prescription
from payload.grower.scout import ScoutItem, scout_list, suspect_zones
from payload.grower.shapefile import ShpRecord, check_records, shapefile_names, write_shapefile_zip
from payload.grower.taskdata import TASKDATA_DIR, TaskZone, build_task, schema_problems, write_taskdata
from payload.grower.treatment import TreatmentPlan, TreatmentZone, plan_treatment, priority
from payload.settings.prescription import PrescriptionSection
from payload.sinks.base import SinkBase, SinkContext, register_sink

log = logging.getLogger(__name__)

TREATMENT_FILE = "treatment.geojson"  # payload/report/data.py reads it
SCOUT_GEOJSON = "scout.geojson"
SCOUT_CSV = "scout.csv"
RX_JSON = "prescription.json"
RATES_KEY = "rates"  # treatment zone attribute: "placeholder" (default_rate) or "set"; the report reads it
PLACEHOLDER = "placeholder"
ZONES_NAMES = ("prescription", "RXZONES")  # (name, 8.3 name) of the zones Shapefile
GRID_NAMES = ("prescription_grid", "RXGRID")
# the same Shapefiles when a rate in them is a placeholder: the name says it, where every terminal shows it
PLACEHOLDER_SUFFIX = "_placeholder_rates"
ZONES_PLACEHOLDER_NAMES = (ZONES_NAMES[0] + PLACEHOLDER_SUFFIX, "RXNORATE")
GRID_PLACEHOLDER_NAMES = (GRID_NAMES[0] + PLACEHOLDER_SUFFIX, "RXGNORAT")


@dataclass
class PrescriptionResult:
    """What was made and written (for the log and `payload export`'s summary)."""

    plan: TreatmentPlan
    scouts: list[ScoutItem]
    grid: GridPrescription | None
    written: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def text(self) -> str:
        z = self.plan.zones
        line = (f"prescription: {len(z)} treatment zones, {self.plan.treated_m2 / 10_000:.4f} ha treated, "
                f"{len(self.scouts)} places to scout")
        return "\n".join([line, *(f"  {n}" for n in self.plan.notes), *(f"  skipped {s}" for s in self.skipped)])


def shapefile_names_for(grid: bool, placeholder: bool, short_names: bool) -> tuple[str, str]:
    """(zip name, member stem) of the zones or grid Shapefile, flagged when a rate in it is a placeholder."""
    if grid:
        return shapefile_names(*(GRID_PLACEHOLDER_NAMES if placeholder else GRID_NAMES), short_names)
    return shapefile_names(*(ZONES_PLACEHOLDER_NAMES if placeholder else ZONES_NAMES), short_names)


def shapefile_zip(out: Path, grid: bool = False) -> Path | None:
    """The zones (or grid) Shapefile zip in `out`, whichever of its names it was written under; None: none."""
    for placeholder in (False, True):
        for short in (False, True):
            p = out / shapefile_names_for(grid, placeholder, short)[0]
            if p.is_file():
                return p
    return None


def rx_files(out: Path) -> list[Path]:
    """Every prescription file a run may have left in `out` (both name styles, flagged or not)."""
    names = [TREATMENT_FILE, RX_JSON, GPKG_FILE, TASKDATA_DIR]
    for grid in (False, True):
        for placeholder in (False, True):
            names += [shapefile_names_for(grid, placeholder, short)[0] for short in (False, True)]
    return [out / n for n in names]


def remove_rx_files(out: Path) -> list[Path]:
    """Remove an older prescription (files a terminal might be fed by mistake); returns what was removed."""
    gone = []
    for p in rx_files(out):
        if p.is_dir():
            shutil.rmtree(p)
            gone.append(p)
        elif p.exists():
            p.unlink()
            gone.append(p)
    return gone


def seen_ground(dmap: DiseaseMap) -> shapely.Polygon | shapely.MultiPolygon:
    """The ground seen at least once, in the map's local metres."""
    b = dmap.grid.extent()
    if b is None:
        return shapely.Polygon()
    _ev, looks = dmap.grid.dense(b)
    return mask_polygon(looks >= 1, b[0], b[2], dmap.grid.cell_m)


def _feature(props: dict[str, Any], geom_en: Any, origin: LocalFrame) -> dict[str, Any]:
    return {"properties": props, "polygons": geometry_lonlat(geom_en, origin)}


def _scout_features(scouts: list[ScoutItem], origin: LocalFrame) -> list[dict[str, Any]]:
    feats = []
    for s in scouts:
        lon, lat = point_lonlat(*s.point_en, origin)
        props: dict[str, Any] = {**s.as_dict(), "lat": lat, "lon": lon}
        feats.append({"properties": props, "polygons": [], "point": [lon, lat]})
    return feats


def _grid_records(grid: GridPrescription) -> list[ShpRecord]:
    cols = grid.shape[1]
    return [ShpRecord(poly, r * cols + c + 1, int(grid.codes[r, c]), float(grid.rates[r, c]))
            for r, c, poly in grid.lonlat_polygons()]


def _summary(res: PrescriptionResult, cfg: PrescriptionSection, labels: list[str], order: list[str],
             written: list[Path], out: Path) -> dict[str, Any]:
    plan = res.plan
    per_class = {c: {"zones": sum(z.label == c for z in plan.zones),
                     "treated_m2": round(sum(z.area_m2 for z in plan.zones if z.label == c), 2),
                     "rate": next((z.rate for z in plan.zones if z.label == c), None)} for c in labels}
    return {
        "treated_m2": round(plan.treated_m2, 2),
        "treated_ha": round(plan.treated_m2 / 10_000, 4),
        "treatment_zones": len(plan.zones),
        "unit": cfg.unit,
        "class_codes": {str(k): c for k, c in enumerate(labels, start=1)} | {"0": "untreated"},
        "priority": order,
        "per_class": per_class,
        "strict_terminal_merges": plan.merges,
        "simplify_tolerance_m": plan.simplify_tolerance_m,
        "notes": plan.notes,
        "rates_placeholder": cfg.rates_placeholder,
        "placeholder_rate_classes": sorted({z.label for z in plan.zones if z.label not in cfg.rates}),
        "scout_items": len(res.scouts),
        "grid": None if res.grid is None else {"cell_m": res.grid.cell_m, "rows": res.grid.shape[0],
                                               "cols": res.grid.shape[1],
                                               "treated_cells": int((res.grid.codes > 0).sum())},
        "settings": cfg.model_dump(mode="json"),
        "files": [str(p.relative_to(out)) for p in written],
        "skipped": res.skipped,
    }


@dataclass
class _Built:
    """Everything the files are made of, built and checked before any is written."""

    res: PrescriptionResult
    order: list[str]
    lonlat: dict[str, Any]
    zrec: list[ShpRecord]
    grec: list[ShpRecord]
    task: tuple[Any, dict[str, bytes]] | None
    grid_shp: bool  # the grid Shapefile is written (within the terminal's zone limit)
    placeholder_codes: set[int]  # class codes whose rate is default_rate (no rate set for the class)


def _build(out: Path, dmap: DiseaseMap, cfg: PrescriptionSection, labels: list[str], task_name: str,
           origin: LocalFrame) -> _Built:
    plan = plan_treatment(dmap.zones, cfg, labels)
    order = priority(labels, cfg)
    seen = seen_ground(dmap)
    scouts = scout_list(suspect_zones(dmap.grid, labels, dmap.cfg, cfg), dmap.zones, seen, dmap.cfg, cfg)
    grid = None if cfg.grid_cell_m is None else grid_prescription(plan.zones, seen, cfg.grid_cell_m, origin, order)
    lonlat = {z.id: to_lonlat(z.geometry_en, origin) for z in plan.zones}
    zrec = [ShpRecord(lonlat[z.id], z.number, z.code, z.rate) for z in plan.zones]
    check_records(zrec, cfg.terminal.max_zones)
    grec = _grid_records(grid) if grid is not None else []
    grid_shp = grid is not None and "shp" in cfg.formats and _grid_fits(len(grec), cfg)
    task = None
    if "isoxml" in cfg.formats:
        tz = [TaskZone(z.label, z.code, z.rate, lonlat[z.id]) for z in plan.zones]
        task = build_task(tz, cfg.products, cfg.unit, labels, task_name or f"cropscout {out.name}",
                          grid if cfg.taskdata == "grid" else None)
        problems = schema_problems(task[0])
        if problems:
            raise PrescriptionError("the ISO-XML task breaks ISO 11783-10: " + "; ".join(problems[:5]))
    res = PrescriptionResult(plan, scouts, grid)
    if grid is not None and "shp" in cfg.formats and not grid_shp:
        res.skipped.append(_grid_skip_note(len(grec), cfg))
        log.warning("prescription: skipped %s", res.skipped[-1])
    placeholder = {z.code for z in plan.zones if z.label not in cfg.rates}
    return _Built(res, order, lonlat, zrec, grec, task, grid_shp, placeholder)


def _grid_fits(cells: int, cfg: PrescriptionSection) -> bool:
    """Whether the grid Shapefile (one record per cell) stays within the strict terminal's zone limit.

    The limit is the terminal's, and a terminal that counts polygons counts grid cells too. Cells cannot
    be merged the way zones are (a grid's cells are its meaning), so `on_too_many: merge` leaves the grid
    Shapefile out (said in prescription.json and the log) and `refuse` refuses the whole prescription,
    as for zones; the GeoPackage's grid layer and an ISO-XML grid (a few zone codes, not polygons) stay.
    """
    limit = cfg.terminal.max_zones
    if limit is None or cells <= limit:
        return True
    if cfg.terminal.on_too_many == "refuse":
        raise PrescriptionError(
            f"the {cfg.grid_cell_m:g} m grid prescription has {cells} cells, more than "
            f"prescription.terminal.max_zones = {limit}; no prescription written. Raise prescription.grid_cell_m, "
            "set it to null (no grid), or set prescription.terminal.on_too_many: merge (the grid Shapefile is "
            "then left out)")
    return False


def _grid_skip_note(cells: int, cfg: PrescriptionSection) -> str:
    return (f"{GRID_NAMES[0]}.zip: {cells} grid cells, more than prescription.terminal.max_zones = "
            f"{cfg.terminal.max_zones} (a strict terminal would reject it; a spot-spray drone takes it from a "
            "run without terminal.max_zones, or raise grid_cell_m)")


def write_prescription(out: Path, dmap: DiseaseMap, cfg: PrescriptionSection,
                       task_name: str = "") -> PrescriptionResult:
    """Make, check and write every prescription file of a finished map (raises PrescriptionError, having
    removed any older prescription, when the settings cannot be met)."""
    out.mkdir(parents=True, exist_ok=True)
    labels = list(dmap.labels)
    origin = dmap.origin
    if origin is None:
        log.info("no trusted look: no prescription")
        return PrescriptionResult(plan_treatment([], cfg, labels), [], None)
    try:
        # everything a terminal reads is built and checked before the first byte is written
        b = _build(out, dmap, cfg, labels, task_name, origin)
    except PrescriptionError:
        for p in remove_rx_files(out):
            log.warning("removed the older %s: it does not match these prescription settings", p.name)
        raise
    res, order, lonlat, zrec, grec, grid = b.res, b.order, b.lonlat, b.zrec, b.grec, b.res.grid
    plan, scouts, short = res.plan, res.scouts, cfg.terminal.short_names

    remove_rx_files(out)
    written: list[Path] = []
    treat = [_feature(zone_attributes(z, cfg), z.geometry_en, origin) for z in plan.zones]
    atomic_write_text(out / TREATMENT_FILE, features_geojson(treat))
    scout_feats = _scout_features(scouts, origin)
    atomic_write_text(out / SCOUT_GEOJSON, features_geojson(scout_feats))
    atomic_write_text(out / SCOUT_CSV, features_csv(scout_feats) if scout_feats else
                      "id,kind,label,area_m2,peak_p,why,lat,lon\n")
    written += [out / TREATMENT_FILE, out / SCOUT_GEOJSON, out / SCOUT_CSV]
    if "shp" in cfg.formats:
        for grid_file, records in ((False, zrec), (True, grec)):
            if grid_file and not b.grid_shp:
                continue
            # the name says when a record's rate is a placeholder: the Shapefile has no room for it in its fields
            flagged = any(r.code in b.placeholder_codes for r in records)
            name, stem = shapefile_names_for(grid_file, flagged, short)
            limit = None if grid_file else cfg.terminal.max_zones  # the grid's limit was checked in _build
            written.append(write_shapefile_zip(out / name, records, stem, limit))
            if flagged:
                log.warning("prescription: %s holds placeholder rates (default_rate %g %s), as its name says",
                            name, cfg.default_rate, cfg.unit)
    if b.task is not None:
        written.append(write_taskdata(out, *b.task))
    if "gpkg" in cfg.formats:
        try:
            written.append(write_gpkg(out / GPKG_FILE, _layers(plan.zones, cfg, lonlat, dmap, scout_feats, grid,
                                                               grec)))
        except ImportError as err:
            res.skipped.append(f"{GPKG_FILE} ({err}); `payload export {out} --prescription` on a workstation "
                               "writes it")
            log.warning("%s not written (%s); `payload export --prescription` on a workstation writes it",
                        GPKG_FILE, err)
    written.append(out / RX_JSON)
    atomic_write_text(out / RX_JSON, json.dumps(_summary(res, cfg, labels, order, written, out), indent=2) + "\n")
    res.written = written
    for note in plan.notes:
        log.warning("prescription: %s", note)
    warn_placeholder_rates(plan.zones, cfg)
    log.info("%s", res.text().splitlines()[0])
    return res


def zone_attributes(z: TreatmentZone, cfg: PrescriptionSection) -> dict[str, Any]:
    """A treatment zone's attributes, with whether its rate was set or is the placeholder default_rate.

    A sprayer applies whatever number it is given; a grower loading the file must be able to see that
    1.0 l/ha was nobody's choice.
    """
    return z.as_dict() | {RATES_KEY: "set" if z.label in cfg.rates else PLACEHOLDER}


def warn_placeholder_rates(zones: list[TreatmentZone], cfg: PrescriptionSection) -> None:
    """Say at WARNING which treatment zones got default_rate because their class has no rate set."""
    missing = sorted({z.label for z in zones if z.label not in cfg.rates})
    if cfg.rates_placeholder:
        log.warning("prescription: rates not set (prescription.rates is empty): every treatment zone gets "
                    "default_rate %g %s, an on/off map, not a dose; set prescription.rates per class (e.g. "
                    "{rust: 1.2}) before spraying", cfg.default_rate, cfg.unit)
    elif missing:
        log.warning("prescription: no rate set for %s: those zones get default_rate %g %s; add them to "
                    "prescription.rates before spraying", ", ".join(missing), cfg.default_rate, cfg.unit)


def _layers(zones: list[TreatmentZone], cfg: PrescriptionSection, lonlat: dict[str, Any], dmap: DiseaseMap,
            scout_feats: list[dict[str, Any]], grid: GridPrescription | None, grec: list[ShpRecord]) -> list[Layer]:
    assert dmap.origin is not None
    disease = [(to_lonlat(z.geometry_en, dmap.origin), row) for z, row in zip(dmap.zones, zone_rows(
        dmap.zones, dmap.origin), strict=True)]
    layers = [
        Layer("treatment_zones", "Polygon", [(lonlat[z.id], zone_attributes(z, cfg)) for z in zones]),
        Layer("disease_zones", "MultiPolygon", disease),
        Layer("scout", "Point", [(shapely.Point(f["point"]), f["properties"]) for f in scout_feats]),
    ]
    if grid is not None:
        layers.append(Layer("prescription_grid", "Polygon",
                            [(r.polygon, {"cell": r.zone, "class_code": r.code, "rate": r.rate}) for r in grec]))
    return layers


@register_sink(60, key="prescription", settings=PrescriptionSection)
class PrescriptionSink(SinkBase):
    """The prescription files of the finished ground map (prescription.enabled). Settings a strict terminal
    cannot meet are logged with their fix, and the flight's other products stand."""

    name = "prescription"

    def __init__(self, out_dir: Path, dmap: DiseaseMap, cfg: PrescriptionSection) -> None:
        self.out_dir = out_dir
        self.map = dmap
        self.cfg = cfg

    @classmethod
    def from_context(cls, ctx: SinkContext) -> PrescriptionSink | None:
        dmap = ground_map(ctx.map) if ctx.map is not None else None
        if dmap is None or not ctx.settings(PrescriptionSection).enabled:
            return None
        return cls(ctx.out_dir, dmap, ctx.settings(PrescriptionSection))

    def on_close(self) -> None:
        try:
            write_prescription(self.out_dir, self.map, self.cfg)
        except PrescriptionError as err:
            log.error("no prescription written: %s (then `payload export %s --prescription --config FILE`)",
                      err, self.out_dir)
