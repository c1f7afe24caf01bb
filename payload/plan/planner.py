"""The survey a bundle, a camera and a chip call for: altitude, tile grid, spacing, speed and frame rate.

QGroundControl's survey chooses altitude from a ground resolution and speed from overlap; it
knows nothing of the resolution at which the classifier still sees the disease, nor of how many
tiles a second the Edge TPU classifies. This module puts the three together (docs/PLAN.md):

- altitude: a tile of the payload's grid, resized to the model's input, reaches the card's
  `working_gsd_mm` per model-input pixel (the unit of flight_sim's `model_input_gsd_mm` and of
  tools/detectability.py `altitude_for_gsd_m`): h = gsd x model_px / tile_px x fx, with fx the
  focal length in output pixels;
- the tile grid: as many columns as the output width holds without enlarging a tile (a tile of
  fewer pixels than the model's input would be upsampled: its true resolution coarser than the
  card's), the fewest rows that keep tiles no taller than wide, fewer columns only if the
  altitude would pass the ceiling;
- line spacing from the side overlap of the ground footprint; speed the least of what forward
  overlap at the camera's frame rate allows, what the chip classifies (tiles per frame x frames per
  second <= the chip's tiles per second), what keeps motion blur under its bound, and the
  vehicle's top speed; the frame rate the slowest that keeps the forward overlap at that speed.

Pure arithmetic, no I/O: the CLI (payload/plan/command.py) reads the files and writes the outputs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from payload.errors import UserError
from payload.pipeline.tiling import tile_span

HA_PER_M2_S_TO_HA_PER_H = 3600.0 / 10000.0


@dataclass(frozen=True)
class CameraGeometry:
    """A nadir camera's intrinsics and output, the camera's frame-rate ceiling and its exposure."""

    sensor_width_mm: float
    sensor_height_mm: float
    focal_length_mm: float
    width: int
    height: int
    max_fps: float
    exposure_s: float

    @property
    def fx(self) -> float:
        """Focal length in output pixels: the frame spans the sensor's full width (camerapresets)."""
        return self.width * self.focal_length_mm / self.sensor_width_mm


@dataclass(frozen=True)
class PlanLimits:
    """What the operator asks of the flight besides resolution: overlaps, blur, ceilings."""

    front_overlap: float = 0.75
    side_overlap: float = 0.3
    max_blur_px: float = 0.5
    max_speed_mps: float = 12.0
    max_altitude_m: float = 120.0
    min_altitude_m: float = 2.0


@dataclass(frozen=True)
class Survey:
    """The chosen flight and what it yields (every figure of the summary)."""

    gsd_mm: float
    model_px: int
    tile_rows: int
    tile_cols: int
    altitude_m: float
    frame_gsd_mm: float
    model_gsd_mm: float
    footprint_across_m: float
    footprint_along_m: float
    line_spacing_m: float
    frame_spacing_m: float
    fps: float
    speed_mps: float
    limited_by: str
    speed_limits_mps: dict[str, float]
    chip_tiles_per_s: float
    tiles_per_frame: int
    tiles_offered_per_s: float
    tiles_classified_per_s: float
    looks_along: float
    looks_across: float
    looks_per_cell: float
    ha_per_h_lines: float
    physical_bound_ha_per_h: float
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """The survey as plain data (the summary's JSON)."""
        d = asdict(self)
        d["notes"] = list(self.notes)
        return d


def altitude_for(gsd_mm: float, model_px: int, cam: CameraGeometry, rows: int, cols: int) -> float:
    """Height above ground at which the grid's tiles reach gsd_mm per model-input pixel (tiles' longer side)."""
    tile_px = max(tile_span(cam.width, cols, 0.0), tile_span(cam.height, rows, 0.0))
    return gsd_mm / 1000.0 * model_px / tile_px * cam.fx


def rows_for(cam: CameraGeometry, cols: int) -> int:
    """The fewest rows whose tiles are no taller than wide: the tile's width then sets the model's resolution,
    as tools/detectability.py `altitude_for_gsd_m` assumes, and the altitude is the highest the grid allows."""
    return max(1, math.ceil(cam.height * cols / cam.width - 1e-9))


def choose_grid(gsd_mm: float, model_px: int, cam: CameraGeometry,
                limits: PlanLimits) -> tuple[int, int, float, list[str]]:
    """(rows, cols, altitude, notes): the most columns whose tiles need no enlarging and whose altitude is allowed."""
    most = cam.width // model_px
    if most < 1:
        raise UserError(f"the camera's output is {cam.width} px wide, narrower than the model's {model_px} px input: "
                        "every tile would be enlarged and the card's resolution never reached; give the camera a "
                        f"width of at least {model_px} px")
    notes: list[str] = []
    for cols in range(most, 0, -1):
        rows = rows_for(cam, cols)
        h = altitude_for(gsd_mm, model_px, cam, rows, cols)
        if h <= limits.max_altitude_m:
            if cols < most:
                notes.append(f"{most} columns would fly above the {limits.max_altitude_m:g} m ceiling; {cols} keep "
                             "the working resolution below it")
            break
    else:
        rows, cols, h = rows_for(cam, 1), 1, limits.max_altitude_m
        notes.append(f"even one column would fly above the {limits.max_altitude_m:g} m ceiling: flying at the "
                     "ceiling, finer than the working resolution")
    if h < limits.min_altitude_m:
        raise UserError(f"{gsd_mm:g} mm per model pixel with this camera means flying {h:.2f} m above the crop, "
                        f"below the {limits.min_altitude_m:g} m floor (rotor wash, obstacles); use a wider lens, "
                        "a coarser --gsd-mm or a bundle that works at a coarser resolution")
    return rows, cols, h, notes


def plan_survey(gsd_mm: float, model_px: int, cam: CameraGeometry, chip_tiles_per_s: float,
                limits: PlanLimits = PlanLimits()) -> Survey:
    """The survey for a working resolution, a camera and a chip's throughput (module docstring)."""
    if not gsd_mm > 0:
        raise UserError(f"the working resolution must be positive, got {gsd_mm} mm per pixel")
    if not chip_tiles_per_s > 0:
        raise UserError(f"the chip's throughput must be positive, got {chip_tiles_per_s} tiles/s")
    for name in ("front_overlap", "side_overlap"):
        v = getattr(limits, name)
        if not 0.0 <= v < 1.0:
            raise UserError(f"{name.replace('_', ' ')} must be in [0, 1), got {v}")
    rows, cols, h, notes = choose_grid(gsd_mm, model_px, cam, limits)
    frame_gsd = h / cam.fx
    across, along = frame_gsd * cam.width, frame_gsd * cam.height
    tiles = rows * cols
    advance = along * (1.0 - limits.front_overlap)  # ground between frames that keeps the forward overlap
    fps_limits = {
        "camera frame rate (forward overlap)": cam.max_fps,
        "chip throughput": chip_tiles_per_s / tiles,
        "motion blur": limits.max_blur_px * frame_gsd / cam.exposure_s / advance,
        "vehicle top speed": limits.max_speed_mps / advance,
    }
    limited_by = min(fps_limits, key=lambda k: fps_limits[k])
    fps = math.floor(fps_limits[limited_by] * 1000.0) / 1000.0  # rounded down: every bound still holds
    speed = math.floor(fps * advance * 100.0) / 100.0
    offered = tiles * fps
    classified = min(offered, chip_tiles_per_s)
    spacing = across * (1.0 - limits.side_overlap)
    frame_spacing = speed / fps
    looks_along = along / frame_spacing
    looks_across = across / spacing
    chip_speed = chip_tiles_per_s / tiles * advance
    return Survey(
        gsd_mm=gsd_mm, model_px=model_px, tile_rows=rows, tile_cols=cols, altitude_m=round(h, 3),
        frame_gsd_mm=1000.0 * frame_gsd,
        model_gsd_mm=1000.0 * frame_gsd * max(tile_span(cam.width, cols, 0.0), tile_span(cam.height, rows, 0.0))
        / model_px,
        footprint_across_m=across, footprint_along_m=along, line_spacing_m=round(spacing, 3),
        frame_spacing_m=frame_spacing, fps=fps, speed_mps=speed, limited_by=limited_by,
        speed_limits_mps={k: v * advance for k, v in fps_limits.items()},
        chip_tiles_per_s=chip_tiles_per_s, tiles_per_frame=tiles, tiles_offered_per_s=offered,
        tiles_classified_per_s=classified, looks_along=looks_along, looks_across=looks_across,
        looks_per_cell=looks_along * looks_across * classified / offered,
        ha_per_h_lines=round(spacing, 3) * speed * HA_PER_M2_S_TO_HA_PER_H,
        physical_bound_ha_per_h=across * chip_speed * HA_PER_M2_S_TO_HA_PER_H,
        notes=tuple(notes),
    )
