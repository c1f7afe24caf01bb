"""Soak: the real pipeline over a long accelerated flight (tools/soak.py) leaks no threads, fds or memory.

The default suite flies 20 minutes of flight time (a few seconds of wall time) and checks that no
thread or file descriptor is added after warm-up or left behind after the run; `-m slow` flies the
full 2 hours and also holds RSS growth under 5 MB on a healthy field (no detections). With
detections, RSS grows with the records held (see tools/soak.py); the slow test reports that figure.
"""

from __future__ import annotations

import threading
from pathlib import Path

import psutil
import pytest

from payload.bundle import load_bundle
from tools.soak import RSS_LIMIT_MB, run_soak

pytestmark = pytest.mark.timeout(600)


def test_short_soak_no_thread_or_fd_growth(tmp_path: Path, tiny_bundle_dir: Path) -> None:
    proc = psutil.Process()
    threads0, fds0 = threading.active_count(), proc.num_fds()
    r = run_soak(load_bundle(tiny_bundle_dir), tmp_path / "out", flight_s=1200.0, fps=1.0, warmup_s=120.0,
                 sample_every_s=20.0, flag_rate=0.05, layers_interval_s=2.0)
    print(r.text())
    assert r.frames == 1200 and r.handler_errors == 0 and r.detections > 0
    # growth = fewer in the last tenth than the most in the first tenth after warm-up (the layer
    # writer's short-lived thread and files come and go); nothing may be left after the run
    assert not [f for f in r.failures if "RSS" not in f], r.failures
    # nothing left behind by the run
    assert threading.active_count() <= threads0
    assert proc.num_fds() <= fds0


@pytest.mark.slow
def test_two_hour_soak(tmp_path: Path, tiny_bundle_dir: Path) -> None:
    bundle = load_bundle(tiny_bundle_dir)
    healthy = run_soak(bundle, tmp_path / "healthy", flight_s=7200.0, flag_rate=0.0)
    print(healthy.text())
    assert healthy.ok, healthy.failures
    assert healthy.rss_growth_mb < RSS_LIMIT_MB
    scouting = run_soak(bundle, tmp_path / "scouting", flight_s=7200.0, flag_rate=0.02)
    print(scouting.text())
    assert scouting.handler_errors == 0 and scouting.frames == 7200
    assert not [f for f in scouting.failures if "RSS" not in f], scouting.failures
