"""The domain-randomised family: looks vary, held-out regions stay out of training, clusters cover what they say."""

from __future__ import annotations

import numpy as np
import pytest

from compile import family as fam
from compile.config import DataConfig
from compile.data import heldout_factors, synthetic_image, synthetic_splits


def _looks(cls: str, part: fam.Part, n: int = 400) -> list[fam.Look]:
    rng = np.random.default_rng(5)
    return [fam.sample_look(cls, rng, part) for _ in range(n)]


@pytest.mark.parametrize("cls", ["rust", "powdery_mildew"])
def test_training_looks_never_enter_a_held_out_band_or_shape(cls: str) -> None:
    for look in _looks(cls, "train"):
        assert look.held_out is None
        lo, hi = fam.HELD_OUT["leaf_colour"]
        assert not lo <= look.leaf_t <= hi
        lo, hi = fam.HELD_OUT["rust_colour" if cls == "rust" else "mildew_colour"]
        assert not lo <= look.lesion_t <= hi
        assert look.shape != fam.HELD_OUT_SHAPE


@pytest.mark.parametrize("cls", fam.CLASSES)
def test_held_out_looks_sit_in_exactly_the_factor_they_name(cls: str) -> None:
    seen = set()
    for look in _looks(cls, "heldout"):
        seen.add(look.held_out)
        assert look.held_out in fam.HELD_OUT_FACTORS[cls]
        in_leaf = fam.HELD_OUT["leaf_colour"][0] <= look.leaf_t <= fam.HELD_OUT["leaf_colour"][1]
        assert in_leaf == (look.held_out == "leaf_colour")
        if cls != "healthy":
            band = fam.HELD_OUT["rust_colour" if cls == "rust" else "mildew_colour"]
            assert (band[0] <= look.lesion_t <= band[1]) == (look.held_out.endswith("_colour")
                                                             and look.held_out != "leaf_colour")
            assert (look.shape == fam.HELD_OUT_SHAPE) == (look.held_out == "shape")
    assert seen == set(fam.HELD_OUT_FACTORS[cls])  # every factor is exercised


def test_training_colours_span_the_whole_path_outside_the_band() -> None:
    ts = np.array([lk.lesion_t for lk in _looks("rust", "train", 2000)])
    lo, hi = fam.HELD_OUT["rust_colour"]
    assert ts.min() < 0.05 and ts.max() > 0.95  # yellow-orange to dark brown
    assert (ts < lo).mean() > 0.3 and (ts > hi).mean() > 0.3


def test_rust_path_runs_from_yellow_orange_to_dark_brown() -> None:
    start, end = fam.along(fam.RUST_PATH, 0.0), fam.along(fam.RUST_PATH, 1.0)
    assert start[0] > start[1] > start[2] and start.sum() > 400  # bright yellow-orange
    assert end[0] > end[1] and end.sum() < 200  # dark brown
    assert np.allclose(fam.along(fam.RUST_PATH, 1 / 3), fam.RUST_PATH[1])


@pytest.mark.parametrize("coverage", [0.1, 0.3, 0.6])
def test_cluster_mask_covers_about_what_was_asked(coverage: float) -> None:
    shares = [fam.cluster_mask(96, coverage, np.random.default_rng(s)).mean() for s in range(30)]
    assert 0.08 <= min(shares)
    assert 0.5 * coverage <= float(np.median(shares)) <= 1.6 * coverage + 0.05


def test_partial_clusters_leave_healthy_leaf_around_them() -> None:
    """A rust image of small coverage has rust in one region and clean leaf elsewhere (a patch's edge)."""

    def rusty(img: np.ndarray) -> np.ndarray:
        f = img.astype(float)
        return (f[..., 0] > f[..., 1] + 25)  # red above green: pustule, never leaf or vein

    partial = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        look = fam.sample_look("rust", rng)
        if look.coverage > 0.3:
            continue
        img = fam.family_image("rust", 96, np.random.default_rng(seed))
        r = rusty(img)
        if r.any():
            partial += 1
            quads = [r[:48, :48].mean(), r[:48, 48:].mean(), r[48:, :48].mean(), r[48:, 48:].mean()]
            assert min(quads) < 0.5 * max(quads)  # concentrated, not spread evenly
    assert partial >= 5


@pytest.mark.parametrize("cls", fam.CLASSES)
def test_family_images_are_deterministic_and_vary(cls: str) -> None:
    a = fam.family_image(cls, 64, np.random.default_rng(3))
    b = fam.family_image(cls, 64, np.random.default_rng(3))
    assert a.dtype == np.uint8 and a.shape == (64, 64, 3) and np.array_equal(a, b)
    means = np.array([fam.family_image(cls, 64, np.random.default_rng(s)).reshape(-1, 3).mean(0) for s in range(20)])
    assert means.std(axis=0).max() > 8  # light, leaf colour and soil really vary


def test_glare_is_smooth_white_and_dry_mildew_is_grainy() -> None:
    """Glare must not be a shortcut either way: both are whitish, only mildew is textured."""
    import cv2

    def texture_of_white(img: np.ndarray) -> float:
        white = img.min(axis=2) > 150
        lap = cv2.Laplacian(img.astype(np.float64).mean(axis=2), cv2.CV_64F)
        return float(np.abs(lap[white]).mean())

    base = fam.sample_look("powdery_mildew", np.random.default_rng(0))
    quiet = {"noise": 0.0, "blur": 0.0, "shadow": 0.0, "gain": 1.0, "warmth": 0.0}
    glare_look = fam.Look(**{**base.__dict__, **quiet, "cls": "healthy", "glare": 3})
    leafish = np.full((96, 96, 3), 90.0)
    glare = fam.light(leafish.copy(), glare_look, np.random.default_rng(1))
    mildew_look = fam.Look(**{**base.__dict__, **quiet, "glare": 0, "gloss": 0.0, "coverage": 1.0, "shape": "colony"})
    mildew = fam.light(fam.draw(leafish.copy(), mildew_look, np.ones((96, 96), bool), np.random.default_rng(1)),
                       mildew_look, np.random.default_rng(1))
    assert (glare.min(axis=2) > 150).sum() > 20 and (mildew.min(axis=2) > 150).sum() > 20
    assert texture_of_white(mildew) > 3 * texture_of_white(glare)


def test_heldout_split_is_disjoint_and_labelled_by_factor() -> None:
    cfg = DataConfig(synthetic_per_class=20, heldout_per_class=10, generator="family")
    s = synthetic_splits(cfg)
    assert s.heldout is not None and len(s.heldout) == 30 and s.heldout.part == "heldout"
    used = set(s.train.seeds) | set(s.val.seeds) | set(s.test.seeds)
    assert not used & set(s.heldout.seeds)
    factors = heldout_factors(s.heldout, cfg.seed)
    assert all(f is not None for f in factors)
    # the replayed factor is the one the image was drawn with
    lab, seed = int(s.heldout.labels[0]), int(s.heldout.seeds[0])
    rng = np.random.default_rng([cfg.seed, seed])
    assert fam.sample_look(fam.CLASSES[lab], rng, "heldout").held_out == factors[0]
    assert heldout_factors(s.test, cfg.seed) == [None] * len(s.test)
    img = synthetic_image(lab, seed, 32, cfg.seed, None, "heldout", "family")
    assert not np.array_equal(img, synthetic_image(lab, seed, 32, cfg.seed, None, "train", "family"))


def test_soil_negatives_and_edge_cuts_are_kept() -> None:
    def greenness(img: np.ndarray) -> float:
        f = img.astype(float)
        return float((f[..., 1] > f[..., 0] + 10).mean())

    healthy = [greenness(fam.family_image("healthy", 64, np.random.default_rng(s))) for s in range(160)]
    soil_like = sum(g < 0.5 for g in healthy)
    assert 10 <= soil_like <= 80  # about a quarter are soil or a field edge
