"""Real survey photos against both renderers: tools.domain_gap's look statistics on real UAV frames.

tools/domain_gap.py shows the simulator's world (flight_sim/world) and the training generator
(compile/canopy.py) disagree in look; which one a real camera agrees with needs real frames. This
cuts real nadir photos (or orthomosaics) into tiles covering `96 x target` mm of ground, resizes
each to 96 px with cv2.INTER_AREA (as a payload tile reaches the model), and puts the same
statistics side by side for the real tiles, the world's healthy tiles (all crops, and each crop the
real frames show) and the generator's healthy tiles:

- everything tools.domain_gap.tile_stats gives (mean and p90 RGB, saturated and whitish shares,
  hue shares, per-tile spread);
- fine texture: per tile, the standard deviation of its grey level minus its Gaussian blur
  (sigma 3 model pixels), median over tiles: what tools/transfer_probe.py's blur removes;
- vegetation pixels (HSV S > 0.2, hue 60-150 degrees, the same green band as tile_stats): their
  share, mean colour and saturated share, so canopy colour is compared apart from canopy cover;
  and canopy-interior fine texture: the same high-pass, its std over vegetation pixels at least
  6 px from any other pixel (so leaf/soil edges and soil or residue do not count), median over the
  tiles with at least 200 such pixels; and the whitish share (S < 0.25, V > 0.5) inside the canopy
  (the vegetation mask closed over 5 px gaps, then eroded the same way): sunlit leaves that look
  pale, apart from pale soil or residue between the rows.

A photo is only cut at a target resolution it can give without upsampling (target >= its own GSD,
within 2 %). Tiles touching no-data (alpha 0, or the all-black or all-white fill an orthomosaic
leaves outside its footprint) are dropped. Neither renderer is changed or tuned here.

The frames are listed in a CSV (lines starting with # are comments):

    file,gsd_mm,crop,state,note
    orthosmall.tif,10.83,soybean,healthy,pliman example orthomosaic (GeoTIFF pixel scale)

`file` is relative to --images; `gsd_mm` is ground mm per photo pixel (from EXIF focal length,
sensor width and height above ground, or a GeoTIFF's pixel scale); `crop` is one of the world's
crops (wheat, soybean, cucurbit, grapevine) or anything else (then only the all-crop world row
is its match); `state` is free text (healthy, rust, ...): frames are grouped by crop and state.

    python -m tools.real_frames --images DIR --csv frames.csv --out D [--gsd 2 8 16 32]
        [--frames 4] [--seed 4242] [--no-renderers]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from payload.cliutil import run_cli
from payload.errors import UserError
from tools.domain_gap import MODEL_PX, tile_stats

DEFAULT_GSD_MM = (2.0, 8.0, 16.0, 32.0)
UPSAMPLE_TOLERANCE = 0.02  # a target this much finer than the photo's GSD still counts as native
TEXTURE_SIGMA_PX = 3.0  # the blur of tools/transfer_probe.py (--blur 3)
PIXEL_SIGMA_PX = 0.7  # the one-to-two-pixel band whose blur takes the probe's false alarms away (docs/WORLD.md)
GREEN_HUE = (60.0, 150.0)  # tools.domain_gap.HUE_BANDS["green"]
INTERIOR_KERNEL_PX = 13  # vegetation pixels at least 6 px (2 sigma) from any non-vegetation pixel
MIN_INTERIOR_PX = 200  # a tile's canopy-interior texture counts when it has this many such pixels
COMPARED = ("mean_rgb", "p90_rgb", "saturated_share", "whitish_share", "hue_yellow_brown_share",
            "hue_green_share", "tile_spread", "fine_texture", "pixel_texture", "veg_share", "veg_mean_rgb",
            "veg_saturated_share", "canopy_whitish_share", "veg_fine_texture")


class RealFramesError(UserError):
    """The frames or options cannot give a comparison."""


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """The CSV's rows: file, gsd_mm (> 0), crop, state, note."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RealFramesError(f"cannot read {path}: {e}") from e
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    rows = []
    for r in csv.DictReader(lines):
        try:
            gsd = float(r["gsd_mm"])
        except (KeyError, TypeError, ValueError) as e:
            raise RealFramesError(f"{path}: every row needs a numeric gsd_mm ({r})") from e
        if not r.get("file") or gsd <= 0:
            raise RealFramesError(f"{path}: every row needs a file and a positive gsd_mm ({r})")
        rows.append({"file": r["file"].strip(), "gsd_mm": gsd, "crop": (r.get("crop") or "").strip(),
                     "state": (r.get("state") or "").strip() or "unknown", "note": (r.get("note") or "").strip()})
    if not rows:
        raise RealFramesError(f"{path} lists no frames")
    return rows


def load_rgb(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """An 8-bit RGB image and its valid-pixel mask (alpha > 0, and not the pure black/white no-data fill)."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise RealFramesError(f"cannot read image {path}")
    if img.dtype == np.uint16:
        img = (img / 257.0).round().astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    alpha = img[..., 3] if img.shape[2] == 4 else None
    rgb = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB)
    valid = ~(np.all(rgb == 0, axis=2) | np.all(rgb == 255, axis=2))
    if alpha is not None:
        valid &= alpha > 0
    return rgb, valid


def cut_tiles(rgb: np.ndarray, valid: np.ndarray, src_gsd_mm: float, target_gsd_mm: float,
              model_px: int = MODEL_PX) -> np.ndarray:
    """Non-overlapping tiles covering `model_px * target` mm, each resized to model_px (INTER_AREA).

    Empty (0, model_px, model_px, 3) when the photo would have to be upsampled or is too small.
    """
    import cv2

    empty = np.zeros((0, model_px, model_px, 3), np.uint8)
    if target_gsd_mm < src_gsd_mm * (1.0 - UPSAMPLE_TOLERANCE):
        return empty
    side = int(round(model_px * target_gsd_mm / src_gsd_mm))
    h, w = rgb.shape[:2]
    if side < 1 or side > min(h, w):
        return empty
    ny, nx = h // side, w // side
    oy, ox = (h - ny * side) // 2, (w - nx * side) // 2  # centre the grid: edges are where mosaics fray
    out = []
    for j in range(ny):
        for i in range(nx):
            y, x = oy + j * side, ox + i * side
            if not valid[y:y + side, x:x + side].all():
                continue
            out.append(cv2.resize(rgb[y:y + side, x:x + side], (model_px, model_px), interpolation=cv2.INTER_AREA))
    return np.stack(out) if out else empty


def fine_texture(tiles: np.ndarray, sigma: float = TEXTURE_SIGMA_PX) -> np.ndarray:
    """Per tile: std of the grey level minus its Gaussian blur (sigma in model pixels), 0-255 units."""
    import cv2

    out = np.empty(len(tiles))
    for k, t in enumerate(tiles):
        g = cv2.cvtColor(np.ascontiguousarray(t), cv2.COLOR_RGB2GRAY).astype(np.float32)
        out[k] = float((g - cv2.GaussianBlur(g, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)).std())
    return out


def vegetation_mask(tiles: np.ndarray) -> np.ndarray:
    """(N, H, W) bool: green vegetation pixels (HSV S > 0.2, hue in GREEN_HUE)."""
    import cv2

    px = tiles.reshape(-1, 3)
    hsv = cv2.cvtColor(px[None].astype(np.uint8), cv2.COLOR_RGB2HSV)[0].astype(np.float64)
    hue, sat = hsv[:, 0] * 2.0, hsv[:, 1] / 255.0
    return ((sat > 0.2) & (hue >= GREEN_HUE[0]) & (hue < GREEN_HUE[1])).reshape(tiles.shape[:3])


def canopy_interior_texture(tiles: np.ndarray, veg: np.ndarray, sigma: float = TEXTURE_SIGMA_PX) -> np.ndarray:
    """Per tile with enough canopy interior: std of grey minus its blur over the eroded vegetation mask."""
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (INTERIOR_KERNEL_PX, INTERIOR_KERNEL_PX))
    out = []
    for t, m in zip(tiles, veg, strict=True):
        inner = cv2.erode(m.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0
        if inner.sum() < MIN_INTERIOR_PX:
            continue
        g = cv2.cvtColor(np.ascontiguousarray(t), cv2.COLOR_RGB2GRAY).astype(np.float32)
        out.append(float((g - cv2.GaussianBlur(g, (0, 0), sigma, borderType=cv2.BORDER_REFLECT))[inner].std()))
    return np.array(out)


def canopy_region(veg: np.ndarray) -> np.ndarray:
    """(N, H, W) bool: inside the canopy (vegetation mask closed over gaps of a few px, then eroded)."""
    import cv2

    close = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    erode = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (INTERIOR_KERNEL_PX, INTERIOR_KERNEL_PX))
    return np.stack([cv2.erode(cv2.morphologyEx(m.astype(np.uint8), cv2.MORPH_CLOSE, close), erode,
                               borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0 for m in veg])


def vegetation_stats(tiles: np.ndarray) -> dict[str, Any]:
    """Share of green vegetation pixels, their colour (mean RGB, share with S > 0.5), canopy-interior texture."""
    import cv2

    veg = vegetation_mask(tiles)
    if not veg.any():
        return {"veg_share": 0.0, "canopy_whitish_share": None, "veg_mean_rgb": None, "veg_saturated_share": None,
                "veg_fine_texture": None, "veg_texture_tiles": 0}
    px = tiles[veg]
    sat = cv2.cvtColor(px[None].astype(np.uint8), cv2.COLOR_RGB2HSV)[0][:, 1] / 255.0
    inner = canopy_interior_texture(tiles, veg)
    region = canopy_region(veg)
    hsv = cv2.cvtColor(tiles.reshape(-1, 3)[None].astype(np.uint8), cv2.COLOR_RGB2HSV)[0].reshape(tiles.shape)
    whitish = (hsv[..., 1] < 0.25 * 255) & (hsv[..., 2] > 0.5 * 255)
    return {"veg_share": round(float(veg.mean()), 4),
            "canopy_whitish_share": round(float(whitish[region].mean()), 4) if region.any() else None,
            "veg_mean_rgb": [round(float(v), 1) for v in px.mean(0)],
            "veg_saturated_share": round(float((sat > 0.5).mean()), 4),
            "veg_fine_texture": round(float(np.median(inner)), 2) if len(inner) else None,
            "veg_texture_tiles": int(len(inner))}


def all_stats(tiles: np.ndarray) -> dict[str, Any]:
    """tile_stats, fine texture and pixel-scale texture (medians over tiles), and the vegetation-pixel statistics."""
    s = tile_stats(tiles)
    s["fine_texture"] = round(float(np.median(fine_texture(tiles))), 2)
    s["pixel_texture"] = round(float(np.median(fine_texture(tiles, PIXEL_SIGMA_PX))), 2)
    s.update(vegetation_stats(tiles))
    return s


def _distance(a: Any, b: Any) -> float | None:
    if a is None or b is None:
        return None
    if isinstance(a, list):
        return float(np.linalg.norm(np.subtract(a, b)))
    return abs(float(a) - float(b))


def nearer(real: dict[str, Any], world: dict[str, Any], training: dict[str, Any]) -> dict[str, str]:
    """Per statistic, which renderer's value lies nearer the real one (RGB: Euclidean distance)."""
    out = {}
    for k in COMPARED:
        dw, dt = _distance(real.get(k), world.get(k)), _distance(real.get(k), training.get(k))
        if dw is None or dt is None:
            continue
        out[k] = "world" if dw < dt else "training" if dt < dw else "tie"
    return out


def compare(frames: list[dict[str, Any]], images: Path, gsds: Sequence[float], n_frames: int, seed: int,
            renderers: bool = True) -> dict[str, Any]:
    """Stats per target resolution: each real group (crop, state), and the renderers' healthy tiles."""
    from tools.detectability import CROP_KINDS
    from tools.domain_gap import training_tiles, world_tiles

    loaded = []
    for f in frames:
        rgb, valid = load_rgb(images / f["file"])
        loaded.append((f, rgb, valid))
    rows = []
    for g in gsds:
        groups: dict[tuple[str, str], list[np.ndarray]] = {}
        skipped = []
        for f, rgb, valid in loaded:
            t = cut_tiles(rgb, valid, f["gsd_mm"], g)
            if len(t):
                groups.setdefault((f["crop"], f["state"]), []).append(t)
            else:
                skipped.append(f["file"])
        row: dict[str, Any] = {"gsd_mm": g, "skipped_frames": skipped, "real": {}, "renderers": {}}
        for (crop, state), ts in sorted(groups.items()):
            row["real"][f"{crop or '?'}/{state}"] = all_stats(np.concatenate(ts))
        if renderers and groups:
            w = world_tiles("healthy", g, n_frames, seed)
            row["renderers"]["world (all crops)"] = all_stats(w)
            for crop in sorted({c for c, _ in groups if c in CROP_KINDS}):
                crop_tiles = world_tiles("healthy", g, n_frames, seed, crops=(crop,))
                row["renderers"][f"world ({crop})"] = all_stats(crop_tiles)
            row["renderers"]["training"] = all_stats(training_tiles("healthy", g, len(w), seed))
            row["nearer"] = {}
            for name, real in row["real"].items():
                crop = name.split("/")[0]
                wname = f"world ({crop})" if f"world ({crop})" in row["renderers"] else "world (all crops)"
                row["nearer"][name] = {"world_row": wname,
                                       **nearer(real, row["renderers"][wname], row["renderers"]["training"])}
        rows.append(row)
    return {"seed": seed, "model_px": MODEL_PX, "texture_sigma_px": TEXTURE_SIGMA_PX, "world_frames": n_frames,
            "frames": frames, "rows": rows}


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list):
        return "/".join(f"{x:.0f}" for x in v)
    return f"{v:.3g}"


def markdown(res: dict[str, Any]) -> str:
    """One table per resolution: a row per real group and per renderer."""
    keys = ("tiles",) + COMPARED
    lines = [f"# Real frames vs world vs training (seed {res['seed']}, {res['model_px']} px tiles, "
             f"fine texture = std of grey minus its sigma {res['texture_sigma_px']:g} px blur)", ""]
    for r in res["rows"]:
        lines += [f"## {r['gsd_mm']:g} mm per model pixel", ""]
        if not r["real"]:
            skipped = ", ".join(r["skipped_frames"])
            lines += [f"No real frame allows this resolution without upsampling ({skipped}).", ""]
            continue
        lines += ["| source | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
        for name, s in list((f"real {k}", v) for k, v in r["real"].items()) + list(r["renderers"].items()):
            lines.append(f"| {name} | " + " | ".join(_cell(s.get(k)) for k in keys) + " |")
        for name, n in r.get("nearer", {}).items():
            lines.append("")
            lines.append(f"Nearer real {name} (against {n['world_row']} and training): " +
                         ", ".join(f"{k} {v}" for k, v in n.items() if k != "world_row") + ".")
        if r["skipped_frames"]:
            lines.append("")
            lines.append(f"Not cut at this resolution (would need upsampling): {', '.join(r['skipped_frames'])}.")
        lines.append("")
    return "\n".join(lines) + "\n"


def _main(argv: Sequence[str] | None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.real_frames", description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, required=True, help="folder holding the frames the CSV names")
    ap.add_argument("--csv", type=Path, required=True, help="file,gsd_mm,crop,state,note")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--gsd", type=float, nargs="+", default=list(DEFAULT_GSD_MM), help="target mm per model pixel")
    ap.add_argument("--frames", type=int, default=4, help="world frames per row (12 tiles each)")
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--no-renderers", action="store_true", help="real frames only (no world or training tiles)")
    a = ap.parse_args(argv)
    if a.frames < 1 or any(g <= 0 for g in a.gsd):
        raise RealFramesError("--frames must be >= 1 and every --gsd a positive number of mm per pixel")
    res = compare(read_manifest(a.csv), a.images, a.gsd, a.frames, a.seed, renderers=not a.no_renderers)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "real_frames.json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    md = markdown(res)
    (a.out / "real_frames.md").write_text(md, encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(_main))
