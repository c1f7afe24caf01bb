"""`flight-sim` end to end: each command runs to the end of its flight; bad input exits 2 with a message."""

from __future__ import annotations

import socket
from pathlib import Path

import yaml

from flight_sim.tlog import read_tlog
from tests.configtests import run_cli
from tests.flight_sim.conftest import COPTER_TLOG, WHEAT_30M, free_tcp_port, free_udp_port
from tools.mission.gcs import GroundStation


def _small_scenario(tmp_path: Path) -> Path:
    data = yaml.safe_load(WHEAT_30M.read_text())
    data["field"].update(width_m=40, height_m=30)
    data["patches"] = [{"class": "rust", "east_m": 20, "north_m": 15, "radius_m": 5}]
    p = tmp_path / "small.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_replay_runs_a_window_to_its_end() -> None:
    with GroundStation() as gcs:
        out = run_cli(["-m", "flight_sim", "replay", str(COPTER_TLOG), "--speed", "50", "--start", "600", "--end",
                       "650", "--out", f"udp:127.0.0.1:{free_udp_port()}", "--gcs", gcs.url], timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "vehicle: udp:127.0.0.1:" in out.stdout
    assert f"ground station link: {gcs.url}" in out.stdout
    assert gcs.counts["HEARTBEAT"] > 0 and gcs.counts["GLOBAL_POSITION_INT"] > 0  # the vehicle's stream reached it
    assert "1314 packets with a bad CRC" in out.stderr  # the log notes go to the log
    assert "flight ended" in out.stderr and "flight:" in out.stderr  # progress bar


def test_survey_serves_vehicle_and_camera_and_writes_its_tlog(tmp_path: Path) -> None:
    tlog = tmp_path / "survey.tlog"
    out = run_cli(["-m", "flight_sim", "survey", "--scenario", str(_small_scenario(tmp_path)), "--speed", "50",
                   "--end", "40", "--out", f"tcp:127.0.0.1:{free_tcp_port()}", "--camera-port", "0",
                   "--write-tlog", str(tlog), "--no-progress"], timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "camera: http://127.0.0.1:" in out.stdout and "/stream.mjpg" in out.stdout
    tl = read_tlog(tlog)
    assert tl.duration > 40 and tl.sysid == 1


def test_render_writes_frames_poses_and_video(tmp_path: Path) -> None:
    out_dir = tmp_path / "frames"
    out = run_cli(["-m", "flight_sim", "render", "--scenario", str(_small_scenario(tmp_path)), "--out", str(out_dir),
                   "--start", "30", "--end", "31", "--fps", "4", "--video", str(tmp_path / "v.avi"),
                   "--no-progress"], timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    jpgs = sorted(out_dir.glob("IMG_*.jpg"))
    assert len(jpgs) == 5
    rows = (out_dir / "frames.csv").read_text().splitlines()
    assert rows[0].startswith("file,t_s,unix_time,lat,lon") and rows[0].endswith(",tiles") and len(rows) == 6
    tiles = rows[1].split(",")[-1].split("/")
    assert len(tiles) == 3 and all(len(r.split()) == 4 for r in tiles)
    assert (tmp_path / "v.avi").stat().st_size > 0 and (out_dir / "scenario.yaml").is_file()


def test_bad_inputs_exit_2_with_a_message(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tlog"
    junk.write_text("not a log\n" * 50)
    out = run_cli(["-m", "flight_sim", "replay", str(junk)])
    assert out.returncode == 2 and "Traceback" not in out.stderr and "not a telemetry log" in out.stderr
    out = run_cli(["-m", "flight_sim", "replay", str(COPTER_TLOG), "--out", "127.0.0.1:14550"])
    assert out.returncode == 2 and "use udp:HOST:PORT" in out.stderr
    out = run_cli(["-m", "flight_sim", "replay", str(COPTER_TLOG), "--gcs", "14550"])
    assert out.returncode == 2 and "bad ground station (--gcs) address" in out.stderr
    out = run_cli(["-m", "flight_sim", "replay", str(COPTER_TLOG), "--speed", "100"])
    assert out.returncode == 2 and "speed must be between 0.1 and 50" in out.stderr
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        out = run_cli(["-m", "flight_sim", "survey", "--scenario", str(_small_scenario(tmp_path)),
                       "--out", f"tcp:127.0.0.1:{port}", "--camera-port", "0"])  # fmt: skip
        assert out.returncode == 2 and "Traceback" not in out.stderr
        assert f"port {port} is already in use" in out.stderr
