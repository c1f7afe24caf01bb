"""The payload's own telemetry (payload.vehicle.telemetry) against a simulated survey: its pose is the truth's.

This is the mission's foundation: frames are rendered at the TRUE pose at wall time t, and the
payload geotags them with the pose its telemetry estimates for t. Away from 1x that only works
when the vehicle's clock fields tick with the wall clock (restamping, on for surveys by default).
"""

from __future__ import annotations

import math
import time

import numpy as np
import pymap3d
import pytest

from flight_sim.scenario import Scenario
from flight_sim.sim import Simulation
from flight_sim.survey import survey_timeline
from payload.config import TelemetrySection
from payload.vehicle.telemetry import Telemetry
from tests.flight_sim.conftest import free_tcp_port


def _pose_errors(scenario: Scenario, restamp: bool) -> list[float]:
    port = free_tcp_port()
    sim = Simulation(
        survey_timeline(scenario),
        f"tcp:127.0.0.1:{port}",
        speed=5,
        start_s=40.0,
        restamp_time=restamp,
    )
    errors: list[float] = []
    tel = Telemetry(TelemetrySection(connection=f"tcp:127.0.0.1:{port}", connect_timeout_s=10, reconnect=False))
    sim.start()
    try:
        tel.start()  # connect, then supervise the link
        time.sleep(2.5)  # let the clock sync settle
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            time.sleep(0.1)
            t = time.monotonic() - 0.05  # a frame captured 50 ms ago
            est = tel.state_at(t)
            if est is None:
                continue
            truth = sim.timeline.pose_at(sim.clock.now(t))
            e, n, _ = pymap3d.geodetic2enu(
                est.pose.lat_deg, est.pose.lon_deg, est.pose.alt_m, truth.lat_deg, truth.lon_deg, truth.alt_m
            )
            errors.append(math.hypot(e, n))
    finally:
        tel.close()
        sim.stop()
    return errors


def test_payload_telemetry_tracks_the_true_pose_at_5x(scenario: Scenario) -> None:
    errors = _pose_errors(scenario, restamp=True)
    assert len(errors) >= 10
    # the survey's EKF error is 0.3 m (1 sigma) and the vehicle moves 5 m/s: within 1.5 m
    assert float(np.median(errors)) < 1.5, errors


@pytest.mark.slow
def test_without_restamping_the_payload_pose_is_metres_off_at_5x(scenario: Scenario) -> None:
    errors = _pose_errors(scenario, restamp=False)
    assert float(np.median(errors)) > 3.0, errors
