"""What the requested telemetry rates cost: CPU of the payload's link with and without the request.

One process holds the loopback vehicle (flight_sim/livevehicle.py, answering as ArduPilot) and the
payload's link (payload/vehicle/telemetry.py). It is measured twice, once taking the 4 Hz that
dronekit's connect sets and once asking for `telemetry.rates`. Both sides are Python here, so the
figure is an upper bound for the link alone.

    python -m tools.bench_rates [--seconds 10]
"""

from __future__ import annotations

import argparse
import math
import time

import pymap3d

from flight_sim.livevehicle import LiveVehicle, VehicleState, free_udp_port
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0, help="measuring time per case (default 10)")
    args = p.parse_args()
    for request in (False, True):
        r = measure(request, args.seconds)
        print(f"{'requested' if request else 'not requested':>13}: ATTITUDE {r['attitude_hz']:.1f} Hz, "
              f"GLOBAL_POSITION_INT {r['position_hz']:.1f} Hz, CPU {r['cpu_pct']:.1f} % of one core "
              f"(vehicle + link in one process)")


if __name__ == "__main__":
    main()
