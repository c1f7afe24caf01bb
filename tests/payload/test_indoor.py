"""Indoor (GPS-denied) geotagging: rack-face geometry against analytic answers, site addresses, the site file's
errors, local-frame poses, and a vehicle sending only LOCAL_POSITION_NED + ATTITUDE end to end.

The simulator renders with the same camera and face code, so a wrong convention would pass every
mission; these tests check the geometry against answers worked out by hand instead.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pymap3d
import pytest
import yaml

from payload.cli import main as payload_main
from payload.config import PayloadConfig, TelemetrySection
from payload.errors import ConfigError
from payload.files.jsonl import read_jsonl
from payload.geo.camera import CameraModel
from payload.geo.site import FLOOR, MISS, address, camera_rays_enu, intersect_faces, place_pixels, site_faces
from payload.pipeline.geotag import GeotagHandler
from payload.sinks.jsonl import iter_detections
from payload.sitefile import SiteLayout, load_site
from payload.types import EstimatorHealth
from payload.vehicle.poseinterp import StateBuffer
from payload.vehicle.samples import AttitudeSample, EstimatorSample, LocalPositionSample
from payload.vehicle.telemetry import Telemetry
from tests.mavtestvehicle import MavTestVehicle, VehicleState, free_udp_port
from tests.payload.geotagdoubles import LABELS, frame_result
from tests.waiting import wait_for

SIDEWAYS = (0.0, 90.0, 90.0)  # camera looking out of the vehicle's right side, image upright
W, H, HFOV = 640, 480, 60.0
F = (W / 2) / math.tan(math.radians(HFOV / 2))  # focal length in pixels


def _wall_site(x_face: float = 3.0, length: float = 10.0) -> SiteLayout:
    """One single-sided rack whose plant face is the vertical plane east = x_face, facing west,
    running north from north = -5 (so along = north + 5), floor to 3 m."""
    return SiteLayout.model_validate({"name": "t", "racks": [{
        "name": "W", "position_m": [x_face + 0.3, -5.0], "heading_deg": 0, "length_m": length, "depth_m": 0.6,
        "height_m": 3.0, "faces": ["left"], "shelf_heights_m": [0.5, 1.5], "bay_width_m": 2.0,
        "plant_spacing_m": 0.25}]})


def test_sideways_camera_facing_a_wall_hits_the_analytic_point() -> None:
    """Heading north, camera looking east at a wall 3 m away: the centre pixel meets the wall straight east
    at the camera's height; a pixel right of centre meets it SOUTH (image right = backwards for a right-looking
    camera) by 3 tan(angle); a pixel above centre meets it higher by 3 (cy - v) / f."""
    faces = site_faces(_wall_site())
    cam = CameraModel.from_hfov(W, H, HFOV, SIDEWAYS)
    cam_enu = (0.0, 0.0, 1.2)
    du, dv = 100.0, -80.0
    uv = np.array([[W / 2, H / 2], [W / 2 + du, H / 2], [W / 2, H / 2 + dv]])
    pl = place_pixels(faces, cam, uv, cam_enu, 0.0, 0.0, 0.0)
    assert list(pl.on_plants) == [True, True, True]
    np.testing.assert_allclose(pl.enu[0], [3.0, 0.0, 1.2], atol=1e-9)
    np.testing.assert_allclose(pl.enu[1], [3.0, -3.0 * du / F, 1.2], atol=1e-9)
    np.testing.assert_allclose(pl.enu[2], [3.0, 0.0, 1.2 - 3.0 * dv / F], atol=1e-9)
    # face coordinates: along from the rack's start (north = -5), up from the floor
    np.testing.assert_allclose(pl.along, [5.0, 5.0 - 3.0 * du / F, 5.0], atol=1e-9)
    np.testing.assert_allclose(pl.up, [1.2, 1.2, 1.2 - 3.0 * dv / F], atol=1e-9)


def test_yawed_and_rolled_vehicle_moves_the_hit_by_the_known_amounts() -> None:
    """Yaw 20 deg: the optical axis turns 20 deg clockwise from east, so it meets the wall 3 tan(20) m south.
    Roll 10 deg (right side down): the right-looking axis dips 10 deg, meeting the wall 3 tan(10) m lower."""
    faces = site_faces(_wall_site())
    cam = CameraModel.from_hfov(W, H, HFOV, SIDEWAYS)
    c = np.array([[W / 2, H / 2]])
    yawed = place_pixels(faces, cam, c, (0.0, 0.0, 1.5), 0.0, 0.0, math.radians(20))
    np.testing.assert_allclose(yawed.enu[0], [3.0, -3.0 * math.tan(math.radians(20)), 1.5], atol=1e-9)
    rolled = place_pixels(faces, cam, c, (0.0, 0.0, 1.5), math.radians(10), 0.0, 0.0)
    np.testing.assert_allclose(rolled.enu[0], [3.0, 0.0, 1.5 - 3.0 * math.tan(math.radians(10))], atol=1e-9)


def test_faces_are_seen_from_the_front_only_and_the_floor_occludes() -> None:
    faces = site_faces(_wall_site())
    o = np.array([0.0, 0.0, 1.0])
    # looking west: away from the face (and its back side, which has no plants, is behind the viewer)
    hits = intersect_faces(faces, o, np.array([[-1.0, 0.0, 0.0], [1.0, 0.0, -2.0], [1.0, 0.0, 0.0],
                                               [1.0, 0.0, 5.0]]))
    assert hits.face[0] == MISS
    assert hits.face[1] == FLOOR and hits.t[1] == pytest.approx(math.sqrt(0.25 + 1.0))  # floor at 0.5 m east
    assert faces[hits.face[2]].id == "W:left" and hits.t[2] == pytest.approx(3.0)
    assert hits.face[3] == MISS  # over the rack's 3 m top
    # from behind the rack (east of it, looking west) the back side (no plants) stops the ray
    back = intersect_faces(faces, np.array([6.0, 0.0, 1.0]), np.array([[-1.0, 0.0, 0.0]]))
    assert faces[back.face[0]].id == "W:right" and not faces[back.face[0]].has_plants


def test_rays_enu_of_the_nadir_and_sideways_mounts() -> None:
    c = np.array([[W / 2, H / 2]])
    nadir = CameraModel.from_hfov(W, H, HFOV)
    np.testing.assert_allclose(camera_rays_enu(nadir, c, 0, 0, 0)[0], [0, 0, -1], atol=1e-12)
    side = CameraModel.from_hfov(W, H, HFOV, SIDEWAYS)
    np.testing.assert_allclose(camera_rays_enu(side, c, 0, 0, math.pi / 2)[0], [0, -1, 0], atol=1e-12)  # east->south
    top = np.array([[W / 2, 0.0]])  # the image's top edge looks up by half the vertical field of view
    up = camera_rays_enu(side, top, 0, 0, 0)[0]
    assert math.degrees(math.atan2(up[2], up[0])) == pytest.approx(math.degrees(math.atan((H / 2) / F)))


def test_site_address_bay_shelf_plant() -> None:
    rack = _wall_site().racks[0]  # bays 2 m, shelves at 0.5 and 1.5 m, plants 0.25 m apart
    a = address(rack, "left", 4.1, 1.6)
    assert (a.bay, a.shelf, a.plant) == (3, 2, 17) and a.text() == "rack W bay 3 shelf 2"
    assert address(rack, "left", 0.0, 0.49).shelf is None  # below the lowest shelf
    assert address(rack, "left", 10.0, 0.5).bay == 5  # the far end keeps the last bay
    assert address(rack, "left", 1.99, 1.49).as_dict()["bay"] == 1


def _write(tmp_path: Path, name: str, data: object) -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data), encoding="utf-8")
    return p


def test_site_file_errors_name_the_file_field_and_value(tmp_path: Path) -> None:
    rack = {"name": "A", "position_m": [0, 0], "heading_deg": 0, "length_m": 6, "height_m": 2.1,
            "shelf_heights_m": [0.9, 0.3], "bay_width_m": 1.2}
    bad = _write(tmp_path, "site.yaml", {"racks": [rack]})
    with pytest.raises(ConfigError) as e:
        load_site(bad)
    msg = str(e.value)
    assert str(bad) in msg and "racks[0].shelf_heights_m" in msg and "[0.9, 0.3]" in msg
    typo = _write(tmp_path, "typo.yaml", {"racks": [{**rack, "shelf_heights_m": [0.3], "bay_widht_m": 1}]})
    with pytest.raises(ConfigError, match=r"typo\.yaml.*\n.*racks\[0\]\.bay_widht_m"):
        load_site(typo)


def test_payload_config_naming_a_bad_site_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = _write(tmp_path, "site.yaml", {"racks": [{"name": "A", "position_m": [0, 0], "heading_deg": 0,
                                                     "length_m": 6, "height_m": 2.1, "shelf_heights_m": [0.3, 2.5],
                                                     "bay_width_m": 1.2}]})
    cfg = _write(tmp_path, "payload.yaml", {"model": {"bundle": str(tmp_path)}, "site": {"file": str(site)},
                                            "telemetry": {"frame": "local"}})
    with pytest.raises(SystemExit) as e:
        payload_main(["validate-config", str(cfg)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert str(site) in err and "racks[0].shelf_heights_m" in err and "[0.3, 2.5]" in err
    wrong_frame = _write(tmp_path, "p2.yaml", {"model": {"bundle": str(tmp_path)}, "telemetry": {"frame": "gps"}})
    with pytest.raises(SystemExit) as e:
        payload_main(["validate-config", str(wrong_frame)])
    assert e.value.code == 2 and "telemetry.frame" in capsys.readouterr().err


def test_local_state_has_no_latlon_without_origin_and_exact_latlon_with_one() -> None:
    b = StateBuffer(frame="local", frame_name="farm")
    for k in range(5):  # 1 m/s east, 1.5 m up
        t = 10.0 + 0.1 * k
        b.add_local_position(LocalPositionSample(t, 2.0, 0.1 * k, -1.5, 0.0, 1.0, 0.0))
        b.add_attitude(AttitudeSample(t, 0.0, 0.0, 0.3))
    est = b.state_at_boot(10.25)
    assert est is not None and est.is_local and est.frame == "farm"
    np.testing.assert_allclose(est.enu_m, (0.25, 2.0, 1.5), atol=1e-9)
    assert math.isnan(est.pose.lat_deg) and math.isnan(est.pose.lon_deg) and est.origin is None
    origin = (52.0, 5.0, 10.0)
    b.set_origin(*origin)
    est = b.state_at_boot(10.25)
    assert est is not None
    e, n, u = pymap3d.geodetic2enu(est.pose.lat_deg, est.pose.lon_deg, est.pose.alt_m, *origin)
    np.testing.assert_allclose((e, n, u), (0.25, 2.0, 1.5), atol=1e-6)
    b.add_estimator(EstimatorSample(10.2, EstimatorHealth(1 | 8, 0.9, 0.1, 0.1)))
    est = b.state_at_boot(10.25)
    assert est is not None and est.estimator is not None and est.estimator.velocity_variance == pytest.approx(0.9)


def test_auto_frame_uses_local_only_without_a_3d_fix() -> None:
    from payload.vehicle.samples import GpsSample, PositionSample

    b = StateBuffer(frame="auto")
    b.add_local_position(LocalPositionSample(1.0, 0, 0, -2, 0, 0, 0))
    b.add_attitude(AttitudeSample(1.0, 0, 0, 0))
    assert b.uses_local(1.0)  # no global position at all
    b.add_position(PositionSample(1.0, 52.0, 5.0, 12.0, 2.0, 0, 0, 0))
    b.add_gps(GpsSample(1.0, 0, None, 0))
    assert b.uses_local(1.0)  # GPS present but no fix
    b.add_gps(GpsSample(1.1, 3, 0.8, 12))
    assert not b.uses_local(1.2)


HOME = (52.0, 5.0, 0.0)  # the vehicle's EKF origin (never sent: the payload is not told it)


def _aisle(t_boot: float) -> VehicleState:
    """Flying north along the aisle at 1 m/s, 1.2 m above the floor, 3 m west of the wall, nose north."""
    n = -2.0 + 1.0 * (t_boot % 4.0)
    lat, lon, alt = pymap3d.enu2geodetic(0.0, n, 1.2, *HOME)
    return VehicleState(float(lat), float(lon), float(alt), vn=1.0)


def test_vehicle_sending_only_local_position_and_attitude_gives_trusted_placed_detections(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(_wall_site().model_dump(mode="json")), encoding="utf-8")
    port = free_udp_port()
    v = MavTestVehicle(port, _aisle, home=HOME, rate_hz=10.0, boot_offset_s=400.0)
    v.local_only = True
    v.start()
    tel = Telemetry(TelemetrySection(connection=f"udp:127.0.0.1:{port}", connect_timeout_s=10.0, frame="local",
                                     frame_name="t"))
    try:
        tel.start()
        assert wait_for(lambda: tel.buffer.counts()["local_position"] >= 5, 10.0)
        cfg = PayloadConfig.model_validate({
            "model": {"bundle": str(tmp_path)}, "output": {"dir": str(tmp_path / "out")},
            "telemetry": {"frame": "local", "frame_name": "t"},
            "camera": {"hfov_deg": HFOV, "mount_rpy_deg": list(SIDEWAYS)},
            "geotag": {"min_height_agl_m": 0.5}, "site": {"file": str(site)},
            "sinks": {"layers_interval_s": 0, "formats": ["geojson", "csv"]}})
        handler = GeotagHandler(cfg, labels=LABELS, model_sha256="ab" * 32, telemetry=tel)
        centre = (W // 2 - 32, H // 2 - 32, 64, 64)
        for i in range(3):
            t_frame = time.monotonic() - 0.05
            handler.handle(frame_result(i, t_frame, [centre]))
            truth_n = -2.0 + (v.boot_s(t_frame) % 4.0)
            det = list(iter_detections(handler.out_dir / "detections.jsonl"))[-1]
            assert det["trusted"], det["flags"]
            assert det["fix"]["type"] is None and det["lat"] is None and det["lon"] is None
            loc, s = det["local"], det["site"]
            assert loc["frame"] == "t" and loc["east_m"] == pytest.approx(3.0, abs=1e-3)
            assert loc["north_m"] == pytest.approx(truth_n, abs=0.1) and loc["up_m"] == pytest.approx(1.2, abs=0.01)
            assert s["rack"] == "W" and s["face"] == "left" and s["shelf"] == 1
            assert s["along_m"] == pytest.approx(truth_n + 5.0, abs=0.1)
            assert s["bay"] == int((truth_n + 5.0) // 2.0) + 1
            time.sleep(0.1)
        handler.close()
        # no origin: no GeoJSON layer (its coordinates would have to be local metres), CSV in site terms
        out = handler.out_dir
        assert not (out / "detections.geojson").exists()
        assert "rack" in (out / "detections.csv").read_text().splitlines()[0].split(",")
        assert (out / "face_W_left.svg").is_file() and (out / "zones_site.json").is_file()
        looks = [r for r in read_jsonl(out / "detections.jsonl").records if r.get("schema") == "cropscout.look/1"]
        assert looks and all(lk["trusted"] for lk in looks)
        assert tel.summary()["frame"] == "local" and tel.summary()["origin"] is None
    finally:
        tel.close()
        v.stop()


def test_estimator_report_gates_trust(tmp_path: Path) -> None:
    """A healthy EKF_STATUS_REPORT keeps local poses trusted; one without the relative-position flag or
    with a variance above geotag.max_estimator_variance flags them estimator_unhealthy."""
    from payload.config import GeotagSection
    from payload.geo.detections import pose_flags

    b = StateBuffer(frame="local")
    b.add_local_position(LocalPositionSample(5.0, 0, 0, -1.5, 0, 0, 0))
    b.add_attitude(AttitudeSample(5.0, 0, 0, 0))
    g = GeotagSection()
    assert pose_flags(b.state_at_boot(5.0), g) == []
    assert pose_flags(b.state_at_boot(5.0), GeotagSection(require_estimator_report=True)) == ["no_estimator_report"]
    b.add_estimator(EstimatorSample(5.0, EstimatorHealth(1 | 2 | 8, 0.1, 0.1, 0.1)))
    assert pose_flags(b.state_at_boot(5.0), g) == []
    b.add_estimator(EstimatorSample(5.1, EstimatorHealth(1 | 2, 0.1, 0.1, 0.1)))  # lost relative position
    assert pose_flags(b.state_at_boot(5.2), g) == ["estimator_unhealthy"]
    b.add_estimator(EstimatorSample(5.3, EstimatorHealth(1 | 2 | 8, 0.1, 0.8, 0.1)))  # variance too high
    assert pose_flags(b.state_at_boot(5.4), g) == ["estimator_unhealthy"]
