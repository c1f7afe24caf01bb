"""A DEM GeoTIFF through the payload: read with rasterio in a projected CRS, cut by the camera's rays.

The terrain here is a plane rising east at a known slope around a known home, written in the UTM
zone a grower's GIS would use, so every figure below is worked out with trigonometry, not with the
code under test.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from rasterio.warp import transform

from payload.config import load_payload_config
from payload.demfile import DemError, check_dem, write_dem
from payload.errors import ConfigError
from payload.geo.detections import FLAG_OUTSIDE_DEM, DetectionContext, build_detection
from payload.geo.frames import LocalFrame
from payload.geo.looks import build_look
from payload.geo.terrain import check_home_on_dem, load_dem_surface
from tests.configtests import run_cli, set_path, write_yaml
from tests.payload.geotagdoubles import HOME, LABELS, ScriptedTelemetry, frame_result

ROOT = Path(__file__).resolve().parents[2]
SLOPE = 0.15  # the ground rises 15 cm per metre east of home
UTM31N = "EPSG:32631"  # HOME is at 0.12 E: UTM zone 31 north


def _plane_dem(path: Path, half_m: float = 150.0, cell: float = 2.0) -> Path:
    """A UTM GeoTIFF of altitude = home altitude + SLOPE * (metres east of home), around home."""
    home = LocalFrame(*HOME)
    (hx,), (hy,) = transform("EPSG:4326", UTM31N, [HOME[1]], [HOME[0]])
    x0 = math.floor((hx - half_m) / cell) * cell
    y0 = math.ceil((hy + half_m) / cell) * cell
    n = int(2 * half_m / cell)
    gx, gy = np.meshgrid(x0 + (np.arange(n) + 0.5) * cell, y0 - (np.arange(n) + 0.5) * cell)
    lon, lat = transform(UTM31N, "EPSG:4326", gx.ravel().tolist(), gy.ravel().tolist())
    e, _, _ = home.to_enu(np.asarray(lat), np.asarray(lon), HOME[2])
    alt = HOME[2] + SLOPE * np.asarray(e)
    return write_dem(path, alt.reshape(n, n), UTM31N, x0, y0, cell, cell)


def _geotag(dem: Path) -> object:
    cfg = yaml.safe_load((ROOT / "configs" / "payload.yaml").read_text())
    cfg["geotag"] = {"ground": "dem", "dem": str(dem)}
    return cfg


def test_the_dem_is_read_in_its_crs_and_gives_the_plane(tmp_path: Path) -> None:
    info = check_dem(_plane_dem(tmp_path / "plane.tif"))
    assert info.crs == UTM31N and not info.geographic and info.res == (2.0, 2.0)
    dem = load_dem_surface(tmp_path / "plane.tif")
    home = LocalFrame(*HOME)
    assert dem.frame is not None
    for e, n in [(0.0, 0.0), (40.0, -25.0), (-90.0, 100.0), (120.0, 60.0)]:
        lat, lon, alt = home.to_geodetic(e, n, SLOPE * e)
        de, dn, du = dem.frame.to_enu(lat, lon, alt)
        assert float(dem.height_at(de, dn)) == pytest.approx(float(du), abs=0.02)


def test_a_detection_on_the_slope_is_placed_on_it(tmp_path: Path) -> None:
    """Nadir 20 m east of home at 30 m above home: ground 3 m up, 27 m below; a tile right of centre lands
    where the ray meets the rising ground: t = h / (cos b + sin b tan a), not on flat ground at home."""
    dem = load_dem_surface(_plane_dem(tmp_path / "plane.tif"))
    home = LocalFrame(*HOME)
    lat, lon, _ = home.to_geodetic(20.0, 0.0, 0.0)
    est = ScriptedTelemetry(lat=float(lat), lon=float(lon), alt=HOME[2] + 30.0).state_at(1.0)
    cfg = load_payload_config(write_yaml(tmp_path, _geotag(tmp_path / "plane.tif")))
    ctx = DetectionContext(LABELS, "sha", "run", cfg.camera, cfg.geotag, (), dem)
    res = frame_result(1, 1.0, [(280, 200, 80, 80), (560, 200, 80, 80)])
    centre, right = (build_detection(ctx, res.frame, t, est) for t in res.tiles[:2])
    assert centre["trusted"] and right["trusted"], (centre["flags"], right["flags"])
    assert centre["height_agl_m"] == pytest.approx(30.0 - SLOPE * 20.0, abs=0.05)
    assert centre["ground_alt_m"] == pytest.approx(HOME[2] + SLOPE * 20.0, abs=0.05)
    e, n, _ = home.to_enu(centre["lat"], centre["lon"], HOME[2])
    assert (float(e), float(n)) == pytest.approx((20.0, 0.0), abs=0.05)
    f = 320.0 / math.tan(math.radians(cfg.camera.hfov_deg) / 2)
    b = math.atan((600.0 - 320.0) / f)
    h = 30.0 - SLOPE * 20.0
    t = h / (math.cos(b) + math.sin(b) * SLOPE)
    e, n, _ = home.to_enu(right["lat"], right["lon"], HOME[2])
    assert float(e) == pytest.approx(20.0 + t * math.sin(b), abs=0.05)
    assert float(e) < 20.0 + h * math.tan(b) - 1.0  # flat ground 27 m below would put it over a metre further
    assert right["ground_alt_m"] == pytest.approx(HOME[2] + SLOPE * float(e), abs=0.05)


def test_leaving_the_dem_flags_the_look_and_the_detection(tmp_path: Path) -> None:
    dem = load_dem_surface(_plane_dem(tmp_path / "plane.tif", half_m=60.0))
    cfg = load_payload_config(write_yaml(tmp_path, _geotag(tmp_path / "plane.tif")))
    ctx = DetectionContext(LABELS, "sha", "run", cfg.camera, cfg.geotag, (), dem)
    res = frame_result(1, 1.0, [(0, 0, 160, 160)])
    home = LocalFrame(*HOME)
    # over the DEM but near its west edge: the image's left corners look past it
    lat, lon, _ = home.to_geodetic(-45.0, 0.0, 0.0)
    est = ScriptedTelemetry(lat=float(lat), lon=float(lon), alt=HOME[2] + 30.0).state_at(1.0)
    look = build_look(ctx, res.frame, res.tiles, est)
    assert FLAG_OUTSIDE_DEM in look["flags"] and not look["trusted"]
    assert build_detection(ctx, res.frame, res.tiles[0], est)["flags"] == [FLAG_OUTSIDE_DEM]
    # the vehicle itself off the DEM: nothing is placed
    lat, lon, _ = home.to_geodetic(200.0, 0.0, 0.0)
    est = ScriptedTelemetry(lat=float(lat), lon=float(lon), alt=HOME[2] + 30.0).state_at(1.0)
    det = build_detection(ctx, res.frame, res.tiles[0], est)
    assert det["flags"] == [FLAG_OUTSIDE_DEM] and det["lat"] is None and det["height_agl_m"] is None


def test_the_dem_is_checked_against_home_altitude(tmp_path: Path) -> None:
    dem = load_dem_surface(_plane_dem(tmp_path / "plane.tif"))
    on_ground = ScriptedTelemetry(alt=HOME[2]).state_at(1.0)
    assert check_home_on_dem(dem, on_ground) is None
    shifted = load_dem_surface(tmp_path / "plane.tif", vertical_offset_m=-30.0)  # e.g. ellipsoidal heights
    msg = check_home_on_dem(shifted, on_ground)
    assert msg is not None and "-30.0 m from the autopilot's home altitude" in msg
    assert check_home_on_dem(shifted, ScriptedTelemetry().state_at(1.0)) is None  # in the air: not home


def test_dem_config_errors_name_field_and_value_and_exit_2(tmp_path: Path) -> None:
    cfg = yaml.safe_load((ROOT / "configs" / "payload.yaml").read_text())
    p = write_yaml(tmp_path, set_path(cfg, "geotag.ground", "dem"))
    with pytest.raises(ConfigError, match=r"geotag.*'geotag\.dem' \(the terrain GeoTIFF\) is not given"):
        load_payload_config(p)
    missing = tmp_path / "nowhere.tif"
    p = write_yaml(tmp_path, set_path(set_path(cfg, "geotag.ground", "dem"), "geotag.dem", str(missing)))
    with pytest.raises(ConfigError) as info:
        load_payload_config(p)
    assert str(p) in str(info.value) and "geotag.dem" in str(info.value) and "DEM file not found" in str(info.value)
    assert str(missing) in str(info.value)
    notatif = tmp_path / "dem.tif"
    notatif.write_text("not a raster")
    p = write_yaml(tmp_path, set_path(set_path(cfg, "geotag.ground", "dem"), "geotag.dem", str(notatif)))
    out = run_cli(["-m", "payload", "validate-config", str(p)])
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "geotag.dem" in out.stderr and "cannot be read as a raster" in out.stderr
    with pytest.raises(DemError, match="no CRS"):
        import rasterio
        from rasterio.transform import from_origin

        with rasterio.open(tmp_path / "nocrs.tif", "w", driver="GTiff", width=3, height=3, count=1,
                           dtype="float32", transform=from_origin(0, 3, 1, 1)) as dst:
            dst.write(np.zeros((1, 3, 3), np.float32))
        check_dem(tmp_path / "nocrs.tif")
