"""At what ground resolution does a bundle see each disease? Recall by disease, stage and mm/px.

A grower needs to know how high to fly with which camera. This renders the simulator's physical
world (flight_sim/world: leaves, lesions and canopy at their real sizes, area-correctly filtered to
the pixel) over each disease at each stage (early, moderate, late) and at a ladder of ground
resolutions, cuts the frames with the payload's own tiler, classifies the tiles with the payload's
CPU backend and the card's thresholds, and writes:

- `D/detectability.json`: recall per disease x stage x resolution, the healthy canopy's false-alarm
  rate per resolution, the card's working resolution and the recall measured there, and per camera
  preset the highest altitude at which each disease is still seen;
- `D/detectability.md`: the same as tables;
- `D/detectability.png`: recall against resolution, one line per disease and stage.

Resolution is in mm per MODEL-INPUT pixel (the tile after the tiler's resize), the unit of the
card's `working_gsd_mm`: with a fixed tile grid the camera's own pixel count drops out, and the
altitude for a camera is `gsd x focal length x tile columns x model input / sensor width`.

It exits 1 when the recall at the card's working resolution (reference stage "moderate", worst
disease) is below 0.9, or when the figures break physics (early disease still found at 32 mm/px
while healthy canopy is not flagged there: the world would not be physical).

    python -m tools.detectability --bundle build/quick_bundle --out build/detectability
        [--gsd 1 2 4 8 16 32] [--frames 4] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from payload.cliutil import run_cli
from payload.errors import UserError
from payload.logsetup import add_log_level_argument, setup_logging

log = logging.getLogger("detectability")

DEFAULT_GSD_MM: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
STAGES: tuple[str, ...] = ("early", "moderate", "late")
REFERENCE_STAGE = "moderate"  # the stage the card's working_gsd_mm is defined at (docs/WORLD.md)
MIN_RECALL = 0.9
MAX_FALSE_ALARM = 0.1  # at the working resolution: a bundle that flags all canopy "sees" every disease
CROP_KINDS: tuple[str, ...] = ("wheat", "soybean", "cucurbit", "grapevine")
FRAME_W, FRAME_H = 640, 480  # the default mission camera's output size
GRID_ROWS, GRID_COLS = 3, 4  # the payload's default tile grid
NOISE_SIGMA = 3.0  # read noise, 0-255 units (the default scenario camera's)
JPEG_QUALITY = 90  # the default scenario camera's
PHYSICS_GSD_MM = 32.0  # at this resolution early disease must be invisible (docs/WORLD.md)
PHYSICS_MAX_EXCESS = 0.5  # early recall minus healthy false alarms at >= PHYSICS_GSD_MM


class DetectabilityError(UserError):
    """The bundle or the options cannot give a detectability table."""


@dataclass(frozen=True)
class Cell:
    """One measurement: tiles of `disease` (or healthy) at `stage` seen at `gsd_mm` per model pixel."""

    disease: str  # "healthy" for the false-alarm cells
    stage: str | None
    gsd_mm: float


def frame_gsd_mm(model_gsd_mm: float, model_px: int, frame_w: int = FRAME_W, cols: int = GRID_COLS) -> float:
    """The camera's mm/px that makes the tiler's resized tiles `model_gsd_mm` per model pixel."""
    tile_px = frame_w / cols
    return model_gsd_mm * model_px / tile_px


def altitude_for_gsd_m(model_gsd_mm: float, focal_mm: float, sensor_w_mm: float, model_px: int,
                       cols: int) -> float:
    """Height above ground at which a nadir camera's tiles (cols across, resized to model_px) reach model_gsd_mm.

    Frame GSD = h * sensor_w / (f * W); a tile of W / cols pixels resized to model_px multiplies it by
    W / (cols * model_px); W cancels.
    """
    return model_gsd_mm / 1000.0 * focal_mm * cols * model_px / sensor_w_mm


def seen_band(recall_by_gsd: dict[float, float | None], min_recall: float = MIN_RECALL,
              false_alarm: dict[float, float | None] | None = None,
              max_false_alarm: float = MAX_FALSE_ALARM) -> tuple[float, float] | None:
    """(finest, coarsest) resolution of the coarsest band of neighbouring rungs at which the disease is seen.

    Seen means recall at least `min_recall` while healthy canopy at that resolution is flagged no more
    than `max_false_alarm` of the time: a bundle that flags everything finds every disease, and sees none.
    A band is at least two neighbouring rungs (one when only one was measured), so one lucky rung cannot
    claim a resolution. It need not reach the finest rung: a bundle may not know the close-up look (its
    training views set its range; `scale_notes` reports it), and a planner must not fly below the band.
    """
    rungs = sorted(g for g, r in recall_by_gsd.items() if r is not None)
    need = min(2, len(rungs))
    best: tuple[float, float] | None = None
    run: list[float] = []
    for g in sorted(recall_by_gsd):
        r = recall_by_gsd[g]
        fa = None if false_alarm is None else false_alarm.get(g)
        if r is None or r < min_recall or (fa is not None and fa > max_false_alarm):
            run = []
            continue
        run.append(g)
        if len(run) >= need:
            best = (run[0], g)
    return best


def coarsest_seen(recall_by_gsd: dict[float, float | None], min_recall: float = MIN_RECALL,
                  false_alarm: dict[float, float | None] | None = None,
                  max_false_alarm: float = MAX_FALSE_ALARM) -> float | None:
    """The coarsest resolution at which the disease is seen (None: never): the top of `seen_band`."""
    band = seen_band(recall_by_gsd, min_recall, false_alarm, max_false_alarm)
    return None if band is None else band[1]


def physics_problems(recall: dict[str, dict[str, dict[float, float | None]]],
                     false_alarm: dict[float, float | None]) -> list[str]:
    """Sentences naming each way the table breaks physics (empty when it is physical).

    Early disease covers about 1 % of the leaf area of 30 % of the leaves: at 32 mm/px its share of a
    pixel shifts the colour by far less than sensor noise. A bundle that still finds it there while it
    leaves healthy canopy alone can only be reading something a physical world would not show.
    """
    out: list[str] = []
    for disease, stages in recall.items():
        for g, r in stages.get("early", {}).items():
            fa = false_alarm.get(g) or 0.0
            if g >= PHYSICS_GSD_MM and r is not None and r - fa > PHYSICS_MAX_EXCESS:
                out.append(f"early {disease} found at {g:g} mm/px (recall {r:.2f}, healthy false alarms {fa:.2f}): "
                           "sub-pixel lesions this sparse cannot be seen; the world is not physical")
    return out


def scale_notes(recall: dict[str, dict[str, dict[float, float | None]]]) -> list[str]:
    """Where a bundle sees a stage better from coarser pixels than from finer ones.

    Finer pixels carry at least the information of coarser ones, so this is not the world breaking
    physics: it is a bundle that never learnt what the disease looks like up close (its training
    views, not the lesions, set its range). Reported, not failed.
    """
    out = []
    for disease, stages in recall.items():
        for stage, by_gsd in stages.items():
            known = [(g, r) for g, r in sorted(by_gsd.items()) if r is not None]
            if len(known) >= 2 and known[-1][1] > known[0][1] + 0.25:
                out.append(f"{stage} {disease}: recall {known[0][1]:.2f} at {known[0][0]:g} mm/px but "
                           f"{known[-1][1]:.2f} at {known[-1][0]:g} mm/px: the bundle does not know the close-up look")
    return out


def verdict(recall: dict[str, dict[str, dict[float, float | None]]], working_gsd_mm: float | None,
            problems: Sequence[str], min_recall: float = MIN_RECALL,
            false_alarm: dict[float, float | None] | None = None,
            max_false_alarm: float = MAX_FALSE_ALARM,
            stage_gsd_mm: dict[str, float | None] | None = None) -> list[str]:
    """Each miss as a sentence: recall (and healthy false alarms) at every resolution the card states, then physics.

    The card states the build ladder's `working_gsd_mm` (at REFERENCE_STAGE) and, after a field trial,
    one resolution per stage (`stage_gsd_mm`); each is checked against this run's tiles.
    """
    out: list[str] = []
    checks = [] if working_gsd_mm is None else [(REFERENCE_STAGE, float(working_gsd_mm), "working resolution")]
    checks += [(st, float(g), f"field-trial resolution for the {st} stage")
               for st, g in (stage_gsd_mm or {}).items() if g is not None]
    if not checks:
        out.append("the card states no working resolution at any stage (rebuild the bundle with the canopy generator, "
                   "or record a field trial: --record); nothing to check the table against")
    for stage, g, what in checks:
        fa = None if false_alarm is None else false_alarm.get(g)
        if fa is not None and fa > max_false_alarm:
            out.append(f"{fa:.2f} of healthy tiles flagged at the card's {what} {g:g} mm/px "
                       f"(> {max_false_alarm}): recall there means nothing")
        for disease, stages in recall.items():
            r = stages.get(stage, {}).get(g)
            if r is None or r < min_recall:
                shown = "not measured" if r is None else f"{r:.2f}"
                out.append(f"{stage} {disease} recall at the card's {what} {g:g} mm/px is {shown} (< {min_recall})")
    return out + list(problems)


def stage_working_gsd(seen: dict[str, dict[str, float | None]]) -> dict[str, float | None]:
    """Per stage, the coarsest resolution at which EVERY disease is seen (the worst disease's; None: one is never)."""
    out: dict[str, float | None] = {}
    for st in STAGES:
        gs = [stages.get(st) for stages in seen.values()]
        out[st] = None if not gs or any(g is None for g in gs) else float(min(g for g in gs if g is not None))
    return out


def field_block(res: dict[str, Any], command: str) -> dict[str, Any]:
    """The card's `field_detectability` block from one run (what `--record` writes)."""
    return {
        "source": "tools.detectability: the simulator's physical world (flight_sim/world), not the training generator",
        "command": command,
        "seed": res["seed"],
        "frames_per_cell": res["frames_per_cell"],
        "light": res["light"],
        "gsd_mm": res["gsd_mm"],
        "min_recall": res["min_recall"],
        "max_false_alarm": MAX_FALSE_ALARM,
        "false_alarm": res["false_alarm"],
        "coarsest_seen_gsd_mm": res["coarsest_seen_gsd_mm"],
        "seen_band_gsd_mm": res["seen_band_gsd_mm"],
        "working_gsd_mm_by_stage": res["stage_working_gsd_mm"],
        "recorded_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def record_on_card(bundle_dir: Path, block: dict[str, Any]) -> None:
    """Write the field trial into the bundle's card (atomically; the card's file table is untouched: it hashes
    the model files, not the card)."""
    from payload.bundle import CARD, ModelCard
    from payload.files.atomic import atomic_write_text

    path = bundle_dir / CARD
    card = json.loads(path.read_text(encoding="utf-8"))
    card["field_detectability"] = block
    text = json.dumps(card, indent=2) + "\n"
    ModelCard.model_validate(card)  # what the payload will read back
    atomic_write_text(path, text)


# -- rendering and classifying ------------------------------------------------------------------------


Classify = Callable[[np.ndarray], list[tuple[str, bool]]]  # tiles batch -> (label, flagged) per tile


def _world(disease: str, stage: str | None, crop: str, seed: int, half_m: float,
           rng: np.random.Generator | None = None) -> Any:
    """A field of one crop, wholly one stage of one disease around its centre (or healthy).

    With `rng`, the light and the rows' direction are drawn as `flight-sim random-scenario` draws them
    (sun 25-65 deg up from any side, cloud shadows over up to half the ground, haze up to 0.3): the
    conditions the missions fly in, so a field trial speaks for them. Without, the nominal light
    (sun 45 deg up, no cloud or haze) and rows running north.
    """
    from flight_sim.world.config import CropSection, LightSection, PatchSpec
    from flight_sim.world.world import World

    size = 2 * half_m
    patches = [] if stage is None else [PatchSpec(disease, half_m, half_m, half_m * 0.98, stage)]
    if rng is None:
        return World(CropSection(kind=crop), LightSection(), patches, size, size, seed)
    light = LightSection(sun_elevation_deg=float(rng.uniform(25, 65)), sun_azimuth_deg=float(rng.uniform(0, 360)),
                         cloud_cover=float(rng.uniform(0.0, 0.5)), haze=float(rng.uniform(0.0, 0.3)))
    rows = float(rng.choice([0.0, 90.0]) + rng.uniform(-10, 10))
    return World(CropSection(kind=crop, row_azimuth_deg=rows), light, patches, size, size, seed)


ORIGIN = (-35.363261, 149.165230, 584.0)  # where the test fields lie (any place on Earth would do)


def render_frame(world: Any, centre_e: float, centre_n: float, frame_gsd: float, seed: int,
                 width: int = FRAME_W, height: int = FRAME_H) -> np.ndarray:
    """The frame the mission camera would deliver: nadir, north up, at the height that gives `frame_gsd`.

    It goes through the simulator's whole camera chain (flight_sim/render.py: per-pixel footprint,
    the world's shading; flight_sim/camerafx.py: auto exposure and white balance, read noise) and the
    stream's JPEG, so the tiles are what the payload would receive.
    """
    import cv2

    from flight_sim.camerafx import AWB_DAYLIGHT_K, CameraEffects
    from flight_sim.render import WorldRenderer
    from flight_sim.stream import encode_jpeg
    from payload.geo.camera import CameraModel
    from payload.geo.frames import enu_to_geodetic
    from payload.types import Pose

    cam = CameraModel.from_hfov(width, height, 62.2)
    agl = frame_gsd / 1000.0 * float(cam.K[0, 0])  # nadir pinhole over flat ground: GSD = h / f_px
    # white balance locked at the daylight a canopy holds it at: these frames are filled by one stage of
    # one disease, which an auto balance would partly take for the light's colour (camerafx AWB_DAYLIGHT_K);
    # a field with patches in healthy canopy holds daylight by itself
    fx = CameraEffects((height, width), NOISE_SIGMA, seed, wb_temp_k=AWB_DAYLIGHT_K)
    renderer = WorldRenderer(world, cam, *ORIGIN, fx=fx)
    lat, lon, alt = enu_to_geodetic(centre_e, centre_n, agl, *ORIGIN)
    img = renderer.render(Pose(float(lat), float(lon), float(alt), 0.0, 0.0, 0.0))
    jpeg = np.frombuffer(encode_jpeg(img, JPEG_QUALITY), np.uint8)
    return cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def measure_cell(cell: Cell, classify: Classify, tiler: Any, model_px: int, frames: int, seed: int,
                 crops: Sequence[str] = CROP_KINDS, drawn_light: bool = True) -> dict[str, Any]:
    """Render `frames` frames of the cell (crops taken in turn, each under its own drawn light unless
    `drawn_light` is off), classify every tile, count the calls."""
    kinds = ("healthy", "rust", "powdery_mildew")
    rng = np.random.default_rng([seed, int(cell.gsd_mm * 1000), STAGES.index(cell.stage) if cell.stage else 9,
                                 kinds.index(cell.disease) if cell.disease in kinds else 99])
    fg = frame_gsd_mm(cell.gsd_mm, model_px)
    frame_w_m = FRAME_W * fg / 1000.0
    half = max(60.0, 40.0 * frame_w_m)  # the falloff from the patch's centre is negligible near it
    counts = {"tiles": 0, "right": 0, "other_disease": 0, "flagged": 0}
    for k in range(frames):
        crop = crops[k % len(crops)]
        world = _world(cell.disease, cell.stage, crop, int(rng.integers(0, 2**31)), half,
                       rng if drawn_light else None)
        jitter = rng.uniform(-0.02, 0.02, 2) * half
        img = render_frame(world, half + jitter[0], half + jitter[1], fg, int(rng.integers(0, 2**31)))
        _, batch = tiler.tiles(img)
        for label, flagged in classify(batch):
            counts["tiles"] += 1
            counts["flagged"] += int(flagged)
            if cell.disease != "healthy" and flagged:
                counts["right" if label == cell.disease else "other_disease"] += 1
    n = counts["tiles"]
    if cell.disease == "healthy":
        return {"tiles": n, "false_alarm": counts["flagged"] / n if n else None}
    return {"tiles": n, "recall": counts["right"] / n if n else None,
            "called_other_disease": counts["other_disease"] / n if n else None}


def run(bundle_dir: Path, gsds: Sequence[float], frames: int, seed: int,
        classify_factory: Callable[[Any], Classify] | None = None, drawn_light: bool = True) -> dict[str, Any]:
    """The whole table for one bundle (classify_factory: the tests' stand-in for the CPU backend)."""
    from payload.bundle import load_bundle
    from payload.pipeline.tiling import Tiler

    bundle = load_bundle(bundle_dir)
    card = bundle.card.to_dict()
    working = card.get("working_gsd_mm")
    stated = {st: g for st, g in ((card.get("field_detectability") or {}).get("working_gsd_mm_by_stage") or {}).items()
              if isinstance(g, int | float)}
    ladder = sorted({float(g) for g in gsds} | ({float(working)} if working else set())
                    | {float(g) for g in stated.values()})
    model_px = int(bundle.input_width)
    if classify_factory is None:
        from payload.backends.cpu import CpuClassifier

        clf = CpuClassifier(bundle, 2)

        def classify(batch: np.ndarray) -> list[tuple[str, bool]]:
            return [(d.label, d.flagged) for d in bundle.decide(clf.classify_batch(batch))]
    else:
        classify = classify_factory(bundle)
    tiler = Tiler(GRID_ROWS, GRID_COLS, 0.0, (bundle.input_height, bundle.input_width))
    diseases = list(bundle.disease_classes)
    cells = [Cell("healthy", None, g) for g in ladder]
    cells += [Cell(d, s, g) for d in diseases for s in STAGES for g in ladder]
    results: dict[Cell, dict[str, Any]] = {}
    t0 = time.monotonic()
    for i, cell in enumerate(cells, 1):
        results[cell] = measure_cell(cell, classify, tiler, model_px, frames, seed, drawn_light=drawn_light)
        log.info("[%d/%d] %s %s at %g mm/px: %s (%.0f s)", i, len(cells), cell.stage or "", cell.disease,
                 cell.gsd_mm, results[cell], time.monotonic() - t0)
    recall = {d: {s: {c.gsd_mm: results[c]["recall"] for c in cells if c.disease == d and c.stage == s}
                  for s in STAGES} for d in diseases}
    other = {d: {s: {c.gsd_mm: results[c]["called_other_disease"] for c in cells
                     if c.disease == d and c.stage == s} for s in STAGES} for d in diseases}
    false_alarm = {c.gsd_mm: results[c]["false_alarm"] for c in cells if c.disease == "healthy"}
    problems = physics_problems(recall, false_alarm)
    bands = {d: {s: seen_band(recall[d][s], false_alarm=false_alarm) for s in STAGES} for d in diseases}
    seen = {d: {s: None if b is None else b[1] for s, b in by.items()} for d, by in bands.items()}
    out = {
        "bundle": str(bundle_dir),
        "model_sha256": (card.get("files") or {}).get("model_int8.tflite", {}).get("sha256"),
        "profile": card.get("profile"),
        "input_px": model_px,
        "gsd_mm": ladder,
        "frames_per_cell": frames,
        "tiles_per_frame": GRID_ROWS * GRID_COLS,
        "seed": seed,
        "crops": list(CROP_KINDS),
        "light": "drawn per frame (sun 25-65 deg, any azimuth, cloud <= 0.5, haze <= 0.3; rows N or E +-10 deg)"
                 if drawn_light else "nominal (sun 45 deg, no cloud or haze; rows north)",
        "reference_stage": REFERENCE_STAGE,
        "min_recall": MIN_RECALL,
        "working_gsd_mm": working,
        "recall": _keys_to_str(recall),
        "called_other_disease": _keys_to_str(other),
        "false_alarm": {f"{g:g}": v for g, v in false_alarm.items()},
        "coarsest_seen_gsd_mm": seen,
        "seen_band_gsd_mm": {d: {s: None if b is None else list(b) for s, b in by.items()} for d, by in bands.items()},
        "stage_working_gsd_mm": stage_working_gsd(seen),
        "card_stage_gsd_mm": stated,
        "altitudes": altitude_table(seen, model_px),
        "physics_problems": problems,
        "scale_notes": scale_notes(recall),
    }
    out["misses"] = verdict(recall, float(working) if working else None, problems, false_alarm=false_alarm,
                            stage_gsd_mm=stated)
    return out


def _float_keys(t: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, dict[float, Any]]]:
    return {d: {s: {float(g): v for g, v in by.items()} for s, by in st.items()} for d, st in t.items()}


def _keys_to_str(t: dict[str, dict[str, dict[float, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    return {d: {s: {f"{g:g}": v for g, v in by.items()} for s, by in st.items()} for d, st in t.items()}


def altitude_table(seen: dict[str, dict[str, float | None]], model_px: int) -> list[dict[str, Any]]:
    """Per camera preset and disease: the highest altitude (m) at which each stage is still seen.

    Two tilings: the payload's default grid (GRID_COLS across, whatever the camera's pixels) and
    native tiles (the camera's full resolution cut into model-sized tiles: the most a camera can give).
    """
    from payload.geo.camerapresets import PRESETS

    rows = []
    for name, p in PRESETS.items():
        native_cols = max(1, int(p.native_width // model_px))
        for d, stages in seen.items():
            for s, g in stages.items():
                rows.append({
                    "camera": name, "disease": d, "stage": s, "gsd_mm": g,
                    "altitude_m_default_grid": None if g is None else round(
                        altitude_for_gsd_m(g, p.focal_length_mm, p.sensor_width_mm, model_px, GRID_COLS), 1),
                    "altitude_m_native_tiles": None if g is None else round(
                        altitude_for_gsd_m(g, p.focal_length_mm, p.sensor_width_mm, model_px, native_cols), 1),
                })
    return rows


# -- outputs ------------------------------------------------------------------------------------------


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def markdown(res: dict[str, Any]) -> str:
    """detectability.md: recall by disease, stage and resolution; altitudes per camera."""
    gs = [f"{g:g}" for g in res["gsd_mm"]]
    lines = [
        "# Detectability",
        "",
        f"- bundle: `{res['bundle']}` (profile {res['profile']}, model sha256 {str(res['model_sha256'])[:12]}, "
        f"{res['input_px']} px input); working resolution on the card: {res['working_gsd_mm']} mm/px (build ladder, "
        f"{REFERENCE_STAGE} stage); field trial by stage: {res.get('card_stage_gsd_mm') or 'none'}",
        f"- this run, worst disease, by stage: {res.get('stage_working_gsd_mm')}",
        f"- {res['frames_per_cell']} frames x {res['tiles_per_frame']} tiles per cell, crops {', '.join(res['crops'])},"
        f" seed {res['seed']}; light {res.get('light')}; resolution in mm per model-input pixel",
        "",
        "| disease | stage | " + " | ".join(f"{g} mm/px" for g in gs) + " |",
        "|---|---|" + "---|" * len(gs),
    ]
    for d, stages in res["recall"].items():
        for s, by in stages.items():
            lines.append(f"| {d} | {s} | " + " | ".join(_pct(by.get(g)) for g in gs) + " |")
    lines.append("| healthy (false alarms) | - | " + " | ".join(_pct(res["false_alarm"].get(g)) for g in gs) + " |")
    lines += ["", "Resolutions at which each disease stage is seen (recall >= "
              f"{res['min_recall']} with healthy false alarms <= {MAX_FALSE_ALARM}, over a band of at least two "
              "neighbouring rungs): " + "; ".join(
                  f"{d} {s} {b[0]:g}-{b[1]:g} mm/px" for d, by in res.get("seen_band_gsd_mm", {}).items()
                  for s, b in by.items() if b) or "none",
              "", "Highest altitude (m) at which a disease stage is still seen (the band's coarsest resolution), per "
              "camera: default 3x4 grid / native model-sized tiles", "",
              "| camera | disease | early | moderate | late |", "|---|---|---|---|---|"]
    by_cam: dict[tuple[str, str], dict[str, str]] = {}
    for r in res["altitudes"]:
        a, b = r["altitude_m_default_grid"], r["altitude_m_native_tiles"]
        by_cam.setdefault((r["camera"], r["disease"]), {})[r["stage"]] = "not seen" if a is None else f"{a:g} / {b:g}"
    for (cam, d), st in by_cam.items():
        lines.append(f"| {cam} | {d} | " + " | ".join(st.get(s, "-") for s in STAGES) + " |")
    lines += ["", "result: " + ("all targets met" if not res["misses"] else "MISS: " + "; ".join(res["misses"])), ""]
    return "\n".join(lines)


def plot(res: dict[str, Any], path: Path) -> None:
    """Recall against resolution (log axis), one line per disease and stage, the working resolution marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    gs = res["gsd_mm"]
    styles = {"early": ":", "moderate": "-", "late": "--"}
    colours = {"rust": "#c0562b", "powdery_mildew": "#7f7f9f"}
    for d, stages in res["recall"].items():
        for s, by in stages.items():
            ys = [np.nan if by.get(f"{g:g}") is None else by[f"{g:g}"] for g in gs]
            ax.plot(gs, ys, styles.get(s, "-"), marker="o", color=colours.get(d), label=f"{d} {s}")
    fa = [np.nan if res["false_alarm"].get(f"{g:g}") is None else res["false_alarm"][f"{g:g}"] for g in gs]
    ax.plot(gs, fa, "-", marker="x", color="#2a8a2a", label="healthy: false alarms")
    ax.axhline(res["min_recall"], color="k", lw=0.6)
    if res["working_gsd_mm"]:
        ax.axvline(float(res["working_gsd_mm"]), color="k", ls="-.", lw=0.8, label="card's working resolution")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("ground resolution, mm per model-input pixel")
    ax.set_ylabel("tile recall")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"Detectability: {Path(res['bundle']).name} ({res['input_px']} px)")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _main(argv: Sequence[str] | None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.detectability", description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--gsd", type=float, nargs="+", default=list(DEFAULT_GSD_MM),
                    help="resolutions, mm per model-input pixel (the card's working resolution is added)")
    ap.add_argument("--frames", type=int, default=4, help="frames per cell (12 tiles each), crops in turn")
    ap.add_argument("--seed", type=int, default=None, help="default: drawn now and printed")
    ap.add_argument("--nominal-light", action="store_true",
                    help="every frame in the nominal light (sun 45 deg, clear) instead of light drawn per frame as "
                    "random scenarios draw it")
    ap.add_argument("--record", action="store_true",
                    help="write this run's per-stage resolutions into the bundle's card (field_detectability), the "
                    "figures `payload plan` and `make missions` fly at; checked against this run, not a previous one")
    add_log_level_argument(ap)
    a = ap.parse_args(argv)
    setup_logging(a.log_level)
    if not (a.bundle / "model_card.json").is_file():
        raise DetectabilityError(f"{a.bundle} is not a model bundle (no model_card.json); build one with "
                                 "`python -m compile build --profile quick --weights none --cpu-only --out DIR`")
    if a.frames < 1 or any(not math.isfinite(g) or g <= 0 for g in a.gsd):
        raise DetectabilityError("--frames must be >= 1 and every --gsd a positive number of mm per pixel")
    seed = int(np.random.default_rng().integers(0, 2**31)) if a.seed is None else a.seed
    print(f"seed {seed}")
    res = run(a.bundle, a.gsd, a.frames, seed, drawn_light=not a.nominal_light)
    if a.record:
        gsd = " ".join(f"{g:g}" for g in a.gsd)
        cmd = (f"python -m tools.detectability --bundle {a.bundle} --out {a.out} --gsd {gsd}"
               f" --frames {a.frames} --seed {seed}{' --nominal-light' if a.nominal_light else ''} --record")
        record_on_card(a.bundle, field_block(res, cmd))
        # the card now states what this run measured: the misses are this run's own (false alarms, physics)
        res["card_stage_gsd_mm"] = {k: v for k, v in res["stage_working_gsd_mm"].items() if v is not None}
        res["misses"] = verdict(_float_keys(res["recall"]), res["working_gsd_mm"], res["physics_problems"],
                                false_alarm={float(k): v for k, v in res["false_alarm"].items()},
                                stage_gsd_mm=res["card_stage_gsd_mm"])
        res["recorded"] = str(a.bundle / "model_card.json")
        print(f"recorded on {res['recorded']}: working resolution by stage (mm per model pixel) "
              f"{res['stage_working_gsd_mm']}")
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "detectability.json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    md = markdown(res)
    (a.out / "detectability.md").write_text(md, encoding="utf-8")
    plot(res, a.out / "detectability.png")
    print(md)
    for m in res["misses"]:
        print(f"MISS {m}", file=sys.stderr)
    return 1 if res["misses"] else 0


if __name__ == "__main__":
    sys.exit(run_cli(_main))
