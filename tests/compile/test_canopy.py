"""Canopy views: physical scale, area-correct lesions, the label rule, and held-out colours disjoint in pixels."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from compile import canopy as cn
from compile import family as fam
from compile.config import DataConfig
from compile.data import heldout_factors, synthetic_image, synthetic_splits

MARGIN = 8.0  # RGB units between a held-out colour band and anything training can produce


@pytest.mark.parametrize("cls", cn.CLASSES)
def test_images_are_deterministic_sized_and_vary(cls: str) -> None:
    a = cn.canopy_image(cls, 64, np.random.default_rng(3))
    assert a.dtype == np.uint8 and a.shape == (64, 64, 3)
    assert np.array_equal(a, cn.canopy_image(cls, 64, np.random.default_rng(3)))
    means = np.array([cn.canopy_image(cls, 48, np.random.default_rng(s)).reshape(-1, 3).mean(0) for s in range(16)])
    assert means.std(axis=0).max() > 6  # crops, soil, light and resolution really vary


def test_resolution_crops_and_light_span_their_ranges() -> None:
    scenes = [cn.sample_scene("healthy", np.random.default_rng(s)) for s in range(400)]
    gsd = np.array([s.gsd_mm for s in scenes])
    assert gsd.min() < 1.3 and gsd.max() > 48 and 0.35 < np.mean(gsd < 8) < 0.65  # log-uniform 1-64 mm/px
    assert {s.crop for s in scenes} == set(cn.TRAIN_CROPS)
    assert min(s.haze for s in scenes) >= cn.HAZE[0] and max(s.shadow_depth for s in scenes) > 0.5


@pytest.mark.parametrize("cls", cn.CLASSES)
def test_training_never_samples_a_held_out_factor(cls: str) -> None:
    rng = np.random.default_rng(11)
    for _ in range(300):
        s = cn.sample_scene(cls, rng)
        assert s.held_out is None and s.crop != cn.HELD_OUT_CROP and s.haze >= cn.HAZE[0]
    seen = {cn.sample_scene(cls, rng, "heldout").held_out for _ in range(200)}
    assert seen == set(cn.HELD_OUT_FACTORS[cls])


def test_label_rule_follows_the_physics() -> None:
    """Early rust at 32 mm/px is invisible; a coloured canopy (late) is seen from high up; pustules resolve close."""
    rng = np.random.default_rng(0)

    def scene(cls: str, gsd: float, stage: str) -> cn.Scene:
        s = cn.sample_scene(cls, rng, gsd_mm=gsd, stage=cn.STAGES[stage])
        return replace(s, gain=1.0, haze=1.0, noise=3.0, closure=0.9, row_mm=150.0, crop="wheat", leaf_w_mm=15.0,
                       leaf_len_mm=200.0, lesion_mm=1.5 if cls == "rust" else 12.0,
                       stripe=cn.STRIPE_ASPECT[0] if cls == "rust" else 1.0)  # not left to the draw order

    assert not cn.visible(scene("rust", 32, "early"))
    assert not cn.visible(scene("powdery_mildew", 32, "early"))
    assert cn.visible(scene("rust", 64, "late")) and cn.visible(scene("powdery_mildew", 64, "late"))
    assert cn.visible(scene("rust", 1, "moderate")) and cn.visible(scene("powdery_mildew", 4, "moderate"))
    for cls in ("rust", "powdery_mildew"):  # every disease image drawn for training passes the rule
        assert all(cn.visible(cn.sample_scene(cls, rng)) for _ in range(200))


def test_sub_pixel_lesions_shift_colour_by_area_and_never_alias_into_dots() -> None:
    """At 48 mm/px a 1 mm pustule is 1/2300 of a pixel: late rust tints the canopy, it does not speckle it."""
    rng = np.random.default_rng(4)
    base = replace(cn.sample_scene("rust", rng, gsd_mm=48.0, stage=cn.STAGES["late"]), crop="wheat", closure=1.0,
                   row_mm=150.0, leaf_w_mm=15.0, leaf_len_mm=200.0, noise=0.0, blur_px=0.0, gain=1.0, haze=1.0,
                   cloud=0.0, stripe=1.0)
    def red_shift(scene: cn.Scene) -> np.ndarray:
        sick = cn.render(scene, 64, np.random.default_rng(1)).astype(float)
        clean = cn.render(replace(scene, severity=0.0), 64, np.random.default_rng(1)).astype(float)
        return (sick - clean)[..., 0]

    far = red_shift(base)
    assert far.mean() > 8  # redder: 30 % of the leaf area is pustule and halo
    assert np.percentile(far, 99) < 2.5 * far.mean()  # a tint: no pixel stands out as a pustule
    near = red_shift(replace(base, gsd_mm=0.5))  # the same pustules seen from close are dots
    assert np.percentile(near, 99) > 4 * near.mean()


def test_partial_patches_are_in_the_data() -> None:
    rng = np.random.default_rng(2)
    regions = [cn.sample_scene("powdery_mildew", rng).region for _ in range(300)]
    assert 0.2 < np.mean(np.array(regions) < 0.999) < 0.8


def _family_reach() -> tuple[np.ndarray, tuple[float, float]]:
    """What compile/family.py's training can produce: its colours outside the held-out bands, under its
    exposure gain (0.62-1.35), colour temperature (+-0.12) and shadows (depth up to 0.55)."""
    def outside(path: np.ndarray, band: tuple[float, float]) -> np.ndarray:
        ts = [t for t in np.linspace(0, 1, 61) if not band[0] <= t <= band[1]]
        return np.stack([fam.along(path, t) for t in ts])

    leaves = cn._jittered(outside(fam.LEAF_PATH, fam.HELD_OUT["leaf_colour"]), 0.1)
    rust = outside(fam.RUST_PATH, fam.HELD_OUT["rust_colour"])
    cores = np.stack([fam.along(fam.RUST_PATH, min(t + 0.3, 1.0)) * 0.8 for t in np.linspace(0, 1, 61)
                      if not fam.HELD_OUT["rust_colour"][0] <= t <= fam.HELD_OUT["rust_colour"][1]])
    mildew = outside(fam.MILDEW_PATH, fam.HELD_OUT["mildew_colour"])
    materials = np.concatenate([leaves, rust, cores, mildew])
    return cn.camera_reach(materials, (0.62, 1.35), (-0.12, 0.12), (0.45, 1.0), (1.0, 1.0))


def _family_band(factor: str) -> np.ndarray:
    path = {"leaf_colour": fam.LEAF_PATH, "rust_colour": fam.RUST_PATH, "mildew_colour": fam.MILDEW_PATH}[factor]
    return np.stack([fam.along(path, t) for t in np.linspace(*fam.HELD_OUT[factor], 8)])


@pytest.mark.parametrize("factor", ["leaf_colour", "rust_colour"])
def test_held_out_colour_bands_are_disjoint_in_pixels(factor: str) -> None:
    """No training image can produce a held-out band's colour: its base colours (leaf, lesion, halo, mildew,
    soil, jitter) swept over training's shade, haze, white balance and exposure stay >= MARGIN away."""
    margin = cn.colour_margin(factor)
    print(f"canopy {factor}: nearest training colour {margin:.1f} RGB units away")
    assert margin >= MARGIN


@pytest.mark.parametrize("factor", ["leaf_colour", "rust_colour", "mildew_colour"])
def test_the_leaf_family_held_out_bands_fail_the_same_measurement(factor: str) -> None:
    """The measurement has teeth: the leaf family's held-out bands are reached by its own training colours."""
    reach, gain = _family_reach()
    margin = cn.nearest_distance(_family_band(factor), reach, gain)
    print(f"family {factor}: nearest training colour {margin:.1f} RGB units away")
    assert margin < MARGIN


def test_haze_is_held_out_as_a_condition_not_a_colour() -> None:
    """Heavy haze is not pixel-disjoint, and the docs say so: a shaded leaf under light haze, exposed
    brighter, is the same pixel as a sunlit leaf under heavy haze. Only the image's contrast differs."""
    assert cn.colour_margin("haze") < MARGIN


def test_canopy_held_out_split_replays_its_factors() -> None:
    cfg = DataConfig(synthetic_per_class=20, heldout_per_class=10)
    s = synthetic_splits(cfg)
    assert s.heldout is not None and s.heldout.generator == "canopy" and "haze" in (s.heldout_what or "")
    factors = heldout_factors(s.heldout, cfg.seed)
    lab, seed = int(s.heldout.labels[0]), int(s.heldout.seeds[0])
    assert cn.sample_scene(cn.CLASSES[lab], np.random.default_rng([cfg.seed, seed]), "heldout").held_out == factors[0]
    img = synthetic_image(lab, seed, 32, cfg.seed, None, "heldout", "canopy")
    assert not np.array_equal(img, synthetic_image(lab, seed, 32, cfg.seed, None, "train", "canopy"))


def test_cards_without_the_new_fields_still_load_and_new_ones_keep_them() -> None:
    from payload.bundle import FORMAT_VERSION, ModelCard

    old = {"format_version": FORMAT_VERSION, "classes": list(cn.CLASSES), "healthy_class": "healthy",
           "disease_classes": ["rust", "powdery_mildew"], "thresholds": {"rust": 0.5, "powdery_mildew": 0.5},
           "input": {"height": 96, "width": 96, "channels": 3, "dtype": "uint8"}}
    card = ModelCard.model_validate(old)
    assert card.working_gsd_mm is None and card.gsd_recall is None
    new = ModelCard.model_validate(old | {"working_gsd_mm": 4.0, "gsd_recall": {"recall_by_gsd_mm": {}}})
    assert new.to_dict()["working_gsd_mm"] == 4.0


def test_the_margin_sees_the_camera_clip() -> None:
    """The measurement has teeth for clipping: the earlier stripe-rust band (232-240, 170-180, 30-38) is
    what an orange leaf-rust pustule becomes when red clips, so it lies within MARGIN of training (jitter included)."""
    _, clipped, _ = cn._training_reach()
    old = np.array([[232.0, 170.0, 30.0], [240.0, 180.0, 38.0]])
    band = cn._jittered(np.stack([cn.along(old, t) for t in np.linspace(0, 1, 8)]), cn.JITTER)
    assert cn.nearest_distance(band, clipped, (1.0, 1.0)) < MARGIN
    assert (clipped.max(axis=1) <= 255.0).all()


def test_saturation_keeps_luma_and_range() -> None:
    rgb = np.array([[[200.0, 108.0, 36.0], [60.0, 110.0, 40.0]]], np.float32)
    luma = rgb @ cn.LUMA
    for s in (0.4, 1.0, 1.1):
        out = cn.saturate(rgb, s)
        assert np.allclose(out @ cn.LUMA, luma, atol=0.5)
        assert out.min() >= 0 and out.max() <= 255
    grey = cn.saturate(rgb, 0.0)
    assert np.allclose(grey[..., 0], grey[..., 2], atol=1e-3)


def test_scenes_draw_the_wider_camera_in_range() -> None:
    rng = np.random.default_rng(5)
    scenes = [cn.sample_scene(c, rng) for c in ("healthy", "rust", "powdery_mildew") for _ in range(40)]
    ex = np.array([s.exposure for s in scenes])
    sat = np.array([s.saturation for s in scenes])
    assert cn.CAMERA_EXPOSURE[0] <= ex.min() and ex.max() <= cn.CAMERA_EXPOSURE[1] and ex.max() > 2 * ex.min()
    assert cn.CAMERA_SATURATION[0] <= sat.min() and sat.max() <= cn.CAMERA_SATURATION[1]
