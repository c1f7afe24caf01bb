"""Fly a whole mission on one machine: simulator + the real payload process + scoring.

The payload runs as a separate process started through its own `payload run` entry point, exactly
as on a drone: telemetry reaches it through dronekit over MAVLink on loopback, frames through the
simulator's MJPEG camera stream, and it uses whatever backend it finds (the CPU here). Only the
files it writes are read back, so the mission judges the product as a grower would receive it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
import yaml

from flight_sim.scenario import Scenario, load_scenario, lowest_agl_m, payload_camera
from flight_sim.sim import Simulation
from flight_sim.terrain import scenario_surface
from payload.errors import UserError
from payload.files.jsonl import read_jsonl
from payload.geo.camera import footprint
from payload.geo.frames import geodetic_to_enu
from tools.mission.frametime import camera_truth, frame_stamp_error, write_truth
from tools.mission.gcs import GroundStation
from tools.mission.mapplot import draw_mission_map
from tools.mission.mosaiccheck import mosaic_registration
from tools.mission.score import FoundZone, TruePatch, score_treatment, score_zones
from tools.mission.terrain import DEM_FILE, flat_assumption, write_scenario_dem

log = logging.getLogger("mission")


class MissionError(UserError):
    """The mission could not be flown (bundle build failed, payload died, no flight)."""


@dataclass(frozen=True)
class MissionPlan:
    """What to fly and where to write it."""

    scenario: Path
    out_dir: Path
    bundle: Path
    tlog: Path | None = None
    speed: float = 1.0
    log_level: str = "INFO"
    payload_timeout_s: float = 90.0
    start_s: float | None = None  # a window of the flight (a recorded tlog is long); None = all of it
    end_s: float | None = None
    # a modelled Coral (tools/coral.py) instead of whatever backend the payload finds: usb3, usb2, pcie,
    # devboard; None = the payload's own selection (the CPU on this machine)
    edgetpu_model: str | None = None
    tpus: int = 1
    tpu_layout: str = "replicas"
    model_cost: str = "bundle"  # what a tile costs the modelled chip: the bundle's model, or "resnet50" (224 px)
    # scheduler.tile_choice: "map" (a busy chip classifies the tiles the map values most) or "all" (every
    # tile of the newest frame; frames the chip cannot reach are dropped)
    tile_choice: str = "map"
    # what the camera flies over instead of the scenario's physical World (flight_sim/world): an object with
    # World's interface built from the scenario (a test double, e.g. tests/trainingtexture_world.py); the
    # mosaic's registration check then takes its truth from that object's orthophoto
    world_factory: Callable[[Scenario], Any] | None = None
    # the payload's camera.latency_s: None = the scenario's camera.latency_s (a camera whose delay is known);
    # 0 flies a payload that does not know it, to see the error it leaves
    payload_latency_s: float | None = None


ROOT = Path(__file__).resolve().parents[2]


def payload_command(plan: MissionPlan, cfg_path: Path) -> list[str]:
    """`payload run`, or the same run inside the modelled-Coral entry point when the plan asks for one.

    `--flight-dir`: the payload writes this mission's one flight into the mission's folder itself (not a
    new flight folder under it), where the scoring, the report and the tools that follow read it.
    """
    args = ["--log-level", plan.log_level, "run", "--config", str(cfg_path), "--flight-dir",
            str(plan.out_dir.resolve())]
    if plan.edgetpu_model is None:
        return [*_console_script("payload"), *args]
    return [sys.executable, "-m", "tools.mission.modelled_payload", "--edgetpu-model", plan.edgetpu_model,
            "--tpus", str(plan.tpus), "--layout", plan.tpu_layout, "--model-cost", plan.model_cost, *args]


# the payload writes the flight's products after SIGTERM (map, rasters, mosaic, prescription, report);
# on a loaded 2-core machine that took over 30 s (deploy/payload.service allows 180 s)
STOP_TIMEOUT_S = 120.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _console_script(name: str) -> list[str]:
    """The venv's console script when installed (as an operator would run it), else `python -m`."""
    exe = Path(sys.executable).with_name(name)
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", {"payload": "payload", "cropscout-build": "compile"}[name]]


def ensure_bundle(bundle: Path, log_level: str = "INFO") -> Path:
    """Build a quick model bundle when there is none (minutes, with progress shown)."""
    if (bundle / "model_card.json").is_file():
        log.info("model bundle: %s (existing)", bundle)
        return bundle
    log.info("no model bundle at %s: building the quick profile (a few minutes on 2 cores)", bundle)
    cmd = [*_console_script("cropscout-build"), "--log-level", log_level, "build", "--profile", "quick",
           "--cpu-only", "--out", str(bundle)]
    done = subprocess.run(cmd, check=False)  # noqa: S603 - fixed argv, no shell
    if done.returncode != 0 or not (bundle / "model_card.json").is_file():
        raise MissionError(f"building the quick model bundle failed (exit {done.returncode}); see the log above")
    return bundle


def payload_config(plan: MissionPlan, s: Scenario, vehicle_url: str, camera_url: str,
                   dem: Path | None = None) -> dict:
    """The payload YAML the mission runs with: the scenario's camera and tiling, loopback links (and its DEM)."""
    c = s.camera
    geotag: dict = {"ground": "home", "min_height_agl_m": round(0.5 * s.flight.altitude_m, 1)}
    if dem is not None:
        # the terrain as a grower's DEM; take-off and landing are judged above the ground, as on flat ground
        geotag = {"ground": "dem", "dem": str(dem.resolve()),
                  "min_height_agl_m": round(0.5 * lowest_agl_m(s), 1)}
    camera = payload_camera(c)
    camera["latency_s"] = c.latency_s if plan.payload_latency_s is None else plan.payload_latency_s
    return {
        "model": {"bundle": str(plan.bundle.resolve()), "backend": "auto", "num_threads": 2},
        "source": {"kind": "opencv", "uri": camera_url, "reconnect_min_s": 0.2, "reconnect_max_s": 2.0},
        "tiling": {"rows": c.tile_rows, "cols": c.tile_cols, "overlap": c.tile_overlap},
        "scheduler": {"stats_interval_s": 10.0, "queue_size": 256, "tile_choice": plan.tile_choice},
        "output": {"dir": str(plan.out_dir.resolve())},
        "telemetry": {"connection": vehicle_url, "connect_timeout_s": 30.0},
        "camera": camera,
        # sightings during take-off and landing see the ground at a scale the model never learnt
        "geotag": geotag,
        "sinks": {"crops": True, "layers_interval_s": 5.0},
        "alerts": {"enabled": True, "min_interval_s": 2.0},
        # the tiles worth a person's look, so every mission can be reviewed (`payload review`, docs/REVIEW.md)
        "review": {"enabled": True},
        # the grid prescription too, so one mission shows every terminal file (docs/PRESCRIPTIONS.md)
        # and zones.gpkg: the mission runs on the workstation (pyogrio), not in the drone's defaults
        "prescription": {"grid_cell_m": 5.0, "formats": ["shp", "gpkg", "isoxml"]},
        "preflight": {"min_free_disk_mb": 50.0, "wait_fix_s": 5.0},
    }


def _enu(lat: float, lon: float, s: Scenario) -> tuple[float, float]:
    e, n, _ = geodetic_to_enu(lat, lon, s.origin.alt, s.origin.lat, s.origin.lon, s.origin.alt)
    return float(e), float(n)


def _geometry_en(geom: dict | None, s: Scenario) -> shapely.geometry.base.BaseGeometry:
    """A GeoJSON (Multi)Polygon in lon, lat as a shapely geometry in metres east/north of the field origin."""
    if not geom:
        return shapely.Polygon()
    polys = [geom["coordinates"]] if geom["type"] == "Polygon" else geom["coordinates"]
    out = []
    for rings in polys:
        en = [[_enu(lat, lon, s) for lon, lat in ring] for ring in rings]
        out.append(shapely.Polygon(en[0], en[1:]))
    return shapely.union_all(out)


def read_zones(out_dir: Path, s: Scenario) -> list[FoundZone]:
    """The zones layer the payload wrote, in metres east/north of the field origin."""
    path = out_dir / "zones.geojson"
    if not path.is_file():
        return []
    out = []
    for f in json.loads(path.read_text(encoding="utf-8")).get("features", []):
        p = f["properties"]
        e, n = _enu(float(p["lat"]), float(p["lon"]), s)
        out.append(FoundZone(p["label"], _geometry_en(f["geometry"], s), e, n, float(p.get("peak_p", 0.0)),
                             str(p.get("id", ""))))
    return out


def read_treatment(out_dir: Path, s: Scenario) -> tuple[list[FoundZone], float] | None:
    """The treatment zones the payload wrote (treatment.geojson) and its margin (prescription.json), or None."""
    path, info = out_dir / "treatment.geojson", out_dir / "prescription.json"
    if not path.is_file() or not info.is_file():
        return None
    margin = float(json.loads(info.read_text(encoding="utf-8"))["settings"]["margin_m"])
    out = []
    for f in json.loads(path.read_text(encoding="utf-8")).get("features", []):
        g = _geometry_en(f["geometry"], s)
        c = g.centroid
        out.append(FoundZone(f["properties"]["class"], g, float(c.x), float(c.y), 0.0, str(f["properties"]["id"])))
    return out, margin


def read_seen(out_dir: Path, s: Scenario) -> shapely.geometry.base.BaseGeometry | None:
    """The ground the payload saw at least once (coverage.geojson), in the field's local metres."""
    path = out_dir / "coverage.geojson"
    if not path.is_file():
        return None
    feats = json.loads(path.read_text(encoding="utf-8")).get("features", [])
    seen = next((f for f in feats if f["properties"].get("min_looks") == 1), None)
    return None if seen is None else _geometry_en(seen["geometry"], s)


def probability_rasters(out_dir: Path, s: Scenario) -> tuple[np.ndarray, tuple[float, float, float, float]] | None:
    """The largest disease probability per cell and its extent (left, right, bottom, top) in field metres."""
    info_path = out_dir / "map.json"
    tifs = sorted(out_dir.glob("probability_*.tif"))
    if not tifs or not info_path.is_file():
        return None
    import rasterio

    origin = json.loads(info_path.read_text())["origin"]
    de, dn = _enu(origin["lat"], origin["lon"], s)  # the map's tangent plane is this far from the field's
    bands = []
    for t in tifs:
        with rasterio.open(t) as src:
            bands.append(src.read(1))
            left, bottom, right, top = src.bounds
    stack = np.stack(bands)
    prob = np.where(np.isnan(stack).all(axis=0), np.nan, np.nanmax(np.nan_to_num(stack, nan=-1.0), axis=0))
    return prob, (left + de, right + de, bottom + dn, top + dn)


def track_and_footprints(
    sim: Simulation, s: Scenario, step_s: float = 1.0, footprint_every_s: float = 4.0,
    start_s: float | None = None, end_s: float | None = None,
) -> tuple[list[tuple[float, float]], list[list[tuple[float, float]]]]:
    """The true flight track and camera footprints (metres from the origin) for the map."""
    tl = sim.timeline
    cam = s.camera.model()
    ground = scenario_surface(s) or s.origin.alt
    t0 = float(tl.truth.t[0]) if start_s is None else start_s
    t1 = float(tl.truth.t[0]) + tl.duration if end_s is None else end_s
    track, fps = [], []
    for t in np.arange(t0, t1 + 1e-9, step_s):
        pose = tl.pose_at(float(t))
        track.append(_enu(pose.lat_deg, pose.lon_deg, s))
        agl = pose.alt_m - s.origin.alt
        if agl > 5.0 and math.fmod(t - t0, footprint_every_s) < step_s / 2:
            fp = footprint(cam, pose, ground)
            if fp is not None:
                fps.append([_enu(la, lo, s) for la, lo in fp])
    return track, fps


def record_latency_ms(out_dir: Path) -> dict:
    """Inference-to-written latency of every detection, from the records' own stamps."""
    path = out_dir / "detections.jsonl"
    if not path.is_file():
        return {"count": 0}
    recs = read_jsonl(path).records
    lat = [
        1000.0 * (r["t_written_mono"] - r["t_inferred_mono"])
        for r in recs
        if r.get("t_written_mono") is not None and r.get("t_inferred_mono") is not None
    ]
    if not lat:
        return {"count": len(recs), "stamped": 0}
    a = np.asarray(lat)
    return {
        "count": len(recs),
        "stamped": len(lat),
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p95_ms": round(float(np.percentile(a, 95)), 2),
        "max_ms": round(float(a.max()), 2),
        "within_100ms": int((a <= 100.0).sum()),
    }


def _stop_payload(proc: subprocess.Popen, timeout_s: float) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.error("payload did not stop within %.0f s of SIGTERM: killing it", timeout_s)
            proc.kill()
            proc.wait(timeout=10)
    return int(proc.returncode)


SCORE_KEYS = ("patches_total", "patches_found", "patches_not_inspected", "false_zones", "zones_total",
              "centroid_error_m_median", "centroid_error_m_p95", "iou_mean", "coverage_fraction")


def treatment_line(t: dict | None) -> str:
    """The prescription's check in one sentence (printed after every mission)."""
    if t is None:
        return "treatment: no prescription in the output folder"
    ratio = "-" if t["treated_ratio"] is None else f"{t['treated_ratio']:.2f}"
    return (f"treatment: {t['patches_treated']}/{len(t['patches'])} patches inside a treatment zone "
            f"({t['patches_treated_with_their_product']} with their own product); treated {t['treated_m2']:.0f} m2 "
            f"vs true {t['true_diseased_m2']:.0f} m2 ({t['true_plus_margin_m2']:.0f} m2 with the margin): "
            f"ratio {ratio} (limit {t['limit_m2']:.0f} m2; stricter reading 3x true + the margin's ring: "
            f"{t['limit_strict_m2']:.0f} m2, {'met' if t['within_strict_limit'] else 'exceeded'}) "
            f"-> {'ok' if t['treatment_ok'] else 'MISS'}")


def score_output(out: Path, s: Scenario) -> tuple[list[TruePatch], list[FoundZone], dict]:
    """Score the zones and coverage a payload wrote in `out` (a flight's folder, or a fused export's)."""
    zones = read_zones(out, s)
    seen = read_seen(out, s)
    patches = [TruePatch(p.cls, p.east_m, p.north_m, p.radius_m) for p in s.patches]
    field = shapely.box(0.0, 0.0, s.field.width_m, s.field.height_m)
    score = score_zones(patches, zones, field, seen)
    rx = read_treatment(out, s)
    score["treatment"] = None if rx is None else score_treatment(patches, rx[0], rx[1])
    return patches, zones, score


def rescore(out: Path, scenario: Path) -> dict:
    """Score an existing output folder without flying (e.g. `payload export A B --out F` of two sorties):
    writes score.json and map.png there."""
    s = load_scenario(scenario)
    patches, zones, score = score_output(out, s)
    (out / "score.json").write_text(json.dumps(score, indent=2) + "\n", encoding="utf-8")
    draw_mission_map(out / "map.png", s.field.width_m, s.field.height_m, patches, zones, [], [], score,
                     title=f"{out.name}: {scenario.name} (seed {s.seed})", rasters=probability_rasters(out, s))
    return score


def gcs_messages(gcs: GroundStation) -> dict:
    """The ground station's counts by type, and the camera protocol's messages in a few words."""
    out = gcs.summary()
    captured = gcs.received("CAMERA_IMAGE_CAPTURED")
    info = gcs.received("CAMERA_INFORMATION")
    out["camera_model_name"] = bytes(info[0].model_name).rstrip(b"\0").decode("ascii", "replace") if info else None
    out["captured_image_indices"] = [int(m.image_index) for m in captured]
    out["captured_ok"] = sum(1 for m in captured if m.capture_result == 1)
    return out


def run_mission(plan: MissionPlan) -> dict:
    """Fly, score and report one mission; returns report.json's content."""
    s = load_scenario(plan.scenario)
    out = plan.out_dir
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    ensure_bundle(plan.bundle, plan.log_level)
    dem = None if s.terrain is None else write_scenario_dem(s, out / DEM_FILE)

    vehicle_url = f"tcp:127.0.0.1:{_free_port()}"
    window: dict = {"end_s": plan.end_s}
    if plan.start_s is not None:
        window["start_s"] = plan.start_s
    world = None if plan.world_factory is None else plan.world_factory(s)
    # a ground station on the vehicle's second link, as QGroundControl on the telemetry radio: what it receives
    # (the vehicle's stream and, routed through the vehicle, the payload's camera messages) is gcs_messages
    gcs = GroundStation().start()
    if plan.tlog is not None:
        sim = Simulation.replay(plan.tlog, vehicle_url, plan.speed, scenario=s, wait_for_client=True, world=world,
                                gcs=gcs.url, **window)
    else:
        sim = Simulation.survey(s, vehicle_url, plan.speed, wait_for_client=True, world=world, gcs=gcs.url,
                                **window)
    try:
        sim.start()
    except BaseException:
        gcs.stop()
        raise
    t_start = time.monotonic()
    proc: subprocess.Popen | None = None
    try:
        assert sim.camera_url is not None
        cfg_path = out / "payload.yaml"
        cfg_path.write_text(yaml.safe_dump(payload_config(plan, s, vehicle_url, sim.camera_url, dem), sort_keys=False))
        log.info("simulator: vehicle %s, camera %s; flight of %.0f s at %gx",
                 vehicle_url, sim.camera_url, sim.timeline.duration, plan.speed)
        cmd = payload_command(plan, cfg_path)
        log.info("starting the payload: %s", " ".join(cmd))
        payload_log = (out / "payload.log").open("w", encoding="utf-8")
        proc = subprocess.Popen(cmd, stdout=payload_log, stderr=subprocess.STDOUT, cwd=ROOT)  # noqa: S603
        flight_s = sim.timeline.duration / plan.speed
        deadline = time.monotonic() + flight_s + plan.payload_timeout_s
        last = 0.0
        while not sim.wait_done(timeout=1.0):
            if proc.poll() is not None:
                raise MissionError(
                    f"the payload exited early (code {proc.returncode}); see {out / 'payload.log'}"
                )
            if time.monotonic() > deadline:
                raise MissionError("the simulated flight did not finish in time (did the payload connect?)")
            if time.monotonic() - last >= 10.0:
                last = time.monotonic()
                log.info("flight %5.1f / %.0f s", sim.sim_time, sim.timeline.duration)
        log.info("flight finished after %.1f s: stopping the payload", time.monotonic() - t_start)
        time.sleep(1.0)  # let the last frame through the pipeline
        code = _stop_payload(proc, STOP_TIMEOUT_S)
        payload_log.close()
        if code != 0:
            raise MissionError(f"the payload exited with code {code}; see {out / 'payload.log'}")
        alerts = sim.vehicle.statustexts()
        truth = None if sim.server is None else write_truth(out, camera_truth(sim.server, s.camera.latency_s))
        track, fps = track_and_footprints(sim, s, start_s=plan.start_s, end_s=plan.end_s)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        sim.stop()
        gcs.stop()

    patches, zones, score = score_output(out, s)
    flat = None
    if dem is not None:
        # the same looks on flat ground at home altitude: the error the flat assumption would have made
        _p, _z, fscore = score_output(flat_assumption(out, dem, s.origin.alt), s)
        flat = {"what": "the same looks re-projected onto flat ground at home altitude (tools/mission/terrain.py)",
                **{k: fscore.get(k) for k in SCORE_KEYS if k != "coverage_fraction"}, "patches": fscore["patches"],
                "false_zone_positions": fscore["false_zone_positions"]}
    registration = mosaic_registration(out, s, world=world)
    stamp_error = None if truth is None else frame_stamp_error(out, json.loads(truth.read_text(encoding="utf-8")))
    stats_path = out / "run_stats.json"
    stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
    report = {
        "scenario": str(plan.scenario),
        "tlog": None if plan.tlog is None else str(plan.tlog),
        "seed": s.seed,
        **{k: score.get(k) for k in (*SCORE_KEYS, "match_rule")},
        "per_class": score["per_class"],
        "coverage_gaps": score.get("coverage_gaps", []),
        "frames_captured": stats.get("frames_captured"),
        "frames_processed": stats.get("frames_processed"),
        "frames_dropped": stats.get("frames_dropped"),
        "backend": stats.get("backend"),
        # the Coral the backend was modelled on (tools/coral.py), None when the payload chose its own
        "edgetpu_model": None if plan.edgetpu_model is None else {
            "model": plan.edgetpu_model, "tpus": plan.tpus, "layout": plan.tpu_layout, "model_cost": plan.model_cost,
            "modelled": True},
        "tile_choice": plan.tile_choice,
        "tiles_offered": stats.get("tiles_offered"),
        "tiles_classified": stats.get("tiles_classified"),
        "inference_ms_p50": stats.get("inference_ms_p50"),
        "capture_to_record_ms_p50": stats.get("latency_ms_p50"),
        "capture_to_record_ms_p95": stats.get("latency_ms_p95"),
        # the payload's frame stamps against the camera's true exposure times (tools/mission/frametime.py)
        "frame_stamp_error_ms": stamp_error,
        "detection_write_latency": record_latency_ms(out),
        "alerts_received_by_gcs": [t for _sev, t in alerts],
        # what a ground station on the vehicle's second link received, by message type (tools/mission/gcs.py):
        # CAMERA_IMAGE_CAPTURED are the payload's points on QGroundControl's map (a zone's at least once each)
        "gcs_messages": gcs_messages(gcs),
        "flight_s": round(sim.timeline.duration, 1),
        "wall_s": round(time.monotonic() - t_start, 1),
        "patches": score["patches"],
        # the prescription against the truth: every patch inside a treatment zone, treated area vs true area
        "treatment": score["treatment"],
        "false_zone_positions": score["false_zone_positions"],
        "ground": "flat" if dem is None else f"dem {dem.name}",
        "flat_assumption": flat,
        # the mosaic against the simulator's field: how far the painted patches are drawn from their
        # true places (tools/mission/mosaiccheck.py; mosaic_truth.png draws them)
        "mosaic_registration_m": None if registration is None else registration["mosaic_registration_m"],
        "mosaic_registration": registration,
        "map": json.loads((out / "map.json").read_text()) if (out / "map.json").is_file() else None,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    draw_mission_map(out / "map.png", s.field.width_m, s.field.height_m, patches, zones, track, fps, score,
                     title=f"Mission {plan.scenario.name} (seed {s.seed})", rasters=probability_rasters(out, s))
    os.sync()
    return report
