"""The ResultHandler that turns classified frames into geotagged detections and hands them to the sinks.

The payload runtime's writer thread calls `handle(FrameResult)` for every frame. For each flagged
tile: the vehicle state at the frame's capture time (PoseSource.state_at(frame.t_mono)) -> the
tile centre's ground point and the tile's footprint -> a detection record -> every sink in order
(crops, detections.jsonl: the source of truth, layers, alerts) -> hotspot merging, each new
hotspot told to the sinks (the alert). What the sinks are and how they are built is
payload/sinks/; which pose source and which sinks a run uses is decided by the runner
(payload/pipeline/runner.py), which hands them in.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from payload.config import PayloadConfig
from payload.geo.detections import DetectionContext, build_detection
from payload.geo.hotspots import Hotspot, HotspotTracker
from payload.ops.diskguard import DiskGuard
from payload.sinks.base import DetectionSink, SinkContext
from payload.sinks.registry import build_sinks
from payload.types import FrameResult, PoseEstimate, PoseSource, ResultHandler, StatusSender

log = logging.getLogger(__name__)


def hotspot_tracker(cfg: PayloadConfig) -> HotspotTracker:
    """The hotspot tracker the config describes."""
    h = cfg.hotspots
    return HotspotTracker(h.radius_m, h.include_untrusted, h.min_detections, h.candidate_ttl_s)


class GeotagHandler:
    """ResultHandler (payload/types.py) writing geotagged detections of flagged tiles to its sinks.

    `telemetry` is where poses come from (None: every detection is flagged no_telemetry);
    `status` is the ground-station link for the disk guard's and the sinks' messages (default:
    the telemetry, when it can send). `sinks`, `tracker` and `disk` are built from the config
    when not handed in (the runner hands them in; tests and tools often let them default).
    """

    def __init__(
        self,
        cfg: PayloadConfig,
        *,
        labels: Sequence[str],
        model_sha256: str,
        telemetry: PoseSource | None = None,
        out_dir: str | Path | None = None,
        run_id: str | None = None,
        owns_telemetry: bool = False,
        clock: Callable[[], float] = time.monotonic,
        status: StatusSender | None = None,
        tracker: HotspotTracker | None = None,
        disk: DiskGuard | None = None,
        sinks: Sequence[DetectionSink] | None = None,
    ) -> None:
        self.cfg = cfg
        self.out_dir = Path(out_dir if out_dir is not None else cfg.output.dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.run_id = run_id or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
        self.ctx = DetectionContext(list(labels), model_sha256, self.run_id, cfg.camera, cfg.geotag)
        self.telemetry = telemetry
        self._owns_telemetry = owns_telemetry
        if status is None and isinstance(telemetry, StatusSender):
            status = telemetry  # the MAVLink link is both
        self.tracker = tracker if tracker is not None else hotspot_tracker(cfg)
        # below the free-disk floor crops stop first and the records go on (payload/ops/diskguard.py)
        self.disk = disk if disk is not None else DiskGuard(
            self.out_dir, cfg.preflight.min_free_disk_mb, send=status.send_statustext if status else None
        )
        if sinks is None:
            sinks = build_sinks(SinkContext(cfg, self.out_dir, self.hotspot_snapshot, status,
                                            self.disk.crops_allowed, clock))
        self.sinks = list(sinks)
        # a restart after a crash continues the same files: earlier records stay in the layers and
        # hotspots (without alerting again)
        self.resumed = 0
        for sink in self.sinks:
            for rec in sink.earlier():
                self.tracker.add(rec)
                self.resumed += 1
        self._last_flags: tuple[str, ...] = ()
        self.untrusted = 0
        self.written = 0
        self._seen_frame = False

    def sink(self, name: str) -> DetectionSink | None:
        """The sink of that registry name, if this run has it (for tools and tests)."""
        return next((s for s in self.sinks if s.name == name), None)

    def hotspot_snapshot(self) -> list[Hotspot]:
        """Copies of the current hotspots, safe to hand to another thread."""
        return [h.snapshot() for h in self.tracker.hotspots]

    def _state_at(self, t_mono: float) -> PoseEstimate | None:
        if self.telemetry is None:
            return None
        try:
            return self.telemetry.state_at(t_mono)
        except Exception:  # a telemetry fault must not lose the detection
            log.exception("telemetry state_at failed; recording the detection without a pose")
            return None

    def handle(self, result: FrameResult) -> None:
        """Record every flagged tile of one frame (the JSONL sink has it on disk before this returns)."""
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
                for sink in self.sinks:
                    sink.write(det, result)
                self.written += 1
                self._note_trust(det)
                hotspot, is_new = self.tracker.add(det)
                if is_new and hotspot is not None:
                    log.info("new hotspot %s at %.6f, %.6f", hotspot.id, *hotspot.centroid)
                    for sink in self.sinks:
                        sink.new_hotspot(hotspot)
        for sink in reversed(self.sinks):
            sink.end_frame()

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

    def close(self) -> None:
        """Close the sinks (last first: the layers are written before the JSONL they read is closed),
        then the telemetry link if this handler was handed its ownership."""
        first: BaseException | None = None
        for sink in reversed(self.sinks):
            try:
                sink.close()
            except Exception as err:  # noqa: BLE001 - re-raised below after the others closed
                first = first or err
        if self._owns_telemetry and self.telemetry is not None:
            self.telemetry.close()
        log.info(
            "geotag: %d detections recorded (%d with an untrusted pose), %d hotspots, in %s",
            self.written,
            self.untrusted,
            len(self.tracker.hotspots),
            self.out_dir,
        )
        if first is not None:
            raise first


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
