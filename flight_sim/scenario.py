"""Scenario files: a crop with disease patches at known places, the light, a survey flight and a camera.

A scenario is the ground truth a mission is scored against, so a typo must never be silently
ignored (StrictModel: unknown keys are errors), and a patch that lies outside the field is an
error naming the patch and the fix rather than a patch the drone can never see.

The world is procedural (flight_sim/world/): there is no field raster, so the old `field.m_per_px`
and `terrain.paint_at_local_height` keys are errors that say to delete them (their values meant
something, so silently ignoring them would change what an old file describes). The camera is
given by a documented preset or its intrinsics (payload/geo/camerapresets.py), never by a field
of view alone: the ground resolution then follows from a real sensor and lens.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import ConfigDict, Field, model_validator

from flight_sim.world.config import CropSection, LightSection, Stage
from payload.configio import StrictModel, load_config, validate_config
from payload.errors import ConfigError
from payload.geo.camera import CameraModel
from payload.geo.camerapresets import PRESETS, camera_from_intrinsics
from payload.geo.frames import geodetic_to_enu
from payload.pipeline.tiling import tile_span

DISEASES = ("rust", "powdery_mildew")
STAGE_NAMES: tuple[Stage, ...] = ("early", "moderate", "late")
PresetName = Literal["rpi_cam_v2", "rpi_cam_v3", "rpi_hq_6mm", "mavic3m_rgb", "coral_camera"]
# keys of the painted world's scenarios: each gets an error saying what to do instead
LEGACY_KEYS = {
    "m_per_px": "the world is procedural now and has no raster; delete field.m_per_px",
    "paint_at_local_height": "the world is drawn at the camera's true ground resolution everywhere; delete it",
    "hfov_deg": "give the camera by `preset:` (rpi_cam_v2 is the 62.2 deg Pi camera) or by sensor_width_mm, "
                "sensor_height_mm and focal_length_mm",
}


def _no_legacy(data: Any, section: str) -> Any:
    """Reject a painted-world key with its fix (before pydantic's generic 'unknown key')."""
    if isinstance(data, dict):
        for k, why in LEGACY_KEYS.items():
            if k in data:
                raise ValueError(f"'{section}.{k}' is no longer a scenario key: {why}")
    return data


class Origin(StrictModel):
    """The field's south-west corner, which is also the home (take-off) position."""

    lat: float = Field(ge=-85.0, le=85.0, description="degrees")
    lon: float = Field(ge=-180.0, le=180.0, description="degrees")
    alt: float = Field(ge=-500.0, le=9000.0, description="ground altitude, metres above mean sea level")


class FieldSection(StrictModel):
    """The field: a rectangle east and north of the origin (the crop grows in it, headland soil around)."""

    width_m: float = Field(gt=0, le=5000, description="extent east of the origin")
    height_m: float = Field(gt=0, le=5000, description="extent north of the origin")

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        return _no_legacy(data, "field")


class Patch(StrictModel):
    """A disease patch: a disk of one class, in metres east/north of the origin."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    cls: Literal["rust", "powdery_mildew"] = Field(alias="class")
    east_m: float
    north_m: float
    radius_m: float = Field(gt=0, le=500)
    stage: Stage = Field(default="moderate", description="disease stage at the centre: early, moderate or late")


class FlightSection(StrictModel):
    """The scripted survey: the scenario's own lawnmower, or the waypoints of a QGroundControl `.plan` (`plan:`)."""

    plan: str | None = Field(default=None, description="a QGroundControl .plan (relative to the scenario file) whose "
                             "waypoints are flown instead of the lawnmower; altitude_m and speed_mps must match it")
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
    """The payload's camera (nadir mount) by preset or intrinsics, its output, and how the payload tiles frames.

    Frames span the sensor's full width scaled to width x height (payload/geo/camerapresets.py);
    sensor_width_mm/sensor_height_mm/focal_length_mm, when given, replace the preset's.
    """

    preset: PresetName | None = Field(default="rpi_cam_v2", description="a documented camera (docs/WORLD.md)")
    sensor_width_mm: float | None = Field(default=None, gt=0, le=100)
    sensor_height_mm: float | None = Field(default=None, gt=0, le=100)
    focal_length_mm: float | None = Field(default=None, gt=0, le=1000)
    width: int = Field(default=640, ge=16, le=8192, description="output frame width")
    height: int = Field(default=480, ge=16, le=8192, description="output frame height")
    fps: float = Field(default=5.0, gt=0, le=60, description="frames per second of flight time")
    exposure_s: float = Field(default=0.001, gt=0, le=0.1,
                              description="exposure time: motion blur (px) = speed x exposure / GSD")
    tile_rows: int = Field(default=3, ge=1, le=32, description="the payload's tiling grid (payload tiling.rows)")
    tile_cols: int = Field(default=4, ge=1, le=32, description="the payload's tiling grid (payload tiling.cols)")
    tile_overlap: float = Field(
        default=0.0, ge=0.0, lt=0.9, description="the payload's tile overlap (payload tiling.overlap)"
    )
    noise_sigma: float = Field(default=3.0, ge=0, le=50, description="sensor read noise, 0-255 units")
    jpeg_quality: int = Field(default=90, ge=10, le=100)
    latency_s: float = Field(
        default=0.0, ge=0.0, le=2.0, description="exposure to delivery, wall seconds: the stream holds each frame "
        "back this long after its exposure (render and encode count towards it), as a real camera's pipeline does")
    auto_exposure: bool = Field(default=True, description="lagging auto exposure and white balance, as a camera")
    white_balance_k: float | None = Field(
        default=None, ge=2000, le=10000, description="white balance locked at this colour temperature, K, as a "
        "scouting camera should be set (libcamera: AwbEnable off, fixed ColourGains); null: auto white balance, "
        "which takes a frame filled by late rust for warm light and greys it (docs/WORLD.md)")

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        return _no_legacy(data, "camera")

    @model_validator(mode="after")
    def _geometry(self) -> CameraSection:
        given = [self.sensor_width_mm, self.sensor_height_mm, self.focal_length_mm]
        if any(g is not None for g in given) and not all(g is not None for g in given):
            raise ValueError("camera intrinsics need sensor_width_mm, sensor_height_mm and focal_length_mm together")
        if self.preset is None and given[0] is None:
            raise ValueError("the camera needs a preset or sensor_width_mm/sensor_height_mm/focal_length_mm")
        return self

    def intrinsics(self) -> tuple[float, float, float]:
        """(sensor width mm, sensor height mm, focal length mm): the given ones, else the preset's."""
        if self.focal_length_mm is not None:
            assert self.sensor_width_mm is not None and self.sensor_height_mm is not None
            return self.sensor_width_mm, self.sensor_height_mm, self.focal_length_mm
        assert self.preset is not None
        p = PRESETS[self.preset]
        return p.sensor_width_mm, p.sensor_height_mm, p.focal_length_mm

    def model(self, mount_rpy_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> CameraModel:
        """The payload's camera model of this camera's output frames."""
        sw, sh, f = self.intrinsics()
        return camera_from_intrinsics(self.width, self.height, sw, sh, f, mount_rpy_deg)

    @property
    def hfov_deg(self) -> float:
        """The horizontal field of view the intrinsics give (for logs and the payload's config)."""
        return self.model().hfov_deg


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

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        return _no_legacy(data, "terrain")


class Scenario(StrictModel):
    """A whole scenario file."""

    origin: Origin
    field: FieldSection
    crop: CropSection = CropSection()
    light: LightSection = LightSection()
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
    if s.terrain is not None:
        ee, nn = np.meshgrid(np.linspace(0, f.width_m, 61), np.linspace(0, f.height_m, 41))
        top = float(terrain_height(s, ee, nn).max())
        if s.flight.altitude_m - top < 5.0:
            problems.append(
                f"field 'flight.altitude_m': {s.flight.altitude_m} m above home clears the terrain's highest "
                f"point over the field ({top:.1f} m above home) by less than 5 m; fly higher or lower the hills")
    try:
        s.camera.model()
    except ValueError as err:
        problems.append(f"field 'camera.height': {err}")
    if s.flight.plan is not None:
        problems += _plan_problems(s)
    if problems:
        raise ConfigError(f"{source}: invalid scenario\n" + "\n".join(f"  - {m}" for m in problems))
    return s


def _plan_problems(s: Scenario) -> list[str]:
    """What disagrees between the scenario and the .plan it flies (the plan is what the autopilot would fly)."""
    from flight_sim.planfile import read_plan

    assert s.flight.plan is not None
    plan = read_plan(s.flight.plan)
    out = []
    if abs(plan.altitude_m - s.flight.altitude_m) > 0.5:
        out.append(f"field 'flight.altitude_m': {s.flight.altitude_m} m, but {plan.source} flies at "
                   f"{plan.altitude_m:.2f} m; make them equal")
    if plan.speed_mps is not None and abs(plan.speed_mps - s.flight.speed_mps) > 0.05:
        out.append(f"field 'flight.speed_mps': {s.flight.speed_mps} m/s, but {plan.source} sets {plan.speed_mps} m/s; "
                   "make them equal")
    e, n, _ = geodetic_to_enu(plan.home[0], plan.home[1], s.origin.alt, s.origin.lat, s.origin.lon, s.origin.alt)
    if math.hypot(float(e), float(n)) > 2.0:
        out.append(f"field 'flight.plan': the plan's home is {math.hypot(float(e), float(n)):.1f} m from the "
                   "scenario's origin, where the simulated vehicle takes off; move the origin or the plan's home")
    return out


def plan_scenario(s: Scenario, plan_path: str | Path) -> Scenario:
    """The scenario flying a .plan's waypoints at the plan's altitude and speed (`flight-sim survey --plan`)."""
    from flight_sim.planfile import read_plan

    plan = read_plan(plan_path)
    update: dict[str, Any] = {"plan": str(Path(plan_path).resolve()), "altitude_m": round(plan.altitude_m, 3)}
    if plan.speed_mps is not None:
        update["speed_mps"] = plan.speed_mps
    return check_scenario(s.model_copy(update={"flight": s.flight.model_copy(update=update)}), str(plan_path))


def load_scenario(path: str | Path) -> Scenario:
    """Load and check a scenario YAML file (ConfigError with file, field, value and rule).

    A relative `flight.plan` is taken from the scenario file's folder (`payload plan` writes the two
    side by side).
    """
    s = load_config(path, Scenario)
    if s.flight.plan is not None and not Path(s.flight.plan).is_absolute():
        plan = str((Path(path).parent / s.flight.plan).resolve())
        s = s.model_copy(update={"flight": s.flight.model_copy(update={"plan": plan})})
    return check_scenario(s, str(path))


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
    fx = float(cam.model().K[0, 0])
    gsd = (s.flight.altitude_m if agl_m is None else agl_m) / fx  # metres per frame pixel at the image centre
    # the frame's ground size split as the payload's grid splits the frame (tiling.tile_span)
    return (tile_span(gsd * cam.width, cam.tile_cols, cam.tile_overlap),
            tile_span(gsd * cam.height, cam.tile_rows, cam.tile_overlap))


def model_input_gsd_mm(s: Scenario, input_px: int = 224, agl_m: float | None = None) -> float:
    """Ground mm per MODEL-INPUT pixel of a tile straight down from `agl_m` (default: survey altitude).

    The payload's tiler resizes each tile to the model's input (input_px on a side), so this is the
    resolution the classifier sees: the unit of a bundle card's `working_gsd_mm` (spec_world.md).
    """
    w, h = tile_ground_size_m(s, agl_m)
    return 1000.0 * max(w, h) / input_px


def altitude_for_gsd(camera: CameraSection, target_gsd_mm: float, input_px: int = 224) -> float:
    """The height above ground at which a tile of `camera` reaches target_gsd_mm per model-input pixel."""
    fx = float(camera.model().K[0, 0])
    tile_px = max(tile_span(camera.width, camera.tile_cols, camera.tile_overlap),
                  tile_span(camera.height, camera.tile_rows, camera.tile_overlap))
    frame_gsd_m = target_gsd_mm / 1000.0 * input_px / tile_px
    return frame_gsd_m * fx


# the white balance scouting flights lock at: what libcamera's auto balance holds over healthy canopy, and what
# tools.detectability's frames lock at (flight_sim/camerafx.py AWB_DAYLIGHT_K; a test keeps the two equal)
LOCKED_WHITE_BALANCE_K = 6500.0
SEEN_TILE_COLS = 5  # random scenarios for a bundle's seen stages: 128 px tiles from a 640 px frame
RANDOM_ALTITUDE_M = (4.0, 120.0)  # below: rotor wash and obstacles; above: the usual drone ceiling


def random_scenario(
    seed: int,
    origin: tuple[float, float, float] = (-35.363261, 149.165230, 584.0),
    width_m: float = 120.0,
    height_m: float = 80.0,
    n_patches: int | None = None,
    target_gsd_mm: float = 20.0,
    input_px: int = 224,
    preset: str | None = None,
    seen: Mapping[str, Mapping[str, float | None]] | None = None,
) -> Scenario:
    """A scenario drawn from a seed: crop, stage, light, 2-6 patches; camera and altitude for a target resolution.

    The altitude is chosen so that a tile reaches `target_gsd_mm` per model-input pixel (a missions
    run passes the bundle card's `working_gsd_mm`), clipped to RANDOM_ALTITUDE_M; line spacing keeps
    30 % side overlap, and the speed keeps motion blur under half a pixel.

    `seen` (disease -> stage -> the coarsest mm per model pixel a bundle sees it at, None: never; a
    card's field trial) makes the scenario one a grower would fly for that bundle: every patch is a
    disease and stage the bundle sees, the flight is at the finest resolution any of them needs
    (`target_gsd_mm` is then ignored), and the tile grid is five tiles across, so the camera's pixels
    are nearly the model's. The stages it cannot see are the detectability table's to report.
    """
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 7)) if n_patches is None else n_patches
    name = preset or list(PRESETS)[int(rng.integers(0, len(PRESETS)))]
    p = PRESETS[name]
    cam_w = 640
    cam_h = min(480, int(cam_w * p.sensor_height_mm / p.sensor_width_mm) // 2 * 2)  # 16:9 sensors give 640x360
    exposure = float(rng.choice([0.0005, 0.001, 0.002]))
    rows = max(1, round(cam_h / (cam_w / SEEN_TILE_COLS)))  # near-square tiles: 4 rows at 480 px, 3 at 360
    grid = {} if seen is None else {"tile_cols": SEEN_TILE_COLS, "tile_rows": rows}
    if seen is not None:  # a flight for what a bundle sees: the camera set as its field trial's was
        grid["white_balance_k"] = LOCKED_WHITE_BALANCE_K
    camera = CameraSection(preset=name, width=cam_w, height=cam_h, exposure_s=exposure, **grid)  # type: ignore[arg-type]
    pairs = [] if seen is None else [(d, st, float(g)) for d, by in seen.items() for st, g in by.items()
                                     if g is not None and d in DISEASES and st in STAGE_NAMES]
    if seen is not None and not pairs:
        raise ValueError("the bundle sees no disease at any stage: no scenario can be drawn for it")
    patches: list[dict[str, Any]] = []
    tries = 0
    while len(patches) < n and tries < 1000:
        tries += 1
        r = float(rng.uniform(4.0, 8.0))
        e = float(rng.uniform(r, width_m - r))
        nn = float(rng.uniform(r, height_m - r))
        if all(math.hypot(e - q["east_m"], nn - q["north_m"]) > r + q["radius_m"] + 3.0 for q in patches):
            if pairs:
                cls, stage, _ = pairs[int(rng.integers(0, len(pairs)))]
            else:
                cls = DISEASES[int(rng.integers(0, len(DISEASES)))]
                stage = STAGE_NAMES[int(rng.integers(0, len(STAGE_NAMES)))]
            patches.append({"class": cls, "east_m": round(e, 2), "north_m": round(nn, 2), "radius_m": round(r, 2),
                            "stage": stage})
    if pairs:
        need = {(q["class"], q["stage"]) for q in patches}
        target_gsd_mm = min(g for d, st, g in pairs if (d, st) in need)
    agl = round(float(np.clip(altitude_for_gsd(camera, target_gsd_mm, input_px), *RANDOM_ALTITUDE_M)), 2)
    gsd = agl / float(camera.model().K[0, 0])
    foot_w = gsd * cam_w
    speed = math.floor(min(5.0, 0.5 * gsd / exposure) * 100) / 100  # rounded down: the blur bound holds
    kinds = ("wheat", "soybean", "cucurbit", "grapevine")
    data = {
        "origin": {"lat": origin[0], "lon": origin[1], "alt": origin[2]},
        "field": {"width_m": width_m, "height_m": height_m},
        "crop": {"kind": kinds[int(rng.integers(0, len(kinds)))],
                 "row_azimuth_deg": round(float(rng.choice([0.0, 90.0]) + rng.uniform(-10, 10)), 1)},
        "light": {"sun_elevation_deg": round(float(rng.uniform(25, 65)), 1),
                  "sun_azimuth_deg": round(float(rng.uniform(0, 360)), 1),
                  "cloud_cover": round(float(rng.uniform(0.0, 0.5)), 2),
                  "haze": round(float(rng.uniform(0.0, 0.3)), 2)},
        "patches": patches,
        "flight": {"altitude_m": round(agl, 2), "speed_mps": round(speed, 2),
                   "line_spacing_m": round(max(0.6, 0.7 * foot_w), 2)},
        "camera": camera.model_dump(mode="json"),
        "seed": seed,
    }
    return scenario_from_dict(data, f"<random scenario, seed {seed}>")


def payload_camera(c: CameraSection) -> dict[str, Any]:
    """The payload `camera:` config section of this camera (its intrinsics, so both build one model)."""
    sw, sh, f = c.intrinsics()
    return {"sensor_width_mm": sw, "sensor_height_mm": sh, "focal_length_mm": f, "exposure_s": c.exposure_s,
            "width": c.width, "height": c.height}
