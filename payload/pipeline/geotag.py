"""The ResultHandler that turns classified frames into geotagged detections, layers and alerts.

The payload runtime's writer thread calls `handle(FrameResult)` for every frame. For each flagged
tile: the vehicle state at the frame's capture time (telemetry.state_at(frame.t_mono)) -> the
tile centre's ground point and the tile's footprint -> a detection record -> detections.jsonl
(fsync'd: the source of truth) -> hotspot merging -> a STATUSTEXT for each new hotspot. The GIS
layers are rewritten from detections.jsonl (streamed, so no record is held in memory: the
handler's memory stays flat however many sightings a flight makes) at most every
`sinks.layers_interval_s` and at close.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from payload.config import PayloadConfig
from payload.geo.detections import DetectionContext, build_detection
from payload.geo.hotspots import Hotspot, HotspotTracker
from payload.ops.diskguard import DiskGuard
from payload.sinks.alerts import AlertSender, hotspot_text
from payload.sinks.crops import write_crop
from payload.sinks.jsonl import DETECTIONS_FILE, JsonlProblems, JsonlWriter, iter_detections
from payload.sinks.layers import write_layers
from payload.types import FrameResult, PoseEstimate, ResultHandler

log = logging.getLogger(__name__)


class GeotagHandler:
    """ResultHandler (payload/types.py) writing geotagged detections for flagged tiles."""

    def __init__(
        self,
        cfg: PayloadConfig,
        *,
        labels: Sequence[str],
        model_sha256: str,
        telemetry: Any = None,
        out_dir: str | Path | None = None,
        run_id: str | None = None,
        owns_telemetry: bool = False,
        clock: Any = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.out_dir = Path(out_dir if out_dir is not None else cfg.output.dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.run_id = run_id or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
        self.ctx = DetectionContext(list(labels), model_sha256, self.run_id, cfg.camera, cfg.geotag)
        self.telemetry = telemetry
        self._owns_telemetry = owns_telemetry
        self._clock = clock
        self.path = self.out_dir / DETECTIONS_FILE
        h = cfg.hotspots
        self.tracker = HotspotTracker(h.radius_m, h.include_untrusted, h.min_detections, h.candidate_ttl_s)
        # a restart after a crash continues the same file: earlier records stay in the layers and
        # hotspots (without alerting again)
        self.resumed = 0
        if self.path.exists():
            problems = JsonlProblems()
            for rec in iter_detections(self.path, problems=problems):
                self.tracker.add(rec)
                self.resumed += 1
            if self.resumed or problems.bad_lines:
                log.info("continuing %s: %d earlier detections (%d unreadable lines skipped)",
                         self.path, self.resumed, len(problems.bad_lines))
        self.jsonl = JsonlWriter(self.path)
        self.alerts: AlertSender | None = None
        if cfg.alerts.enabled and telemetry is not None:
            self.alerts = AlertSender(telemetry.send_statustext, cfg.alerts.severity, cfg.alerts.min_interval_s)
        # below the free-disk floor crops stop first and the records go on (payload/ops/diskguard.py)
        self.disk = DiskGuard(self.out_dir, cfg.preflight.min_free_disk_mb,
                              send=getattr(telemetry, "send_statustext", None))
        self._last_layers = -1e18
        self._dirty = False
        self._last_flags: tuple[str, ...] = ()
        self.untrusted = 0
        self.written = 0
        self._seen_frame = False
        self._layer_thread: threading.Thread | None = None
        self._layers_cost_s = 0.0

    def _state_at(self, t_mono: float) -> PoseEstimate | None:
        if self.telemetry is None:
            return None
        try:
            return self.telemetry.state_at(t_mono)
        except Exception:  # noqa: BLE001 - a telemetry fault must not lose the detection
            log.exception("telemetry state_at failed; recording the detection without a pose")
            return None

    def handle(self, result: FrameResult) -> None:
        """Record every flagged tile of one frame (flushed and fsync'd before returning)."""
        if not self._seen_frame:
            self._seen_frame = True
            f = result.frame
            log.info("preflight camera: first frame %dx%d from %s (seq %d)", f.width, f.height, f.source, f.seq)
        flagged = [t for t in result.tiles if t.flagged]
        self.disk.poll()
        if flagged:
            est = self._state_at(result.frame.t_mono)
            for tile in flagged:
                det = build_detection(self.ctx, result.frame, tile, est, result.backend)
                if self.cfg.sinks.crops and self.disk.crops_allowed():
                    try:
                        det["crop"] = write_crop(self.out_dir, det, result.frame.pixels, self.cfg.sinks.crop_quality)
                    except (OSError, ValueError) as err:
                        log.warning("crop not saved for %s: %s", det["id"], err)
                # latency of the record itself: inference finished -> record on disk (mission reports use it)
                det["t_inferred_mono"] = round(result.t_inferred_mono, 6)
                det["t_written_mono"] = round(time.monotonic(), 6)
                try:
                    self.jsonl.write(det)
                except OSError as err:  # disk full: the writer keeps the record queued and retries it first
                    log.error("detections.jsonl write failed (%s); %d record(s) queued until space returns",
                              err, len(self.jsonl.pending))
                self.written += 1
                self._dirty = True
                self._note_trust(det)
                hotspot, is_new = self.tracker.add(det)
                if is_new and hotspot is not None:
                    log.info("new hotspot %s at %.6f, %.6f", hotspot.id, *hotspot.centroid)
                    if self.alerts is not None:
                        self.alerts.notify(hotspot_text(hotspot.as_dict()))
        if self.alerts is not None:
            self.alerts.tick()
        self._maybe_write_layers()

    def _note_trust(self, det: dict[str, Any]) -> None:
        flags = tuple(det["flags"])
        if flags:
            self.untrusted += 1
        if flags != self._last_flags:
            if flags:
                log.warning("detections recorded with an untrusted pose (flags: %s)", ", ".join(flags))
            else:
                log.info("pose trusted again; detections are placed normally")
            self._last_flags = flags

    def _maybe_write_layers(self, force: bool = False) -> None:
        """Rewrite the layers from a snapshot, in a background thread so the writer thread never waits.

        Rebuilding every layer is O(records); on a long flight that takes long enough on a Pi to
        hold up the writer thread, so it runs beside it (one at a time; `force` waits and writes
        in the caller, as at close).
        """
        now = self._clock()
        busy = self._layer_thread is not None and self._layer_thread.is_alive()
        if force:
            if self._layer_thread is not None:
                self._layer_thread.join()
            self._write_layers(self.jsonl.committed_bytes, self._hotspot_snapshot())
            self._dirty = False
            self._last_layers = now
            return
        # never spend more than ~20% of the time rewriting layers (they hold the GIL while building)
        interval = max(self.cfg.sinks.layers_interval_s, 4.0 * self._layers_cost_s)
        if busy or not self._dirty or now - self._last_layers < interval:
            return
        self._dirty = False
        self._last_layers = now
        self._layer_thread = threading.Thread(
            target=self._write_layers,
            args=(self.jsonl.committed_bytes, self._hotspot_snapshot()),
            name="geotag-layers",
            daemon=True,
        )
        self._layer_thread.start()

    def _hotspot_snapshot(self) -> list[Hotspot]:
        return [h.snapshot() for h in self.tracker.hotspots]

    def _write_layers(self, committed_bytes: int, hotspots: list[Hotspot]) -> None:
        """Rebuild the layers from detections.jsonl up to `committed_bytes` (whole records only)."""
        t0 = time.perf_counter()
        try:
            write_layers(self.out_dir, lambda: iter_detections(self.path, end=committed_bytes), hotspots,
                         self.cfg.sinks.formats)
            self._layers_cost_s = time.perf_counter() - t0
        except (OSError, ValueError) as err:
            # detections.jsonl is safe; `payload export` can rebuild the layers later
            self._dirty = True
            log.error("could not write GIS layers (%s); run `payload export %s` after the flight", err, self.out_dir)

    def close(self) -> None:
        """Write the final layers, close the JSONL, stop the telemetry link if this handler opened it."""
        try:
            if self.alerts is not None:
                self.alerts.tick()
            self._maybe_write_layers(force=True)
        finally:
            self.jsonl.close()
            if self._owns_telemetry and self.telemetry is not None:
                self.telemetry.close()
        log.info(
            "geotag: %d detections recorded (%d with an untrusted pose), %d hotspots, in %s",
            self.written,
            self.untrusted,
            len(self.tracker.hotspots),
            self.out_dir,
        )


def create_geotag_handler(
    cfg: PayloadConfig,
    *,
    labels: Sequence[str],
    model_sha256: str,
    out_dir: str | Path | None = None,
    telemetry: Any = None,
) -> GeotagHandler:
    """The handler `payload run` installs: opens the telemetry link in the background if configured.

    The link is supervised in the background (connect, lose, reconnect) so a missing autopilot
    never stops the camera: until it is up, detections are recorded with the flag `no_telemetry`.
    """
    owns = False
    if telemetry is None and cfg.telemetry.connection:
        from payload.vehicle.telemetry import Telemetry

        telemetry = Telemetry(cfg.telemetry)
        telemetry.start_background()
        owns = True
    return GeotagHandler(
        cfg, labels=labels, model_sha256=model_sha256, telemetry=telemetry, out_dir=out_dir, owns_telemetry=owns
    )


class FanOutHandler:
    """Hands each FrameResult to several handlers in order (e.g. the per-frame records, then geotagging).

    One handler failing does not starve the others: every handler is called, and the first error is
    re-raised afterwards so the writer thread still counts it.
    """

    def __init__(self, handlers: Sequence[ResultHandler]) -> None:
        self.handlers = list(handlers)

    def handle(self, result: FrameResult) -> None:
        first: BaseException | None = None
        for h in self.handlers:
            try:
                h.handle(result)
            except Exception as err:  # noqa: BLE001 - re-raised below after the others ran
                first = first or err
        if first is not None:
            raise first

    def close(self) -> None:
        first: BaseException | None = None
        for h in self.handlers:
            try:
                h.close()
            except Exception as err:  # noqa: BLE001 - re-raised below after the others closed
                first = first or err
        if first is not None:
            raise first


def build_run_handler(cfg: PayloadConfig, bundle: Any, base: ResultHandler | None = None) -> ResultHandler:
    """What `payload run` installs (payload/pipeline/runner.py build_handler): `base` records + geotagging.

    Opens the telemetry link in the background, runs the preflight block (link, clock, GPS fix,
    home, model, free disk; the camera is opened later by the capture thread and reported when its
    first frame arrives), and raises PreflightError when preflight.strict is set and a check failed.
    """
    from payload.ops.preflight import run_preflight

    geo = create_geotag_handler(cfg, labels=bundle.labels, model_sha256=bundle.model_sha256)
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
    return FanOutHandler([base, geo]) if base is not None else geo
