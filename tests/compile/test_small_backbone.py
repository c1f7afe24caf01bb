"""The small backbone (`model.backbone: small`): graph, fixed front, export, int8, config rules, card."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from compile.config import AugmentConfig, ModelConfig, load_build_config
from compile.model import (
    SMALL_NAME,
    build_model,
    calibrate_batchnorm,
    check_weights,
    describe_weights,
    export_model,
    front_model,
    gaussian_kernel,
    gaussian_kernel_1d,
    is_small,
    tail_model,
)
from tests.configtests import expect_config_error, set_path, write_yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "configs" / "build.yaml"
SIZE = 48


def small_cfg(lowpass: float = 1.5, size: int = SIZE) -> ModelConfig:
    return ModelConfig(backbone="small", weights="none", lowpass_px=lowpass, input_size=size)


def images(n: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype(np.float32)


def composed_lowpass(trunk) -> np.ndarray:
    """The (k, k) kernel of channel 0 that the column and row passes make together."""
    v = trunk.get_layer("lowpass_v").get_weights()[0][:, 0, 0, 0]
    h = trunk.get_layer("lowpass_h").get_weights()[0][0, :, 0, 0]
    return np.outer(v, h)


def test_lowpass_is_a_fixed_normalised_gaussian_of_the_configured_width() -> None:
    for sigma in (0.7, 1.5, 2.6):
        k = gaussian_kernel(sigma)
        assert k.shape == (2 * math.ceil(3 * sigma) + 1,) * 2
        assert k.sum() == pytest.approx(1.0, abs=1e-6) and gaussian_kernel_1d(sigma).sum() == pytest.approx(1.0)
        assert k[k.shape[0] // 2, k.shape[1] // 2] == k.max()
    with pytest.raises(ValueError, match="sigma > 0"):
        gaussian_kernel_1d(0.0)
    trunk = build_model(small_cfg(1.5)).get_layer(SMALL_NAME)
    got = composed_lowpass(trunk)
    assert got.shape == (11, 11) and got.sum() == pytest.approx(1.0, abs=1e-6)
    assert np.allclose(got, gaussian_kernel(1.5), atol=1e-7)
    for name in ("scale_to_unit", "lowpass_v", "lowpass_h"):
        layer = trunk.get_layer(name)
        assert not layer.trainable and not layer.trainable_weights, name
        # every channel blurred alike, none mixed into another (depthwise)
    assert all(np.allclose(trunk.get_layer("lowpass_v").get_weights()[0][:, 0, c, 0], gaussian_kernel_1d(1.5))
               for c in range(3))
    # every learnt layer trains; the fixed front does not
    learnt = {layer.name for layer in trunk.layers if layer.trainable_weights}
    assert learnt == {"small_conv1", "small_conv2", "small_conv3"}


def test_fixed_front_maps_0_255_to_unit_range_and_keeps_flat_images_flat() -> None:
    import keras

    trunk = build_model(small_cfg(1.5)).get_layer(SMALL_NAME)
    front = keras.Model(trunk.input, trunk.get_layer("lowpass_h").output)
    scale = keras.Model(trunk.input, trunk.get_layer("scale_to_unit").output)
    x = np.zeros((2, SIZE, SIZE, 3), np.float32)
    x[1] = 255.0
    assert np.allclose(np.asarray(scale(x)), np.where(x > 0, 1.0, -1.0), atol=1e-6)
    flat = np.full((1, SIZE, SIZE, 3), 200.0, np.float32)
    out = np.asarray(front(flat))[0]
    inner = out[6:-6, 6:-6]  # away from the 'same' padding's zeros: 200 -> 200/127.5 - 1, unchanged by the blur
    assert np.allclose(inner, 200.0 / 127.5 - 1.0, atol=1e-5)
    # a one-pixel checkerboard (the band the low-pass is there to remove) all but vanishes
    board = (np.indices((SIZE, SIZE)).sum(0) % 2 * 255.0).astype(np.float32)
    y = np.asarray(front(np.repeat(board[None, :, :, None], 3, axis=3)))[0, 6:-6, 6:-6]
    assert np.ptp(y) < 0.01 * 2.0
    no_lowpass = build_model(small_cfg(0.0)).get_layer(SMALL_NAME)
    assert not [layer for layer in no_lowpass.layers if layer.name.startswith("lowpass")]


def test_small_graph_trains_exports_quantizes_and_passes_the_edgetpu_precheck(tmp_path: Path) -> None:
    import keras

    from compile.quantize import Int8Runner, convert_int8
    from compile.tflite_check import check_model

    keras.utils.set_random_seed(3)
    model = build_model(small_cfg(), AugmentConfig(enabled=True), seed=0)  # augmentation on: export must drop it
    assert is_small(model) and model.name == "cropscout_small"
    assert "augment" in [layer.name for layer in model.layers]
    assert "resnet50" not in [layer.name for layer in model.layers]  # no ResNet in the graph at all
    x = images(16)
    y = np.eye(3, dtype=np.float32)[np.arange(16) % 3]
    calibrate_batchnorm(model, x, ("features_norm",))
    trunk = model.get_layer(SMALL_NAME)
    before = {w.path: np.asarray(w).copy() for w in trunk.weights}
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="categorical_crossentropy")
    model.train_on_batch(x, y)
    changed = {p for p, v in before.items() if not np.array_equal(v, np.asarray(next(
        w for w in trunk.weights if w.path == p)))}
    assert {p.split("/")[-2] for p in changed} == {"small_conv1", "small_conv2", "small_conv3"}  # front fixed

    exported = export_model(model)
    assert exported.input_shape == (1, SIZE, SIZE, 3) and exported.name == "cropscout_small_inference"
    names = [layer.name for layer in exported.layers]
    assert "augment" not in names and not any("dropout" in n for n in names)
    assert np.allclose(exported.predict(x[:1], verbose=0), model.predict(x[:1], verbose=0), atol=1e-5)

    path = convert_int8(exported, (img for img in x), tmp_path / "small_int8.tflite")
    report = check_model(path)
    assert report.ok, report.errors
    ops = {op.op for op in report.ops}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "FULLY_CONNECTED", "SOFTMAX"} <= ops
    assert "REDUCE_MAX" not in ops and all(op.on_tpu for op in report.ops)
    runner = Int8Runner(path)
    q = np.stack([runner.scores(img.astype(np.uint8)) for img in x[:4]])
    f = exported.predict(np.round(x[:4]), verbose=0)
    assert np.abs(q - f).max() < 0.1


def test_small_model_has_nothing_frozen_to_cache_or_load() -> None:
    from compile.actcache import SMALL_NO_CACHE, plan_cache

    model = build_model(small_cfg())
    plan = plan_cache(model, [], 100, 20, 1, 2048, 0, Path("/tmp"))
    assert plan.where is None and plan.reason == SMALL_NO_CACHE
    with pytest.raises(ValueError, match="no frozen part"):
        front_model(model, "features")
    with pytest.raises(ValueError, match="every layer trains"):
        tail_model(model, "features")
    maps = front_model(model, SMALL_NAME)(images(1))  # the feature-map figure's probe: the last conv's maps
    assert tuple(maps.shape) == (1, SIZE // 4, SIZE // 4, 48)
    check_weights(small_cfg())  # nothing to load
    assert describe_weights("none", "small").startswith("none (small CNN")


def test_config_small_needs_weights_none_and_lowpass_needs_small(tmp_path: Path) -> None:
    base = set_path(yaml_example(), "model.backbone", "small")
    p = write_yaml(tmp_path, base)  # the file says weights: imagenet
    expect_config_error(load_build_config, p, "model.weights", "'imagenet'", "model.backbone 'small'",
                        "model.weights: none", "model.backbone: resnet50")
    ok = write_yaml(tmp_path, set_path(set_path(base, "model.weights", "none"), "model.lowpass_px", 1.5), "ok.yaml")
    cfg = load_build_config(ok)
    assert cfg.model.small and cfg.model.lowpass_px == 1.5
    lp = write_yaml(tmp_path, set_path(yaml_example(), "model.lowpass_px", 1.5), "lp.yaml")
    expect_config_error(load_build_config, lp, "model.lowpass_px", "needs model.backbone: small",
                        "model.lowpass_px: 0")
    bad = write_yaml(tmp_path, set_path(base, "model.backbone", "tiny"), "bad.yaml")
    expect_config_error(load_build_config, bad, "model.backbone", "'tiny'")
    with pytest.raises(ValueError, match="model.backbone: small"):
        ModelConfig(lowpass_px=1.0)


def test_resnet_only_fields_resolve_to_nothing_for_small() -> None:
    cfg = ModelConfig(backbone="small", weights="none", head_stages=["conv5"], trainable_stages=["conv5"])
    assert cfg.resolved_head_stages() == [] and cfg.resolved_trainable_stages() == []
    # configs/build.yaml's head_only schedule is for a frozen backbone: never for small, whose every layer trains
    quick = load_build_config(EXAMPLE, "quick")
    assert quick.train.head_only is not None and quick.resolved_train() is quick.train


def test_quick_profile_is_the_small_backbone_with_a_lowpass() -> None:
    quick = load_build_config(EXAMPLE, "quick")
    m = quick.model
    assert (m.backbone, m.lowpass_px, m.input_size, m.weights) == ("small", 1.5, 96, "none")
    assert not quick.augment.active(m.weights)
    default = load_build_config(EXAMPLE)
    assert default.model.backbone == "resnet50" and default.model.lowpass_px == 0  # the product stays ResNet-50
    assert ModelConfig().backbone == "resnet50"


def test_card_texts_name_the_small_backbone() -> None:
    from compile.build import _backbone_text, _preprocessing_text, learnt_from_text, random_backbone_warnings

    cfg = small_cfg(1.5, 96)
    text = _backbone_text(cfg, learnt_from_text("synthetic", False))
    assert text == ("small CNN (3 convolutions, every weight learned from synthetic data; Gaussian low-pass "
                    "sigma 1.5 px in front)")
    assert "low-pass" not in _backbone_text(small_cfg(0.0, 96))
    assert "labelled flight tiles" in _backbone_text(cfg, learnt_from_text("synthetic", True))
    (warning,) = random_backbone_warnings(describe_weights("none", "small"), small=True)
    for words in ("small CNN", "not ResNet-50", "not ImageNet transfer learning", "from scratch on synthetic data",
                  "offline demos and tests", "default profile and --weights imagenet"):
        assert words in warning, words
    assert "0-255 to [-1, 1]" in _preprocessing_text(cfg) and "sigma 1.5" in _preprocessing_text(cfg)
    resnet = ModelConfig(weights="none")
    assert _backbone_text(resnet) == "ResNet50 stem to conv2 (deeper stages unused by the head: head_stages)"
    assert "random features" in random_backbone_warnings("none (random init)")[0]
    assert random_backbone_warnings("imagenet") == []


def test_cli_weights_flag_on_the_small_profile_names_the_fix(tmp_path: Path) -> None:
    from tests.configtests import run_cli

    out = run_cli(["-m", "compile", "build", "--config", str(EXAMPLE), "--profile", "quick", "--weights", "imagenet",
                   "--cpu-only", "--out", str(tmp_path / "b")], cwd=ROOT, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--weights imagenet" in errors[0], out.stderr[-2000:]
    assert "model.weights" in out.stderr and "model.backbone: resnet50" in out.stderr
    assert "data (synthetic)" not in out.stderr and not (tmp_path / "b").exists()


def yaml_example() -> dict:
    import yaml

    return yaml.safe_load(EXAMPLE.read_text())

