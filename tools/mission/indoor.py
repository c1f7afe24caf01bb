"""The indoor mission: a vertical farm flown without GPS, with the real payload, scored in site terms.

Same shape as the outdoor mission (tools/mission/run.py): the simulator serves MAVLink and an MJPEG
camera, the payload runs as its own process with `payload run`, and only the files it writes are
read back. The payload is told the site file and `telemetry.frame: local`; it hears no GPS fix at
any moment. Its zones (zones_site.json: one evidence grid per rack face) are scored against the
scenario's diseased plant groups:

- a group is FOUND when a zone of its class lies on its face with the group's rack, bay and shelf
  (the zone's centroid address); its position error is the distance on the face (along, up) from
  the nearest such zone's centroid to the group's centre;
- a zone is FALSE when it matches no group (wrong class, face, bay or shelf, or no group there).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from flight_sim.indoor import IndoorScenario, group_centre, load_indoor_scenario
from flight_sim.scenario import payload_camera
from flight_sim.sim import Simulation
from tools.mission.run import ROOT, MissionError, MissionPlan, _free_port, _stop_payload, ensure_bundle, payload_command

log = logging.getLogger("mission")

INDOOR_SCORE_KEYS = ("groups_total", "groups_found", "false_zones", "zones_total", "face_error_m_median",
                     "face_error_m_max", "gps_fix_ever", "detections_trusted", "detections_untrusted")


def indoor_payload_config(plan: MissionPlan, s: IndoorScenario, vehicle_url: str, camera_url: str) -> dict:
    """The payload YAML of an indoor mission: local frame, the site file, the sideways camera."""
    c = s.camera
    assert s.layout is not None
    return {
        "model": {"bundle": str(plan.bundle.resolve()), "backend": "auto", "num_threads": 2},
        "source": {"kind": "opencv", "uri": camera_url, "reconnect_min_s": 0.2, "reconnect_max_s": 2.0},
        "tiling": {"rows": c.tile_rows, "cols": c.tile_cols, "overlap": c.tile_overlap},
        "scheduler": {"stats_interval_s": 10.0, "queue_size": 256},
        "output": {"dir": str(plan.out_dir.resolve())},
        "telemetry": {"connection": vehicle_url, "connect_timeout_s": 30.0, "frame": "local",
                      "frame_name": s.layout.name},
        "camera": {**payload_camera(c), "mount_rpy_deg": list(c.mount_rpy_deg)},
        # take-off and landing: the camera sees the floor at a scale the model never learnt
        "geotag": {"min_height_agl_m": round(0.6 * s.flight.height_m, 2)},
        "site": {"file": str(s.site)},
        "sinks": {"crops": False, "layers_interval_s": 5.0, "formats": ["csv"]},
        "alerts": {"enabled": True, "min_interval_s": 1.0},
        "preflight": {"min_free_disk_mb": 50.0},
    }


def score_site(zones: list[dict[str, Any]], s: IndoorScenario) -> dict[str, Any]:
    """Score rack-face zones against the scenario's plant groups (rules in the module docstring)."""
    groups = []
    used: set[int] = set()
    errors = []
    for g in s.plants:
        ca, cu = group_centre(s, g)
        cands = [(i, z) for i, z in enumerate(zones)
                 if z["label"] == g.cls and z["rack"] == g.rack and z["face"] == g.face and z["bay"] == g.bay
                 and z["shelf"] == g.shelf]
        best = min(cands, key=lambda iz: math.hypot(iz[1]["along_m"] - ca, iz[1]["up_m"] - cu), default=None)
        row: dict[str, Any] = {"class": g.cls, "rack": g.rack, "face": g.face, "bay": g.bay, "shelf": g.shelf,
                               "along_m": round(ca, 3), "up_m": round(cu, 3), "found": best is not None}
        if best is not None:
            for i, _z in cands:
                used.add(i)
            err = math.hypot(best[1]["along_m"] - ca, best[1]["up_m"] - cu)
            errors.append(err)
            row.update({"zone": best[1]["id"], "zone_text": best[1]["text"], "face_error_m": round(err, 3),
                        "along_error_m": round(best[1]["along_m"] - ca, 3),
                        "up_error_m": round(best[1]["up_m"] - cu, 3)})
        groups.append(row)
    false = [{k: z[k] for k in ("id", "text", "label", "along_m", "up_m", "peak_p", "area_m2")}
             for i, z in enumerate(zones) if i not in used]
    return {
        "groups_total": len(s.plants),
        "groups_found": sum(1 for g in groups if g["found"]),
        "false_zones": len(false),
        "zones_total": len(zones),
        "face_error_m_median": None if not errors else round(float(np.median(errors)), 3),
        "face_error_m_max": None if not errors else round(float(np.max(errors)), 3),
        "match_rule": "a zone of the group's class whose centroid is at the group's rack, face, bay and shelf",
        "groups": groups,
        "false_zone_list": false,
    }


def _detection_counts(out: Path) -> dict[str, Any]:
    """Trusted/untrusted detections and whether any record ever saw a GPS fix (fix type >= 2)."""
    path = out / "detections.jsonl"
    trusted = untrusted = 0
    fix_ever = False
    flags: dict[str, int] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            if not str(rec.get("schema", "")).startswith("cropscout.detection/"):
                continue
            if rec.get("trusted"):
                trusted += 1
            else:
                untrusted += 1
                for f in rec.get("flags", []):
                    flags[f] = flags.get(f, 0) + 1
            fix = (rec.get("fix") or {}).get("type")
            fix_ever |= fix is not None and fix >= 2
    return {"detections_trusted": trusted, "detections_untrusted": untrusted, "untrusted_flags": flags,
            "gps_fix_ever": fix_ever}


def run_indoor_mission(plan: MissionPlan) -> dict:
    """Fly, score and report one indoor mission; returns report.json's content."""
    s = load_indoor_scenario(plan.scenario)
    out = plan.out_dir
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    ensure_bundle(plan.bundle, plan.log_level)
    vehicle_url = f"tcp:127.0.0.1:{_free_port()}"
    sim = Simulation.indoor(s, vehicle_url, plan.speed, wait_for_client=True)
    sim.start()
    t_start = time.monotonic()
    proc: subprocess.Popen | None = None
    gps_sent = []
    try:
        assert sim.camera_url is not None
        cfg_path = out / "payload.yaml"
        cfg_path.write_text(yaml.safe_dump(indoor_payload_config(plan, s, vehicle_url, sim.camera_url),
                                           sort_keys=False))
        log.info("simulator: vehicle %s, camera %s; indoor flight of %.0f s at %gx",
                 vehicle_url, sim.camera_url, sim.timeline.duration, plan.speed)
        cmd = payload_command(plan, cfg_path)
        with (out / "payload.log").open("w", encoding="utf-8") as payload_log:
            proc = subprocess.Popen(cmd, stdout=payload_log, stderr=subprocess.STDOUT, cwd=ROOT)  # noqa: S603
            deadline = time.monotonic() + sim.timeline.duration / plan.speed + plan.payload_timeout_s
            last = 0.0
            while not sim.wait_done(timeout=1.0):
                if proc.poll() is not None:
                    raise MissionError(f"the payload exited early (code {proc.returncode}); see {out / 'payload.log'}")
                if time.monotonic() > deadline:
                    raise MissionError("the simulated flight did not finish in time (did the payload connect?)")
                if time.monotonic() - last >= 10.0:
                    last = time.monotonic()
                    log.info("flight %5.1f / %.0f s", sim.sim_time, sim.timeline.duration)
            time.sleep(1.0)
            code = _stop_payload(proc, 30.0)
        if code != 0:
            raise MissionError(f"the payload exited with code {code}; see {out / 'payload.log'}")
        alerts = sim.vehicle.statustexts()
        gps_sent = sorted({int(e.fields["fix_type"]) for e in sim.timeline.of("GPS_RAW_INT")})
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        sim.stop()
    info_path = out / "zones_site.json"
    zones = json.loads(info_path.read_text())["zones"] if info_path.is_file() else []
    score = score_site(zones, s)
    stats = json.loads((out / "run_stats.json").read_text()) if (out / "run_stats.json").is_file() else {}
    report = {
        "scenario": str(plan.scenario),
        "seed": s.seed,
        **score,
        **_detection_counts(out),
        "gps_fix_types_sent": gps_sent,
        "global_position_int_sent": len(sim.timeline.of("GLOBAL_POSITION_INT")),
        "alerts_received_by_gcs": [t for _sev, t in alerts],
        "frames_captured": stats.get("frames_captured"),
        "frames_processed": stats.get("frames_processed"),
        "frames_dropped": stats.get("frames_dropped"),
        "backend": stats.get("backend"),
        "flight_s": round(sim.timeline.duration, 1),
        "wall_s": round(time.monotonic() - t_start, 1),
        "face_pictures": sorted(p.name for p in out.glob("face_*.svg")),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report
