"""Build paths on a tiny stand-in network: late failure keeps the old bundle, --cpu-only, compiler run."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from compile import build as build_mod
from compile import train as train_mod
from compile.bundle import finalize, staging_dir, verify_bundle
from compile.config import load_build_config
from compile.errors import NothingMappedError, QuantizationError
from payload.bundle import ModelCard

ROOT = Path(__file__).resolve().parents[2]


def _tiny_train(cfg, splits, workdir):
    import keras

    size = cfg.model.input_size
    inp = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(4, 3, name="c")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(3, activation="softmax")(x)
    return keras.Model(inp, out), {"loss": [1.0]}, {"epochs_run": 1}


def _tiny_cfg():
    cfg = load_build_config(ROOT / "configs" / "build.yaml", "quick")
    return cfg.model_copy(update={
        "model": cfg.model.model_copy(update={"input_size": 32}),
        "data": cfg.data.model_copy(update={"synthetic_per_class": 10}),
        "quantize": cfg.quantize.model_copy(update={"representative_images": 4, "agreement_floor": 0.0}),
    })


def test_cpu_only_build_succeeds_and_says_so(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(train_mod, "train", _tiny_train)
    monkeypatch.setenv("PATH", "/nonexistent")  # no compiler anywhere: --cpu-only must not look for one
    result = build_mod.run_build(_tiny_cfg(), tmp_path / "b", profile="quick", cpu_only=True)
    assert result.compiler_error is None
    e = result.card["edgetpu"]
    assert e["cpu_only"] is True and e["compiled"] is False and "--cpu-only" in e["reason"]
    assert verify_bundle(tmp_path / "b") == []


def test_build_with_the_compiler_ships_both_models(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(train_mod, "train", _tiny_train)
    monkeypatch.delenv("FAKE_EDGETPU_MODE", raising=False)
    monkeypatch.setenv("FAKE_EDGETPU_PYTHON", sys.executable)  # the double reads the model with this venv
    cfg = _tiny_cfg()
    cfg = cfg.model_copy(update={"edgetpu": cfg.edgetpu.model_copy(
        update={"compiler": str(ROOT / "tests" / "compile" / "fake_edgetpu_compiler")})})
    result = build_mod.run_build(cfg, tmp_path / "b", profile="quick")
    assert result.compiler_error is None
    card = result.card
    assert card["edgetpu"]["compiled"] is True and card["edgetpu"]["summary"]["fully_mapped"] is True
    assert {"model_int8.tflite", "model_int8_edgetpu.tflite", "model_int8_edgetpu.log"} <= set(card["files"])
    assert verify_bundle(tmp_path / "b") == []


def test_build_whose_model_maps_nothing_is_not_compiled(tmp_path: Path, monkeypatch) -> None:
    """0 Edge TPU subgraphs ("compiled successfully", every op on the CPU) fails the build; the card says why."""
    monkeypatch.setattr(train_mod, "train", _tiny_train)
    monkeypatch.setenv("FAKE_EDGETPU_MODE", "zero_subgraphs")
    monkeypatch.setenv("FAKE_EDGETPU_PYTHON", sys.executable)
    cfg = _tiny_cfg()
    cfg = cfg.model_copy(update={"edgetpu": cfg.edgetpu.model_copy(
        update={"compiler": str(ROOT / "tests" / "compile" / "fake_edgetpu_compiler")})})
    result = build_mod.run_build(cfg, tmp_path / "b", profile="quick")
    assert isinstance(result.compiler_error, NothingMappedError)  # the CLI raises it: exit 2
    e = result.card["edgetpu"]
    assert e["compiled"] is False and "0 Edge TPU subgraphs" in e["reason"] and e["summary"]["subgraphs"] == 0
    assert "model_int8_edgetpu.tflite" not in result.card["files"]
    assert verify_bundle(tmp_path / "b") == []


def test_agreement_below_floor_keeps_the_old_bundle(quick_bundle, tmp_path: Path, monkeypatch) -> None:
    good = tmp_path / "bundle"
    shutil.copytree(quick_bundle.path, good)
    before = (good / "model_card.json").read_bytes()
    monkeypatch.setattr(train_mod, "train", _tiny_train)
    real_scores = build_mod.int8_scores

    def disagreeing(*args, **kwargs):
        scores, labels, q = real_scores(*args, **kwargs)
        return np.roll(scores, 1, axis=1), labels, q  # every argmax changes

    monkeypatch.setattr(build_mod, "int8_scores", disagreeing)
    cfg = _tiny_cfg()
    cfg = cfg.model_copy(update={"quantize": cfg.quantize.model_copy(update={"agreement_floor": 0.5})})
    # rolled scores change every argmax but of tiles whose scores tie (the tiny model's are near uniform)
    with pytest.raises(QuantizationError, match=r"agree on only 0\.[0-4]\d\d of the test images \(floor 0\.5\)"):
        build_mod.run_build(cfg, good, profile="quick", cpu_only=True)
    assert (good / "model_card.json").read_bytes() == before
    assert verify_bundle(good) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no staging or .old folders left


def test_finalize_replaces_an_existing_bundle(tmp_path: Path) -> None:
    dest = tmp_path / "b"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    staging = staging_dir(dest)
    (staging / "labels.txt").write_text("healthy\n")
    card = ModelCard.model_validate({
        "format_version": 1, "classes": ["healthy", "rust"], "healthy_class": "healthy", "disease_classes": ["rust"],
        "input": {"height": 8, "width": 8, "channels": 3, "dtype": "uint8"}, "thresholds": {"rust": 0.5}})
    finalize(staging, dest, card)
    assert sorted(p.name for p in dest.iterdir()) == ["labels.txt", "model_card.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
    assert verify_bundle(dest) == []
