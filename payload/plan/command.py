"""`payload plan`: a field, a camera and a bundle in; a QGroundControl .plan, a simulator scenario and a summary out.

The files are read and checked here (every problem a UserError naming the file and the fix), the
flight is chosen by payload/plan/planner.py, the lines by payload/plan/field.py and the .plan written
by payload/plan/qgc.py. The scenario is written as the flight simulator reads it (flight_sim/
scenario.py; the payload cannot import the simulator, so tests/payload/test_plan.py loads the
written file with the simulator's own loader): the field's bounding box, the camera at the plan's
frame rate and tile grid, and `flight.plan` naming the .plan, so `flight-sim survey` flies it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import Field, model_validator

from payload.bundle import ModelCard, read_card
from payload.configio import StrictModel, read_yaml, validate_config
from payload.errors import BundleError, ConfigError, UserError
from payload.files.atomic import atomic_write_text
from payload.geo.camerapresets import PRESETS, max_output_height
from payload.plan.chip import EDGETPU_MODELS, BundleCost, device_models, invoke_s, resnet50_cost
from payload.plan.field import Field as FieldGeometry
from payload.plan.field import load_field, survey_lines
from payload.plan.planner import CameraGeometry, PlanLimits, Survey, plan_survey
from payload.plan.qgc import plan_document
from payload.settings.camera import CameraPresetName

ModelCost = Literal["bundle", "resnet50"]


class PlanCamera(StrictModel):
    """The camera file: a documented preset or the datasheet's intrinsics, the output size and the frame-rate ceiling.

    The same geometry keys as the payload's `camera:` section (payload/settings/camera.py); a field
    of view or a calibration matrix is not enough to plan with a sensor's real size, so they are
    not taken.
    """

    preset: CameraPresetName | None = None
    sensor_width_mm: float | None = Field(default=None, gt=0, le=100)
    sensor_height_mm: float | None = Field(default=None, gt=0, le=100)
    focal_length_mm: float | None = Field(default=None, gt=0, le=1000)
    width: int = Field(default=640, ge=16, le=8192, description="output frame width the payload classifies")
    height: int | None = Field(default=None, ge=16, le=8192, description="null: the sensor's aspect at `width`")
    max_fps: float = Field(default=5.0, gt=0, le=60, description="the fastest frame rate the camera delivers")
    exposure_s: float = Field(default=0.001, gt=0, le=0.1, description="motion blur = speed x exposure / GSD")

    @model_validator(mode="after")
    def _one_geometry(self) -> PlanCamera:
        given = [self.sensor_width_mm, self.sensor_height_mm, self.focal_length_mm]
        if any(g is not None for g in given) and not all(g is not None for g in given):
            raise ValueError("camera intrinsics need sensor_width_mm, sensor_height_mm and focal_length_mm together")
        if self.preset is None and given[0] is None:
            raise ValueError(f"the camera needs `preset:` (one of {', '.join(PRESETS)}) or sensor_width_mm, "
                             "sensor_height_mm and focal_length_mm")
        if self.preset is not None and given[0] is not None:
            raise ValueError("the camera is given twice (a preset and intrinsics); keep one")
        return self

    def intrinsics(self) -> tuple[float, float, float]:
        """(sensor width, sensor height, focal length) in mm."""
        if self.preset is not None:
            p = PRESETS[self.preset]
            return p.sensor_width_mm, p.sensor_height_mm, p.focal_length_mm
        assert self.sensor_width_mm and self.sensor_height_mm and self.focal_length_mm
        return self.sensor_width_mm, self.sensor_height_mm, self.focal_length_mm

    def geometry(self) -> CameraGeometry:
        """The planner's camera (ConfigError-free: the height was checked when loaded)."""
        sw, sh, f = self.intrinsics()
        h = self.height if self.height is not None else 2 * round(self.width * sh / sw / 2)
        return CameraGeometry(sw, sh, f, self.width, h, self.max_fps, self.exposure_s)


def load_camera(path: str | Path) -> PlanCamera:
    """Read the camera YAML (top level, or under `camera:` as in a payload config)."""
    data = read_yaml(path)
    if isinstance(data, dict) and set(data) == {"camera"}:
        data = data["camera"]
    if isinstance(data, dict):
        for key, why in (("hfov_deg", "a field of view alone"), ("K", "a calibration matrix")):
            if key in data:
                raise ConfigError(f"{path}: `{key}` gives the camera by {why}, which has no sensor size to plan "
                                  "ground resolution with; give `preset:` or sensor_width_mm, sensor_height_mm and "
                                  "focal_length_mm")
    cam = validate_config(data, PlanCamera, str(path))
    sw, sh, _ = cam.intrinsics()
    if cam.height is not None and cam.height > max_output_height(cam.width, sw, sh):
        raise ConfigError(f"{path}: a {cam.width}x{cam.height} output is taller than the sensor's aspect allows "
                          f"(at most {max_output_height(cam.width, sw, sh)} px at width {cam.width}); lower `height`")
    return cam


@dataclass(frozen=True)
class ChipFigure:
    """The chip's per-invoke latency for the bundle, where it came from, and tiles per second on N replicas."""

    invoke_ms: float
    source: str
    tpus: int
    edgetpu_model: str

    @property
    def tiles_per_s(self) -> float:
        """Replicas (the same model on each device): throughput x N."""
        return self.tpus * 1000.0 / self.invoke_ms


def chip_figure(card: ModelCard, bundle: Path, edgetpu_model: str, tpus: int, model_cost: ModelCost) -> ChipFigure:
    """Per-invoke latency: the card's measured `edgetpu.latency_ms` if it states one, else the modelled figure."""
    if edgetpu_model not in EDGETPU_MODELS:
        raise UserError(f"--edgetpu-model must be one of {', '.join(EDGETPU_MODELS)}, got {edgetpu_model!r}")
    if tpus < 1:
        raise UserError(f"--tpus must be 1 or more, got {tpus}")
    stated = (card.edgetpu or {}).get("latency_ms")
    if isinstance(stated, dict):
        stated = stated.get(edgetpu_model)
    if isinstance(stated, int | float) and stated > 0:
        return ChipFigure(float(stated), f"the card's edgetpu.latency_ms ({edgetpu_model})", tpus, edgetpu_model)
    dev = device_models()[edgetpu_model]
    if model_cost == "resnet50":
        cost = resnet50_cost(card.input.height, card.input.width)
        what = f"modelled ({edgetpu_model}): full ResNet-50 V1 at {card.input.height}x{card.input.width}"
    else:
        cost = _counted_cost(bundle)
        what = f"modelled ({edgetpu_model}): the bundle's model_int8.tflite, counted"
    what += f" ({cost.macs / 1e9:.3f} G MACs, {cost.param_bytes / 1e6:.2f} MB of parameters; payload/plan/chip.py)"
    return ChipFigure(1000.0 * invoke_s(cost, dev), what, tpus, edgetpu_model)


def _counted_cost(bundle: Path) -> BundleCost:
    """MACs and parameter bytes of the bundle's int8 model (BundleError when it cannot be read)."""
    from payload.plan.cost import bundle_cost

    model = bundle / "model_int8.tflite"
    if not model.is_file():
        raise BundleError(f"{bundle}: no model_int8.tflite to count the chip's work from; pass a whole bundle or "
                          "--model-cost resnet50")
    try:
        return bundle_cost(model)
    except (ValueError, RuntimeError, OSError) as err:
        raise BundleError(f"{model}: cannot be read to count its cost ({err}); pass --model-cost resnet50") from None


def working_gsd(card: ModelCard, bundle: Path, override: float | None,
                stage: str | None = None) -> tuple[float, str]:
    """(mm per model pixel, where it came from): the card's figure for the disease stage (`ModelCard.stage_gsd`:
    its field trial, else its build ladder; without `stage`, the earliest stage it sees), or the operator's
    override."""
    st, card_gsd, source = card.stage_gsd(stage)
    if override is not None:
        if not 0.1 <= override <= 500:
            raise UserError(f"--gsd-mm must be between 0.1 and 500 mm per pixel, got {override:g}")
        said = "" if card_gsd is None else f" (the card says {card_gsd:g} at the {st} stage)"
        return override, f"--gsd-mm {override:g} given by the operator, NOT the bundle's measured resolution{said}"
    if card_gsd is None:
        which = f"the {stage} stage" if stage else "any disease stage"
        raise UserError(
            f"{bundle}: the model card states no working resolution (working_gsd_mm) for {which} (the coarsest "
            "resolution at which the bundle still finds the disease: compile/build.py measures it on the canopy "
            "generator's ladder, `python -m tools.detectability --bundle B --out D --record` in the simulator's "
            "physical world). Measure it, plan for a later --stage, or pass --gsd-mm MM to plan at a resolution "
            "you vouch for")
    return card_gsd, source


def scenario_data(field: FieldGeometry, cam: PlanCamera, s: Survey, plan_name: str, home_alt: float,
                  crop: str) -> dict[str, Any]:
    """The flight_sim scenario that flies the plan over the field's bounding box (no patches: add the truth)."""
    e, n = field.extent_m
    sw, sh, f = cam.intrinsics()
    camera: dict[str, Any] = {"preset": cam.preset} if cam.preset else {
        "preset": None, "sensor_width_mm": sw, "sensor_height_mm": sh, "focal_length_mm": f}
    geom = cam.geometry()
    camera.update(width=geom.width, height=geom.height, fps=s.fps, exposure_s=cam.exposure_s,
                  tile_rows=s.tile_rows, tile_cols=s.tile_cols)
    return {
        "origin": {"lat": field.frame.lat0, "lon": field.frame.lon0, "alt": home_alt},
        "field": {"width_m": round(math.ceil(e * 100) / 100, 2), "height_m": round(math.ceil(n * 100) / 100, 2)},
        "crop": {"kind": crop},
        "patches": [],
        "flight": {"plan": plan_name, "altitude_m": round(s.altitude_m, 2), "speed_mps": s.speed_mps,
                   "line_spacing_m": s.line_spacing_m, "margin_m": 0.0},
        "camera": camera,
        "seed": 0,
    }


def payload_sections(cam: PlanCamera, s: Survey) -> dict[str, Any]:
    """The payload config's sections this plan assumes: its tile grid, its camera, its frame-rate cap.

    The grid must be the planned one (the altitude follows from it); `stagger: false` keeps every
    frame at the planned tile count (staggered frames offer fewer, which the chip would not need);
    `max_rate_hz` keeps the payload from classifying more frames than the chip was planned for.
    """
    sw, sh, f = cam.intrinsics()
    geom = cam.geometry()
    return {"tiling": {"rows": s.tile_rows, "cols": s.tile_cols, "overlap": 0.0, "stagger": False},
            "camera": {"sensor_width_mm": sw, "sensor_height_mm": sh, "focal_length_mm": f,
                       "exposure_s": cam.exposure_s, "width": geom.width, "height": geom.height},
            "scheduler": {"max_rate_hz": s.fps}}


def flight_time_s(lines: list[list[tuple[float, float]]], speed: float, accel: float = 1.5,
                  stop_s: float = 1.5) -> float:
    """Seconds from the first waypoint to the last: every segment from rest to rest (a copter stops at each)."""
    pts = [p for line in lines for p in line]
    t = 0.0
    for (e0, n0), (e1, n1) in zip(pts, pts[1:], strict=False):
        d = math.hypot(e1 - e0, n1 - n0)
        t += d / speed + speed / accel + stop_s if d > speed * speed / accel else 2.0 * math.sqrt(d / accel) + stop_s
    return t


@dataclass(frozen=True)
class PlanArgs:
    """What `payload plan` was given."""

    field: str
    camera: str
    bundle: str
    out: str
    tpus: int = 1
    edgetpu_model: str = "usb3"
    gsd_mm: float | None = None
    model_cost: ModelCost = "bundle"
    limits: PlanLimits = PlanLimits()
    home_alt_m: float = 0.0
    crop: str = "wheat"
    stage: str | None = None  # the disease stage to plan for (None: the earliest the card sees)


def make_plan(a: PlanArgs) -> dict[str, Any]:
    """Plan, write D/survey.plan, D/scenario.yaml and D/summary.json; return the summary."""
    bundle = Path(a.bundle)
    card = read_card(bundle)
    field = load_field(a.field)
    cam = load_camera(a.camera)
    gsd, gsd_source = working_gsd(card, bundle, a.gsd_mm, a.stage)
    chip = chip_figure(card, bundle, a.edgetpu_model, a.tpus, a.model_cost)
    s = plan_survey(gsd, max(card.input.height, card.input.width), cam.geometry(), chip.tiles_per_s, a.limits)
    lines = survey_lines(field.polygon, s.line_spacing_m)
    geo = []
    for line in lines:
        lat, lon, _ = field.frame.to_geodetic(np.array([p[0] for p in line]), np.array([p[1] for p in line]), 0.0)
        geo.append([(float(a), float(b)) for a, b in zip(lat, lon, strict=True)])
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = plan_document((field.frame.lat0, field.frame.lon0, a.home_alt_m), geo, s.altitude_m, s.speed_mps,
                        s.frame_spacing_m)
    atomic_write_text(out / "survey.plan", json.dumps(doc, indent=4) + "\n")
    scen = scenario_data(field, cam, s, "survey.plan", a.home_alt_m, a.crop)
    atomic_write_text(out / "scenario.yaml", "# written by `payload plan`: flies survey.plan (flight.plan); add the "
                      "disease patches a mission scores against\n" + yaml.safe_dump(scen, sort_keys=False))
    t = flight_time_s(lines, s.speed_mps)
    summary = {
        "field": {"path": a.field, "area_ha": round(field.area_ha, 3), "lines": len(lines)},
        "camera": {"path": a.camera, **cam.model_dump(mode="json", exclude_none=True),
                   "height": cam.geometry().height},
        "bundle": {"path": a.bundle, "input_px": s.model_px},
        "working_gsd_mm": gsd, "working_gsd_source": gsd_source,
        "chip": {"edgetpu_model": chip.edgetpu_model, "tpus": chip.tpus, "layout": "replicas",
                 "invoke_ms": round(chip.invoke_ms, 3), "tiles_per_s": round(chip.tiles_per_s, 2),
                 "source": chip.source},
        **s.to_dict(),
        "payload_config": payload_sections(cam, s),
        "survey_time_min": round(t / 60.0, 2),
        "ha_per_h_field": round(field.area_ha / (t / 3600.0), 3) if t > 0 else None,
        "files": {"plan": str(out / "survey.plan"), "scenario": str(out / "scenario.yaml"),
                  "summary": str(out / "summary.json")},
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def summary_text(m: dict[str, Any]) -> str:
    """The summary as an operator reads it."""
    loud = "" if m["working_gsd_source"].startswith("the card") else f"\n  !! RESOLUTION: {m['working_gsd_source']}"
    chip = m["chip"]
    lim = "; ".join(f"{k} {v:.2f}" for k, v in m["speed_limits_mps"].items())
    lines = [
        f"plan for {m['field']['path']} ({m['field']['area_ha']:.2f} ha): {m['field']['lines']} lines{loud}",
        f"  working resolution {m['working_gsd_mm']:g} mm per model pixel ({m['working_gsd_source']})",
        f"  altitude {m['altitude_m']:.2f} m; frame {m['frame_gsd_mm']:.2f} mm/px; tile grid {m['tile_rows']} x "
        f"{m['tile_cols']}; footprint {m['footprint_across_m']:.1f} x {m['footprint_along_m']:.1f} m",
        f"  line spacing {m['line_spacing_m']:.2f} m; speed {m['speed_mps']:.2f} m/s at {m['fps']:.3f} frames/s "
        f"(limited by {m['limited_by']}; limits m/s: {lim})",
        f"  chip: {chip['tpus']} x {chip['edgetpu_model']}, {chip['invoke_ms']:.2f} ms per tile, "
        f"{chip['tiles_per_s']:.1f} tiles/s ({chip['source']})",
        f"  tiles offered {m['tiles_offered_per_s']:.1f}/s, classified {m['tiles_classified_per_s']:.1f}/s; "
        f"looks per ground cell {m['looks_per_cell']:.1f} ({m['looks_along']:.1f} along x {m['looks_across']:.2f} "
        "across)",
        f"  {m['ha_per_h_lines']:.2f} ha/h on the lines, {m['ha_per_h_field'] or 0:.2f} ha/h over the field with "
        f"turns ({m['survey_time_min']:.1f} min); physical bound (swath x the chip's speed) "
        f"{m['physical_bound_ha_per_h']:.2f} ha/h",
    ]
    pc = m["payload_config"]
    lines += [f"  payload config: tiling {pc['tiling']['rows']} x {pc['tiling']['cols']} (stagger false), "
              f"scheduler.max_rate_hz {pc['scheduler']['max_rate_hz']:g} (summary.json payload_config)"]
    lines += [f"  note: {n}" for n in m["notes"]]
    lines += [f"  wrote {m['files']['plan']}, {m['files']['scenario']}, {m['files']['summary']}"]
    return "\n".join(lines)
