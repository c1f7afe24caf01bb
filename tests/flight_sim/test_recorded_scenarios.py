"""Every recorded flight `make missions-recorded` flies: its tlog reads, and its field lies under its track.

A recorded scenario is only worth flying when the camera can see its patches: a field laid beside the
track, or patches the vehicle never passes over, would score the payload on ground it never looked at.
These checks are fast (the tlogs are read, nothing is flown) and run for each row of
`tools.missions.RECORDED_SCENARIOS`, so a new recorded flight is checked the moment it is listed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from flight_sim.scenario import Scenario, load_scenario
from flight_sim.timeline import Timeline
from flight_sim.tlog import read_tlog
from payload.geo.frames import geodetic_to_enu
from tools.missions import RECORDED_SCENARIOS

ROOT = Path(__file__).resolve().parents[2]
FLIGHTS_README = ROOT / "tests" / "data" / "flights" / "README.md"


def _track_enu(tl: Timeline, sc: Scenario) -> np.ndarray:
    """(east, north, up above the field) of every fixed GLOBAL_POSITION_INT, in the scenario's frame."""
    pos = [e.fields for e in tl.of("GLOBAL_POSITION_INT") if e.fields["lat"] != 0]
    lat = np.array([f["lat"] / 1e7 for f in pos])
    lon = np.array([f["lon"] / 1e7 for f in pos])
    alt = np.array([f["alt"] / 1e3 for f in pos])
    e, n, u = geodetic_to_enu(lat, lon, alt, sc.origin.lat, sc.origin.lon, sc.origin.alt)
    return np.column_stack([e, n, u])


@pytest.fixture(scope="module", params=sorted(RECORDED_SCENARIOS))
def recorded(request: pytest.FixtureRequest) -> tuple[str, Scenario, Timeline, Path]:
    scenario, tlog = RECORDED_SCENARIOS[request.param]
    return request.param, load_scenario(scenario), read_tlog(tlog), tlog


def test_each_recorded_flight_has_the_pose_messages_and_its_source_row(
        recorded: tuple[str, Scenario, Timeline, Path]) -> None:
    name, _sc, tl, tlog = recorded
    assert len(tl.of("ATTITUDE")) > 100, f"{name}: no attitude to render the camera from"
    assert len([e for e in tl.of("GLOBAL_POSITION_INT") if e.fields["lat"] != 0]) > 100, f"{name}: no fixed position"
    # where it came from, under which licence: every file in tests/data/flights has its README row
    assert tlog.name in FLIGHTS_README.read_text(encoding="utf-8")


def test_the_track_passes_over_every_patch_inside_the_field(recorded: tuple[str, Scenario, Timeline, Path]) -> None:
    name, sc, tl, _tlog = recorded
    enu = _track_enu(tl, sc)
    inside = ((enu[:, 0] >= 0) & (enu[:, 0] <= sc.field.width_m)
              & (enu[:, 1] >= 0) & (enu[:, 1] <= sc.field.height_m))
    assert inside.mean() > 0.05, f"{name}: the field is not under the track"
    # the short side's half angle: a patch within it of the point below is in the frame whatever the heading
    # (level flight; bank moves the footprint, so this is a floor on what the camera sees, not a bound)
    half_fov = math.atan(math.tan(math.radians(sc.camera.hfov_deg) / 2) * sc.camera.height / sc.camera.width)
    for p in sc.patches:
        assert 0 <= p.east_m <= sc.field.width_m and 0 <= p.north_m <= sc.field.height_m, f"{name}: {p} outside"
        d = np.hypot(enu[:, 0] - p.east_m, enu[:, 1] - p.north_m)
        # in view: within the camera's half footprint of a sample in the air
        seen = (enu[:, 2] > 3.0) & (d <= enu[:, 2] * math.tan(half_fov))
        assert seen.any(), f"{name}: the track never passes over the {p.cls} patch at ({p.east_m}, {p.north_m})"
