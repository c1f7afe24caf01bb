"""Synthetic leaf textures: the training data of the offline build and the simulator's field.

No plant-disease images can be had on the project's machines, so the classifier learns from
textures that carry the visual features agronomists use: a green chlorophyll base with veins,
reddish-brown rust pustules with a yellow halo, whitish powdery-mildew patches. The flight
simulator paints its field with the same functions at a `scale` equal to the ground area one
camera tile covers, so a tile over a rust patch looks like a rust training image (CONTRACTS.md,
section 3). Everything here is numpy only (the simulator must not import TensorFlow), deterministic
for a seeded generator, and vectorised: the only Python loop runs over lesions, never over pixels.

Canvases are full-frame leaf texture (no leaf outline or background) so that neighbouring
canvases stitch without seams that a classifier could learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# the class list is part of the bundle contract; re-exported here for the build's modules
from payload.bundle import CLASSES, HEALTHY

from .noise import smooth_noise

# Lesion statistics at the 224-px reference: (count range per scale x scale area, radius range px).
REFERENCE_PX = 224
LESION_COUNTS: dict[str, tuple[int, int]] = {"rust": (15, 40), "powdery_mildew": (10, 25)}
LESION_RADII: dict[str, tuple[float, float]] = {"rust": (5.0, 20.0), "powdery_mildew": (8.0, 25.0)}

_LEAF_GREEN = np.array([62.0, 128.0, 48.0])  # RGB of healthy chlorophyll tissue
_VEIN_TINT = np.array([150.0, 190.0, 110.0])  # veins are paler and yellower than the blade
_RUST_CORE = np.array([120.0, 52.0, 22.0])  # dark reddish-brown pustule centre
_RUST_RIM = np.array([190.0, 105.0, 40.0])  # orange spore ring
_RUST_HALO = np.array([175.0, 170.0, 60.0])  # chlorotic (yellow) halo around a pustule
_MILDEW = np.array([228.0, 232.0, 222.0])  # whitish mycelium


def _check_class(cls: str) -> None:
    if cls not in CLASSES:
        raise ValueError(f"unknown class {cls!r}; expected one of {', '.join(CLASSES)}")


def _smooth_noise(height: int, width: int, cell: float, rng: np.random.Generator) -> np.ndarray:
    """Low-frequency blotches (uneven chlorophyll and lighting) in this module's own interpolation."""
    return smooth_noise(height, width, cell, rng, "smoothstep")


def _vein_field(height: int, width: int, rng: np.random.Generator, scale: float) -> np.ndarray:
    """Vein strength in [0, 1]: a main set of lateral veins and a fainter crossing set.

    Veins are straight-ish lines warped by smooth noise, spaced relative to `scale` so a leaf
    image and a simulator tile of the same `scale` show the same vein density.
    """
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    warp = _smooth_noise(height, width, scale / 3.0, rng) * scale * 0.04
    out = np.zeros((height, width))
    for spacing_frac, width_frac, strength in ((0.16, 0.012, 1.0), (0.07, 0.006, 0.45)):
        angle = rng.uniform(0, np.pi)
        spacing = max(scale * spacing_frac, 2.0)
        along = xx * np.cos(angle) + yy * np.sin(angle) + warp + rng.uniform(0, spacing)
        dist = np.abs((along / spacing) - np.round(along / spacing)) * spacing
        w = max(scale * width_frac, 0.6)
        out = np.maximum(out, strength * np.exp(-((dist / w) ** 2)))
    return out


def leaf_canvas(height: int, width: int, rng: np.random.Generator, scale: float) -> np.ndarray:
    """A healthy leaf texture of any size: chlorophyll base, blotchy noise and veins.

    `scale` is how many pixels one 224-px leaf image spans, so features keep their physical size
    whatever the canvas size.
    """
    if height <= 0 or width <= 0 or scale <= 0:
        raise ValueError(f"height, width and scale must be positive, got {height}, {width}, {scale}")
    base = _LEAF_GREEN * rng.uniform(0.85, 1.15, size=3)  # per-leaf hue/brightness variation
    blotch = _smooth_noise(height, width, scale / 4.0, rng)
    fine = _smooth_noise(height, width, max(scale / 40.0, 1.0), rng)
    shade = 1.0 + 0.12 * blotch + 0.05 * fine
    img = base[None, None, :] * shade[..., None]
    veins = _vein_field(height, width, rng, scale)[..., None] * 0.55
    img = img * (1 - veins) + _VEIN_TINT[None, None, :] * veins
    return np.clip(img, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Lesions:
    """Where lesions of one class sit: centres (N,2) as (row, col) pixels and radii (N,) pixels."""

    cls: str
    centres: np.ndarray
    radii: np.ndarray


def sample_lesions(
    shape: tuple[int, int], cls: str, rng: np.random.Generator, scale: float, mask: np.ndarray | None = None
) -> Lesions:
    """Draw lesion centres and radii at the class's density (per scale x scale area).

    Exposed separately from painting so that the simulator can record ground truth and the tests
    can check counts and radii.
    """
    _check_class(cls)
    h, w = int(shape[0]), int(shape[1])
    if cls == HEALTHY:
        return Lesions(cls, np.zeros((0, 2)), np.zeros(0))
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (h, w):
            raise ValueError(f"mask shape {mask.shape} does not match image shape {(h, w)}")
        candidates = np.flatnonzero(mask)
    else:
        candidates = None
    area = float(h * w) if candidates is None else float(candidates.size)
    lo, hi = LESION_COUNTS[cls]
    per_area = rng.integers(lo, hi + 1)
    n = int(round(per_area * area / (float(scale) ** 2)))
    if area == 0 or n == 0:
        return Lesions(cls, np.zeros((0, 2)), np.zeros(0))
    if candidates is None:
        centres = np.stack([rng.uniform(0, h, n), rng.uniform(0, w, n)], axis=1)
    else:
        flat = candidates[rng.integers(0, candidates.size, n)]
        centres = np.stack([flat // w + rng.uniform(0, 1, n), flat % w + rng.uniform(0, 1, n)], axis=1)
    rmin, rmax = LESION_RADII[cls]
    radii = rng.uniform(rmin, rmax, n) * (float(scale) / REFERENCE_PX)
    return Lesions(cls, centres, radii)


def draw_lesions(img: np.ndarray, lesions: Lesions, rng: np.random.Generator) -> np.ndarray:
    """Paint given lesions onto a copy of `img`, each in its own bounding box (vectorised inside)."""
    out = np.asarray(img, dtype=np.float64).copy()
    h, w = out.shape[:2]
    for (cy, cx), r in zip(lesions.centres, lesions.radii, strict=True):
        reach = r * (1.6 if lesions.cls == "rust" else 1.25)
        y0, y1 = max(int(cy - reach), 0), min(int(np.ceil(cy + reach)) + 1, h)
        x0, x1 = max(int(cx - reach), 0), min(int(np.ceil(cx + reach)) + 1, w)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        dy, dx = yy + 0.5 - cy, xx + 0.5 - cx
        theta = np.arctan2(dy, dx)
        lobes = 1.0 + 0.12 * np.sin(rng.integers(3, 7) * theta + rng.uniform(0, 2 * np.pi))
        d = np.sqrt(dy * dy + dx * dx) / (r * lobes)  # 1.0 on the lesion edge
        patch = out[y0:y1, x0:x1]
        if lesions.cls == "rust":
            halo = np.clip(1.5 - d, 0, 0.5)[..., None] * 0.9
            patch = patch * (1 - halo) + _RUST_HALO * halo
            body = np.clip((1.0 - d) * 4.0, 0, 1)[..., None]
            colour = _RUST_RIM + (_RUST_CORE - _RUST_RIM) * np.clip(1.0 - d, 0, 1)[..., None]
            grain = 1.0 + 0.15 * rng.standard_normal(d.shape)[..., None]
            patch = patch * (1 - body) + colour * grain * body
        else:
            powder = np.clip(rng.uniform(0.55, 1.0, d.shape) * 1.1, 0, 1)
            alpha = (np.clip((1.2 - d) * 2.0, 0, 1) * powder * rng.uniform(0.75, 0.95))[..., None]
            patch = patch * (1 - alpha) + _MILDEW * alpha
        out[y0:y1, x0:x1] = patch
    return np.clip(out, 0, 255).astype(np.uint8)


def paint_lesions(
    img: np.ndarray, cls: str, rng: np.random.Generator, scale: float, mask: np.ndarray | None = None
) -> np.ndarray:
    """Return a copy of `img` with lesions of `cls` whose centres lie inside `mask` (None: anywhere)."""
    lesions = sample_lesions(img.shape[:2], cls, rng, scale, mask)
    return draw_lesions(img, lesions, rng)


def add_sensor_noise(img: np.ndarray, rng: np.random.Generator, sigma: float = 4.0) -> np.ndarray:
    """Gaussian read noise in 0-255 units, so the model does not learn noise-free textures."""
    noisy = np.asarray(img, dtype=np.float64) + rng.normal(0.0, sigma, size=np.shape(img))
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def leaf_image(cls: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One training image of class `cls`: canvas, lesions and sensor noise at scale = size."""
    _check_class(cls)
    img = leaf_canvas(size, size, rng, scale=size)
    img = paint_lesions(img, cls, rng, scale=size)
    return add_sensor_noise(img, rng, sigma=rng.uniform(2.0, 6.0))


# Bare soil: what a camera sees at field edges, headlands, tramlines and gaps in the canopy.
_SOIL = np.array([112.0, 88.0, 62.0])  # dry loam, RGB
BACKGROUND_FRACTION = 0.25  # share of "healthy" training images that are soil or a field edge
EDGE_FRACTION = 0.1  # share of disease training images cut by a field edge


def soil_canvas(height: int, width: int, rng: np.random.Generator, scale: float) -> np.ndarray:
    """Bare soil of any size: brown base, moisture blotches, clods and furrows.

    Brown soil is the commonest thing a disease classifier wrongly calls rust: the classifier must
    learn it as "not diseased", and the simulator paints it around its field with this function.
    """
    if height <= 0 or width <= 0 or scale <= 0:
        raise ValueError(f"height, width and scale must be positive, got {height}, {width}, {scale}")
    base = _SOIL * rng.uniform(0.8, 1.2) * rng.uniform(0.95, 1.05, size=3)  # darker/lighter, same hue
    blotch = _smooth_noise(height, width, scale / 3.0, rng)
    clods = _smooth_noise(height, width, max(scale / 30.0, 1.0), rng)
    theta = rng.uniform(0.0, np.pi)
    period = scale * rng.uniform(0.12, 0.25)
    yy, xx = np.mgrid[0:height, 0:width]
    furrows = np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period)
    shade = 1.0 + 0.15 * blotch + 0.10 * clods + 0.07 * furrows
    return np.clip(base[None, None, :] * shade[..., None], 0, 255).astype(np.uint8)


def edge_mask(size: int, rng: np.random.Generator, share: float) -> np.ndarray:
    """A straight field edge at a random angle: True on the side that covers `share` of the image."""
    theta = rng.uniform(0.0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size]
    proj = xx * np.cos(theta) + yy * np.sin(theta)
    return proj < np.quantile(proj, share)


def training_image(cls: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One training image: mostly `leaf_image`, plus the hard cases a field survey meets.

    A share of "healthy" images are bare soil or a leaf cut by a field edge (hard negatives), and
    a share of disease images are cut by a field edge (the lesions stay on the leaf part), so the
    classifier neither flags soil as rust nor misses a patch next to a headland.
    """
    _check_class(cls)
    if cls == HEALTHY and rng.random() < BACKGROUND_FRACTION:
        soil = soil_canvas(size, size, rng, scale=size)
        if rng.random() < 0.5:
            img = soil
        else:
            img = leaf_canvas(size, size, rng, scale=size)
            mask = edge_mask(size, rng, rng.uniform(0.2, 0.8))
            img[mask] = soil[mask]
        return add_sensor_noise(img, rng, sigma=rng.uniform(2.0, 6.0))
    img = leaf_canvas(size, size, rng, scale=size)
    img = paint_lesions(img, cls, rng, scale=size)
    if cls != HEALTHY and rng.random() < EDGE_FRACTION:
        soil = soil_canvas(size, size, rng, scale=size)
        mask = edge_mask(size, rng, rng.uniform(0.1, 0.35))
        img[mask] = soil[mask]
    return add_sensor_noise(img, rng, sigma=rng.uniform(2.0, 6.0))
