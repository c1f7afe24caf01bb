"""Surfaces against analytic answers: a tilted plane, a DEM that is a plane, a ridge, a wall seen sideways.

The simulator renders with the payload's own camera and surface code, so a wrong convention would
pass every mission; these answers come from trigonometry worked out here, not from that code.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from payload.geo.camera import (
    CameraModel,
    footprint,
    ground_to_pixel,
    pixel_to_ground,
    pixels_to_latlon,
    pixels_to_rays_enu,
    pixels_to_surface_local,
)
from payload.geo.frames import LocalFrame, geodetic_to_enu
from payload.geo.surface import (
    FLOOR,
    HIT,
    MISS,
    OUTSIDE,
    FlatGround,
    HeightField,
    OutsideSurfaceError,
    Planes,
    RectPlane,
)
from payload.types import Pose

SLOPE_DEG = 12.0  # the tilted plane rises to the east by this angle


def _tilted_plane(alpha_deg: float = SLOPE_DEG, size: float = 400.0) -> RectPlane:
    """z = x tan(alpha), for x in [-size/2, size/2] east and north: its front faces up."""
    a = math.radians(alpha_deg)
    u = np.array([math.cos(a), 0.0, math.sin(a)])
    origin = -size / 2 * u + np.array([0.0, -size / 2, 0.0])
    return RectPlane(origin, u, np.array([0.0, 1.0, 0.0]), size / math.cos(0.0), size, name="slope")


def _grid(fn, x0: float, x1: float, y0: float, y1: float, cell: float) -> tuple[np.ndarray, float, float]:
    """Heights of fn(east, north) on nodes, row 0 north."""
    cols = int(round((x1 - x0) / cell)) + 1
    rows = int(round((y1 - y0) / cell)) + 1
    e = x0 + np.arange(cols) * cell
    n = y1 - np.arange(rows) * cell
    return fn(e[None, :], n[:, None]), x0, y1


def _ray(beta_deg: float, az_deg: float = 90.0) -> np.ndarray:
    """A unit ray `beta` off nadir towards azimuth `az` (degrees clockwise from north)."""
    b, z = math.radians(beta_deg), math.radians(az_deg)
    return np.array([math.sin(b) * math.sin(z), math.sin(b) * math.cos(z), -math.cos(b)])


# ---------------------------------------------------------------- flat ground


def test_flat_ground_nadir_and_oblique() -> None:
    g = FlatGround(up_m=2.0)
    hits = g.intersect([5.0, 7.0, 32.0], np.array([[0, 0, -1.0], _ray(30.0), [1.0, 0, 0.1]]))
    np.testing.assert_allclose(hits.enu[0], [5.0, 7.0, 2.0])
    np.testing.assert_allclose(hits.enu[1], [5.0 + 30.0 * math.tan(math.radians(30)), 7.0, 2.0], atol=1e-12)
    assert hits.t[1] == pytest.approx(30.0 / math.cos(math.radians(30)))
    assert list(hits.status) == [HIT, HIT, MISS]  # the third ray climbs: sky
    assert np.isnan(hits.enu[2]).all() and hits.t[2] == math.inf
    # a camera under the ground sees no ground from above
    assert g.intersect([0, 0, 1.0], [[0, 0, -1.0]]).status[0] == MISS


def test_flat_surface_matches_the_flat_float_path() -> None:
    """The Surface path through lat/lon gives what the historic flat path gives (to millimetres)."""
    cam = CameraModel.from_hfov(640, 480, 60.0)
    ground = 584.0
    fr = LocalFrame(-35.3630, 149.1650, ground)
    pose = Pose(-35.3628, 149.1655, ground + 30.0, 0.05, -0.08, 1.1)
    uv = np.array([[0, 0], [640, 0], [320, 240], [17.5, 433.2], [640, 480]], dtype=float)
    a = pixels_to_latlon(cam, uv, pose, ground)
    b = pixels_to_latlon(cam, uv, pose, FlatGround(0.0, fr))
    ea, na, _ = geodetic_to_enu(a[:, 0], a[:, 1], ground, fr.lat0, fr.lon0, fr.alt0)
    eb, nb, _ = geodetic_to_enu(b[:, 0], b[:, 1], ground, fr.lat0, fr.lon0, fr.alt0)
    assert np.max(np.hypot(ea - eb, na - nb)) < 0.005
    fa = footprint(cam, pose, ground)
    fb = footprint(cam, pose, FlatGround(0.0, fr))
    assert fa is not None and fb is not None
    np.testing.assert_allclose(np.array(fa), np.array(fb), atol=1e-7)


# ---------------------------------------------------------------- a plane tilted by a known slope


def test_nadir_ray_over_a_slope_hits_straight_below() -> None:
    """From height h above the datum at x0, a nadir ray meets z = x0 tan(alpha), at range h - x0 tan(alpha)."""
    s = Planes([_tilted_plane()])
    tan_a = math.tan(math.radians(SLOPE_DEG))
    for x0 in (-60.0, 0.0, 25.0, 80.0):
        h = 50.0
        hits = s.intersect([x0, 3.0, h], [[0, 0, -1.0]])
        assert hits.status[0] == HIT
        np.testing.assert_allclose(hits.enu[0], [x0, 3.0, x0 * tan_a], atol=1e-9)
        assert hits.t[0] == pytest.approx(h - x0 * tan_a)


@pytest.mark.parametrize("beta_deg", [-30.0, -10.0, 15.0, 30.0])
def test_oblique_ray_over_a_slope(beta_deg: float) -> None:
    """A ray beta off nadir in the east-up plane from (0, 0, h): h - t cos(beta) = t sin(beta) tan(alpha)."""
    a = math.radians(SLOPE_DEG)
    b = math.radians(beta_deg)
    h = 40.0
    t = h / (math.cos(b) + math.sin(b) * math.tan(a))
    expected = np.array([t * math.sin(b), 0.0, h - t * math.cos(b)])
    d = np.array([[math.sin(b), 0.0, -math.cos(b)]])
    plane = Planes([_tilted_plane()]).intersect([0.0, 0.0, h], d)
    np.testing.assert_allclose(plane.enu[0], expected, atol=1e-9)
    # a DEM that is that plane gives the plane's answer (bilinear is exact on a plane)
    heights, x0, y1 = _grid(lambda e, n: e * math.tan(a) + 0.0 * n, -150, 150, -150, 150, 2.0)
    dem = HeightField(heights, x0, y1, 2.0)
    hits = dem.intersect([0.0, 0.0, h], d)
    assert hits.status[0] == HIT
    assert np.linalg.norm(hits.enu[0] - expected) < 0.01
    assert abs(hits.t[0] - t) < 0.01


def test_camera_pixels_over_a_slope_know_east_from_west() -> None:
    """Through the camera model: with the nose north, image right is east, the uphill side of this slope.

    The right edge's ray (30 degrees east of nadir with a 60 degree lens) meets the rising ground
    sooner than the left edge's: t = h / (cos b +- sin b tan a). A mirrored convention swaps them.
    """
    cam = CameraModel.from_hfov(640, 480, 60.0)
    a, b, h = math.radians(SLOPE_DEG), math.radians(30.0), 40.0
    surfaces = {"planes": Planes([_tilted_plane()]),
                "dem": HeightField(*_grid(lambda e, n: e * math.tan(a) + 0.0 * n, -150, 150, -150, 150, 1.0), 1.0)}
    for name, s in surfaces.items():
        hits = pixels_to_surface_local(cam, np.array([[640.0, 240.0], [0.0, 240.0], [320.0, 240.0]]),
                                       [0.0, 0.0, h], 0.0, 0.0, 0.0, s)
        t_east = h / (math.cos(b) + math.sin(b) * math.tan(a))
        t_west = h / (math.cos(b) - math.sin(b) * math.tan(a))
        tol = 1e-9 if name == "planes" else 0.01
        np.testing.assert_allclose(hits.enu[0], [t_east * math.sin(b), 0.0, h - t_east * math.cos(b)], atol=tol)
        np.testing.assert_allclose(hits.enu[1], [-t_west * math.sin(b), 0.0, h - t_west * math.cos(b)], atol=tol)
        np.testing.assert_allclose(hits.enu[2], [0.0, 0.0, 0.0], atol=tol)


# ---------------------------------------------------------------- a DEM ridge

RIDGE_TOP, RIDGE_K = 20.0, 0.5  # z = 20 - 0.5 |x|: a ridge along north through x = 0


def _ridge(cell: float = 1.0) -> HeightField:
    return HeightField(*_grid(lambda e, n: RIDGE_TOP - RIDGE_K * np.abs(e) + 0.0 * n, -60, 60, -60, 60, cell),
                       cell, source="ridge.tif")


def test_ridge_near_flank_and_apex() -> None:
    dem = _ridge()
    # nadir over the west flank: straight below
    hits = dem.intersect([-14.0, 5.0, 60.0], [[0, 0, -1.0]])
    np.testing.assert_allclose(hits.enu[0], [-14.0, 5.0, RIDGE_TOP - RIDGE_K * 14.0], atol=0.01)
    # a ray from the west, 40 degrees off nadir towards the east, meets the west flank z = 20 + k x:
    # 50 - t cos b = 20 + k (-40 + t sin b)
    b = math.radians(40.0)
    t = (50.0 - RIDGE_TOP + 40.0 * RIDGE_K) / (math.cos(b) + RIDGE_K * math.sin(b))
    hits = dem.intersect([-40.0, 0.0, 50.0], [_ray(40.0)])
    x = -40.0 + t * math.sin(b)
    assert x < 0  # the near flank
    np.testing.assert_allclose(hits.enu[0], [x, 0.0, 50.0 - t * math.cos(b)], atol=0.01)


def test_ridge_hides_the_far_flank() -> None:
    """A point on the east flank aimed at from low in the west is hidden: the ray ends on the west flank."""
    dem = _ridge(cell=2.0)
    origin = np.array([-50.0, 0.0, 8.0])
    target = np.array([20.0, 0.0, RIDGE_TOP - RIDGE_K * 20.0])  # (20, 0, 10)
    d = target - origin
    hits = dem.intersect(origin, [d])
    assert hits.status[0] == HIT
    # analytic: origin + t d/|d| on z = 20 + k x, x < 0
    du = d / np.linalg.norm(d)
    t = (RIDGE_TOP + RIDGE_K * origin[0] - origin[2]) / (du[2] - RIDGE_K * du[0])
    np.testing.assert_allclose(hits.enu[0], origin + t * du, atol=0.01)
    assert hits.enu[0][0] < 0 < target[0]
    # from high enough the ray clears the ridge (z 43 m over its 20 m top) and reaches the east flank
    high = np.array([-10.0, 0.0, 60.0])
    np.testing.assert_allclose(dem.intersect(high, [target - high]).enu[0], target, atol=0.01)


# ---------------------------------------------------------------- convergence


def test_dem_hits_converge_within_a_tenth_of_a_metre() -> None:
    """Against a brute-force scan of each ray at 5 mm steps on a rough terrain, the hit is within 0.1 m."""
    rng = np.random.default_rng(3)

    def terrain(e, n):
        return 8.0 * np.sin(e / 9.0) * np.cos(n / 13.0) + 4.0 * np.sin((e + 2 * n) / 5.0) + 0.05 * e

    dem = HeightField(*_grid(terrain, -80, 80, -80, 80, 1.0), 1.0)
    origin = np.array([3.0, -4.0, 35.0])
    dirs = np.array([_ray(float(rng.uniform(0, 50)), float(rng.uniform(0, 360))) for _ in range(40)])
    hits = dem.intersect(origin, dirs)
    assert (hits.status == HIT).all()
    for i, d in enumerate(dirs):
        ts = np.arange(0.0, 120.0, 0.005)
        p = origin + ts[:, None] * d
        above = p[:, 2] - dem.height_at(p[:, 0], p[:, 1]) > 0
        first = int(np.argmax(~above))
        assert not above[first]
        assert abs(hits.t[i] - ts[first]) < 0.1, (i, hits.t[i], ts[first])
        assert abs(hits.t[i] - ts[first]) < 0.02  # what the default tolerance actually gives
    # and every hit lies on the terrain
    np.testing.assert_allclose(hits.enu[:, 2], dem.height_at(hits.enu[:, 0], hits.enu[:, 1]), atol=0.02)


# ---------------------------------------------------------------- leaving the DEM


def test_ray_that_leaves_the_dem_is_outside_and_a_clear_error() -> None:
    dem = HeightField(*_grid(lambda e, n: 0.0 * e + 0.0 * n, 0, 100, 0, 100, 1.0), 1.0, source="farm_dem.tif")
    rays = np.array([[0, 0, -1.0], _ray(60.0, 270.0)])  # nadir; far off to the west, beyond the west edge
    hits = dem.intersect([20.0, 50.0, 40.0], rays)
    assert list(hits.status) == [HIT, OUTSIDE]
    assert np.isnan(hits.enu[1]).all()
    with pytest.raises(OutsideSurfaceError, match=r"farm_dem\.tif.*first: ray 1"):
        hits.require_inside()
    # the flight itself left the DEM: even the nadir ray has no ground under it
    hits = dem.intersect([130.0, 50.0, 40.0], [[0, 0, -1.0]])
    assert hits.status[0] == OUTSIDE
    with pytest.raises(OutsideSurfaceError, match=r"east 130.00 m, north 50.00 m is outside the DEM farm_dem\.tif "
                                                  r"\(east 0\.0\.\.100\.0 m, north 0\.0\.\.100\.0 m\)"):
        dem.require_height(130.0, 50.0, "vehicle")
    # a no-data hole is unknown ground too
    h = np.zeros((101, 101))
    h[40:60, 10:30] = np.nan
    holed = HeightField(h, 0.0, 100.0, 1.0)
    assert holed.intersect([20.0, 50.0, 40.0], [[0, 0, -1.0]]).status[0] == OUTSIDE
    assert holed.intersect([70.0, 50.0, 40.0], [[0, 0, -1.0]]).status[0] == HIT
    # a ray climbing above every height is sky, not outside
    assert dem.intersect([50.0, 50.0, 40.0], [[1.0, 0, 0.2]]).status[0] == MISS


def test_height_field_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="2 x 2"):
        HeightField(np.zeros((1, 5)), 0, 0, 1.0)
    with pytest.raises(ValueError, match="no data"):
        HeightField(np.full((3, 3), np.nan), 0, 0, 1.0, source="x.tif")


# ---------------------------------------------------------------- planes: a wall seen by a sideways camera


def test_vertical_wall_at_a_known_distance_seen_sideways() -> None:
    """A wall D metres east, facing west; the vehicle faces north with the camera out of its right side."""
    dist, height = 2.0, 1.2
    wall = RectPlane(origin=[dist, -10.0, 0.0], u_axis=[0.0, 1.0, 0.0], v_axis=[0.0, 0.0, 1.0],
                     u_extent_m=20.0, v_extent_m=3.0, normal=[-1.0, 0.0, 0.0], name="A:right")
    s = Planes([wall], floor_up_m=0.0)
    cam = CameraModel.from_hfov(320, 240, 60.0, mount_rpy_deg=(0.0, 90.0, 90.0))
    uv = np.array([[160.0, 120.0], [320.0, 120.0], [160.0, 0.0], [160.0, 240.0]])
    hits = pixels_to_surface_local(cam, uv, [0.0, 0.0, height], 0.0, 0.0, 0.0, s)
    half_h = math.atan(math.tan(math.radians(30.0)) * 240 / 320)
    np.testing.assert_allclose(hits.enu[0], [dist, 0.0, height], atol=1e-9)  # straight out of the right side
    assert hits.t[0] == pytest.approx(dist)
    np.testing.assert_allclose(hits.enu[1], [dist, -dist * math.tan(math.radians(30.0)), height], atol=1e-9)  # south
    np.testing.assert_allclose(hits.enu[2], [dist, 0.0, height + dist * math.tan(half_h)], atol=1e-9)  # up
    np.testing.assert_allclose(hits.enu[3], [dist, 0.0, height - dist * math.tan(half_h)], atol=1e-9)
    assert list(hits.piece) == [0, 0, 0, 0]
    # plane coordinates: along u (north) from the wall's origin, up v
    np.testing.assert_allclose(hits.plane_uv[0], [10.0, height], atol=1e-9)
    # looking the other way (nose south), the camera sees the floor and nothing else... then only the floor
    back = pixels_to_surface_local(cam, uv[:1], [0.0, 0.0, height], 0.0, 0.0, math.pi, s)
    assert back.status[0] == MISS  # a horizontal ray over a floor meets nothing
    tilted = pixels_to_surface_local(cam, uv[3:], [0.0, 0.0, height], 0.0, 0.0, math.pi, s)
    assert tilted.piece[0] == FLOOR and tilted.enu[0][2] == pytest.approx(0.0)
    # from behind the wall (east of it, looking west) the ray passes through its back
    behind = Planes([wall]).intersect([dist + 1.0, 0.0, height], [[-1.0, 0.0, 0.0]])
    assert behind.status[0] == MISS
    both = Planes([RectPlane(wall.origin, wall.u_axis, wall.v_axis, 20.0, 3.0, two_sided=True)])
    assert both.intersect([dist + 1.0, 0.0, height], [[-1.0, 0.0, 0.0]]).t[0] == pytest.approx(1.0)


def test_nearest_plane_wins_and_extents_bound_a_plane() -> None:
    """Two parallel walls facing the camera: the nearer hides the farther, except past the nearer's end."""
    near = RectPlane([3.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], 5.0, 2.0, normal=[-1.0, 0.0, 0.0])
    far = RectPlane([6.0, -10.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], 30.0, 2.0, normal=[-1.0, 0.0, 0.0])
    s = Planes([far, near])
    d = np.array([[1.0, 0.1, 0.0], [1.0, -0.1, 0.0]])  # north of y=0 at x=3: near; south: past its end
    hits = s.intersect([0.0, 0.0, 1.0], d)
    assert list(hits.piece) == [1, 0]
    np.testing.assert_allclose(hits.enu[0], [3.0, 0.3, 1.0], atol=1e-12)
    np.testing.assert_allclose(hits.enu[1], [6.0, -0.6, 1.0], atol=1e-12)


def test_rect_plane_checks_its_axes() -> None:
    with pytest.raises(ValueError, match="unit vector"):
        RectPlane([0, 0, 0], [2.0, 0, 0], [0, 1.0, 0], 1.0, 1.0)
    with pytest.raises(ValueError, match="right angles"):
        RectPlane([0, 0, 0], [1.0, 0, 0], [math.sqrt(0.5), math.sqrt(0.5), 0], 1.0, 1.0)
    with pytest.raises(ValueError, match="not perpendicular"):
        RectPlane([0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], 1.0, 1.0, normal=[1.0, 0, 0])


# ---------------------------------------------------------------- the geodetic wrappers on terrain


def test_pixel_to_ground_and_back_on_a_dem() -> None:
    """lat/lon on a ridge DEM anchored at a field corner, and the same point back to its pixel."""
    fr = LocalFrame(-35.3630, 149.1650, 584.0)
    dem = HeightField(*_grid(lambda e, n: RIDGE_TOP - RIDGE_K * np.abs(e - 60.0) + 0.0 * n, 0, 120, 0, 120, 1.0),
                      1.0, frame=fr)
    cam = CameraModel.from_hfov(640, 480, 60.0)
    lat, lon, _ = fr.to_geodetic(45.0, 60.0, 60.0)
    pose = Pose(float(lat), float(lon), 584.0 + 60.0, 0.02, -0.03, 0.4)
    ll = pixel_to_ground(cam, 500.0, 100.0, pose, dem)
    assert ll is not None
    e, n, _ = fr.to_enu(ll[0], ll[1], 584.0)
    rays = pixels_to_rays_enu(cam, np.array([[500.0, 100.0]]), 0.02, -0.03, 0.4)[0]
    # the hit lies on the ray from the camera and on the ridge
    up = float(dem.height_at(e, n))
    p = np.array([e, n, up]) - np.array([45.0, 60.0, 60.0])
    assert np.linalg.norm(np.cross(p / np.linalg.norm(p), rays)) < 1e-4
    assert up == pytest.approx(RIDGE_TOP - RIDGE_K * abs(float(e) - 60.0), abs=1e-9)
    uv = ground_to_pixel(cam, ll[0], ll[1], pose, dem)
    assert uv is not None
    np.testing.assert_allclose(uv, [500.0, 100.0], atol=0.05)


# ---------------------------------------------------------------- planes from a site file


def test_site_file_planes_cut_rays_as_the_rack_faces_do() -> None:
    """The vertical farm's site file as `Planes`: every ray ends on the same face (or floor), at the same
    range and face coordinates, as the site's own face cut (checked against the wall above)."""
    from pathlib import Path

    from payload.geo.site import FLOOR as SITE_FLOOR
    from payload.geo.site import intersect_faces, site_faces, site_planes
    from payload.sitefile import load_site

    site = load_site(Path(__file__).resolve().parents[2] / "configs" / "sites" / "vertical_farm.yaml")
    faces = site_faces(site)
    planes = site_planes(site)
    assert [p.name for p in planes.planes] == [f.id for f in faces]
    rng = np.random.default_rng(5)
    for _ in range(20):
        o = np.array([rng.uniform(-2, 12), rng.uniform(-3, 12), rng.uniform(0.3, 2.5)])
        d = rng.normal(size=(200, 3))
        a = planes.intersect(o, d)
        b = intersect_faces(faces, o, d)
        expect_piece = np.where(b.face == SITE_FLOOR, FLOOR, b.face)
        np.testing.assert_array_equal(a.piece, expect_piece)
        np.testing.assert_allclose(a.t, b.t, rtol=1e-12)
        np.testing.assert_allclose(a.plane_uv, np.stack([b.along, b.up], axis=1), atol=1e-9)
