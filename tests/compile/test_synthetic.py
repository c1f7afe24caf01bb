"""The synthetic textures: deterministic, lesion statistics as specified, classes visibly different."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from compile import synthetic as syn

ROOT = Path(__file__).resolve().parents[2]


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.mark.parametrize("cls", syn.CLASSES)
def test_leaf_image_is_deterministic_per_seed(cls: str) -> None:
    a = syn.leaf_image(cls, 96, _rng(7))
    b = syn.leaf_image(cls, 96, _rng(7))
    c = syn.leaf_image(cls, 96, _rng(8))
    assert a.shape == (96, 96, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_canvas_shape_dtype_and_green() -> None:
    img = syn.leaf_canvas(50, 130, _rng(), scale=64)
    assert img.shape == (50, 130, 3) and img.dtype == np.uint8
    mean = img.reshape(-1, 3).mean(axis=0)
    assert mean[1] > mean[0] + 20 and mean[1] > mean[2] + 20, mean
    assert img.std() > 3  # veins and noise, not a flat colour


@pytest.mark.parametrize("cls", ["rust", "powdery_mildew"])
def test_lesion_counts_and_radii_in_range_at_reference_scale(cls: str) -> None:
    lo, hi = syn.LESION_COUNTS[cls]
    rmin, rmax = syn.LESION_RADII[cls]
    counts = []
    for seed in range(40):
        les = syn.sample_lesions((224, 224), cls, _rng(seed), scale=224)
        counts.append(len(les.radii))
        assert les.radii.min() >= rmin and les.radii.max() <= rmax
        assert (les.centres >= 0).all() and (les.centres < 224).all()
    assert min(counts) >= lo and max(counts) <= hi
    assert max(counts) - min(counts) > (hi - lo) // 3  # really drawn from the range


def test_radii_and_density_scale_with_scale() -> None:
    les = syn.sample_lesions((448, 448), "rust", _rng(3), scale=112)
    # a 448x448 canvas at scale 112 holds 16 leaf areas
    assert 15 * 16 <= len(les.radii) <= 40 * 16
    assert les.radii.min() >= 5 * 112 / 224 and les.radii.max() <= 20 * 112 / 224


def test_healthy_paints_nothing() -> None:
    img = syn.leaf_canvas(64, 64, _rng(), scale=64)
    out = syn.paint_lesions(img, "healthy", _rng(), scale=64)
    assert np.array_equal(out, img) and out is not img


def test_mask_restricts_lesions() -> None:
    h, w = 200, 300
    mask = np.zeros((h, w), dtype=bool)
    mask[:, 200:] = True
    les = syn.sample_lesions((h, w), "rust", _rng(1), scale=100, mask=mask)
    assert len(les.radii) > 0
    assert (les.centres[:, 1] >= 200).all()
    img = syn.leaf_canvas(h, w, _rng(2), scale=100)
    out = syn.paint_lesions(img, "rust", _rng(1), scale=100, mask=mask)
    # far from the mask (more than the largest halo) the canvas is untouched
    assert np.array_equal(out[:, :150], img[:, :150])
    assert not np.array_equal(out[:, 200:], img[:, 200:])
    empty = syn.paint_lesions(img, "rust", _rng(1), scale=100, mask=np.zeros((h, w), dtype=bool))
    assert np.array_equal(empty, img)
    with pytest.raises(ValueError, match="mask shape"):
        syn.paint_lesions(img, "rust", _rng(1), scale=100, mask=np.zeros((3, 3), dtype=bool))


def _features(cls: str, n: int = 24, size: int = 96) -> tuple[float, float]:
    redness, whiteness = [], []
    for seed in range(n):
        img = syn.leaf_image(cls, size, _rng(seed)).astype(float)
        r, g, b = img[..., 0], img[..., 1], img[..., 2]
        redness.append(float(np.mean(np.clip(r - g, 0, None))))
        whiteness.append(float(np.mean(np.minimum(np.minimum(r, g), b) > 150)))
    return float(np.mean(redness)), float(np.mean(whiteness))


def test_classes_differ_measurably() -> None:
    red_h, white_h = _features("healthy")
    red_r, white_r = _features("rust")
    red_m, white_m = _features("powdery_mildew")
    assert red_r > red_h + 3 and red_r > red_m + 3, (red_h, red_r, red_m)
    assert white_m > white_h + 0.03 and white_m > white_r + 0.03, (white_h, white_r, white_m)


def test_sensor_noise_is_bounded_and_seeded() -> None:
    img = np.full((32, 32, 3), 250, dtype=np.uint8)
    a = syn.add_sensor_noise(img, _rng(5), sigma=8)
    assert a.dtype == np.uint8 and a.max() == 255  # clipped, not wrapped around
    assert np.array_equal(a, syn.add_sensor_noise(img, _rng(5), sigma=8))
    mid = syn.add_sensor_noise(np.full((64, 64, 3), 128, dtype=np.uint8), _rng(5), sigma=8)
    assert 7 < mid.astype(float).std() < 9


def test_unknown_class_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown class"):
        syn.leaf_image("blight", 32, _rng())


def test_canvases_stitch_without_a_border() -> None:
    """A full-frame texture: the outermost rows look like the interior (no leaf outline)."""
    img = syn.leaf_canvas(128, 128, _rng(4), scale=128).astype(float)
    edge = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]]).mean(axis=0)
    inner = img[32:96, 32:96].reshape(-1, 3).mean(axis=0)
    assert np.abs(edge - inner).max() < 25


def test_synthetic_imports_without_tensorflow() -> None:
    code = (
        "import sys, compile.synthetic as s; s.leaf_image('rust', 32, __import__('numpy').random.default_rng(0));"
        "assert not any(m.split('.')[0] in ('tensorflow', 'keras') for m in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_soil_is_brown_textured_and_deterministic() -> None:
    from compile.synthetic import soil_canvas

    a = soil_canvas(96, 128, np.random.default_rng(5), scale=96)
    b = soil_canvas(96, 128, np.random.default_rng(5), scale=96)
    assert a.shape == (96, 128, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    r, g, bl = (a[..., i].astype(float).mean() for i in range(3))
    assert r > g > bl  # brown, not green
    assert a.astype(float).std() > 3.0  # textured, not a flat colour


def test_training_images_include_soil_negatives_and_edge_cut_diseases() -> None:
    from compile.synthetic import training_image

    def greenness(img: np.ndarray) -> float:
        f = img.astype(float)
        return float(((f[..., 1] > f[..., 0] + 15)).mean())

    rng = np.random.default_rng(11)
    healthy = [greenness(training_image("healthy", 64, rng)) for _ in range(120)]
    soil_like = sum(g < 0.85 for g in healthy)
    assert 10 <= soil_like <= 60  # about a quarter are soil or a field edge
    rust = [greenness(training_image("rust", 64, rng)) for _ in range(60)]
    assert min(rust) > 0.2  # an edge never covers most of a diseased leaf


def test_a_tile_of_a_big_field_looks_like_a_training_image() -> None:
    """The simulator paints a field at `scale`; a scale x scale tile must match leaf_image statistics."""
    scale = 96
    rng = _rng(11)
    field = syn.leaf_canvas(4 * scale, 4 * scale, rng, scale)
    field = syn.add_sensor_noise(syn.paint_lesions(field, "rust", rng, scale), rng)
    tiles = [field[i:i + scale, j:j + scale].astype(float) for i in range(0, 4 * scale, scale)
             for j in range(0, 4 * scale, scale)]
    red_tiles = np.mean([np.mean(np.clip(t[..., 0] - t[..., 1], 0, None)) for t in tiles])
    red_train, _ = _features("rust", n=16, size=scale)
    red_healthy, _ = _features("healthy", n=16, size=scale)
    assert abs(red_tiles - red_train) < 0.5 * (red_train - red_healthy), (red_tiles, red_train, red_healthy)
