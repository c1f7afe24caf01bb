"""The hill: the renderer drapes the world on the terrain, and the DEM the payload reads agrees with it.

The renderer and the payload share the camera and surface code, so agreement between them alone
proves no convention; the analytic checks of that code are tests/payload/test_surface.py. What is
checked here is the simulator's own part: the terrain's relief, the interpolation of the rendered
ground map, and that the DEM written for the payload (UTM GeoTIFF, read back with rasterio) puts
the ground where the renderer has it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flight_sim.render import WorldRenderer
from flight_sim.scenario import load_scenario, terrain_height
from flight_sim.terrain import scenario_frame
from payload.demfile import check_dem
from payload.geo.camera import ground_to_pixel, pixels_to_ground_offsets, pixels_to_surface_local
from payload.geo.terrain import load_dem_surface
from payload.types import Pose
from tools.mission.terrain import write_scenario_dem

ROOT = Path(__file__).resolve().parents[2]
HILL = ROOT / "configs" / "scenarios" / "hill.yaml"


@pytest.fixture(scope="module")
def hill() -> tuple:
    s = load_scenario(HILL)
    return s, WorldRenderer.for_scenario(s)


def test_the_hill_has_at_least_20_m_of_relief_over_the_field() -> None:
    s = load_scenario(HILL)
    ee, nn = np.meshgrid(np.linspace(0, s.field.width_m, 121), np.linspace(0, s.field.height_m, 81))
    h = terrain_height(s, ee, nn)
    assert h.max() - h.min() >= 20.0
    assert terrain_height(s, 0.0, 0.0) == pytest.approx(0.0, abs=1e-12)  # home is on the ground
    assert s.flight.altitude_m - h.max() > 15.0  # the survey clears the hilltop


def test_rendered_ground_is_the_exact_ray_hit_within_a_centimetre(hill: tuple) -> None:
    s, r = hill
    fr = scenario_frame(s)
    lat, lon, alt = fr.to_geodetic(72.0, 52.0, s.flight.altitude_m)
    pose = Pose(float(lat), float(lon), float(alt), 0.04, -0.06, 0.5)
    en = r.ground_offsets(pose)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, s.camera.width * s.camera.height, 300)
    uv = np.stack([idx % s.camera.width + 0.5, idx // s.camera.width + 0.5], axis=1)
    c = r.camera_en_agl(pose)
    exact = pixels_to_surface_local(r.cam, uv, c, 0.04, -0.06, 0.5, r.terrain)
    assert np.abs(exact.enu[:, :2] - en[idx]).max() < 0.01
    # and the hill is not flat ground: flat rendering would put these pixels metres away
    flat = pixels_to_ground_offsets(r.cam, uv, 0.04, -0.06, 0.5, c[2]) + np.array(c[:2])
    assert np.median(np.hypot(*(flat - en[idx]).T)) > 2.0


def test_the_payloads_dem_puts_each_patch_where_the_renderer_draws_it(hill: tuple, tmp_path: Path) -> None:
    """Points of each patch (inside its disk, and a ring outside it), projected through the payload's DEM
    (UTM GeoTIFF), land on pixels the renderer labels with the patch's class, and outside it on healthy crop."""
    s, r = hill
    dem_path = write_scenario_dem(s, tmp_path / "dem.tif")
    assert check_dem(dem_path).crs == "EPSG:32755"
    dem = load_dem_surface(dem_path)
    fr = scenario_frame(s)
    ang = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    for p in s.patches:
        lat, lon, alt = fr.to_geodetic(p.east_m - 1.5, p.north_m + 1.0, s.flight.altitude_m)
        pose = Pose(float(lat), float(lon), float(alt), 0.02, 0.03, 0.2)
        labels = r.render_labels(pose)
        cls = 1 if p.cls == "rust" else 2
        misses_flat = 0
        for k, expect in ((0.0, cls), (0.7, cls), (1.35, 0)):
            for a in ang[: 1 if k == 0 else None]:
                e, n = p.east_m + k * p.radius_m * np.cos(a), p.north_m + k * p.radius_m * np.sin(a)
                plat, plon, _ = fr.to_geodetic(e, n, float(terrain_height(s, e, n)))
                uv = ground_to_pixel(r.cam, float(plat), float(plon), pose, dem)
                assert uv is not None
                col, row = int(uv[0]), int(uv[1])
                assert 0 <= col < s.camera.width and 0 <= row < s.camera.height
                assert labels[row, col] == expect, (p.cls, k, a, uv)
                flat = ground_to_pixel(r.cam, float(plat), float(plon), pose, s.origin.alt)
                assert flat is not None
                fc, fr_ = int(flat[0]), int(flat[1])
                inside = 0 <= fc < s.camera.width and 0 <= fr_ < s.camera.height
                misses_flat += not inside or labels[fr_, fc] != expect
        if terrain_height(s, p.east_m, p.north_m) > 10:
            assert misses_flat > 5  # the flat-ground assumption puts many of them on the wrong pixels
