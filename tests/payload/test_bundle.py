"""The bundle loader refuses every kind of bad bundle with a message naming the file and the problem."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from payload.bundle import load_bundle
from payload.errors import BundleError, UserError
from tests.payload import tinymodel


def expect(path: Path, *fragments: str) -> str:
    with pytest.raises(BundleError) as info:
        load_bundle(path)
    msg = str(info.value)
    for f in fragments:
        assert f in msg, msg
    return msg


def test_good_bundle_loads(tiny_bundle_dir: Path, tiny_tpu_bundle_dir: Path) -> None:
    b = load_bundle(tiny_bundle_dir)
    assert b.labels == ("healthy", "rust", "powdery_mildew")
    assert (b.input_height, b.input_width) == (32, 32)
    assert b.thresholds == {"rust": 0.3, "powdery_mildew": 0.3}
    assert b.cpu_model.name == "model_int8.tflite"
    assert b.edgetpu_model is None and "edgetpu_compiler not found" in b.edgetpu_note
    assert len(b.model_sha256) == 64
    t = load_bundle(tiny_tpu_bundle_dir)
    assert t.edgetpu_model is not None and t.edgetpu_model.name == "model_int8_edgetpu.tflite"
    assert issubclass(BundleError, UserError)


def test_missing_folder_and_card(tmp_path: Path, bundle_copy: Path) -> None:
    expect(tmp_path / "nope", "folder not found", "model.bundle")
    (bundle_copy / "model_card.json").unlink()
    expect(bundle_copy, "model_card.json is missing")


def test_corrupt_card(bundle_copy: Path) -> None:
    (bundle_copy / "model_card.json").write_text('{"format_version": 1, "classes": [')
    expect(bundle_copy, "model_card.json is not valid JSON")


def test_wrong_format_version_and_missing_keys(bundle_copy: Path) -> None:
    tinymodel.rewrite_card(bundle_copy, format_version=7)
    expect(bundle_copy, "format_version 7")
    card = json.loads((bundle_copy / "model_card.json").read_text())
    card["format_version"] = 1
    del card["thresholds"]
    (bundle_copy / "model_card.json").write_text(json.dumps(card))
    expect(bundle_copy, "lacks the key 'thresholds'")


def test_hash_mismatch_names_the_file(bundle_copy: Path) -> None:
    with (bundle_copy / "model_int8.tflite").open("ab") as f:
        f.write(b"\0")
    expect(bundle_copy, "sha256 mismatch for model_int8.tflite", "copy the bundle again")


def test_truncated_label_file_is_a_hash_mismatch(bundle_copy: Path) -> None:
    (bundle_copy / "labels.txt").write_text("healthy\nrust\n")
    expect(bundle_copy, "sha256 mismatch for labels.txt")


def test_listed_file_missing(bundle_copy: Path) -> None:
    (bundle_copy / "report" / "metrics.json").unlink()
    expect(bundle_copy, "report/metrics.json is listed", "missing")


def test_needed_file_not_listed(bundle_copy: Path) -> None:
    card = json.loads((bundle_copy / "model_card.json").read_text())
    del card["files"]["labels.txt"]
    (bundle_copy / "model_card.json").write_text(json.dumps(card))
    expect(bundle_copy, "labels.txt is not listed")


def test_unlisted_edgetpu_model_is_refused(bundle_copy: Path) -> None:
    (bundle_copy / "model_int8_edgetpu.tflite").write_bytes(b"not listed")
    expect(bundle_copy, "model_int8_edgetpu.tflite is present but not listed")


def test_labels_disagree_with_card(bundle_copy: Path) -> None:
    (bundle_copy / "labels.txt").write_text("healthy\npowdery_mildew\nrust\n")
    tinymodel.rehash(bundle_copy)
    expect(bundle_copy, "labels.txt lists", "different builds")


def test_card_input_not_uint8(bundle_copy: Path) -> None:
    tinymodel.rewrite_card(bundle_copy, input={"height": 32, "width": 32, "channels": 3, "dtype": "float32"})
    expect(bundle_copy, "input must be uint8", "float32")


def test_bad_threshold(bundle_copy: Path) -> None:
    tinymodel.rewrite_card(bundle_copy, thresholds={"rust": 1.5, "powdery_mildew": 0.2})
    expect(bundle_copy, "threshold for 'rust' is 1.5")


def test_unknown_disease_class(bundle_copy: Path) -> None:
    tinymodel.rewrite_card(bundle_copy, disease_classes=["rust", "blight"])
    expect(bundle_copy, "disease_classes")


def test_decision_rule(tiny_bundle_dir: Path) -> None:
    b = load_bundle(tiny_bundle_dir)  # thresholds 0.3 each; labels healthy, rust, powdery_mildew
    scores = np.array(
        [
            [0.80, 0.10, 0.10],  # nothing passes: argmax healthy, not flagged
            [0.40, 0.31, 0.29],  # rust passes although healthy is the argmax
            [0.10, 0.45, 0.45],  # both pass, tie: first of the highest
            [0.20, 0.35, 0.45],  # both pass: the higher disease wins
            [0.25, 0.29, 0.46],  # only mildew passes
            [0.40, 0.30, 0.30],  # exactly at the threshold counts
        ],
        dtype=np.float32,
    )
    got = [(d.label, round(d.confidence, 2), d.flagged) for d in b.decide(scores)]
    assert got == [
        ("healthy", 0.8, False),
        ("rust", 0.31, True),
        ("rust", 0.45, True),
        ("powdery_mildew", 0.45, True),
        ("powdery_mildew", 0.46, True),
        ("rust", 0.3, True),
    ]
    with pytest.raises(ValueError):
        b.decide(np.zeros((1, 4), np.float32))


def test_card_from_a_newer_build_loads_and_keeps_its_extra_keys(bundle_copy: Path) -> None:
    tinymodel.rewrite_card(bundle_copy, calibration={"method": "temperature", "t": 1.3}, zones_schema=2)
    b = load_bundle(bundle_copy)
    assert b.card.to_dict()["calibration"] == {"method": "temperature", "t": 1.3}
    # a rewrite (as attach_edgetpu does) keeps them, after the known keys
    again = b.card.with_files(b.card.to_dict()["files"]).to_dict()
    assert again["zones_schema"] == 2 and list(again)[-2:] == ["calibration", "zones_schema"]


def test_card_from_an_older_build_without_optional_keys_loads(bundle_copy: Path) -> None:
    card = json.loads((bundle_copy / "model_card.json").read_text())
    for key in ("created_utc", "profile", "edgetpu", "metrics", "training", "tools"):
        del card[key]
    (bundle_copy / "model_card.json").write_text(json.dumps(card))
    b = load_bundle(bundle_copy)
    assert b.thresholds == {"rust": 0.3, "powdery_mildew": 0.3}
    assert b.edgetpu_note == "the bundle was built without edgetpu_compiler"
    assert set(b.card.to_dict()) == set(card)  # nothing invented on the way through


def test_card_types_are_checked_not_coerced(bundle_copy: Path) -> None:
    tinymodel.rewrite_card(bundle_copy, thresholds={"rust": "0.3", "powdery_mildew": 0.3})
    expect(bundle_copy, "thresholds.rust", "valid number")
