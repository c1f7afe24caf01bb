"""The ResultHandler that turns classified frames into looks and detection records and hands them on.

The payload runtime's writer thread calls `handle(FrameResult)` for every frame: the vehicle state
at the frame's capture time (PoseSource.state_at(frame.t_mono)) -> a look record (every tile's
scores, call and ground footprint, the pose trust) -> every sink (detections.jsonl has it on disk)
-> the disease map (payload/geo/mapkind.py: ground grid or rack faces, zones); for each flagged tile
a detection record -> every sink in order; each zone confirmed for the first time is told to the
sinks (the live alert). At close the map's last zones are told and every sink closes, the product
sinks writing the end-of-flight files. What the sinks are and how they are built is payload/sinks/;
which pose source and which sinks a run uses is decided by the runner (payload/pipeline/runner.py).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from payload.config import PayloadConfig
from payload.geo.detections import DetectionContext, detection_record
from payload.geo.frameview import frame_view
from payload.geo.looks import look_record
from payload.geo.mapkind import MapKind, Site, default_sensor, open_map
from payload.geo.sensor import SensorModel
from payload.geo.terrain import HomeOnDem, ground_surface
from payload.geo.zonetable import ZoneTable
from payload.ops.diskguard import DiskGuard
from payload.pipeline.heap import release_free_heap
from payload.sinks.base import DetectionSink, SinkContext
from payload.sinks.registry import build_sinks, replay_earlier
from payload.types import FrameResult, PoseEstimate, PoseSource, ResultHandler, StatusSender

log = logging.getLogger(__name__)


class GeotagHandler:
    """ResultHandler (payload/types.py) turning each frame into looks and detections for its sinks and map.

    `telemetry` gives poses (None: every look is flagged no_telemetry); `status` is the ground-station
    link for the disk guard's and sinks' messages (default: the telemetry, when it can send); `sensor` and
    `thresholds` the bundle's; `sinks`, `dmap`, `disk` and `site` come from the config unless handed in."""

    def __init__(self, cfg: PayloadConfig, *, labels: Sequence[str], model_sha256: str,
                 telemetry: PoseSource | None = None, out_dir: str | Path | None = None, run_id: str | None = None,
                 owns_telemetry: bool = False, clock: Callable[[], float] = time.monotonic,
                 status: StatusSender | None = None, sensor: SensorModel | None = None,
                 dmap: MapKind | None = None, disk: DiskGuard | None = None, site: Site | None = None,
                 sinks: Sequence[DetectionSink] | None = None, thresholds: Mapping[str, float] | None = None) -> None:
        self.cfg = cfg
        self.out_dir = Path(out_dir if out_dir is not None else cfg.output.dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.run_id = run_id or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
        site = site if site is not None else Site(cfg)
        self.ctx = DetectionContext(list(labels), model_sha256, self.run_id, cfg.camera, cfg.geotag, site.faces,
                                    ground_surface(cfg))
        self._home = HomeOnDem(self.ctx.surface)
        self.telemetry, self._owns_telemetry = telemetry, owns_telemetry
        if status is None and isinstance(telemetry, StatusSender):
            status = telemetry  # the MAVLink link is both
        self.map = dmap if dmap is not None else open_map(cfg, sensor or default_sensor(list(labels)), site)
        self._zone_snapshot: Sequence[dict[str, Any]] = []
        # below the free-disk floor crops stop first and the records go on (payload/ops/diskguard.py)
        self.disk = disk if disk is not None else DiskGuard(
            self.out_dir, cfg.preflight.min_free_disk_mb, send=status.send_statustext if status else None)
        self.sinks = list(sinks if sinks is not None else build_sinks(SinkContext(
            cfg, self.out_dir, self.zone_snapshot, status, self.disk.crops_allowed, clock, map=self.map,
            thresholds=thresholds or {})))
        self.resumed = replay_earlier(self.sinks, self.map)
        self._zone_snapshot, self._zones_version = self.map.zone_features(), self.map.zones_version
        self._last_flags: tuple[str, ...] = ()
        self.untrusted = self.written = 0
        self._seen_frame = False

    def sink(self, name: str) -> DetectionSink | None:
        """The sink of that registry name, if this run has it (for tools and tests)."""
        return next((s for s in self.sinks if s.name == name), None)

    def zone_snapshot(self) -> Sequence[dict[str, Any]]:
        """The current zones (rebuilt with them), read-only, safe to hand on: a ZoneTable on the ground map."""
        return self._zone_snapshot

    def _state_at(self, t_mono: float) -> PoseEstimate | None:
        if self.telemetry is None:
            return None
        try:
            return self.telemetry.state_at(t_mono)
        except Exception:  # a telemetry fault must not lose the detection
            log.exception("telemetry state_at failed; recording the detection without a pose")
            return None

    def handle(self, result: FrameResult) -> None:
        """Record one frame's look and flagged tiles and update the map (on disk before this returns)."""
        if not self._seen_frame:
            self._seen_frame = True
            f = result.frame
            log.info("preflight camera: first frame %dx%d from %s (seq %d)", f.width, f.height, f.source, f.seq)
        self.disk.poll()
        est = self._state_at(result.frame.t_mono)
        self._home.see(est)
        view = frame_view(self.ctx, result.frame, est)  # pose, camera, ground and frame of reference, once
        look = look_record(view, result.tiles)
        for sink in self.sinks:
            sink.on_look(look, result)
        for tile in (t for t in result.tiles if t.flagged):
            det = detection_record(view, tile, result.backend)
            for sink in self.sinks:
                sink.on_record(det, result)
            self.written += 1
            self._note_trust(tuple(det["flags"]))
        self._announce(self.map.add_look(look))
        for sink in reversed(self.sinks):
            sink.on_snapshot()

    def _announce(self, new: Sequence[Any]) -> None:
        """Refresh the zone snapshot when the zones were re-extracted, and tell the sinks about new ones."""
        if self.map.zones_version != self._zones_version:
            _new_snapshot(self)
        for feature in _features_by_id(self._zone_snapshot, [z.id for z in new]):
            log.info("%s", self.map.describe_zone(feature["properties"]))
            for sink in self.sinks:
                sink.on_zone(feature)

    def _note_trust(self, flags: tuple[str, ...]) -> None:
        self.untrusted += bool(flags)
        if flags != self._last_flags:
            if flags:
                log.warning("detections recorded with an untrusted pose (flags: %s)", ", ".join(flags))
            else:
                log.info("pose trusted again; detections are placed normally")
            self._last_flags = flags

    def close(self) -> None:
        """Finish the map (last zones alerted), close the sinks (last first: the products and layers are
        written before the JSONL they read is closed), then the telemetry link if this handler owns it."""
        first: BaseException | None = None
        try:
            self._announce(self.map.finish())
        except Exception as err:
            log.exception("could not finish the map; `payload export %s` rebuilds it from detections.jsonl",
                          self.out_dir)
            first = err
        for sink in reversed(self.sinks):
            try:
                sink.on_close()
            except Exception as err:  # noqa: BLE001 - re-raised below after the others closed
                first = first or err
        if self._owns_telemetry and self.telemetry is not None:
            self.telemetry.close()
        log.info("geotag: %d looks (%d untrusted), %d detections recorded (%d with an untrusted pose), %d zones, "
                 "in %s", self.map.counts.looks, self.map.counts.untrusted, self.written, self.untrusted,
                 len(self.map.zones), self.out_dir)
        if first is not None:
            raise first


def _new_snapshot(handler: GeotagHandler) -> None:
    """The map's zones as the sinks read them, after a cut; then the cut's and the old snapshot's freed heap goes
    back to the system (payload/pipeline/heap.py), once the old snapshot is dropped."""
    handler._zone_snapshot, handler._zones_version = handler.map.zone_features(), handler.map.zones_version
    release_free_heap()


def _features_by_id(snap: Sequence[dict[str, Any]], ids: Sequence[str]) -> list[dict[str, Any]]:
    """The features of these zone ids, in order: a ZoneTable makes only those; a list is indexed once."""
    if not ids:
        return []
    if isinstance(snap, ZoneTable):
        return [snap.feature(i) for i in ids]
    by_id = {f["properties"]["id"]: f for f in snap}
    return [by_id[i] for i in ids]


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
