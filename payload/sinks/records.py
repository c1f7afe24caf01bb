"""The default ResultHandler: one JSON line per frame with every tile's classification.

Append-only, flushed and fsynced per record: a drone can lose power at any moment, and a record
that reached the handler must survive it (at most the line being written is cut short, which a
JSONL reader skips). The geotagging handler replaces or wraps this one (see payload/pipeline/runner.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from payload.bundle import Bundle
from payload.types import FrameResult


def frame_record(result: FrameResult, labels: tuple[str, ...], model_sha256: str) -> dict[str, Any]:
    """The JSON-ready record of one frame's results."""
    f = result.frame
    return {
        "type": "frame",
        "seq": f.seq,
        "source": f.source,
        "t_wall": round(f.t_wall, 6),
        "t_mono": round(f.t_mono, 6),
        "width": f.width,
        "height": f.height,
        "backend": result.backend,
        "model_sha256": model_sha256,
        "inference_ms": round(result.inference_ms, 3),
        "flagged": sum(1 for t in result.tiles if t.flagged),
        "tiles": [
            {
                "row": t.box.row,
                "col": t.box.col,
                "x": t.box.x,
                "y": t.box.y,
                "w": t.box.w,
                "h": t.box.h,
                "label": t.label,
                "confidence": round(t.confidence, 4),
                "flagged": t.flagged,
                "scores": {name: round(float(s), 4) for name, s in zip(labels, t.scores, strict=True)},
            }
            for t in result.tiles
        ],
        **({"extras": result.extras} if result.extras else {}),
    }


class JsonlRecordHandler:
    """Writes per-frame, per-tile classifications to a JSONL file (append, flush, fsync per record)."""

    def __init__(self, path: str | Path, bundle: Bundle, fsync: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._labels = bundle.labels
        self._sha = bundle.model_sha256
        self._fsync = fsync
        self._file = self.path.open("a", encoding="utf-8")
        self.records = 0

    def handle(self, result: FrameResult) -> None:
        self._file.write(json.dumps(frame_record(result, self._labels, self._sha), separators=(",", ":")) + "\n")
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())
        self.records += 1

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
