"""Scenario files: a field with disease patches at known places, a survey flight and a camera.

A scenario is the ground truth a mission is scored against, so a typo must never be silently
ignored (StrictModel: unknown keys are errors), and a patch that lies outside the field is an
error naming the patch and the fix rather than a patch the drone can never see.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import ConfigDict, Field

from payload.configio import StrictModel, load_config, validate_config
from payload.errors import ConfigError
from payload.pipeline.tiling import tile_span

DISEASES = ("rust", "powdery_mildew")
MIN_TEXTURE_SCALE_PX = 24  # below this a tile's worth of field cannot hold visible lesions
MAX_FIELD_PIXELS = 40_000_000  # ~120 MB of RGB: beyond that the field raster does not fit a test machine


class Origin(StrictModel):
    """The field's south-west corner, which is also the home (take-off) position."""

    lat: float = Field(ge=-85.0, le=85.0, description="degrees")
    lon: float = Field(ge=-180.0, le=180.0, description="degrees")
    alt: float = Field(ge=-500.0, le=9000.0, description="ground altitude, metres above mean sea level")


class FieldSection(StrictModel):
    """The field: a rectangle east and north of the origin, rasterised at m_per_px."""

    width_m: float = Field(gt=0, le=5000, description="extent east of the origin")
    height_m: float = Field(gt=0, le=5000, description="extent north of the origin")
    m_per_px: float = Field(gt=0.001, le=1.0, description="ground size of one field raster pixel")


class Patch(StrictModel):
    """A disease patch: a disk of one class, in metres east/north of the origin."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    cls: Literal["rust", "powdery_mildew"] = Field(alias="class")
    east_m: float
    north_m: float
    radius_m: float = Field(gt=0, le=500)


class FlightSection(StrictModel):
    """The scripted lawnmower survey."""

    altitude_m: float = Field(gt=1, le=500, description="above the field")
    speed_mps: float = Field(gt=0.2, le=40)
    line_spacing_m: float = Field(gt=0.5, le=1000)
    climb_rate_mps: float = Field(default=2.5, gt=0.1, le=20)
    accel_mps2: float = Field(default=1.5, gt=0.05, le=10, description="along-track acceleration at start and end")
    margin_m: float = Field(default=10.0, ge=0, le=500, description="legs run this far past the field edges")
    telemetry_rate_hz: float = Field(default=10.0, gt=0.2, le=50, description="GLOBAL_POSITION_INT/ATTITUDE/VFR_HUD")
    gps_rate_hz: float = Field(default=5.0, gt=0.2, le=20, description="GPS_RAW_INT")
    gps_noise_m: float = Field(default=1.0, ge=0, le=50, description="GPS_RAW_INT horizontal noise, 1 sigma")
    position_error_m: float = Field(
        default=0.3, ge=0, le=20, description="slowly wandering error of GLOBAL_POSITION_INT (EKF), 1 sigma"
    )


class CameraSection(StrictModel):
    """The payload's camera (nadir mount) and how the payload tiles its frames."""

    width: int = Field(default=640, ge=16, le=8192)
    height: int = Field(default=480, ge=16, le=8192)
    hfov_deg: float = Field(default=60.0, gt=1, lt=170)
    fps: float = Field(default=5.0, gt=0, le=60, description="frames per second of flight time")
    tile_rows: int = Field(default=3, ge=1, le=32, description="the payload's tiling grid (payload tiling.rows)")
    tile_cols: int = Field(default=4, ge=1, le=32, description="the payload's tiling grid (payload tiling.cols)")
    tile_overlap: float = Field(
        default=0.0, ge=0.0, lt=0.9, description="the payload's tile overlap (payload tiling.overlap)"
    )
    noise_sigma: float = Field(default=3.0, ge=0, le=50, description="sensor read noise, 0-255 units")
    jpeg_quality: int = Field(default=90, ge=10, le=100)


class Hill(StrictModel):
    """A smooth bump of the terrain: height_m * exp(-d^2 / (2 radius_m^2)) at distance d from its centre."""

    east_m: float
    north_m: float
    height_m: float = Field(ge=-200, le=200, description="negative: a hollow")
    radius_m: float = Field(gt=1, le=2000)


class TerrainSection(StrictModel):
    """Ground that is not flat (flight_sim/terrain.py, docs/TERRAIN.md): a plane slope plus smooth hills.

    Heights are metres above home (the origin, where the terrain is 0 by construction: the vehicle
    takes off there), so the survey's constant altitude above home becomes a varying height above
    the ground. The simulator renders on this terrain; the mission writes it as a DEM GeoTIFF the
    payload reads (`dem_crs`, `dem_cell_m`), like a grower's DEM.
    """

    slope_east: float = Field(default=0.0, ge=-1.0, le=1.0, description="rise per metre east")
    slope_north: float = Field(default=0.0, ge=-1.0, le=1.0, description="rise per metre north")
    hills: list[Hill] = Field(default_factory=list)
    cell_m: float = Field(default=1.0, gt=0.05, le=10.0, description="grid of the simulator's height field")
    margin_m: float = Field(default=80.0, ge=10.0, le=2000.0,
                            description="the terrain (and the DEM) reaches this far beyond the field")
    dem_crs: str = Field(default="utm", description="CRS of the DEM written for the payload: utm (the origin's "
                         "UTM zone) or any 'EPSG:n'")
    dem_cell_m: float = Field(default=1.0, gt=0.05, le=30.0, description="pixel size of that DEM")
    paint_at_local_height: bool = Field(
        default=True, description="paint each patch at the texture scale of the flight's height above the ground "
        "under it (the classifier's training looks have one scale: this keeps the hill a test of geometry)")


class Scenario(StrictModel):
    """A whole scenario file."""

    origin: Origin
    field: FieldSection
    patches: list[Patch] = Field(default_factory=list)
    flight: FlightSection
    camera: CameraSection = CameraSection()
    terrain: TerrainSection | None = None
    seed: int = Field(default=0, ge=0)


def terrain_height(s: Scenario, east: Any, north: Any) -> np.ndarray:
    """Height (m) of the scenario's ground above home at east, north of the origin (0 without terrain)."""
    e, n = np.broadcast_arrays(np.asarray(east, dtype=float), np.asarray(north, dtype=float))
    t = s.terrain
    if t is None:
        return np.zeros(e.shape)

    def raw(ee: np.ndarray, nn: np.ndarray) -> np.ndarray:
        h = t.slope_east * ee + t.slope_north * nn
        for b in t.hills:
            h = h + b.height_m * np.exp(-((ee - b.east_m) ** 2 + (nn - b.north_m) ** 2) / (2 * b.radius_m**2))
        return np.asarray(h, dtype=float)

    return raw(e, n) - raw(np.zeros(1), np.zeros(1))[0]


def check_scenario(s: Scenario, source: str) -> Scenario:
    """Checks across fields that pydantic cannot express per field; ConfigError naming each problem."""
    problems: list[str] = []
    f = s.field
    for i, p in enumerate(s.patches):
        if (
            p.east_m - p.radius_m < 0
            or p.east_m + p.radius_m > f.width_m
            or (p.north_m - p.radius_m < 0 or p.north_m + p.radius_m > f.height_m)
        ):
            problems.append(
                f"field 'patches[{i}]': the {p.cls} patch at east {p.east_m} m, north {p.north_m} m, radius "
                f"{p.radius_m} m reaches outside the field (east 0..{f.width_m} m, north 0..{f.height_m} m); "
                "move it inside or enlarge the field"
            )
    px = (f.width_m / f.m_per_px) * (f.height_m / f.m_per_px)
    if px > MAX_FIELD_PIXELS:
        problems.append(
            f"field 'field.m_per_px': {f.m_per_px} makes a "
            f"{f.width_m / f.m_per_px:.0f} x {f.height_m / f.m_per_px:.0f} px raster ({px / 1e6:.0f} Mpx, "
            f"limit {MAX_FIELD_PIXELS / 1e6:.0f}); raise m_per_px or shrink the field"
        )
    if s.terrain is not None:
        ee, nn = np.meshgrid(np.linspace(0, f.width_m, 61), np.linspace(0, f.height_m, 41))
        top = float(terrain_height(s, ee, nn).max())
        if s.flight.altitude_m - top < 5.0:
            problems.append(
                f"field 'flight.altitude_m': {s.flight.altitude_m} m above home clears the terrain's highest "
                f"point over the field ({top:.1f} m above home) by less than 5 m; fly higher or lower the hills")
    scale = texture_scale_px(s, lowest_agl_m(s))
    if scale < MIN_TEXTURE_SCALE_PX:
        problems.append(
            f"field 'field.m_per_px': {f.m_per_px} m/px is too coarse: one classifier tile at "
            f"{s.flight.altitude_m} m spans only {scale:.0f} field pixels (need {MIN_TEXTURE_SCALE_PX}) so "
            "lesions cannot be painted; lower m_per_px to about the camera's ground sample distance"
        )
    if problems:
        raise ConfigError(f"{source}: invalid scenario\n" + "\n".join(f"  - {m}" for m in problems))
    return s


def load_scenario(path: str | Path) -> Scenario:
    """Load and check a scenario YAML file (ConfigError with file, field, value and rule)."""
    return check_scenario(load_config(path, Scenario), str(path))


def scenario_from_dict(data: Any, source: str = "<scenario>") -> Scenario:
    """Validate an already-parsed scenario (the same checks as load_scenario)."""
    return check_scenario(validate_config(data, Scenario), source)


def scenario_to_yaml(s: Scenario) -> str:
    """YAML text that load_scenario reads back to an equal Scenario."""
    return yaml.safe_dump(s.model_dump(mode="json", by_alias=True), sort_keys=False)


def lowest_agl_m(s: Scenario) -> float:
    """The flight's smallest height above the field's ground (the survey altitude over flat ground)."""
    if s.terrain is None:
        return s.flight.altitude_m
    ee, nn = np.meshgrid(np.linspace(0, s.field.width_m, 61), np.linspace(0, s.field.height_m, 41))
    return float(s.flight.altitude_m - terrain_height(s, ee, nn).max())


def tile_ground_size_m(s: Scenario, agl_m: float | None = None) -> tuple[float, float]:
    """(width, height) in metres one classifier tile covers straight down from `agl_m` (default: survey altitude)."""
    cam = s.camera
    fx = (cam.width / 2.0) / math.tan(math.radians(cam.hfov_deg) / 2.0)
    gsd = (s.flight.altitude_m if agl_m is None else agl_m) / fx  # metres per frame pixel at the image centre
    # the frame's ground size split as the payload's grid splits the frame (tiling.tile_span)
    return (tile_span(gsd * cam.width, cam.tile_cols, cam.tile_overlap),
            tile_span(gsd * cam.height, cam.tile_rows, cam.tile_overlap))


def texture_scale_px(s: Scenario, agl_m: float | None = None) -> float:
    """compile.synthetic's `scale` for the field: field pixels one classifier tile spans.

    A training leaf image is one classifier input; a tile is what the payload feeds the
    classifier. Painting the field at this scale makes a tile over a patch look like a
    training image of that class (CONTRACTS.md section 3).
    """
    w, h = tile_ground_size_m(s, agl_m)
    return math.sqrt(w * h) / s.field.m_per_px


def random_scenario(
    seed: int,
    origin: tuple[float, float, float] = (-35.363261, 149.165230, 584.0),
    width_m: float = 120.0,
    height_m: float = 80.0,
    n_patches: int | None = None,
) -> Scenario:
    """A scenario drawn from a seed: 2-6 non-overlapping patches of random class, size and place."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 7)) if n_patches is None else n_patches
    patches: list[dict[str, Any]] = []
    tries = 0
    while len(patches) < n and tries < 1000:
        tries += 1
        r = float(rng.uniform(4.0, 8.0))  # a tile is ~9 m across at 30 m: smaller patches hide in one tile
        e = float(rng.uniform(r, width_m - r))
        nn = float(rng.uniform(r, height_m - r))
        if all(math.hypot(e - q["east_m"], nn - q["north_m"]) > r + q["radius_m"] + 3.0 for q in patches):
            cls = DISEASES[int(rng.integers(0, len(DISEASES)))]
            patches.append({"class": cls, "east_m": round(e, 2), "north_m": round(nn, 2), "radius_m": round(r, 2)})
    data = {
        "origin": {"lat": origin[0], "lon": origin[1], "alt": origin[2]},
        "field": {"width_m": width_m, "height_m": height_m, "m_per_px": 0.05},
        "patches": patches,
        "flight": {"altitude_m": 30.0, "speed_mps": 5.0, "line_spacing_m": 20.0},
        "camera": {"width": 640, "height": 480, "hfov_deg": 60.0},
        "seed": seed,
    }
    return scenario_from_dict(data, f"<random scenario, seed {seed}>")
