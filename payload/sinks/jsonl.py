"""detections.jsonl: the flight's source of truth, and the sink that writes it.

Written through the crash-safe appender (payload/files/jsonl.py `JsonlWriter`): every record is
flushed and fsync'd before the call returns; a torn last line is skipped on reading, and
`payload export` rebuilds every other layer from what survived.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from payload.files.jsonl import JsonlProblems, JsonlWriter, iter_jsonl
from payload.sinks.base import SinkBase, SinkContext, register_sink
from payload.types import FrameResult

log = logging.getLogger(__name__)

DETECTIONS_FILE = "detections.jsonl"

DETECTION_SCHEMA_PREFIX = "cropscout.detection/"


def iter_detections(
    path: str | Path, end: int | None = None, problems: JsonlProblems | None = None
) -> Iterator[dict[str, Any]]:
    """The detection records of detections.jsonl, streamed (other record types are passed over)."""
    for rec in iter_jsonl(path, end, problems):
        if str(rec.get("schema", "")).startswith(DETECTION_SCHEMA_PREFIX):
            yield rec



@register_sink(20)
class DetectionsJsonl(SinkBase):
    """The detections.jsonl sink: every look and detection record, durably, before anything else reads it.

    Besides the detections (flagged tiles) the file holds one look record per frame (every tile's
    scores, call and footprint, and the pose trust; payload/geo/looks.py) and a map-info record
    (the sensor model and map settings): all `payload export` needs to rebuild the same map.
    """

    name = "jsonl"

    def __init__(self, out_dir: str | Path) -> None:
        self.path = Path(out_dir) / DETECTIONS_FILE
        self.writer = JsonlWriter(self.path)
        self._resume_end = self.writer.committed_bytes

    @classmethod
    def from_context(cls, ctx: SinkContext) -> DetectionsJsonl:
        return cls(ctx.out_dir)

    def earlier(self) -> Iterator[dict[str, Any]]:
        """The records (looks, detections, map info) a previous run left in this file (whole records only)."""
        problems = JsonlProblems()
        n = 0
        for rec in iter_jsonl(self.path, end=self._resume_end, problems=problems):
            n += 1
            yield rec
        if n or problems.bad_lines:
            log.info("continuing %s: %d earlier records (%d unreadable lines skipped)",
                     self.path, n, len(problems.bad_lines))

    def write_record(self, rec: dict[str, Any]) -> None:
        """Any other record (the map info), durably."""
        try:
            self.writer.write(rec)
        except OSError as err:
            log.error("detections.jsonl write failed (%s); %d record(s) queued until space returns",
                      err, len(self.writer.pending))

    def on_look(self, look: dict[str, Any], result: FrameResult) -> None:
        self.write_record(look)

    def on_record(self, det: dict[str, Any], result: FrameResult) -> None:
        # latency of the record itself: inference finished -> record on disk (mission reports use it)
        det["t_inferred_mono"] = round(result.t_inferred_mono, 6)
        det["t_written_mono"] = round(time.monotonic(), 6)
        try:
            self.writer.write(det)
        except OSError as err:  # disk full: the writer keeps the record queued and retries it first
            log.error("detections.jsonl write failed (%s); %d record(s) queued until space returns",
                      err, len(self.writer.pending))

    def on_close(self) -> None:
        self.writer.close()
