"""Wiring of `payload run`: config -> bundle -> backend -> source -> pipeline -> result handler.

This is the one place that puts the rooms together. `build_handler` decides what happens to each
FrameResult: the per-frame, per-tile JSONL classifications (payload/sinks/records.py) and the
geotagging handler, to which it hands the pose source (the telemetry link it opens), the sinks
the config enables (payload/sinks/registry.py), the disease map (with the bundle's sensor model)
and the free-disk guard,
after running the preflight checks. Tests, the bench and the simulator pass their own
`handler_factory` / `source` / `classifier` to `build_pipeline` instead of editing this wiring.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from payload.backends import cpu_fallback, open_classifier
from payload.backends.base import Classifier
from payload.bundle import Bundle, load_bundle
from payload.capture.sources import FrameSource, make_source
from payload.config import PayloadConfig
from payload.errors import ConfigError
from payload.geo.sensor import SensorModel, sensor_model_for_card
from payload.ops.paths import resolve_config_paths
from payload.pipeline.scheduler import Pipeline
from payload.pipeline.stats import PipelineStats
from payload.pipeline.tiling import Tiler
from payload.sinks.records import JsonlRecordHandler
from payload.types import ResultHandler

if TYPE_CHECKING:
    from payload.pipeline.geotag import GeotagHandler
    from payload.vehicle.telemetry import Telemetry

log = logging.getLogger("payload.run")


def open_pose_source(cfg: PayloadConfig) -> Telemetry | None:
    """The telemetry link the config names, connecting in the background (None: no link configured).

    The link is supervised in the background (connect, lose, reconnect) so a missing autopilot
    never stops the camera: until it is up, detections are recorded with the flag `no_telemetry`.
    """
    if not cfg.telemetry.connection:
        return None
    from payload.vehicle.telemetry import Telemetry  # dronekit and pymavlink load only when a link is configured

    telemetry = Telemetry(cfg.telemetry)
    telemetry.start_background()
    return telemetry


NO_TELEMETRY_FLAG = "--no-telemetry"


def require_pose_source(cfg: PayloadConfig) -> None:
    """Refuse a run with no telemetry link unless it was asked for on purpose (ConfigError: exit 2).

    With `telemetry.connection: null` and a non-strict preflight the payload used to fly a whole
    survey recording frames with no position: nothing on the map, no prescription, and only a
    flag in the records to say so. A bench or a replay of a folder means it; a flight config
    that forgot its link does not.
    """
    if cfg.telemetry.connection or cfg.telemetry.allow_none:
        return
    raise ConfigError(
        "telemetry.connection is not set: the payload would record frames with no position (nothing geotagged, "
        "no map, no prescription). Set telemetry.connection (e.g. udp:127.0.0.1:14550 or /dev/ttyAMA0), or, "
        f"to run without a flight controller on purpose, pass `payload run {NO_TELEMETRY_FLAG}` or set "
        "telemetry.allow_none: true")


def build_geotag_handler(
    cfg: PayloadConfig, *, labels: Sequence[str], model_sha256: str, out_dir: str | Path | None = None,
    sensor: SensorModel | None = None, thresholds: Mapping[str, float] | None = None,
) -> GeotagHandler:
    """Geotagging as `payload run` installs it: its own telemetry link, the disease map, disk guard and sinks."""
    from payload.geo.mapkind import Site, default_sensor, open_map
    from payload.ops.diskguard import DiskGuard
    from payload.pipeline.geotag import GeotagHandler
    from payload.sinks.base import SinkContext
    from payload.sinks.registry import build_sinks

    out = Path(out_dir if out_dir is not None else cfg.output.dir)
    out.mkdir(parents=True, exist_ok=True)
    telemetry = open_pose_source(cfg)
    try:
        site = Site(cfg)  # the site file, read once
        dmap = open_map(cfg, sensor or default_sensor(list(labels)), site)
        disk = DiskGuard(out, cfg.preflight.min_free_disk_mb,
                         send=telemetry.send_statustext if telemetry is not None else None)
        snapshot: list[GeotagHandler] = []  # the handler, once built: the layers read its zone snapshot
        sinks = build_sinks(SinkContext(cfg, out, lambda: snapshot[0].zone_snapshot() if snapshot else [],
                                        telemetry, disk.crops_allowed, map=dmap,
                                        thresholds=dict(thresholds or {})))
        handler = GeotagHandler(cfg, labels=labels, model_sha256=model_sha256, telemetry=telemetry, out_dir=out,
                                owns_telemetry=telemetry is not None, status=telemetry, dmap=dmap, disk=disk,
                                sinks=sinks, site=site)
        snapshot.append(handler)
        return handler
    except BaseException:
        if telemetry is not None:
            telemetry.close()
        raise


def build_handler(cfg: PayloadConfig, bundle: Bundle) -> ResultHandler:
    """THE hook for what the writer thread does with each FrameResult (called once per run).

    Per-frame records, then geotagging. Runs the preflight block (link, clock, GPS fix, home,
    model, free disk; the camera is opened later by the capture thread and reported when its first
    frame arrives) and raises PreflightError when preflight.strict is set and a check failed.
    """
    from payload.ops.preflight import run_preflight
    from payload.pipeline.geotag import FanOutHandler

    records = JsonlRecordHandler(Path(cfg.output.dir) / cfg.output.records, bundle)
    geo = build_geotag_handler(cfg, labels=bundle.labels, model_sha256=bundle.model_sha256,
                               sensor=sensor_model_for_card(bundle.card), thresholds=bundle.thresholds)
    try:
        run_preflight(
            cfg.preflight,
            cfg.geotag,
            geo.out_dir,
            telemetry=geo.telemetry,
            model=(True, f"{bundle.path} ({', '.join(bundle.labels)}; sha256 {bundle.model_sha256[:12]})"),
            connect_wait_s=cfg.telemetry.connect_timeout_s + 1.0,
        )
    except BaseException:
        geo.close()
        raise
    return FanOutHandler([records, geo])


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
        Tiler(t.rows, t.cols, t.overlap, (bundle.input_height, bundle.input_width), stagger=t.stagger),
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
    from payload.pipeline.heap import pin_malloc_thresholds

    require_pose_source(cfg)  # before anything opens: a config error, said at once
    pin_malloc_thresholds()  # before the flight allocates: RSS must not creep with the zone count
    cfg = resolve_config_paths(cfg)
    pipeline = build_pipeline(cfg, source=source)
    stats = run_with_signals(pipeline)
    out = Path(cfg.output.dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "run_stats.json").write_text(json.dumps(stats.as_dict(), indent=2) + "\n", encoding="utf-8")
    if cfg.report.enabled:
        write_flight_report(out, cfg, pipeline.bundle, stats.as_dict())
    return stats


def write_flight_report(out: Path, cfg: PayloadConfig, bundle: Bundle, stats: dict) -> None:
    """report.html after the run, when every product it shows is on disk (the map's and the mosaic's at close).

    A failure is logged, not raised: the flight's records are complete and `payload export` rewrites it.
    """
    from payload.report.html import write_report

    try:
        write_report(out, cfg.report, bundle.card.to_dict(), stats)
    except Exception:  # a report is a view of the records; it must not turn a good flight into a failed run
        log.exception("report.html not written; `payload export %s` writes it from the records", out)
