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

import dataclasses
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Literal

from payload.backends import cpu_fallback, open_classifier
from payload.backends.base import Classifier
from payload.bundle import Bundle, load_bundle
from payload.capture.sources import FrameSource, make_source
from payload.config import PayloadConfig
from payload.errors import ConfigError
from payload.geo.sensor import SensorModel, sensor_model_for_card
from payload.ops.flights import FlightFolder, VehicleIdentity, host_boot_id, open_flight, open_flight_dir
from payload.ops.paths import resolve_config_paths
from payload.pipeline.choose import MapTileChooser
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
    from payload.sinks.camproto import wants_mavlink2
    from payload.vehicle.telemetry import Telemetry  # dronekit and pymavlink load only when a link is configured

    # the camera component's messages and a ground station's commands to it are MAVLink 2: the parser must
    # read MAVLink 2 before the first packet, so this is decided before the sinks exist
    telemetry = Telemetry(cfg.telemetry, mavlink2=wants_mavlink2(cfg))
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


OPEN_LINK: Literal["open"] = "open"


def build_geotag_handler(
    cfg: PayloadConfig, *, labels: Sequence[str], model_sha256: str, out_dir: str | Path | None = None,
    sensor: SensorModel | None = None, thresholds: Mapping[str, float] | None = None,
    telemetry: Telemetry | None | Literal["open"] = OPEN_LINK,
) -> GeotagHandler:
    """Geotagging as `payload run` installs it: its telemetry link, the disease map, disk guard and sinks.

    `telemetry` is a link already open (`payload run` opens it first, to learn which flight this is
    before it picks the folder) or None for none; by default the config's link is opened here. Either
    way the handler owns it from here on and closes it.
    """
    from payload.geo.mapkind import Site, default_sensor, open_map
    from payload.ops.diskguard import DiskGuard
    from payload.pipeline.geotag import GeotagHandler
    from payload.sinks.base import SinkContext
    from payload.sinks.registry import build_sinks

    out = Path(out_dir if out_dir is not None else cfg.output.dir)
    out.mkdir(parents=True, exist_ok=True)
    link = open_pose_source(cfg) if isinstance(telemetry, str) else telemetry  # OPEN_LINK: the config's
    try:
        site = Site(cfg)  # the site file, read once
        dmap = open_map(cfg, sensor or default_sensor(list(labels)), site)
        disk = DiskGuard(out, cfg.preflight.min_free_disk_mb,
                         send=link.send_statustext if link is not None else None)
        snapshot: list[GeotagHandler] = []  # the handler, once built: the layers read its zone snapshot
        sinks = build_sinks(SinkContext(cfg, out, lambda: snapshot[0].zone_snapshot() if snapshot else [],
                                        link, disk.crops_allowed, map=dmap, model_sha256=model_sha256,
                                        thresholds=dict(thresholds or {})))
        handler = GeotagHandler(cfg, labels=labels, model_sha256=model_sha256, telemetry=link, out_dir=out,
                                owns_telemetry=link is not None, status=link, dmap=dmap, disk=disk,
                                sinks=sinks, site=site)
        snapshot.append(handler)
        return handler
    except BaseException:
        if link is not None:
            link.close()
        raise


def build_handler(cfg: PayloadConfig, bundle: Bundle, telemetry: Telemetry | None | Literal["open"] = OPEN_LINK,
                  connect_wait_s: float | None = None) -> ResultHandler:
    """THE hook for what the writer thread does with each FrameResult (called once per run).

    Per-frame records, then geotagging. Runs the preflight block (link, clock, GPS fix, home,
    model, free disk; the camera is opened later by the capture thread and reported when its first
    frame arrives) and raises PreflightError when preflight.strict is set and a check failed.
    `telemetry`: as `build_geotag_handler` takes it; `connect_wait_s`: how long preflight waits for the
    link to connect (default the connect timeout; less when the run already waited for it).
    """
    from payload.ops.preflight import run_preflight
    from payload.pipeline.geotag import FanOutHandler

    records = JsonlRecordHandler(Path(cfg.output.dir) / cfg.output.records, bundle)
    geo = build_geotag_handler(cfg, labels=bundle.labels, model_sha256=bundle.model_sha256,
                               sensor=sensor_model_for_card(bundle.card), thresholds=bundle.thresholds,
                               telemetry=telemetry)
    try:
        run_preflight(
            cfg.preflight,
            cfg.geotag,
            geo.out_dir,
            telemetry=geo.telemetry,
            model=(True, f"{bundle.path} ({', '.join(bundle.labels)}; sha256 {bundle.model_sha256[:12]})"),
            connect_wait_s=cfg.telemetry.connect_timeout_s + 1.0 if connect_wait_s is None else connect_wait_s,
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

    # a supplied source stamps as its maker set it up; one built here takes the camera's latency off its stamps
    src = source or make_source(cfg.source, cfg.camera.latency_s)
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
        chooser=map_chooser(handler) if cfg.scheduler.tile_choice == "map" else None,
    )


def map_chooser(handler: ResultHandler) -> MapTileChooser | None:
    """The map's tile chooser over the run's geotagger (None when the handler has none: no map to ask)."""
    from payload.pipeline.geotag import FanOutHandler, GeotagHandler

    handlers = handler.handlers if isinstance(handler, FanOutHandler) else [handler]
    geo = next((h for h in handlers if isinstance(h, GeotagHandler)), None)
    return None if geo is None else MapTileChooser(geo)


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


def vehicle_identity(telemetry: Telemetry | None, wait_s: float) -> VehicleIdentity:
    """Which flight this is: the vehicle's system id and its autopilot's boot, waited for up to `wait_s`.

    Preflight waits as long for the link anyway, so a vehicle that is there costs no extra start-up
    time; one that does not answer leaves the identity unknown (a new folder, never a resumed one).
    """
    host = host_boot_id()
    if telemetry is None:
        return VehicleIdentity(host_boot=host)
    deadline = time.monotonic() + wait_s
    while True:
        sysid, boot = telemetry.system_id, telemetry.buffer.boot_mono()
        if (sysid is not None and boot is not None) or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    if sysid is None or boot is None:
        log.warning("flight: the vehicle was not heard within %.0f s, so this run cannot be matched to its flight: "
                    "it gets a new folder (a restart continues one only with `payload run --flight-dir DIR`)", wait_s)
        return VehicleIdentity(sysid=sysid, host_boot=host)
    boot_utc = time.time() - (time.monotonic() - boot)
    return VehicleIdentity(sysid, round(boot_utc, 3), round(boot, 3), host)


def open_run_folder(cfg: PayloadConfig, who: VehicleIdentity, exact: bool) -> FlightFolder:
    """The folder this run writes to: output.dir itself when `exact` (`--flight-dir`), else this flight's
    folder under the output.dir root."""
    if exact:
        return open_flight_dir(Path(cfg.output.dir), who)
    return open_flight(Path(cfg.output.dir), who)


def run_payload(cfg: PayloadConfig, *, source: FrameSource | None = None,
                flight_dir: str | Path | None = None) -> PipelineStats:
    """`payload run`: pick the flight's folder, run until the source ends or a signal, write the final stats
    next to the records and mark the flight finished (payload/ops/flights.py).

    `flight_dir` names the exact folder (`payload run --flight-dir`: tools that read one run's output);
    otherwise output.dir is the root of one folder per flight.
    """
    from payload.pipeline.heap import pin_malloc_thresholds

    require_pose_source(cfg)  # before anything opens: a config error, said at once
    pin_malloc_thresholds()  # before the flight allocates: RSS must not creep with the zone count
    if flight_dir is not None:  # the one folder checked (and created) instead of the root
        cfg = cfg.model_copy(update={"output": cfg.output.model_copy(update={"dir": Path(flight_dir)})})
    cfg = resolve_config_paths(cfg)
    telemetry = open_pose_source(cfg)
    handed: list[bool] = []  # the geotagging handler took the link: it closes it
    deadline = time.monotonic() + cfg.telemetry.connect_timeout_s + 1.0  # one wait for the link, not two

    def handler(c: PayloadConfig, b: Bundle) -> ResultHandler:
        handed.append(True)
        return build_handler(c, b, telemetry=telemetry, connect_wait_s=max(1.0, deadline - time.monotonic()))

    try:
        flight = open_run_folder(cfg, vehicle_identity(telemetry, deadline - time.monotonic()), flight_dir is not None)
        try:
            cfg = cfg.model_copy(update={"output": cfg.output.model_copy(update={"dir": flight.path})})
            pipeline = build_pipeline(cfg, source=source, handler_factory=handler)
            stats = run_with_signals(pipeline)
            tel = pose_source_of(pipeline.handler)
            if tel is not None:
                stats = dataclasses.replace(stats, telemetry_rates=tel.rates_summary())
            out = flight.path
            (out / "run_stats.json").write_text(json.dumps(stats.as_dict(), indent=2) + "\n", encoding="utf-8")
            if cfg.report.enabled:
                write_flight_report(out, cfg, pipeline.bundle, stats.as_dict())
            flight.finish(stats.as_dict())
            log.info("flight: %s finished", out)
            return stats
        except BaseException:
            flight.abandon_if_empty()
            raise
        finally:
            flight.release()
    except BaseException:
        if telemetry is not None and not handed:
            telemetry.close()
        raise


def pose_source_of(handler: ResultHandler) -> Telemetry | None:
    """The telemetry link the geotagging handler owns (inside the fan-out), for the run's stats.

    Asked by what it can do, not by its class: importing payload.vehicle.telemetry would load dronekit
    in runs that have no link.
    """
    for h in getattr(handler, "handlers", [handler]):
        tel = getattr(h, "telemetry", None)
        if callable(getattr(tel, "rates_summary", None)):
            return tel
    return None


def write_flight_report(out: Path, cfg: PayloadConfig, bundle: Bundle, stats: dict) -> None:
    """report.html after the run, when every product it shows is on disk (the map's and the mosaic's at close).

    A failure is logged, not raised: the flight's records are complete and `payload export` rewrites it.
    """
    from payload.report.html import write_report

    try:
        write_report(out, cfg.report, bundle.card.to_dict(), stats)
    except Exception:  # a report is a view of the records; it must not turn a good flight into a failed run
        log.exception("report.html not written; `payload export %s` writes it from the records", out)
