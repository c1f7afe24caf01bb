"""The ResultHandler that turns classified frames into looks, detections and the disease map.

The payload runtime's writer thread calls `handle(FrameResult)` for every frame: the vehicle state
at the frame's capture time (PoseSource.state_at(frame.t_mono)) -> a look record (every tile's
scores, call and ground footprint, the pose trust) -> every sink (detections.jsonl has it on disk)
-> the disease map (payload/geo/diseasemap.py: evidence grid, zones); for each flagged tile a
detection record -> every sink in order (crops, detections.jsonl: the source of truth, layers,
alerts); each zone confirmed for the first time is told to the sinks (the live alert). At close
the map's products (zones, coverage, GeoTIFF rasters) are written. What the sinks are and how they are built is
payload/sinks/; which pose source and which sinks a run uses is decided by the runner
(payload/pipeline/runner.py), which hands them in.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from payload.config import PayloadConfig
from payload.errors import ConfigError, PrescriptionError
from payload.geo.detections import DetectionContext, build_detection
from payload.geo.diseasemap import MAPINFO_SCHEMA, DiseaseMap, is_look, mapinfo_record
from payload.geo.facemap import FaceMap
from payload.geo.looks import build_look
from payload.geo.sensor import SensorModel, default_sensor_model
from payload.geo.site import RackFace, site_faces
from payload.geo.surface import GroundSurface
from payload.geo.terrain import load_dem_surface
from payload.ops.diskguard import DiskGuard
from payload.sinks.base import DetectionSink, SinkContext
from payload.sinks.jsonl import DetectionsJsonl, iter_detections
from payload.sinks.maplayers import write_map_products, zone_features
from payload.sinks.prescription import write_prescription
from payload.sinks.registry import build_sinks
from payload.sinks.sitelayers import write_site_products
from payload.sitefile import SiteLayout, load_site
from payload.types import FrameResult, PoseEstimate, PoseSource, ResultHandler, StatusSender

log = logging.getLogger(__name__)


def default_sensor(labels: Sequence[str]) -> SensorModel:
    """The documented default sensor model for these labels (healthy = 'healthy', else the first label)."""
    healthy = "healthy" if "healthy" in labels else labels[0]
    return default_sensor_model(healthy, [x for x in labels if x != healthy])


def site_of(cfg: PayloadConfig) -> tuple[SiteLayout | None, list[RackFace]]:
    """The site file's layout and its rack faces (None and [] outdoors)."""
    if cfg.site is None:
        return None, []
    site = load_site(cfg.site.file)
    return site, site_faces(site)


DEM_HOME_MISMATCH_M = 3.0  # DEM height at home vs the autopilot's home altitude beyond this: a datum problem


def ground_surface(cfg: PayloadConfig) -> GroundSurface | None:
    """The terrain the rays are cut with (geotag.ground: dem), loaded and resampled once; None: flat ground."""
    g = cfg.geotag
    if g.ground != "dem" or g.dem is None:
        return None
    try:
        dem = load_dem_surface(g.dem, g.dem_vertical_offset_m, g.dem_cell_m)
    except ValueError as err:  # DemError, or a DEM with no usable node in its own frame
        raise ConfigError(f"field 'geotag.dem': bad value '{g.dem}'; {err}") from None
    w, e, s, n = dem.bounds
    log.info("terrain: %s resampled to %.2f m cells in a frame at %.6f, %.6f: %.0f x %.0f m, relief %.1f m",
             g.dem, dem.cell_m, dem.frame.lat0 if dem.frame else 0.0, dem.frame.lon0 if dem.frame else 0.0,
             e - w, n - s, dem.relief_m)
    return dem


def check_home_on_dem(dem: GroundSurface, est: PoseEstimate) -> str | None:
    """A warning when the DEM's height where the vehicle stands on the ground disagrees with home altitude.

    Both are the ground's altitude above mean sea level at take-off; metres apart means the DEM is in
    another vertical datum (ellipsoidal heights: set geotag.dem_vertical_offset_m) or the field is off
    it. None when they agree, and for a pose in the air (only the ground under a landed vehicle is home).
    """
    p = est.pose
    if dem.frame is None or est.is_local or not abs(est.relative_alt_m) < 1.0:
        return None
    e, n, _ = dem.frame.to_enu(p.lat_deg, p.lon_deg, est.home_alt_m)
    h = float(np.asarray(dem.height_at(float(e), float(n))).reshape(-1)[0])
    if not math.isfinite(h):
        return f"the take-off point ({p.lat_deg:.6f}, {p.lon_deg:.6f}) is outside {dem.name}: does it cover the field?"
    _, _, alt = dem.frame.to_geodetic(float(e), float(n), h)
    diff = float(alt) - float(est.home_alt_m)
    if abs(diff) > DEM_HOME_MISMATCH_M:
        return (f"{dem.name} puts the ground at take-off {diff:+.1f} m from the autopilot's home altitude "
                f"({est.home_alt_m:.1f} m): a vertical datum mismatch? (geotag.dem_vertical_offset_m)")
    return None


def site_origin(cfg: PayloadConfig, site: SiteLayout | None) -> tuple[float, float, float] | None:
    """The local frame's configured origin on Earth: the site file's, else telemetry.origin, else None."""
    if site is not None and site.origin is not None:
        return (site.origin.lat, site.origin.lon, site.origin.alt)
    o = cfg.telemetry.origin
    return None if o is None else (o.lat, o.lon, o.alt)


def local_safe_config(cfg: PayloadConfig) -> PayloadConfig:
    """In a site without a known origin, only CSV layers: GeoJSON and KML coordinates are WGS84, and a local
    metre must never pass for a longitude (RFC 7946)."""
    site, _ = site_of(cfg)
    if site is None or site_origin(cfg, site) is not None or set(cfg.sinks.formats) <= {"csv"}:
        return cfg
    log.info("site %s has no origin on Earth: GeoJSON/KML layers are off, CSV and site products only", site.name)
    sinks = cfg.sinks.model_copy(update={"formats": [f for f in cfg.sinks.formats if f == "csv"]})
    return cfg.model_copy(update={"sinks": sinks})


def disease_map(cfg: PayloadConfig, sensor: SensorModel) -> DiseaseMap | FaceMap:
    """The disease map the config describes: the ground grid, or one grid per rack face in a site."""
    site, faces = site_of(cfg)
    if site is not None and cfg.site is not None:
        return FaceMap(sensor, cfg.site.map, faces, site_origin(cfg, site))
    return DiseaseMap(sensor, cfg.map)


class GeotagHandler:
    """ResultHandler (payload/types.py) writing looks and detections to its sinks and building the disease map.

    `telemetry` is where poses come from (None: every look is flagged no_telemetry);
    `status` is the ground-station link for the disk guard's and the sinks' messages (default:
    the telemetry, when it can send). `sensor` is the bundle's sensor model (default: the
    documented default table). `sinks`, `dmap` and `disk` are built from the config when not
    handed in (the runner hands them in; tests and tools often let them default).
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
        sensor: SensorModel | None = None,
        dmap: DiseaseMap | FaceMap | None = None,
        disk: DiskGuard | None = None,
        sinks: Sequence[DetectionSink] | None = None,
    ) -> None:
        cfg = local_safe_config(cfg)
        self.cfg = cfg
        self.out_dir = Path(out_dir if out_dir is not None else cfg.output.dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.run_id = run_id or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
        _site, faces = site_of(cfg)
        self.ctx = DetectionContext(list(labels), model_sha256, self.run_id, cfg.camera, cfg.geotag, faces,
                                    ground_surface(cfg))
        self._home_checked = self.ctx.surface is None
        self.telemetry = telemetry
        self._owns_telemetry = owns_telemetry
        if status is None and isinstance(telemetry, StatusSender):
            status = telemetry  # the MAVLink link is both
        self.map: DiseaseMap | FaceMap = dmap if dmap is not None else disease_map(
            cfg, sensor or default_sensor(list(labels)))
        self._zone_snapshot: list[dict[str, Any]] = []
        self._zones_version = 0
        # below the free-disk floor crops stop first and the records go on (payload/ops/diskguard.py)
        self.disk = disk if disk is not None else DiskGuard(
            self.out_dir, cfg.preflight.min_free_disk_mb, send=status.send_statustext if status else None
        )
        if sinks is None:
            sinks = build_sinks(SinkContext(cfg, self.out_dir, self.zone_snapshot, status,
                                            self.disk.crops_allowed, clock))
        self.sinks = list(sinks)
        # a restart after a crash continues the same files: earlier looks rebuild the map (without
        # alerting again), earlier detections stay in the layers
        self.resumed = 0
        has_info = False
        for sink in self.sinks:
            for rec in sink.earlier():
                if is_look(rec):
                    self.map.add_look(rec)
                elif rec.get("schema") == MAPINFO_SCHEMA:
                    has_info = True
                else:
                    self.resumed += 1
        self._zone_snapshot = self._features()
        self._zones_version = self.map.zones_version
        jsonl = self.sink("jsonl")
        if isinstance(jsonl, DetectionsJsonl) and not has_info:
            jsonl.write_record(mapinfo_record(self.map.sensor, self.map.cfg))
        self._last_flags: tuple[str, ...] = ()
        self.untrusted = 0
        self.written = 0
        self._seen_frame = False

    def sink(self, name: str) -> DetectionSink | None:
        """The sink of that registry name, if this run has it (for tools and tests)."""
        return next((s for s in self.sinks if s.name == name), None)

    def zone_snapshot(self) -> list[dict[str, Any]]:
        """The current zones as plain data (rebuilt whenever the zones are), safe to hand to another thread."""
        return self._zone_snapshot

    def _features(self) -> list[dict[str, Any]]:
        """The current zones as layer features (ground zones in WGS84, or rack-face zones in site terms)."""
        if isinstance(self.map, FaceMap):
            return self.map.zone_features()
        return zone_features(self.map.zones, self.map.origin)

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
        if not self._home_checked and est is not None and self.ctx.surface is not None:
            warning = check_home_on_dem(self.ctx.surface, est)
            self._home_checked = warning is not None or abs(est.relative_alt_m) < 1.0
            if warning:
                log.warning("terrain: %s", warning)
        look = build_look(self.ctx, result.frame, result.tiles, est)
        for sink in self.sinks:
            sink.write_look(look, result)
        for tile in (t for t in result.tiles if t.flagged):
            det = build_detection(self.ctx, result.frame, tile, est, result.backend)
            for sink in self.sinks:
                sink.write(det, result)
            self.written += 1
            self._note_trust(det)
        self._announce(self.map.add_look(look))
        for sink in reversed(self.sinks):
            sink.end_frame()

    def _announce(self, new: Sequence[Any]) -> None:
        """Refresh the zone snapshot when the zones were re-extracted, and tell the sinks about new ones."""
        if self.map.zones_version != self._zones_version:
            self._zones_version = self.map.zones_version
            self._zone_snapshot = self._features()
        by_id = {f["properties"]["id"]: f for f in self._zone_snapshot}
        for z in new:
            feat = by_id[z.id]
            p = feat["properties"]
            if "text" in p:
                log.info("new zone %s: %s (%.2f m2, peak p %.2f)", p["id"], p["text"], p["area_m2"], p["peak_p"])
            else:
                log.info("new %s zone %s at %.6f, %.6f (%.1f m2, peak p %.2f)", p["label"], p["id"], p["lat"],
                         p["lon"], p["area_m2"], p["peak_p"])
            for sink in self.sinks:
                sink.new_zone(feat)

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

    def _write_prescription(self) -> None:
        """The prescription files; settings a strict terminal cannot meet are logged with their fix, and the
        flight's other products stand."""
        assert isinstance(self.map, DiseaseMap)
        try:
            write_prescription(self.out_dir, self.map, self.cfg.prescription)
        except PrescriptionError as err:
            log.error("no prescription written: %s (then `payload export %s --prescription --config FILE`)",
                      err, self.out_dir)

    def close(self) -> None:
        """Finish the map (last zones alerted, products written), close the sinks (last first: the layers
        are written before the JSONL they read is closed), then the telemetry link if this handler owns it."""
        first: BaseException | None = None
        try:
            self._announce(self.map.finish())
            # the layers sink (when there is one) writes the zones itself at close, from the final snapshot
            if isinstance(self.map, FaceMap):
                jsonl = self.sink("jsonl")
                path = jsonl.path if isinstance(jsonl, DetectionsJsonl) else None
                write_site_products(self.out_dir, self.map, iter_detections(path) if path and path.is_file() else [])
            else:
                write_map_products(self.out_dir, self.map, self.cfg.sinks.formats, self.cfg.map.rasters,
                                   zones=self.sink("layers") is None)
                if self.cfg.prescription.enabled:
                    self._write_prescription()
        except Exception as err:
            log.exception("could not finish the map; `payload export %s` rebuilds it from detections.jsonl",
                          self.out_dir)
            first = err
        for sink in reversed(self.sinks):
            try:
                sink.close()
            except Exception as err:  # noqa: BLE001 - re-raised below after the others closed
                first = first or err
        if self._owns_telemetry and self.telemetry is not None:
            self.telemetry.close()
        log.info(
            "geotag: %d looks (%d untrusted), %d detections recorded (%d with an untrusted pose), %d zones, in %s",
            self.map.counts.looks,
            self.map.counts.untrusted,
            self.written,
            self.untrusted,
            len(self.map.zones),
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
