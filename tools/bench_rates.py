"""What the requested telemetry rates cost: CPU of the payload's link with and without the request.

One process holds the loopback vehicle (flight_sim/livevehicle.py, answering as ArduPilot) and the
payload's link (payload/vehicle/telemetry.py). It is measured twice, once taking the 4 Hz that
dronekit's connect sets and once asking for `telemetry.rates`. Both sides are Python here, so the
figure is an upper bound for the link alone.

With `--camera` it measures the simulator instead: the default scenario's survey with its camera,
read over MJPEG. The rendered frame rate is taken in interleaved pairs, once with nobody asking for
rates and once with a client asking the vehicle for ATTITUDE and GLOBAL_POSITION_INT at 25 Hz (the
vehicle then resamples them). That shows whether the faster streams slow the camera sharing its process.

    python -m tools.bench_rates [--seconds 10] [--camera [--pairs 2]]
"""

from __future__ import annotations

import argparse
import math
import threading
import time
from pathlib import Path

import pymap3d

from flight_sim.livevehicle import LiveVehicle, VehicleState, free_udp_port
from flight_sim.scenario import load_scenario
from flight_sim.sim import Simulation
from payload.settings.telemetry import TelemetrySection
from payload.vehicle.telemetry import Telemetry

HOME = (47.3977, 8.5456, 488.0)


def _flight(t: float) -> VehicleState:
    """20 m/s east, 40 m up, banked 30 degrees: what the rates are for."""
    lat, lon, alt = pymap3d.enu2geodetic(20.0 * t, 0.0, 40.0, *HOME)
    return VehicleState(float(lat), float(lon), float(alt), 0.0, 20.0, 0.0, math.radians(30), 0.0, math.pi / 2)


def measure(request: bool, seconds: float) -> dict[str, float]:
    """Received ATTITUDE/GLOBAL_POSITION_INT rates and the process's CPU share over `seconds`."""
    port = free_udp_port()
    with LiveVehicle(port, _flight, home=HOME, rate_hz=4.0, rate_requests="ardupilot"):
        tel = Telemetry(TelemetrySection(connection=f"udp:127.0.0.1:{port}", connect_timeout_s=10,
                                         rates={"request": request}))
        tel.start()
        try:
            time.sleep(3.0)  # the request answered and the streams settled
            c0, w0 = time.process_time(), time.monotonic()
            time.sleep(seconds)
            c1, w1 = time.process_time(), time.monotonic()
            m = tel.rates_summary()["measured"]
        finally:
            tel.close()
    return {"attitude_hz": m["ATTITUDE"]["hz"], "position_hz": m["GLOBAL_POSITION_INT"]["hz"],
            "cpu_pct": 100.0 * (c1 - c0) / (w1 - w0)}


def camera_fps(ask: bool, seconds: float) -> float:
    """Frames per second the simulated camera rendered while read over MJPEG, with or without rate requests."""
    import cv2
    from pymavlink import mavutil

    scenario = load_scenario(Path(__file__).resolve().parents[1] / "configs" / "scenarios" / "default.yaml")
    port = free_udp_port()
    client = mavutil.mavlink_connection(f"udpin:127.0.0.1:{port}", source_system=255)
    sim = Simulation.survey(scenario, f"udp:127.0.0.1:{port}", 1.0, camera_port=0, start_s=60.0)
    sim.start()
    stop = threading.Event()
    try:
        client.recv_match(type="HEARTBEAT", blocking=True, timeout=5)
        if ask:
            for msg_id in (30, 33):  # ATTITUDE, GLOBAL_POSITION_INT at 40 ms
                client.mav.command_long_send(1, 0, 511, 0, msg_id, 40_000, 0, 0, 0, 0, 0)

        def drain() -> None:
            while not stop.is_set():
                client.recv_match(blocking=True, timeout=0.2)

        threading.Thread(target=drain, daemon=True).start()
        cap = cv2.VideoCapture(sim.camera_url)
        assert sim.streamer is not None
        f0, t0 = sim.streamer.frames, time.monotonic()
        while time.monotonic() - t0 < seconds:
            cap.read()
        fps = (sim.streamer.frames - f0) / (time.monotonic() - t0)
        cap.release()
    finally:
        stop.set()
        sim.stop()
        client.close()
    return fps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0, help="measuring time per case (default 10)")
    p.add_argument("--camera", action="store_true", help="the simulated camera's render rate instead of the link")
    p.add_argument("--pairs", type=int, default=2, help="with --camera: interleaved pairs (default 2)")
    args = p.parse_args()
    if args.camera:
        for i in range(args.pairs):
            no, yes = camera_fps(False, args.seconds), camera_fps(True, args.seconds)
            print(f"pair {i + 1}: camera {no:.2f} fps not asked, {yes:.2f} fps asked (25 Hz)")
        return
    for request in (False, True):
        r = measure(request, args.seconds)
        print(f"{'requested' if request else 'not requested':>13}: ATTITUDE {r['attitude_hz']:.1f} Hz, "
              f"GLOBAL_POSITION_INT {r['position_hz']:.1f} Hz, CPU {r['cpu_pct']:.1f} % of one core "
              f"(vehicle + link in one process)")


if __name__ == "__main__":
    main()
