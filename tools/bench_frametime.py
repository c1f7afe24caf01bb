"""How late the payload stamps the simulated camera's frames, with and without `camera.latency_s`.

The scenario's survey runs with its camera delayed by `--latency` (flight_sim/stream.py holds every
frame back until exposure + latency) and the payload's own OpenCV source reads the MJPEG stream as
`payload run` does. Each frame's stamp is put on the vehicle's boot clock with the simulator's exact
mapping (not the payload's clock sync, which the mission's `frame_stamp_error_ms` includes), so the
figure is the stamp's own error: what render, encode, delivery delay, transport and decode leave
once the payload has taken `camera.latency_s` off. It is measured with the payload not told the
latency (0) and told it.

    python -m tools.bench_frametime [--scenario configs/scenarios/default.yaml] [--seconds 10] [--latency 0.1]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from flight_sim.livevehicle import free_udp_port
from flight_sim.scenario import load_scenario
from flight_sim.sim import Simulation
from payload.capture.sources import OpenCVSource
from tools.mission.frametime import matchable_indices


def stamp_errors_s(scenario: Path, latency_s: float, payload_latency_s: float,
                   seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """Per frame read in `seconds`: its stamp on the vehicle's clock minus its true exposure time (s), and the
    camera's own delay from exposure to delivery of the same frames (render and encode, or the latency)."""
    s = load_scenario(scenario)
    s = s.model_copy(update={"camera": s.camera.model_copy(update={"latency_s": latency_s})})
    sim = Simulation.survey(s, f"udp:127.0.0.1:{free_udp_port()}", speed=1.0, start_s=60.0)
    stamps: list[tuple[int, float]] = []
    with sim:
        assert sim.camera_url is not None and sim.server is not None
        src = OpenCVSource(sim.camera_url)
        src.latency_s = payload_latency_s
        src.open()
        try:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                f = src.read()
                if f is None:
                    break
                stamps.append((f.seq, sim.vehicle.boot_s_now(f.t_mono)))
        finally:
            src.close()
        served, connections = sim.server.log_snapshot()
    frames = {f.index: f for f in served}
    by_seq = matchable_indices(connections)
    got = [(t, frames[by_seq[seq]]) for seq, t in stamps if seq < len(by_seq)]
    return (np.array([t - f.exposure_s for t, f in got]),
            np.array([f.delivered_mono - f.exposure_mono for _t, f in got]))


def summary(err_s: np.ndarray, delay_s: np.ndarray, speed_mps: float) -> dict[str, float | int]:
    ms = 1000.0 * err_s
    med = float(np.median(ms))
    return {"frames": int(ms.size), "camera_delivery_ms_median": round(1000.0 * float(np.median(delay_s)), 1),
            "median_ms": round(med, 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "max_ms": round(float(ms.max()), 1), "along_track_m_at_survey_speed": round(speed_mps * med / 1000, 3),
            "along_track_m_at_20mps": round(20.0 * med / 1000, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m tools.bench_frametime", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", type=Path, default=Path("configs/scenarios/default.yaml"))
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--latency", type=float, default=0.1, help="the simulated camera's exposure-to-delivery delay")
    a = ap.parse_args()
    speed = load_scenario(a.scenario).flight.speed_mps
    out = {}
    for told in (0.0, a.latency):
        err, delay = stamp_errors_s(a.scenario, a.latency, told, a.seconds)
        out[f"camera {a.latency} s, payload camera.latency_s {told}"] = summary(err, delay, speed)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
