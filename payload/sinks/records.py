"""The default ResultHandler: one JSON line per frame with every tile's classification.

Written through the crash-safe appender (payload/files/jsonl.py JsonlWriter): flushed and fsynced
per record, since a drone can lose power at any moment and a record that reached the handler must
survive it; on a full disk no partial line is left and the record waits for space. The runner
installs it beside the geotagging handler (payload/pipeline/runner.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from payload.bundle import Bundle
from payload.files.jsonl import JsonlWriter
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
        self._labels = bundle.labels
        self._sha = bundle.model_sha256
        # json.dumps' defaults (ASCII, NaN allowed), as these records have always been written
        self._writer = JsonlWriter(self.path, fsync, ensure_ascii=True, allow_nan=True)
        self.records = 0

    def handle(self, result: FrameResult) -> None:
        self._writer.write(frame_record(result, self._labels, self._sha))
        self.records += 1

    def close(self) -> None:
        self._writer.close()
