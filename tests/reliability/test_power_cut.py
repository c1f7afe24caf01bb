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
    s = load_scenario(ROOT / "configs" / "scenarios" / "wheat_30m.yaml")
    f = s.field.model_copy(update={"width_m": 60.0, "height_m": 40.0})
    return s.model_copy(update={"field": f, "patches": [s.patches[0]]})


def lines_of(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def payload_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT))


def payload_config(tmp_path: Path, bundle: Path, s: Scenario, vehicle_url: str, camera_url: str) -> Path:
    """The payload YAML of these tests: every tile a detection, output.dir the root of the flight folders."""
    cfg = {
        "model": {"bundle": str(bundle), "backend": "auto", "num_threads": 1},
        "source": {"kind": "opencv", "uri": camera_url, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0},
        "tiling": {"rows": ROWS, "cols": COLS, "stagger": False},  # ROWS x COLS detections a frame
        "scheduler": {"max_rate_hz": 8.0, "stats_interval_s": 2.0},
        "output": {"dir": str(tmp_path / "out")},
        "telemetry": {"connection": vehicle_url, "connect_timeout_s": 30.0},
        "camera": {"hfov_deg": s.camera.hfov_deg, "width": s.camera.width, "height": s.camera.height},
        "sinks": {"layers_interval_s": 1.0},
        "alerts": {"min_interval_s": 1.0},
        "preflight": {"min_free_disk_mb": 1.0, "wait_fix_s": 5.0},
    }
    cfg_path = tmp_path / "payload.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return cfg_path


def start_payload(cfg_path: Path, log_path: Path) -> subprocess.Popen:
    with log_path.open("a") as log:
        return subprocess.Popen([sys.executable, "-m", "payload", "run", "--config", str(cfg_path)],
                                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=payload_env())


def flight_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def wait_for_detections(proc: subprocess.Popen, root: Path, n_lines: int, log_path: Path) -> Path:
    """The run's flight folder once its detections.jsonl has n_lines lines (the payload must stay up)."""
    deadline = time.monotonic() + 120
    while True:
        found = flight_folders(root)
        if found and lines_of(found[-1] / "detections.jsonl") >= n_lines:
            return found[-1]
        assert proc.poll() is None, log_path.read_text()[-3000:]
        assert time.monotonic() < deadline, f"not {n_lines} lines within 120 s:\n" + log_path.read_text()[-3000:]
        time.sleep(0.05)


def test_sigkill_mid_flight_loses_no_written_detection(tmp_path: Path, tiny_bundle_dir: Path) -> None:
    bundle = tinymodel.copy_bundle(tiny_bundle_dir, tmp_path / "bundle")
    tinymodel.rewrite_card(bundle, thresholds={"rust": 0.0, "powdery_mildew": 0.0})
    s = small_scenario()
    vehicle_url = f"tcp:127.0.0.1:{free_tcp_port()}"
    sim = Simulation.survey(s, vehicle_url, 5.0, wait_for_client=True)
    sim.start()
    proc = None
    log_path = tmp_path / "payload.log"
    try:
        assert sim.camera_url is not None
        cfg_path = payload_config(tmp_path, bundle, s, vehicle_url, sim.camera_url)
        proc = start_payload(cfg_path, log_path)
        # map info, then a dozen frames of a look + detections
        out = wait_for_detections(proc, tmp_path / "out", 1 + 12 * (1 + ROWS * COLS), log_path)
        dets = out / "detections.jsonl"
        assert not sim.wait_done(0)  # mid-flight
        os.kill(proc.pid, signal.SIGKILL)  # the power cut: no handler, no flush, no close
        proc.wait(10)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        sim.stop()
    assert proc.returncode == -signal.SIGKILL
    assert json.loads((out / "flight.json").read_text())["state"] == "running"  # never completed

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



def test_a_killed_run_resumed_is_one_flight_folder_with_no_record_lost(tmp_path: Path, tiny_bundle_dir: Path) -> None:
    """SIGKILL `payload run` mid-survey, start it again on the same flight (the vehicle flies on): the second
    run finds the first one's unfinished folder by its marker (same system id, same autopilot boot) and
    continues it. One folder; every record the killed run had written is still there, then the new ones."""
    bundle = tinymodel.copy_bundle(tiny_bundle_dir, tmp_path / "bundle")
    tinymodel.rewrite_card(bundle, thresholds={"rust": 0.0, "powdery_mildew": 0.0})
    s = small_scenario()
    vehicle_url = f"tcp:127.0.0.1:{free_tcp_port()}"
    sim = Simulation.survey(s, vehicle_url, 2.0, wait_for_client=True)  # 55 s of flight: time to restart
    sim.start()
    log_path = tmp_path / "payload.log"
    root = tmp_path / "out"
    procs: list[subprocess.Popen] = []
    try:
        assert sim.camera_url is not None
        cfg_path = payload_config(tmp_path, bundle, s, vehicle_url, sim.camera_url)
        procs.append(start_payload(cfg_path, log_path))
        flight = wait_for_detections(procs[0], root, 1 + 6 * (1 + ROWS * COLS), log_path)
        os.kill(procs[0].pid, signal.SIGKILL)  # the power cut
        procs[0].wait(10)
        before = read_jsonl(flight / "detections.jsonl")
        killed_ids = [r["id"] for r in before.records if _is_detection(r)]
        assert len(killed_ids) >= 6 * ROWS * COLS and not sim.wait_done(0)

        procs.append(start_payload(cfg_path, log_path))  # systemd restarts it: same config, same root
        wait_for_detections(procs[1], root, lines_of(flight / "detections.jsonl") + 6 * (1 + ROWS * COLS), log_path)
        assert not sim.wait_done(0)
        procs[1].send_signal(signal.SIGTERM)  # a clean stop
        assert procs[1].wait(120) == 0, log_path.read_text()[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        sim.stop()

    assert flight_folders(root) == [flight], flight_folders(root)  # one folder: the flight resumed, not a new one
    after = [r for r in read_jsonl(flight / "detections.jsonl").records if _is_detection(r)]
    ids = [r["id"] for r in after]
    lost = set(killed_ids) - set(ids)
    assert not lost, f"{len(lost)} records lost"
    assert ids[:len(killed_ids)] == killed_ids  # the killed run's records first, in order, then the new run's
    assert len(set(ids)) == len(ids) and len(ids) > len(killed_ids)
    assert len({r["run_id"] for r in after}) == 2
    marker = json.loads((flight / "flight.json").read_text())
    assert marker["state"] == "finished" and marker["resumes"] == 1 and marker["vehicle"]["sysid"] is not None
    listed = subprocess.run([sys.executable, "-m", "payload", "flights", str(root), "--json"], capture_output=True,
                            text=True, timeout=60, cwd=ROOT, env=payload_env())
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert (row["folder"], row["state"], row["resumes"]) == (flight.name, "finished", 1)
    print(f"RESUMED: killed after {len(killed_ids)} detections; one folder {flight.name} with {len(ids)} "
          f"({len(ids) - len(killed_ids)} after the restart), 0 lost")
