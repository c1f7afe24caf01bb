"""A short real flight for the review tests: the real pipeline (scheduler, tiler, the bundle's decision rule,
geotagging, the map, every sink), a scripted flight north and frames cut from one ground picture (a red disc
on green), so the map confirms a zone and tiles cross its edge.

The classifier is a double that scores a tile by its share of red pixels: the tiny bundle's random weights
differ from one build to the next (its scores sit within a few 1/256 steps of a third), so the tiles near the
decision would change from run to run. With this one the disc is flagged, the ground around it is not, and
the tiles that straddle the disc's rim sit near the threshold: every kind the review sink keeps occurs. The
bundle is still the tiny one: its card's thresholds decide and its hash is recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from payload.bundle import Bundle
from payload.capture.sources import InProcessSource
from payload.config import PayloadConfig
from payload.pipeline.geotag import FanOutHandler, GeotagHandler
from payload.pipeline.runner import build_pipeline
from payload.sinks.records import JsonlRecordHandler
from payload.types import Frame, FrameResult
from tests.payload import tinymodel
from tests.payload.geotagdoubles import ScriptedTelemetry

W, H = 640, 480
FPS = 10.0
NORTH_MPS = 2.0
PX_PER_M = W / 36.2  # 62.2 degrees across 640 px at 30 m above the ground: 36.2 m


def ground_picture(n_frames: int, seed: int = 0) -> np.ndarray:
    """Green ground with a red disc (the patch), tall enough for the whole flight; row 0 is north."""
    rng = np.random.default_rng(seed)
    shift = NORTH_MPS / FPS * PX_PER_M
    rows = H + int(np.ceil(shift * n_frames)) + 2
    img = np.empty((rows, W, 3), dtype=np.float64)
    img[:] = (40, 160, 40)
    yy, xx = np.mgrid[0:rows, 0:W]
    disc = (yy - rows / 2) ** 2 + (xx - W * 0.4) ** 2 < (6.0 * PX_PER_M) ** 2
    img[disc] = (200, 40, 40)
    img += rng.normal(0, 25, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


class RedShareClassifier:
    """A `Classifier` (payload/backends/base.py) whose powdery-mildew score is the tile's share of red pixels."""

    name = "red-share"
    input_size = (tinymodel.SIZE, tinymodel.SIZE)

    def classify_batch(self, tiles: np.ndarray) -> np.ndarray:
        t = tiles.astype(np.int16)
        red = ((t[..., 0] - t[..., 1]) > 60).mean(axis=(1, 2))
        pm = 0.04 + 0.92 * red
        return np.stack([1.0 - pm - 0.02, np.full_like(pm, 0.02), pm], axis=1).astype(np.float32)

    def close(self) -> None:
        return None


class CountingHandler(GeotagHandler):
    """The real geotagging handler, counting the frames it has written (the frames wait for it: no drops)."""

    handled = 0

    def handle(self, result: FrameResult) -> None:
        super().handle(result)
        self.handled += 1


def frames(n_frames: int, done: Callable[[], int], timeout_s: float = 60.0) -> Iterator[Frame]:
    """The camera's frames: the ground picture's window moving north with the vehicle, stamped in flight time.
    Each is released once the previous one is written, so the one-slot mailbox drops none."""
    ground = ground_picture(n_frames)
    shift = NORTH_MPS / FPS * PX_PER_M
    bottom = ground.shape[0] - H
    for k in range(n_frames):
        deadline = time.monotonic() + timeout_s
        while done() < k and time.monotonic() < deadline:
            time.sleep(0.002)
        t = 0.5 + k / FPS
        top = int(round(bottom - k * shift))
        yield Frame(np.ascontiguousarray(ground[top:top + H]), k, t, 1.79e9 + t, "review-test")


def fly(tiny_bundle_dir: Path, out: Path, n_frames: int = 80, review: dict | None = None,
        floor_mb: float = 1.0) -> Path:
    """Fly the short flight with the review sink on; returns the flight's output folder. `floor_mb` is the
    free-disk floor (payload/ops/diskguard.py): above the disk's free space, the guard stops the review's JPEGs."""
    bundle = out.parent / f"{out.name}-bundle"
    if not bundle.is_dir():  # a second flight into the same folder (a restart) flies the same bundle
        tinymodel.copy_bundle(tiny_bundle_dir, bundle)
        tinymodel.rewrite_card(bundle, thresholds={"rust": 0.5, "powdery_mildew": 0.5})
    cfg = PayloadConfig.model_validate({
        "model": {"bundle": str(bundle), "backend": "cpu", "num_threads": 1},
        "tiling": {"rows": 3, "cols": 4, "stagger": False},
        "output": {"dir": str(out)},
        "telemetry": {"allow_none": True},
        "map": {"zones_every_frames": 3},
        "mosaic": {"enabled": False},
        "preflight": {"min_free_disk_mb": floor_mb},
        "review": {"enabled": True, "max_margin": 8, "max_edge": 8, "max_flagged": 6, "max_healthy": 6,
                   **(review or {})},
    })
    telemetry = ScriptedTelemetry(t_end=0.5 + n_frames / FPS + 1.0, north_mps=NORTH_MPS)

    made: list[CountingHandler] = []

    def handler(c: PayloadConfig, b: Bundle) -> FanOutHandler:
        # what build_handler installs (the per-frame records, then geotagging), with the scripted flight
        made.append(CountingHandler(c, labels=b.labels, model_sha256=b.model_sha256, telemetry=telemetry,
                                    thresholds=b.thresholds))
        return FanOutHandler([JsonlRecordHandler(out / c.output.records, b), made[0]])

    produced = frames(n_frames, lambda: made[0].handled if made else 0)
    stats = build_pipeline(cfg, source=InProcessSource(produced), handler_factory=handler,
                           classifier=RedShareClassifier()).run()
    assert stats.frames_processed == n_frames, stats
    return out
