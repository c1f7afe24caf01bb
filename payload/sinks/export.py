"""`payload export DIR [DIR...]`: rebuild every layer and the disease map from detections.jsonl.

detections.jsonl is fsync'd record by record during the flight; the layers are only rewritten
every few seconds and the map's products at the end. After a power cut the JSONL is complete up to
the last record (its torn last line, if any, is reported and skipped) and this command makes every
product match it: the look records replayed through the same `DiseaseMap` (with the sensor model
and map settings the flight wrote in its map-info record) give the same zones, ids and coverage.

Several folders (sorties, or drones flying parts of one field) are fused into one map: their looks
go into one grid (log-odds add; each look is placed by its own WGS84 footprint, so the flights are
re-anchored to the first one's origin), giving one coverage layer and one set of zones, written to
`--out`. JPEG crops are images, not derived data: they are left as they are. With `--prescription`
the treatment zones, scout list and terminal files are made from the rebuilt map
(payload/sinks/prescription.py), with the config's `prescription` section.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from payload.errors import UserError
from payload.files.atomic import atomic_write_text
from payload.files.jsonl import JsonlProblems, iter_jsonl
from payload.geo.diseasemap import MAPINFO_SCHEMA, DiseaseMap, is_look, map_from_info, zone_features
from payload.geo.frames import LocalFrame
from payload.settings.prescription import PrescriptionSection, pyogrio_available
from payload.settings.sinks import SinksSection
from payload.settings.view import ConfigView
from payload.sinks.jsonl import DETECTION_SCHEMA_PREFIX, DETECTIONS_FILE
from payload.sinks.layers import FORMATS, scan_records, summary_json, write_layers
from payload.sinks.maplayers import write_map_products
from payload.sinks.prescription import write_prescription

log = logging.getLogger(__name__)


class ExportError(UserError):
    """The output folder has no readable detections.jsonl, or the folders cannot be fused."""


@dataclass(frozen=True)
class ExportReport:
    records: int
    bad_lines: list[tuple[int, str]]
    torn_last_line: bool
    zones: int
    looks: int
    written: list[Path]
    prescription: str | None = None  # the prescription's summary line(s), when one was made

    def text(self) -> str:
        lines = [f"exported {self.records} detections, {self.looks} looks and {self.zones} zones"]
        if self.torn_last_line:
            lines.append(f"  skipped the torn last line {self.bad_lines[-1][0]} (the run was cut while writing it)")
        others = [b for b in self.bad_lines if not (self.torn_last_line and b is self.bad_lines[-1])]
        for n, why in others:
            lines.append(f"  skipped unreadable line {n}: {why}")
        if self.prescription:
            lines.append(self.prescription)
        lines += [f"  wrote {p}" for p in self.written]
        return "\n".join(lines)


def _paths(dirs: Sequence[str | Path]) -> list[Path]:
    paths = []
    for d in dirs:
        path = Path(d) / DETECTIONS_FILE
        if not path.is_file():
            raise ExportError(f"{path}: not found; pass a flight's folder (one per `payload run` under output.dir; "
                              "`payload flights ROOT` lists them)")
        paths.append(path)
    return paths


def _map_for(paths: Sequence[Path]) -> DiseaseMap | None:
    """A fresh map with the settings of the first flight's map-info record (None: no file has one)."""
    infos = []
    for p in paths:
        info = next((r for r in iter_jsonl(p) if r.get("schema") == MAPINFO_SCHEMA), None)
        if info is None:
            log.warning("%s has no map-info record (a payload from before the evidence grid): its detections "
                        "are exported, it adds nothing to the map", p)
            continue
        infos.append(info)
    if not infos:
        return None
    for info in infos[1:]:
        if info["sensor_model"] != infos[0]["sensor_model"] or info["map"]["cell_m"] != infos[0]["map"]["cell_m"]:
            log.warning("the flights were flown with other sensor models or cell sizes; fusing with the first's")
    return map_from_info(infos[0])


def replay_map(folder: str | Path, origin: LocalFrame | None = None) -> DiseaseMap:
    """One run folder's looks replayed through a fresh map with its own settings, finished (`payload compare`).

    `origin` places the map on another map's lattice (the older flight's), so the two grids' cells are the
    same ground; None keeps the flight's own origin (its first trusted look), as the export does.
    """
    (path,) = _paths([folder])
    info = next((r for r in iter_jsonl(path) if r.get("schema") == MAPINFO_SCHEMA), None)
    if info is None:
        raise ExportError(f"{path} has no map-info record (a payload from before the evidence grid): "
                          "it has no map to compare")
    dmap = map_from_info(info, origin)
    pr = JsonlProblems()
    for rec in iter_jsonl(path, problems=pr):
        if is_look(rec):
            dmap.add_look(rec)
    for n, why in pr.bad_lines:
        log.warning("%s line %d skipped: %s", path, n, why)
    dmap.finish()
    return dmap


def export_layers(
    out_dirs: str | Path | Sequence[str | Path],
    out: str | Path | None = None,
    formats: Sequence[str] = FORMATS,
    prescription: PrescriptionSection | None = None,
) -> ExportReport:
    """Rebuild the map and every layer from the detections.jsonl of one or several run folders.

    One folder: written into it. Several: fused, written to `out` (required). With `prescription`, the
    prescription files too (PrescriptionError when its settings cannot be met).
    """
    dirs = [out_dirs] if isinstance(out_dirs, str | Path) else list(out_dirs)
    if not dirs:
        raise ExportError("pass at least one run folder")
    if len(dirs) > 1 and out is None:
        raise ExportError("fusing several flights needs --out DIR for the fused map")
    target = Path(out) if out is not None else Path(dirs[0])
    target.mkdir(parents=True, exist_ok=True)
    paths = _paths(dirs)
    dmap = _map_for(paths)
    problems = JsonlProblems()
    # streamed: an export of a long flight needs no more memory than the grid
    for p in paths:
        pr = JsonlProblems()
        for rec in iter_jsonl(p, problems=pr):
            if dmap is not None and is_look(rec):
                dmap.add_look(rec)
        for n, why in pr.bad_lines:
            log.warning("%s line %d skipped: %s", p, n, why)
        problems.bad_lines += pr.bad_lines
        problems.torn_last_line = problems.torn_last_line or pr.torn_last_line
    zones: Sequence[dict[str, Any]] = []
    if dmap is not None:
        dmap.finish()
        zones = zone_features(dmap.zones, dmap.origin)

    def detections() -> Iterator[dict[str, Any]]:
        return (r for r in itertools.chain.from_iterable(iter_jsonl(p) for p in paths)
                if str(r.get("schema", "")).startswith(DETECTION_SCHEMA_PREFIX))

    scan = scan_records(detections)
    written = write_layers(target, detections, zones, formats, scan)
    if dmap is not None:
        written += [p for p in write_map_products(target, dmap, formats, dmap.cfg.rasters) if p not in written]
    atomic_write_text(target / "summary.json", summary_json(scan, zones) + "\n")
    written.append(target / "summary.json")
    rx_text = None
    if prescription is not None:
        if dmap is None:
            raise ExportError("--prescription needs a map: these folders have no map-info record (a payload from "
                              "before the evidence grid)")
        rx = write_prescription(target, dmap, prescription)
        written += rx.written
        rx_text = rx.text()
    return ExportReport(scan.count, problems.bad_lines, problems.torn_last_line, len(zones),
                        0 if dmap is None else dmap.counts.looks, written, rx_text)


def with_geopackage(rx: PrescriptionSection | None) -> PrescriptionSection | None:
    """The prescription settings with gpkg added where pyogrio is installed.

    The drone's defaults leave zones.gpkg out (its extra lacks pyogrio), and every message about a
    skipped GeoPackage names `payload export --prescription` on a workstation as the way to get it: so
    export writes it whenever it can, whatever the drone's config chose for the drone.
    """
    if rx is None or "gpkg" in rx.formats or not pyogrio_available():
        return rx
    return rx.model_copy(update={"formats": [*rx.formats, "gpkg"]})


def export_from_cli(out_dirs: Sequence[str], cfg: ConfigView | None = None, out: str | None = None,
                    prescription: bool = False) -> int:
    """`payload export DIR [DIR...] [--out DIR] [--config FILE] [--prescription]`: print what was rebuilt and
    what was skipped (`cfg`: the --config file, loaded)."""
    formats: Sequence[str] = FORMATS
    rx = PrescriptionSection() if prescription else None
    if cfg is not None:
        formats = cfg.section(SinksSection).formats
        rx = cfg.section(PrescriptionSection) if prescription else None
    report = export_layers(out_dirs, out, formats, with_geopackage(rx))
    print(report.text())
    return 0
