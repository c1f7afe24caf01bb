"""One real quick build, end to end: the bundle contract, the int8 model, hashes, missing compiler."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from compile.bundle import verify_bundle
from compile.config import load_build_config
from compile.data import iterate_images, make_splits
from compile.metrics import decide
from compile.synthetic import CLASSES
from compile.tflite_check import check_model


def card_of(path: Path) -> dict:
    return json.loads((path / "model_card.json").read_text())


def test_missing_compiler_gives_clear_error_after_complete_int8_bundle(quick_bundle) -> None:
    proc = quick_bundle.proc
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "edgetpu_compiler not found" in proc.stderr
    assert "apt-get install edgetpu-compiler" in proc.stderr and "web compiler" in proc.stderr
    card = card_of(quick_bundle.path)
    assert card["edgetpu"] == card["edgetpu"] | {"compiled": False, "cpu_only": False,
                                                 "reason": "edgetpu_compiler not found", "summary": None}
    assert not list(quick_bundle.path.glob("*_edgetpu.*"))
    assert verify_bundle(quick_bundle.path) == []


def test_bundle_follows_the_contract(quick_bundle) -> None:
    b = quick_bundle.path
    card = card_of(b)
    assert card["format_version"] == 1 and card["profile"] == "quick"
    assert card["classes"] == list(CLASSES) and card["healthy_class"] == "healthy"
    assert card["disease_classes"] == ["rust", "powdery_mildew"]
    assert card["input"]["height"] == card["input"]["width"] == 96
    assert (card["input"]["dtype"], card["input"]["color"], card["input"]["channels"]) == ("uint8", "RGB", 3)
    assert set(card["thresholds"]) == {"rust", "powdery_mildew"}
    assert all(0 < t < 1 for t in card["thresholds"].values())
    assert (b / "labels.txt").read_text().split() == list(CLASSES)
    for rel in ("model_int8.tflite", "labels.txt", "report/metrics.json", "report/training_curves.png",
                "report/threshold_recall.png", "report/confusion_matrix_float.png", "report/confusion_matrix_int8.png",
                "report/roc_curves.png", "report/feature_maps.png"):
        assert rel in card["files"], rel
        assert (b / rel).stat().st_size == card["files"][rel]["bytes"]
    for side in ("float", "int8"):
        m = card["metrics"][side]
        assert set(m["recall"]) == set(CLASSES) and 0 <= m["accuracy"] <= 1
        assert m["cost"]["cost_missed_each"] == 75000 and m["cost"]["cost_false_alarm_each"] == 20
    assert card["metrics"]["agreement"] >= 0.9
    held = card["metrics"]["heldout"]  # the held-out factors, scored beside the test split
    assert held["images"] == card["training"]["data"]["counts"]["test"]["rust"] * 3
    assert set(held["int8_by_factor"]) == {"leaf_colour", "rust_colour", "crop", "haze"}
    assert sum(f["images"] for f in held["int8_by_factor"].values()) == held["images"]
    worst = min(held["int8_by_factor"].values(), key=lambda f: f["accuracy"])
    assert held["headline"]["accuracy"] == worst["accuracy"]  # the headline is the worst factor
    assert held["int8_by_factor"][held["headline"]["factor"]] == worst
    for side in ("float", "int8"):
        assert 0 <= held[side]["accuracy"] <= 1 and set(held[side]["recall"]) == set(CLASSES)
        assert set(held[side]["roc_auc"]) == {*CLASSES, "macro"}
    assert "report/confusion_matrix_heldout_int8.png" in card["files"]
    # Canopy views at 1-64 mm/px are a far harder task than leaf close-ups for the quick profile's small
    # CNN: the bars here are what it must not fall below, not what a bundle to fly needs (the random-
    # ResNet quick profile it replaced reached 0.71; the small CNN 0.85, docs/TRAINING_DATA.md).
    assert card["metrics"]["int8"]["accuracy"] >= 0.8
    # the quick profile flags at even odds (evaluate.min_threshold 0.5: the world's healthy canopy is not the
    # validation split's), where int8 disease recall on the test split is 0.84; the card says the 0.99 target was missed
    assert card["metrics"]["int8"]["at_thresholds"]["disease_recall"] >= 0.75
    assert all(t >= 0.5 for t in card["thresholds"].values())
    sel = card["threshold_selection"]
    assert sel["min_threshold"] == 0.5
    assert all(not d["target_reached"] for d in sel["detail"].values() if d["val_recall"] < sel["target_recall"])
    ladder = card["gsd_recall"]
    assert card["working_gsd_mm"] == ladder["working_gsd_mm"] and ladder["stage"] == "moderate"
    assert list(ladder["recall_by_gsd_mm"]) == ["1", "2", "4", "8", "16", "32", "64"]
    for row in ladder["recall_by_gsd_mm"].values():
        assert row["worst"] == min(row["rust"], row["powdery_mildew"]) and 0 <= row["false_alarm_rate"] <= 1
    passing = [float(g) for g, row in ladder["recall_by_gsd_mm"].items() if row["worst"] >= 0.9]
    assert card["working_gsd_mm"] is None or card["working_gsd_mm"] in passing
    assert card["tools"]["tensorflow"] and card["tools"]["python"].startswith("3.11")
    assert card["training"]["weights"] == "none" and card["training"]["epochs_run"] >= 1
    metrics = json.loads((b / "report" / "metrics.json").read_text())
    assert np.asarray(metrics["int8"]["argmax"]["confusion_matrix"]).sum() == card["metrics"]["test_images"]
    assert not list(b.parent.glob(".bundle.staging-*"))  # staging folders are cleaned up


def test_small_backbone_is_said_loudly_and_trained_whole(quick_bundle) -> None:
    """The quick profile is the small CNN trained from scratch: the card, report and output say it is no ResNet-50."""
    card = card_of(quick_bundle.path)
    assert card["backbone_weights"].startswith("none (small CNN")
    (warning,) = card["warnings"]
    assert "small CNN" in warning and "not ResNet-50" in warning and "not ImageNet transfer learning" in warning
    assert "from scratch on synthetic data" in warning and "--weights imagenet" in warning
    metrics = json.loads((quick_bundle.path / "report" / "metrics.json").read_text())
    assert metrics["warnings"] == card["warnings"] and metrics["backbone_weights"] == card["backbone_weights"]
    assert "WARNING: backbone: small CNN, not ResNet-50" in quick_bundle.proc.stdout
    t = card["training"]
    assert t["backbone"] == ("small CNN (3 convolutions, every weight learned from synthetic data; Gaussian "
                             "low-pass sigma 1.5 px in front)")
    assert t["config"]["model"]["backbone"] == "small" and t["config"]["model"]["lowpass_px"] == 1.5
    assert t["head_stages"] is None and t["trainable_stages"] is None  # no ResNet stages
    assert "0-255 to [-1, 1]" in card["input"]["preprocessing"]
    # every layer trains: no activation cache, the whole net on images made once and kept in memory
    assert t["activation_cache"] is None
    assert t["activation_cache_reason"] == "off: every layer of the small backbone trains"
    assert 0 < t["image_cache_mb"] < 100
    assert t["trainable_parameters"] > 0.98 * t["parameters"]  # all but the fixed front and features norm
    assert t["augment_active"] is False  # quick: no augmentation


def test_roc_auc_in_card_and_report_matches_the_int8_scores(quick_bundle) -> None:
    from compile.quantize import Int8Runner
    from compile.roc import roc_auc

    card = card_of(quick_bundle.path)
    metrics = json.loads((quick_bundle.path / "report" / "metrics.json").read_text())
    for side in ("float", "int8"):
        auc = card["metrics"][side]["roc_auc"]
        assert set(auc) == {*CLASSES, "macro"} and all(0.5 < v <= 1 for v in auc.values())  # better than chance
        assert metrics[side]["roc_auc"] == auc
        for cls in CLASSES:
            curve = metrics["roc"][side][cls]
            assert curve["fpr"][0] == curve["tpr"][0] == 0 and curve["fpr"][-1] == curve["tpr"][-1] == 1
    cfg = load_build_config(Path(__file__).resolve().parents[2] / "configs" / "build.yaml", "quick")
    test = make_splits(cfg.data).test
    runner = Int8Runner(quick_bundle.path / "model_int8.tflite")
    scores, labels = [], []
    for img, label in iterate_images(test, card["input"]["height"], cfg.data.seed):
        scores.append(runner.scores(img))
        labels.append(label)
    scores, labels = np.asarray(scores), np.asarray(labels)
    for j, cls in enumerate(CLASSES):
        assert roc_auc(labels == j, scores[:, j]) == pytest.approx(card["metrics"]["int8"]["roc_auc"][cls])


def test_hashes_verify_and_tampering_is_detected(quick_bundle, tmp_path: Path) -> None:
    copy = tmp_path / "b"
    shutil.copytree(quick_bundle.path, copy)
    assert verify_bundle(copy) == []
    with (copy / "labels.txt").open("a") as f:
        f.write("blight\n")
    (copy / "extra.bin").write_bytes(b"x")
    (copy / "report" / "metrics.json").unlink()
    problems = "\n".join(verify_bundle(copy))
    assert "labels.txt: sha256 differs" in problems
    assert "extra.bin: present but not listed" in problems
    assert "report/metrics.json: listed but missing" in problems


def test_int8_model_runs_in_litert_with_uint8_io_and_agrees_with_float(quick_bundle) -> None:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(quick_bundle.path / "model_int8.tflite"), num_threads=2)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    assert inp["dtype"] == np.uint8 and out["dtype"] == np.uint8
    size = card_of(quick_bundle.path)["input"]["height"]
    assert list(inp["shape"]) == [1, size, size, 3] and list(out["shape"]) == [1, 3]
    # raw camera pixels go in as they are: the calibration pinned the input range to 0-255
    assert inp["quantization"] == (1.0, 0)
    import keras

    float_model = keras.models.load_model(quick_bundle.float_model)
    from compile.canopy import ladder_image

    # canopy views, what the quick profile trains on: on leaf close-ups, out of its domain, one CI build's
    # int8 scores moved 0.061 from the float model's on average, past this bound
    rng = np.random.default_rng(99)
    images = np.stack([ladder_image(CLASSES[i % 3], size, float(2 ** (i % 6)), rng) for i in range(24)])
    f_scores = float_model.predict(images.astype(np.float32), verbose=0)
    q_scores = []
    for img in images:
        interp.set_tensor(inp["index"], img[None])
        interp.invoke()
        raw = interp.get_tensor(out["index"])[0].astype(np.float32)
        q_scores.append((raw - out["quantization"][1]) * out["quantization"][0])
    q_scores = np.asarray(q_scores)
    assert np.allclose(q_scores.sum(axis=1), 1.0, atol=0.03)
    assert np.mean(q_scores.argmax(1) == f_scores.argmax(1)) >= 0.9
    assert np.abs(q_scores - f_scores).mean() < 0.05


def test_card_int8_metrics_reproduce_from_the_bundle(quick_bundle) -> None:
    """The int8 test metrics in the card are what the shipped file and thresholds really give."""
    from compile.quantize import Int8Runner

    card = card_of(quick_bundle.path)
    cfg = load_build_config(Path(__file__).resolve().parents[2] / "configs" / "build.yaml", "quick")
    test = make_splits(cfg.data).test
    runner = Int8Runner(quick_bundle.path / "model_int8.tflite")
    scores, labels = [], []
    for img, label in iterate_images(test, card["input"]["height"], cfg.data.seed):
        scores.append(runner.scores(img))
        labels.append(label)
    scores, labels = np.asarray(scores), np.asarray(labels)
    acc = float(np.mean(scores.argmax(1) == labels))
    assert acc == pytest.approx(card["metrics"]["int8"]["accuracy"])
    pred = decide(scores, card["thresholds"])
    assert float(np.mean(pred == labels)) == pytest.approx(card["metrics"]["int8"]["at_thresholds"]["accuracy"])


def test_precheck_passes_the_built_model(quick_bundle) -> None:
    report = check_model(quick_bundle.path / "model_int8.tflite")
    assert report.ok, report.errors
    names = {op.op for op in report.ops}
    assert "CONV_2D" in names and "STRIDED_SLICE" not in names and "PACK" not in names
    assert all(op.on_tpu for op in report.ops)
    assert card_of(quick_bundle.path)["edgetpu"]["precheck"]["ok"] is True


def test_quick_build_is_quick(quick_bundle) -> None:
    """The quick profile's work stays bounded; the wall clock only catches a runaway (~5x the 106 s it took idle).

    Under load from other jobs on 2 cores the same build measured 420-870 s, so a tight wall-clock
    limit tests the machine, not the build: the bound that matters is the work done. (The small CNN quick
    build took 90 s beside other jobs on 2 shared cores, the random-ResNet one it replaced 71-107 s.)
    """
    card = card_of(quick_bundle.path)
    t = card["training"]
    assert card["input"]["height"] == 96
    # the whole small CNN trains: at most 12 passes of the 2,100 training images, each image made once
    assert t["epochs_run"] <= 12 and t["steps_per_epoch"] * t["batch_size"] <= 2200 and t["batch_size"] == 32
    assert t.get("image_cache_mb") and t.get("image_cache_seconds") is not None  # images drawn once, not per epoch
    assert t["parameters"] < 100_000  # three convolutions and the head
    assert quick_bundle.seconds < 600, quick_bundle.seconds


def test_card_carries_the_sensor_model_calibrated_on_validation(quick_bundle) -> None:
    """The evidence grid's sensor model is in the card, counted on the validation split, and loads in the payload."""
    from payload.bundle import load_bundle
    from payload.geo.sensor import sensor_model_for_card

    card = card_of(quick_bundle.path)
    block = card["sensor_model"]
    assert block["source"] == "validation" and block["images"] == card["metrics"]["validation_images"]
    assert sum(sum(row.values()) for row in block["counts"].values()) == block["images"]
    model = sensor_model_for_card(load_bundle(quick_bundle.path).card)
    assert model.source == "validation" and model.diseases == tuple(card["disease_classes"])
    assert all(abs(v) <= block["llr_cap"] for row in block["llr"].values() for v in row)
