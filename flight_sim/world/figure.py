"""The docs' figure: nadir views of a rust patch at three ground resolutions beside their label frames.

    python -m flight_sim.world.figure --out docs/img/world_scales.png

Each view is 400 x 300 pixels seen straight down, so the ground it covers grows with the
resolution: at 2 mm/px pustules are dots on leaves, at 12 mm/px leaves and rows remain and the
disease is a speckle, at 40 mm/px the patch is a change in the canopy's colour.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np

from flight_sim.world.config import CropSection, LightSection, PatchSpec
from flight_sim.world.light import decode, encode
from flight_sim.world.world import LABEL_OUTSIDE, World

SCALES_MM = (2.0, 12.0, 40.0)
GAIN = 2.8  # +1.5 stops: about what a camera's auto exposure gives a canopy
VIEW_PX = (400, 300)
LABEL_RGB = {0: (60, 140, 60), 1: (215, 120, 30), 2: (235, 235, 235), LABEL_OUTSIDE: (90, 90, 90)}


def nadir_view(world: World, centre: tuple[float, float], mm_per_px: float, size_px: tuple[int, int] = VIEW_PX,
               gain: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(rgb uint8, labels uint8) of a straight-down view centred at `centre` (east, north), north up.

    gain: an exposure gain on linear radiance (the world's nominal exposure puts white at 255, so a
    canopy of 5-12 % reflectance reads dark until a camera's auto exposure lifts it).
    """
    w, h = size_px
    g = mm_per_px / 1000.0
    east = centre[0] + (np.arange(w) - w / 2 + 0.5) * g
    north = centre[1] - (np.arange(h) - h / 2 + 0.5) * g
    ee, nn = np.meshgrid(east, north)
    s = world.shade(ee.ravel(), nn.ravel(), np.full(ee.size, g))
    rgb = np.clip(encode(decode(s.rgb) * np.float32(gain)) + 0.5, 0, 255).astype(np.uint8).reshape(h, w, 3)
    return rgb, s.labels.reshape(h, w)


def label_image(labels: np.ndarray) -> np.ndarray:
    out = np.zeros((*labels.shape, 3), np.uint8)
    for k, c in LABEL_RGB.items():
        out[labels == k] = c
    return out


def make_figure(out: Path, kind: str = "soybean", seed: int = 5) -> Path:
    """Render the figure to `out` (PNG): moderate and late rust, and the label frame, at three resolutions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    light = LightSection(sun_elevation_deg=50.0)
    crop = CropSection(kind=kind, row_azimuth_deg=15.0)
    worlds = {st: World(crop, light, [PatchSpec("rust", 20.0, 20.0, 4.0, st)], 40.0, 40.0, seed)
              for st in ("moderate", "late")}
    # the finest view sits near the centre, where the disease is densest; the coarser ones on the patch's edge
    centres = ((20.3, 20.2), (21.5, 21.0), (21.0, 20.5))
    fig, axes = plt.subplots(3, 3, figsize=(13.5, 10.8))
    for col, (mm, c) in enumerate(zip(SCALES_MM, centres, strict=True)):
        span = (VIEW_PX[0] * mm / 1000.0, VIEW_PX[1] * mm / 1000.0)
        for row, stage in enumerate(("moderate", "late")):
            rgb, labels = nadir_view(worlds[stage], c, mm, gain=GAIN)
            axes[row, col].imshow(rgb)
            axes[row, col].set_title(f"{stage} rust, {mm:g} mm/px ({span[0]:.1f} x {span[1]:.1f} m)", fontsize=10)
        axes[2, col].imshow(label_image(labels))
        axes[2, col].set_title("label frame (orange: rust region, green: healthy)", fontsize=10)
        for r in range(3):
            axes[r, col].set_xticks([])
            axes[r, col].set_yticks([])
    fig.suptitle(f"{kind}, rust patch of radius 4 m (incidence and severity fall off from its centre), nadir, "
                 f"sun 50 deg, exposure x{GAIN:g}\n`python -m flight_sim.world.figure --out docs/img/world_scales.png`",
                 fontsize=11)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=72)
    plt.close(fig)
    # 256 colours: a third of the bytes for a figure that lives in the repository
    from PIL import Image

    Image.open(buf).convert("RGB").quantize(256, dither=Image.Dither.NONE).save(out, optimize=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/img/world_scales.png"))
    ap.add_argument("--crop", default="soybean", choices=["wheat", "soybean", "cucurbit", "grapevine"])
    args = ap.parse_args(argv)
    print(make_figure(args.out, args.crop))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
