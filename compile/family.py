"""The domain-randomised leaf family: every training image is drawn with its own look.

A model trained on one rendering of rust learns that rendering (measured: the previous
single-look generator gave 1.000 on its own test split and 0.33 on leaves drawn by an independent
generator, every leaf called powdery mildew). Real symptoms vary far more than any one renderer,
so each image here samples its look from ranges that follow what the symptoms look like in the
field (see docs/TRAINING_DATA.md for the ranges and their reasons):

- rust pustules run from yellow-orange (stripe rust) through orange and red-brown (leaf and
  common rust) to dark brown (old or teliospore-bearing pustules), as round pustules, irregular
  blotches or streaks along the veins, with or without a chlorotic halo;
- powdery mildew runs from bright white to dirty grey, from a dry powder to a glossy felt, as
  round colonies, spreading blotches or streaks;
- leaves run from yellow-green to dark and blue-green, with net or parallel veins;
- light, blur, sensor noise and shadows, plus specular glare (white, like mildew, but smooth),
  vary for every class, so none of them is a shortcut to a label;
- disease covers 10-100 % of the image, as a cluster anywhere, cut by the border: a camera tile
  that only partly covers a patch (the old generator drew lesions all over, so a tile with a dense
  cluster in one corner was out of distribution).

The parameter space is split into a training region and held-out regions (`HELD_OUT`): bands of
leaf, rust and mildew colour and the streak shape, which training never sees. The build scores
held-out images separately, a stand-in for "a leaf that does not look like the training data".

Everything is numpy only (the simulator imports this package and must not import TensorFlow) and
deterministic for a seeded generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .noise import smooth_noise
from .synthetic import (
    BACKGROUND_FRACTION,
    CLASSES,
    EDGE_FRACTION,
    HEALTHY,
    REFERENCE_PX,
    _check_class,
    edge_mask,
    soil_canvas,
)

Part = Literal["train", "heldout"]
PARTS: tuple[Part, ...] = ("train", "heldout")

# Colour paths (RGB) sampled by a position t in [0, 1], piecewise linear between anchors.
LEAF_PATH = np.array([
    [118.0, 150.0, 48.0],  # yellow-green (young or nitrogen-poor leaves)
    [62.0, 128.0, 48.0],  # mid green
    [36.0, 88.0, 36.0],  # dark green
    [48.0, 110.0, 82.0],  # blue-green (waxy, glaucous leaves: brassicas, onions, some cereals)
])
RUST_PATH = np.array([
    [218.0, 158.0, 48.0],  # yellow-orange: stripe (yellow) rust
    [200.0, 108.0, 36.0],  # orange: fresh leaf rust urediniospores
    [150.0, 62.0, 28.0],  # red-brown: common rust, stem rust
    [92.0, 48.0, 30.0],  # dark brown: old pustules, telia
])
MILDEW_PATH = np.array([
    [240.0, 240.0, 234.0],  # bright white: young, sporulating colonies
    [205.0, 208.0, 200.0],  # off-white
    [162.0, 168.0, 160.0],  # dirty grey: old mycelium with cleistothecia
])

# Held-out bands: training never samples inside them; the held-out test set samples one of them.
HELD_OUT: dict[str, tuple[float, float]] = {
    "leaf_colour": (0.55, 0.72),  # between mid and dark green
    "rust_colour": (0.42, 0.60),  # orange to red-brown
    "mildew_colour": (0.55, 0.78),  # off-white to grey
}
SHAPES: dict[str, tuple[str, ...]] = {"rust": ("pustule", "blotch", "streak"),
                                      "powdery_mildew": ("colony", "blotch", "streak")}
HELD_OUT_SHAPE = "streak"  # elongated lesions along the veins: stripe rust, streaky mildew
# Which held-out factors can apply to each class (a healthy leaf has no lesion colour or shape).
HELD_OUT_FACTORS: dict[str, tuple[str, ...]] = {
    "healthy": ("leaf_colour",),
    "rust": ("leaf_colour", "rust_colour", "shape"),
    "powdery_mildew": ("leaf_colour", "mildew_colour", "shape"),
}

# Per shape at the 224-px reference: (count range per leaf area when covering it all, radius px, aspect)
SHAPE_STATS: dict[str, tuple[tuple[int, int], tuple[float, float], tuple[float, float]]] = {
    "pustule": ((18, 60), (3.0, 10.0), (1.0, 1.4)),
    "colony": ((10, 30), (7.0, 22.0), (1.0, 1.5)),
    "blotch": ((6, 18), (10.0, 30.0), (1.0, 2.0)),
    "streak": ((8, 22), (4.0, 9.0), (3.0, 7.0)),
}


def _smooth_noise(height: int, width: int, cell: float, rng: np.random.Generator) -> np.ndarray:
    """The shared value noise (compile/noise.py), OpenCV's cubic upsampling: thousands of images a build."""
    return smooth_noise(height, width, cell, rng, "cubic")


def along(path: np.ndarray, t: float) -> np.ndarray:
    """The colour at position t in [0, 1] on a piecewise-linear colour path."""
    t = float(np.clip(t, 0.0, 1.0)) * (len(path) - 1)
    i = min(int(t), len(path) - 2)
    f = t - i
    return path[i] * (1 - f) + path[i + 1] * f


def sample_outside(rng: np.random.Generator, band: tuple[float, float]) -> float:
    """Uniform on [0, 1] minus the band (the training region of one colour factor)."""
    lo, hi = band
    u = rng.uniform(0.0, 1.0 - (hi - lo))
    return u if u < lo else u + (hi - lo)


@dataclass(frozen=True)
class Look:
    """Everything that varies between images: one point of the family's parameter space."""

    cls: str
    part: Part
    held_out: str | None  # the held-out factor this image samples, if any
    leaf_t: float
    vein_kind: str  # "net" (dicots) | "parallel" (monocots)
    vein_strength: float
    shape: str | None
    lesion_t: float | None  # position on the class's colour path
    halo: bool
    gloss: float  # mildew: 0 dry powder .. 1 glossy felt
    coverage: float  # target share of the image the lesion cluster covers
    density: float  # lesion count multiplier inside the cluster
    gain: float  # exposure
    warmth: float  # colour temperature: + warm (R up, B down), - cool
    shadow: float  # 0 none .. depth of a soft or cast shadow
    glare: int  # specular highlights
    blur: float  # Gaussian sigma in pixels at the 224-px reference
    noise: float  # sensor noise sigma, 0-255 units


def sample_look(cls: str, rng: np.random.Generator, part: Part = "train") -> Look:
    """Draw a look from the training region, or (part='heldout') with one factor in a held-out band."""
    _check_class(cls)
    held = None
    if part == "heldout":
        held = str(rng.choice(HELD_OUT_FACTORS[cls]))

    def colour(factor: str) -> float:
        band = HELD_OUT[factor]
        return float(rng.uniform(*band)) if held == factor else sample_outside(rng, band)

    shape = None
    lesion_t = None
    if cls != HEALTHY:
        if held == "shape":
            shape = HELD_OUT_SHAPE
        else:
            shape = str(rng.choice([s for s in SHAPES[cls] if s != HELD_OUT_SHAPE]))
        lesion_t = colour("rust_colour" if cls == "rust" else "mildew_colour")
    full = rng.random() < 0.35
    return Look(
        cls=cls,
        part=part,
        held_out=held,
        leaf_t=colour("leaf_colour"),
        vein_kind="parallel" if rng.random() < 0.4 else "net",
        vein_strength=float(rng.uniform(0.15, 0.7)),
        shape=shape,
        lesion_t=lesion_t,
        halo=bool(rng.random() < 0.6),
        gloss=float(rng.uniform(0.0, 1.0)),
        coverage=1.0 if full else float(rng.uniform(0.1, 1.0)),
        density=float(rng.uniform(0.7, 1.6)),
        gain=float(rng.uniform(0.62, 1.35)),
        warmth=float(rng.uniform(-0.12, 0.12)),
        shadow=float(rng.uniform(0.25, 0.55)) if rng.random() < 0.35 else 0.0,
        glare=int(rng.integers(1, 4)) if rng.random() < 0.3 else 0,
        blur=float(rng.uniform(0.0, 1.4)) if rng.random() < 0.6 else 0.0,
        noise=float(rng.uniform(1.0, 8.0)),
    )


def _veins(h: int, w: int, rng: np.random.Generator, scale: float, kind: str) -> np.ndarray:
    """Vein strength in [0, 1]: parallel veins (one direction) or a net (two crossing sets)."""
    yy, xx = np.ogrid[0:h, 0:w]
    yy, xx = yy.astype(np.float32), xx.astype(np.float32)
    warp = _smooth_noise(h, w, scale / 3.0, rng) * np.float32(scale * 0.04)
    out = np.zeros((h, w), np.float32)
    sets = ((rng.uniform(0.05, 0.10), 0.006, 1.0),) if kind == "parallel" else \
        ((rng.uniform(0.12, 0.22), 0.012, 1.0), (rng.uniform(0.05, 0.09), 0.006, 0.45))
    angle = rng.uniform(0, np.pi)
    for i, (spacing_frac, width_frac, strength) in enumerate(sets):
        a = angle + (0 if i == 0 else rng.uniform(0.6, 1.6))
        spacing = max(scale * spacing_frac, 2.0)
        pos = (xx * np.float32(np.cos(a)) + yy * np.float32(np.sin(a)) + warp + np.float32(rng.uniform(0, spacing)))
        pos /= np.float32(spacing)
        dist = np.abs(pos - np.round(pos)) * np.float32(spacing / max(scale * width_frac, 0.6))
        out = np.maximum(out, np.float32(strength) * np.exp(-(dist * dist)))
    return out


def leaf(look: Look, size: int, rng: np.random.Generator) -> np.ndarray:
    """The healthy leaf of a look, float RGB."""
    base = along(LEAF_PATH, look.leaf_t) * rng.uniform(0.9, 1.1, size=3)
    blotch = _smooth_noise(size, size, size / 4.0, rng)
    fine = _smooth_noise(size, size, max(size / 40.0, 1.0), rng)
    img = base.astype(np.float32)[None, None, :] * (1.0 + 0.12 * blotch + 0.05 * fine)[..., None]
    veins = _veins(size, size, rng, size, look.vein_kind)[..., None] * np.float32(look.vein_strength)
    vein_tint = np.clip(base * 1.35 + np.array([30.0, 20.0, 10.0]), 0, 255).astype(np.float32)  # paler, yellower
    return img * (1 - veins) + vein_tint * veins


def cluster_mask(size: int, coverage: float, rng: np.random.Generator) -> np.ndarray:
    """Where lesions may sit: the whole image, or a blob covering about `coverage` of it.

    The blob's centre may lie near or past the border, so it is cut there, as a patch is by the
    edge of a camera tile; its outline is wavy, not a clean disk.
    """
    if coverage >= 0.999:
        return np.ones((size, size), bool)
    yy, xx = np.ogrid[0:size, 0:size]
    yy, xx = yy + 0.5, xx + 0.5
    wobble = _smooth_noise(size, size, size / 3.0, rng) * 0.25
    for _ in range(12):
        aspect = rng.uniform(0.6, 1.6)
        r = np.sqrt(coverage * size * size / np.pi)  # radius of a disk of that area
        cy, cx = rng.uniform(-0.15, 1.15, size=2) * size
        d = np.sqrt(((yy - cy) / (r * aspect)) ** 2 + ((xx - cx) * aspect / r) ** 2) + wobble
        mask = d <= 1.0
        share = mask.mean()
        if 0.7 * max(coverage, 0.1) <= share and share >= 0.08:
            return mask
    return d <= 1.0 if (d <= 1.0).mean() >= 0.08 else np.ones((size, size), bool)


def draw(img: np.ndarray, look: Look, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Paint the look's lesions whose centres fall inside `mask` onto float RGB `img`."""
    size = img.shape[0]
    k = size / REFERENCE_PX
    (nlo, nhi), (rlo, rhi), (alo, ahi) = SHAPE_STATS[look.shape or "pustule"]
    n = int(round(rng.integers(nlo, nhi + 1) * look.density * mask.mean()))
    cand = np.flatnonzero(mask)
    n = max(n, 3)
    flat = cand[rng.integers(0, cand.size, n)]
    centres = np.stack([flat // size + rng.uniform(0, 1, n), flat % size + rng.uniform(0, 1, n)], axis=1)
    radii = rng.uniform(rlo, rhi, n) * k
    streak_angle = rng.uniform(0, np.pi)  # streaks follow the veins: one direction per leaf
    rust = look.cls == "rust"
    t = float(look.lesion_t or 0.0)
    if rust:
        rim = along(RUST_PATH, t)
        core = along(RUST_PATH, min(t + 0.3, 1.0)) * 0.8
        halo_rgb = np.array([200.0, 190.0, 70.0]) * rng.uniform(0.85, 1.1)
    else:
        white = along(MILDEW_PATH, t)
    out = img
    for (cy, cx), r in zip(centres, radii, strict=True):
        aspect = rng.uniform(alo, ahi)
        ang = streak_angle + rng.normal(0, 0.1) if look.shape == "streak" else rng.uniform(0, np.pi)
        reach = r * aspect * (1.7 if rust else 1.3)
        y0, y1 = max(int(cy - reach), 0), min(int(np.ceil(cy + reach)) + 1, size)
        x0, x1 = max(int(cx - reach), 0), min(int(np.ceil(cx + reach)) + 1, size)
        if y0 >= y1 or x0 >= x1:
            continue
        dy = (np.arange(y0, y1, dtype=np.float64) + 0.5 - cy)[:, None]
        dx = (np.arange(x0, x1, dtype=np.float64) + 0.5 - cx)[None, :]
        u = dx * np.cos(ang) + dy * np.sin(ang)
        v = -dx * np.sin(ang) + dy * np.cos(ang)
        theta = np.arctan2(v, u)
        if look.shape == "blotch":  # irregular: two harmonics, low then high, not a star
            lobes = (1.0 + 0.2 * np.sin(rng.integers(2, 4) * theta + rng.uniform(0, 2 * np.pi))
                     + 0.08 * np.sin(rng.integers(5, 8) * theta + rng.uniform(0, 2 * np.pi)))
        else:
            lobes = 1.0 + 0.1 * np.sin(rng.integers(3, 7) * theta + rng.uniform(0, 2 * np.pi))
        d = np.sqrt((u / (r * aspect)) ** 2 + (v / r) ** 2) / lobes  # 1.0 on the lesion edge
        patch = out[y0:y1, x0:x1]
        if rust:
            if look.halo:
                halo = np.clip(1.6 - d, 0, 0.6)[..., None] * 0.8
                patch = patch * (1 - halo) + halo_rgb * halo
            body = np.clip((1.0 - d) * 4.0, 0, 1)[..., None]
            colour = rim + (core - rim) * np.clip(1.0 - d, 0, 1)[..., None]
            grain = 1.0 + 0.15 * rng.standard_normal(d.shape)[..., None]
            patch = patch * (1 - body) + colour * grain * body
        else:
            grain = np.clip(rng.uniform(0.5, 1.0, d.shape) * 1.1, 0, 1)
            powder = grain * (1 - look.gloss) + look.gloss * 0.95
            alpha = (np.clip((1.2 - d) * 2.0, 0, 1) * powder * rng.uniform(0.7, 0.95))[..., None]
            colour = white * (1.0 + 0.08 * look.gloss * np.clip(1 - d, 0, 1))[..., None]  # a felt's sheen
            patch = patch * (1 - alpha) + colour * alpha
        out[y0:y1, x0:x1] = patch
    return out


def light(img: np.ndarray, look: Look, rng: np.random.Generator) -> np.ndarray:
    """Exposure, colour temperature, shadows, glare, blur and noise: what the scene and camera add."""
    import cv2

    size = img.shape[0]
    img = img.astype(np.float32) * np.array([1 + look.warmth, 1.0, 1 - look.warmth], np.float32) * np.float32(look.gain)
    if look.shadow > 0:
        if rng.random() < 0.5:  # soft shadow of the canopy above
            s = np.clip(_smooth_noise(size, size, size / 2.0, rng), 0, 1)
        else:  # a cast shadow with a hard edge (a stem, the drone's own shadow, a neighbour leaf)
            s = edge_mask(size, rng, rng.uniform(0.2, 0.6)).astype(np.float32)
            s = cv2.GaussianBlur(s, (0, 0), max(size / 100.0, 0.5))
        img = img * (1 - np.float32(look.shadow) * s)[..., None]
    yy, xx = np.ogrid[0:size, 0:size]
    for _ in range(look.glare):  # specular highlights: white, smooth, no grain (unlike mildew)
        cy, cx = rng.uniform(0, size, 2)
        sy, sx = rng.uniform(0.02, 0.08, 2) * size
        a = (rng.uniform(0.35, 0.8) * np.exp(-(((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2))).astype(np.float32)
        img = img * (1 - a[..., None]) + np.float32(250.0) * a[..., None]
    if look.blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), look.blur * size / REFERENCE_PX + 1e-3)
    img = img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(look.noise)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def family_image(cls: str, size: int, rng: np.random.Generator, part: Part = "train") -> np.ndarray:
    """One image of class `cls` with a freshly sampled look, including the field's hard cases.

    A share of healthy images are bare soil or a leaf cut by a field edge (brown soil is what a
    rust classifier most often calls rust), and a share of disease images are cut by a field edge.
    """
    _check_class(cls)
    look = sample_look(cls, rng, part)
    if cls == HEALTHY and rng.random() < BACKGROUND_FRACTION:
        soil = soil_canvas(size, size, rng, scale=size).astype(np.float32)
        if rng.random() < 0.5:
            img = soil
        else:
            img = leaf(look, size, rng)
            m = edge_mask(size, rng, rng.uniform(0.2, 0.8))
            img[m] = soil[m]
        return light(img, look, rng)
    img = leaf(look, size, rng)
    if cls != HEALTHY:
        img = draw(img, look, cluster_mask(size, look.coverage, rng), rng)
        if look.coverage >= 0.999 and rng.random() < EDGE_FRACTION:  # never cut away a partial cluster
            soil = soil_canvas(size, size, rng, scale=size).astype(np.float32)
            m = edge_mask(size, rng, rng.uniform(0.1, 0.35))
            img[m] = soil[m]
    return light(img, look, rng)


__all__ = ["CLASSES", "HELD_OUT", "HELD_OUT_FACTORS", "HELD_OUT_SHAPE", "Look", "PARTS", "Part", "along",
           "cluster_mask", "family_image", "sample_look", "sample_outside"]
