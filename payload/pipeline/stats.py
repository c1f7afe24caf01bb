"""Counters and latency percentiles of the running pipeline, cheap enough for the hot path.

Percentiles come from a bounded window of recent samples (a flight is hours long: memory must not
grow), and a snapshot is a plain dataclass that the scheduler logs every N seconds and at exit and
that `tools/bench.py` reads.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import asdict, dataclass

import numpy as np


class Window:
    """The last `size` samples of a quantity, for p50/p95."""

    def __init__(self, size: int = 2048) -> None:
        self._data: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, value: float) -> None:
        with self._lock:
            self._data.append(value)

    def percentile(self, q: float) -> float | None:
        with self._lock:
            if not self._data:
                return None
            return float(np.percentile(np.fromiter(self._data, dtype=np.float64), q))


@dataclass(frozen=True)
class PipelineStats:
    """A snapshot of what the pipeline did since it started."""

    backend: str
    elapsed_s: float
    frames_captured: int
    frames_processed: int
    frames_dropped: int
    frames_unreadable: int
    camera_reconnects: int
    camera_stalls: int  # reads that never returned (wedged driver, silent stream): abandoned, camera reopened
    tiles: int
    tiles_per_s: float
    # every tile of every captured frame, classified or not: against tiles_classified it says how much of
    # what the camera offered the classifier kept up with (a dropped frame's tiles are offered, not run)
    tiles_offered: int
    tiles_classified: int
    tile_choice: str  # "map": the map chose a busy chip's tiles (payload/pipeline/choose.py); "all": every tile
    choose_ms_p50: float | None  # what choosing cost per frame that needed it (None: the chip kept up)
    inference_ms_p50: float | None
    inference_ms_p95: float | None
    tile_ms_p50: float | None
    latency_ms_p50: float | None
    latency_ms_p95: float | None
    handler_errors: int
    backend_failovers: int
    # what the autopilot's streams delivered per message type (Telemetry.rates_summary(): asked, how, measured
    # now, mean and slowest window): a map geotagged from 4 Hz attitude is not one from 25 Hz. None without a link
    telemetry_rates: dict | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        """One log line an operator can read at a glance."""

        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f}"

        return (
            f"frames captured {self.frames_captured} processed {self.frames_processed} dropped {self.frames_dropped} "
            f"unreadable {self.frames_unreadable} reconnects {self.camera_reconnects} stalls {self.camera_stalls} "
            f"| tiles {self.tiles_classified}/{self.tiles_offered} offered ({self.tile_choice}) "
            f"({self.tiles_per_s:.1f}/s) | inference ms p50 {ms(self.inference_ms_p50)} "
            f"p95 {ms(self.inference_ms_p95)} "
            f"| capture-to-record ms p50 {ms(self.latency_ms_p50)} p95 {ms(self.latency_ms_p95)} "
            f"| backend {self.backend} | handler errors {self.handler_errors} | {self.elapsed_s:.1f} s"
        )
