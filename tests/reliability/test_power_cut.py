"""Power cut: SIGKILL a real `payload run` in the middle of a simulated survey, then `payload export`.

The simulator flies the example scenario (smaller field) at 5x with its MJPEG camera and MAVLink
vehicle on loopback; the payload runs as its own process (python -m payload run) on the tiny bundle
with every threshold at 0, so every tile of every frame is a detection. After the kill:
- every line of detections.jsonl but (at most) the last parses;
- every frame that has a classification record has all its tiles in detections.jsonl, except at
  most the frame being written at the kill (records are fsync'd one by one, classification first);
- `payload export` rebuilds layers that hold exactly the surviving records and reports a torn line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from flight_sim.scenario import Scenario, load_scenario
from flight_sim.sim import Simulation
from payload.files.jsonl import read_jsonl
from payload.sinks.jsonl import DETECTION_SCHEMA_PREFIX
from tests.flight_sim.conftest import free_tcp_port
from tests.payload import tinymodel

ROOT = Path(__file__).resolve().parents[2]
ROWS, COLS = 2, 2

pytestmark = pytest.mark.timeout(240)



def _is_detection(rec: dict) -> bool:
    return str(rec.get("schema", "")).startswith(DETECTION_SCHEMA_PREFIX)

def small_scenario() -> Scenario:
    s = load_scenario(ROOT / "configs" / "scenarios" / "default.yaml")
    f = s.field.model_copy(update={"width_m": 60.0, "height_m": 40.0})
    return s.model_copy(update={"field": f, "patches": [s.patches[0]]})


def lines_of(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def payload_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT))


def test_sigkill_mid_flight_loses_no_written_detection(tmp_path: Path, tiny_bundle_dir: Path) -> None:
    bundle = tinymodel.copy_bundle(tiny_bundle_dir, tmp_path / "bundle")
    tinymodel.rewrite_card(bundle, thresholds={"rust": 0.0, "powdery_mildew": 0.0})
    s = small_scenario()
    out = tmp_path / "out"
    vehicle_url = f"tcp:127.0.0.1:{free_tcp_port()}"
    sim = Simulation.survey(s, vehicle_url, 5.0, wait_for_client=True)
    sim.start()
    proc = None
    try:
        assert sim.camera_url is not None
        cfg = {
            "model": {"bundle": str(bundle), "backend": "auto", "num_threads": 1},
            "source": {"kind": "opencv", "uri": sim.camera_url, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0},
            "tiling": {"rows": ROWS, "cols": COLS, "stagger": False},  # ROWS x COLS detections a frame
            "scheduler": {"max_rate_hz": 8.0, "stats_interval_s": 2.0},
            "output": {"dir": str(out)},
            "telemetry": {"connection": vehicle_url, "connect_timeout_s": 30.0},
            "camera": {"hfov_deg": s.camera.hfov_deg, "width": s.camera.width, "height": s.camera.height},
            "sinks": {"layers_interval_s": 1.0},
            "alerts": {"min_interval_s": 1.0},
            "preflight": {"min_free_disk_mb": 1.0, "wait_fix_s": 5.0},
        }
        cfg_path = tmp_path / "payload.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
        log = (tmp_path / "payload.log").open("w")
        proc = subprocess.Popen([sys.executable, "-m", "payload", "run", "--config", str(cfg_path)],
                                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=payload_env())
        dets = out / "detections.jsonl"
        deadline = time.monotonic() + 120
        while lines_of(dets) < 1 + 12 * (1 + ROWS * COLS):  # map info, then a dozen frames of a look + detections
            assert proc.poll() is None, (tmp_path / "payload.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no detections within 120 s:\n" + (
                tmp_path / "payload.log").read_text()[-3000:]
            time.sleep(0.05)
        assert not sim.wait_done(0)  # mid-flight
        os.kill(proc.pid, signal.SIGKILL)  # the power cut: no handler, no flush, no close
        proc.wait(10)
        log.close()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        sim.stop()
    assert proc.returncode == -signal.SIGKILL

    res = read_jsonl(dets)
    bad = [n for n, _ in res.bad_lines]
    assert bad in ([], [len(dets.read_bytes().split(b"\n"))]), res.bad_lines  # at most a torn LAST line
    assert not bad or res.torn_last_line
    records = [r for r in res.records if _is_detection(r)]  # the looks and map info are checked by test_map
    assert len(records) >= 12 * ROWS * COLS
    assert len({r["id"] for r in records}) == len(records)

    frames = [r for r in read_jsonl(out / "classifications.jsonl").records if r.get("type") == "frame"]
    per_frame = Counter(r["frame"]["seq"] for r in records)
    frame_seqs = [int(r["seq"]) for r in frames]
    assert frame_seqs, "no classification records"
    # every frame classified before the last one is complete in detections.jsonl
    for seq in frame_seqs[:-1]:
        assert per_frame[seq] == ROWS * COLS, (seq, per_frame[seq])
    assert set(per_frame) <= set(frame_seqs)
    assert per_frame[frame_seqs[-1]] <= ROWS * COLS

    # a recorded truly torn line (the kill rarely lands inside a write): cut the last record in half
    raw = dets.read_bytes()
    if not bad:
        last_start = raw.rstrip(b"\n").rfind(b"\n") + 1
        dets.write_bytes(raw[: last_start + (len(raw) - last_start) // 2])
        n_kept = len(records) - int(_is_detection(json.loads(raw[last_start:])))
    else:
        n_kept = len(records)
    ex = subprocess.run([sys.executable, "-m", "payload", "export", str(out)], capture_output=True, text=True,
                        timeout=120, cwd=ROOT, env=payload_env())
    assert ex.returncode == 0, ex.stderr
    assert f"exported {n_kept} detections" in ex.stdout, ex.stdout
    assert "skipped the torn last line" in ex.stdout, ex.stdout
    kept_ids = {r["id"] for r in read_jsonl(dets).records if _is_detection(r)}
    gj = json.loads((out / "detections.geojson").read_text())
    assert {f["properties"]["id"] for f in gj["features"]} == kept_ids
    csv_rows = (out / "detections.csv").read_text().strip().splitlines()
    assert len(csv_rows) == n_kept + 1
    kml = (out / "detections.kml").read_text()
    placed = [r for r in read_jsonl(dets).records if r.get("lat") is not None]  # KML holds placed ones only
    assert kml.count("<Point") == len(placed)
    assert all(f">{r['id']}<" in kml for r in placed)
    # the payload comes back after the power cut and continues the same file: the torn line stays
    # where it is (reported), the new records start on a fresh line
    from payload.config import PayloadConfig
    from payload.pipeline.geotag import GeotagHandler
    from tests.payload.geotagdoubles import LABELS, frame_result

    again = GeotagHandler(PayloadConfig.model_validate({"model": {"bundle": str(bundle)}, "output": {"dir": str(out)},
                                                        "sinks": {"layers_interval_s": 3600}}),
                          labels=LABELS, model_sha256="ab" * 32)
    assert again.resumed == n_kept  # the earlier detections are read back (and the looks into the map)
    again.handle(frame_result(10_000, 1.0, [(0, 0, 64, 64)]))
    again.close()
    res2 = read_jsonl(dets)
    dets2 = [r for r in res2.records if _is_detection(r)]
    assert len(dets2) == n_kept + 1 and len(res2.bad_lines) == 1 and not res2.torn_last_line
    # the layers written at close hold the earlier flight's records and the new one
    gj2 = json.loads((out / "detections.geojson").read_text())
    assert {f["properties"]["id"] for f in gj2["features"]} == {r["id"] for r in dets2}
    print(f"POWER CUT: killed after {len(records)} detections ({len(frame_seqs)} frames); export kept {n_kept}, "
          f"torn line {'real' if bad else 'simulated'}")

