"""`payload export OUT_DIR`: rebuild every layer from detections.jsonl (after a crash, or to re-cluster).

detections.jsonl is fsync'd record by record during the flight; the GeoJSON/KML/CSV layers are
only rewritten every few seconds. After a power cut the JSONL is complete up to the last record
(its torn last line, if any, is reported and skipped) and this command makes the layers match it.
JPEG crops are images, not derived data: they are left as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from payload.config import CANDIDATE_TTL_S, MIN_DETECTIONS
from payload.errors import UserError
from payload.geo.hotspots import merge_hotspots
from payload.sinks.jsonl import DETECTIONS_FILE, JsonlProblems, iter_detections
from payload.sinks.layers import FORMATS, atomic_write_text, scan_records, summary_json, write_layers

log = logging.getLogger(__name__)


class ExportError(UserError):
    """The output folder has no readable detections.jsonl."""


@dataclass(frozen=True)
class ExportReport:
    records: int
    bad_lines: list[tuple[int, str]]
    torn_last_line: bool
    hotspots: int
    written: list[Path]

    def text(self) -> str:
        lines = [f"exported {self.records} detections and {self.hotspots} hotspots"]
        if self.torn_last_line:
            lines.append(f"  skipped the torn last line {self.bad_lines[-1][0]} (the run was cut while writing it)")
        others = [b for b in self.bad_lines if not (self.torn_last_line and b is self.bad_lines[-1])]
        for n, why in others:
            lines.append(f"  skipped unreadable line {n}: {why}")
        lines += [f"  wrote {p}" for p in self.written]
        return "\n".join(lines)


def export_layers(
    out_dir: str | Path,
    radius_m: float = 5.0,
    include_untrusted: bool = False,
    formats: Sequence[str] = FORMATS,
    min_detections: int = MIN_DETECTIONS,
    candidate_ttl_s: float = CANDIDATE_TTL_S,
) -> ExportReport:
    """Rebuild hotspots and every layer in `out_dir` from its detections.jsonl."""
    out = Path(out_dir)
    path = out / DETECTIONS_FILE
    if not path.is_file():
        raise ExportError(f"{path}: not found; pass the output folder of a run (output.dir in the payload config)")
    # streamed, pass by pass: an export of a long flight needs no more memory than a short one
    problems = JsonlProblems()
    hotspots = merge_hotspots(iter_detections(path, problems=problems), radius_m, include_untrusted, min_detections,
                              candidate_ttl_s)
    for n, why in problems.bad_lines:
        log.warning("%s line %d skipped: %s", path, n, why)
    scan = scan_records(lambda: iter_detections(path))
    written = write_layers(out, lambda: iter_detections(path), hotspots, formats, scan)
    atomic_write_text(out / "summary.json", summary_json(scan, hotspots) + "\n")
    written.append(out / "summary.json")
    return ExportReport(scan.count, problems.bad_lines, problems.torn_last_line, len(hotspots), written)


def export_from_cli(out_dir: str, config: str | None = None, radius_m: float | None = None) -> int:
    """`payload export OUT_DIR [--config FILE] [--radius-m R]`: print what was rebuilt and what was skipped."""
    from payload.config import HotspotsSection, load_payload_config

    # without --config the payload's own defaults (the same ones a flight without those keys used)
    h = HotspotsSection()
    formats: Sequence[str] = FORMATS
    if config:
        cfg = load_payload_config(config)
        h, formats = cfg.hotspots, cfg.sinks.formats
    radius = h.radius_m
    if radius_m is not None:
        if radius_m <= 0:
            raise ExportError(f"--radius-m must be positive, got {radius_m}")
        radius = radius_m
    report = export_layers(out_dir, radius, h.include_untrusted, formats, h.min_detections, h.candidate_ttl_s)
    print(report.text())
    return 0
