"""Wiring of `payload run`: config -> bundle -> backend -> source -> pipeline -> result handler.

`build_handler` is the one place that decides what happens to each FrameResult: the per-frame,
per-tile JSONL classifications (payload/sinks/records.py), wrapped by the geotagging handler that adds
pose, ground position, sinks and alerts. Tests, the bench and the simulator pass their own
`handler_factory` / `source` / `classifier` to `build_pipeline` instead of editing this wiring.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from payload.backends import cpu_fallback, open_classifier
from payload.backends.base import Classifier
from payload.bundle import Bundle, load_bundle
from payload.capture.sources import FrameSource, make_source
from payload.config import PayloadConfig
from payload.ops.paths import resolve_config_paths
from payload.pipeline.scheduler import Pipeline
from payload.pipeline.stats import PipelineStats
from payload.pipeline.tiling import Tiler
from payload.sinks.records import JsonlRecordHandler
from payload.types import ResultHandler

log = logging.getLogger("payload.run")


def build_handler(cfg: PayloadConfig, bundle: Bundle) -> ResultHandler:
    """THE hook for what the writer thread does with each FrameResult (called once per run)."""
    from payload.pipeline.geotag import build_run_handler  # per-frame records + telemetry, geotagging, sinks, alerts

    return build_run_handler(cfg, bundle, JsonlRecordHandler(Path(cfg.output.dir) / cfg.output.records, bundle))


HandlerFactory = Callable[[PayloadConfig, Bundle], ResultHandler]


def build_pipeline(
    cfg: PayloadConfig,
    *,
    source: FrameSource | None = None,
    handler_factory: HandlerFactory | None = None,
    classifier: Classifier | None = None,
) -> Pipeline:
    """Assemble a pipeline from the config; any part can be supplied instead (simulator, tests, bench)."""
    cfg = resolve_config_paths(cfg)  # absolute paths; output folder writable, bundle a folder: before anything
    bundle = load_bundle(cfg.model.bundle)
    m = cfg.model
    # in flight the Edge TPU runs isolated in a watched child process (payload/backends/isolated.py)
    clf = classifier or open_classifier(bundle, m.backend, m.device, m.num_threads, isolate=True)
    fallback = cpu_fallback(bundle, m.backend, clf, m.num_threads)

    src = source or make_source(cfg.source)
    handler = (handler_factory or build_handler)(cfg, bundle)
    t = cfg.tiling
    return Pipeline(
        src,
        clf,
        handler,
        bundle,
        Tiler(t.rows, t.cols, t.overlap, (bundle.input_height, bundle.input_width)),
        queue_size=cfg.scheduler.queue_size,
        max_rate_hz=cfg.scheduler.max_rate_hz,
        stats_interval_s=cfg.scheduler.stats_interval_s,
        fallback=fallback,
    )


def run_with_signals(pipeline: Pipeline) -> PipelineStats:
    """Run a pipeline with SIGINT/SIGTERM meaning "stop capture, finish, flush" (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return pipeline.run()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if pipeline.stopping:
            log.warning("%s again: still finishing the frame in flight and flushing", name)
        else:
            log.info("%s received", name)
        pipeline.stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return pipeline.run()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run_payload(cfg: PayloadConfig, *, source: FrameSource | None = None) -> PipelineStats:
    """`payload run`: run until the source ends or a signal, write the final stats next to the records."""
    cfg = resolve_config_paths(cfg)
    pipeline = build_pipeline(cfg, source=source)
    stats = run_with_signals(pipeline)
    out = Path(cfg.output.dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "run_stats.json").write_text(json.dumps(stats.as_dict(), indent=2) + "\n", encoding="utf-8")
    return stats
