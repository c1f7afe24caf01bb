"""The tests' fake vehicle is the simulator's: `flight_sim/livevehicle.py` `LiveVehicle`.

A trajectory read at wall-clock time, faults switched while the link runs (`paused`, `fix_type`,
`zero_latlon`, `nan_attitude`, `local_only`/`ekf`, `gimbal_rpy_deg`), a vehicle that never answers
parameter requests (`answer_params=False`), ArduPilot-style MAVLink 2 signing (`signing_key`; a
vehicle with the wrong key is a spoofer that signs). This module only keeps the name the tests use.
"""

from __future__ import annotations

from flight_sim.livevehicle import LiveVehicle as MavTestVehicle
from flight_sim.livevehicle import VehicleState, free_udp_port

__all__ = ["MavTestVehicle", "VehicleState", "free_udp_port"]
