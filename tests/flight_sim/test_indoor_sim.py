"""The vertical-farm simulator: GPS-denied telemetry, the aisle flight, and the renderer against the face's world."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from flight_sim.indoor import BOARD_RGB, SiteRenderer, board_mask, face_world, indoor_timeline, load_indoor_scenario
from payload.errors import ConfigError
from payload.geo.frames import geodetic_to_enu
from payload.geo.site import site_faces
from payload.types import Pose

SCENARIO = Path(__file__).resolve().parents[2] / "configs/scenarios/vertical_farm.yaml"


@pytest.fixture(scope="module")
def scenario():
    return load_indoor_scenario(SCENARIO)


@pytest.fixture(scope="module")
def timeline(scenario):
    return indoor_timeline(scenario)


def test_telemetry_is_gps_denied_throughout(timeline) -> None:
    names = set(timeline.names())
    assert {"LOCAL_POSITION_NED", "ATTITUDE", "EKF_STATUS_REPORT", "GPS_RAW_INT"} <= names
    assert not timeline.of("GLOBAL_POSITION_INT") and not timeline.of("HOME_POSITION")
    assert {e.fields["fix_type"] for e in timeline.of("GPS_RAW_INT")} == {0}
    assert timeline.of("GPS_RAW_INT")[-1].t >= timeline.duration - 0.2  # to the end of the flight


def test_passes_fly_along_the_faces_at_the_standoff_and_speed(scenario, timeline) -> None:
    """While the camera sees the middle of rack B's west face (east = 3.3 m), the vehicle is 2 m west of it,
    1.15 m up, heading north at 1.5 m/s."""
    o = scenario.internal_origin
    t = np.arange(0.0, timeline.duration, 0.05)
    enu = np.array([geodetic_to_enu(p.lat_deg, p.lon_deg, p.alt_m, o.lat, o.lon, o.alt)
                    for p in (timeline.pose_at(float(x)) for x in t)], dtype=float)
    on_lane = (np.abs(enu[:, 0] - 1.3) < 0.02) & (enu[:, 1] > 1.0) & (enu[:, 1] < 5.0)
    assert on_lane.sum() > 40
    speed = np.hypot(*np.gradient(enu[:, :2], 0.05, axis=0).T)
    assert np.all((speed[on_lane] > 1.0) & (speed[on_lane] < 2.0))
    assert np.allclose(enu[on_lane, 2], 1.15, atol=0.01)
    yaw = np.array([timeline.pose_at(float(x)).yaw_rad for x in t[on_lane]])
    assert np.all(np.abs(np.degrees(yaw)) < 3.0)


def test_rendered_centre_column_is_the_face_column_straight_right(scenario, timeline) -> None:
    """Independent of the camera code: from the lane at east 1.3 m heading north, the image's centre column
    looks due east at rack B's west face (2 m away) along the vertical line at the vehicle's north; pixel row v
    meets it at up = height - 2 (v - cy) / f. The rendered column must follow the face's world shaded there
    (the shelf boards make the profile distinctive: upside down or shifted by a board's height it does not
    correlate)."""
    r = SiteRenderer(scenario)
    o = scenario.internal_origin
    face = next(f for f in site_faces(scenario.layout) if f.id == "B:left")
    world = face_world(scenario, face)
    c = scenario.camera
    f = float(c.model(c.mount_rpy_deg).K[0, 0])
    checked = 0
    for x in np.arange(10.0, 20.0, 0.5):
        p = timeline.pose_at(float(x))
        e, n, u = geodetic_to_enu(p.lat_deg, p.lon_deg, p.alt_m, o.lat, o.lon, o.alt)
        if abs(e - 1.3) > 0.02 or not 0.5 < n < 5.5:
            continue
        # level, nose north: the attitude conventions are checked analytically in tests/payload/test_indoor.py
        img = r.scene(Pose(p.lat_deg, p.lon_deg, p.alt_m, 0.0, 0.0, 0.0))
        v = np.arange(c.height) + 0.5
        ups = u - 2.0 * (v - c.height / 2) / f
        shaded = world.shade(np.full(len(ups), float(n)), ups, np.full(len(ups), 2.0 / f, np.float32)).rgb[:, 1]
        want = np.where(board_mask(face, ups), BOARD_RGB[1], np.clip(shaded, 0, 255))
        got = img[:, c.width // 2, 1]
        assert np.corrcoef(want, got)[0, 1] > 0.8
        assert np.corrcoef(want[::-1], got)[0, 1] < 0.5  # a flipped image would not pass
        checked += 1
    assert checked >= 5


def test_scenario_errors_name_the_file_field_and_value(tmp_path: Path) -> None:
    data = yaml.safe_load(SCENARIO.read_text())
    data["site"] = str(SCENARIO.parent / data["site"])
    data["plants"][0]["bay"] = 4  # along 1.8 m lies in bay 2
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as e:
        load_indoor_scenario(bad)
    assert str(bad) in str(e.value) and "plants[0].along_m" in str(e.value) and "1.8" in str(e.value)
