"""Long runs (make test-slow): the whole 23-minute copter recording at 50x, measured."""

from __future__ import annotations

import subprocess
import sys
import time

import dronekit
import psutil
import pytest

from tests.flight_sim.conftest import COPTER_TLOG, free_udp_port


@pytest.mark.slow
def test_full_copter_replay_at_50x_uses_under_one_core() -> None:
    port = free_udp_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flight_sim", "replay", str(COPTER_TLOG), "--speed", "50",
         "--out", f"udp:127.0.0.1:{port}", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    ps = psutil.Process(proc.pid)
    v = None
    try:
        t0 = time.monotonic()
        v = dronekit.connect(f"udp:127.0.0.1:{port}", wait_ready=True, timeout=15, heartbeat_timeout=15)
        connect_s = time.monotonic() - t0
        cpu = 0.0
        while proc.poll() is None and time.monotonic() - t0 < 60:
            try:
                c = ps.cpu_times()
                cpu = c.user + c.system
            except psutil.NoSuchProcess:
                break
            time.sleep(0.2)
        wall = time.monotonic() - t0
        assert proc.wait(10) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if v is not None:
            v.close()
        if proc.poll() is None:
            proc.kill()
    # 1,049 s of flight (telemetry start to end) at 50x: ~21 s plus start-up
    assert 20 < wall < 30
    print(f"replay 50x: connect {connect_s:.2f} s, {cpu:.1f} CPU s over {wall:.1f} s wall = {cpu / wall:.2f} cores")
    assert cpu / wall < 1.0
