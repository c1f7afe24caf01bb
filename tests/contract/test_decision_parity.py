"""Thresholds are chosen by the build and applied by the drone: both must reach the same verdicts.

The build evaluates int8 scores it holds as float64; the drone dequantizes to float32. The
contract (payload.bundle) compares in float32 on both sides. These tests run the same scores
through compile's threshold choice and decision and through the payload's Bundle.decide (with the
thresholds after their round trip through model_card.json), and require identical decisions,
including rows placed exactly on the float32/float64 boundary of a threshold.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compile.metrics import THRESHOLD_GRID, choose_thresholds, classification_report
from compile.metrics import decide as build_decide
from payload.bundle import CLASSES, DISEASES, Bundle, ModelCard, dequantize

# thresholds of the build's grid that float32 rounds DOWN: a float32 score equal to float32(t) is
# below t in float64, so a float64 comparison and the drone's float32 one disagree on it
ROUNDED_DOWN = [float(t) for t in THRESHOLD_GRID if float(np.float32(t)) < float(t)]


def _scores(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8-quantized softmax-like scores (as the int8 model gives them) and true labels."""
    y = rng.integers(0, len(CLASSES), n)
    logits = rng.normal(0.0, 1.0, (n, len(CLASSES)))
    logits[np.arange(n), y] += rng.uniform(0.0, 2.5, n)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    raw = np.clip(np.rint(p * 256), 0, 255).astype(np.uint8)
    return dequantize(raw, 1 / 256, 0), y


def _boundary_rows(thresholds: dict[str, float]) -> np.ndarray:
    """float32 rows with each disease's score exactly float32(threshold) and the others low."""
    rows = []
    for cls, t in thresholds.items():
        row = np.full(len(CLASSES), 0.01, dtype=np.float32)
        row[CLASSES.index(cls)] = np.float32(t)
        row[0] = np.float32(0.9)
        rows.append(row)
    return np.asarray(rows, dtype=np.float32)


def _payload_bundle(card: ModelCard) -> Bundle:
    """The payload's Bundle from the card as compile writes it (thresholds through JSON)."""
    read = ModelCard.model_validate_json(card.to_json())
    return Bundle(Path("."), read, tuple(read.classes), read.healthy_class, tuple(read.disease_classes),
                  {d: float(read.thresholds[d]) for d in read.disease_classes}, read.input.height,
                  read.input.width, Path("model_int8.tflite"), None, "0" * 64)


def _card(thresholds: dict[str, float]) -> ModelCard:
    return ModelCard.model_validate({
        "format_version": 1, "classes": list(CLASSES), "healthy_class": "healthy",
        "disease_classes": list(DISEASES), "thresholds": thresholds,
        "input": {"height": 96, "width": 96, "channels": 3, "dtype": "uint8", "color": "RGB"},
    })


def test_grid_has_thresholds_that_float32_rounds_down() -> None:
    # without them the boundary rows below would prove nothing
    assert ROUNDED_DOWN


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_build_choice_and_flight_decision_agree(seed: int) -> None:
    rng = np.random.default_rng(seed)
    val32, y_val = _scores(rng, 600)
    test32, _ = _scores(rng, 600)
    # the build holds int8 scores as float64 (compile.build.int8_scores)
    chosen = choose_thresholds(val32.astype(np.float64), y_val, 0.95, 1500.0, 0.4)["thresholds"]
    assert set(chosen) == set(DISEASES)
    bundle = _payload_bundle(_card(chosen))
    assert bundle.thresholds == chosen  # the JSON round trip keeps every threshold exactly

    for scores32 in (val32, test32, _boundary_rows(chosen)):
        want = build_decide(scores32.astype(np.float64), chosen)
        got = np.array([CLASSES.index(d.label) for d in bundle.decide(scores32)])
        np.testing.assert_array_equal(got, want)


def test_boundary_scores_decide_alike_where_float64_would_not() -> None:
    thresholds = {DISEASES[0]: ROUNDED_DOWN[0], DISEASES[1]: ROUNDED_DOWN[-1]}
    rows32 = _boundary_rows(thresholds)
    # a float64 comparison of the same numbers would NOT flag these rows...
    naive64 = [rows32.astype(np.float64)[i, CLASSES.index(c)] >= t for i, (c, t) in enumerate(thresholds.items())]
    assert not any(naive64)
    # ...the drone (float32) flags them, and so does the build's evaluation
    flight = _payload_bundle(_card(thresholds)).decide(rows32)
    assert [d.flagged for d in flight] == [True, True]
    assert [d.label for d in flight] == list(thresholds)
    build = build_decide(rows32.astype(np.float64), thresholds)
    assert [CLASSES[i] for i in build] == list(thresholds)
    # and the build's reported recall counts them as flagged, as the drone will
    rep = classification_report(np.array([CLASSES.index(c) for c in thresholds]), build)
    assert rep["disease_recall"] == 1.0


def test_threshold_choice_sees_boundary_scores_as_the_drone_does() -> None:
    t = ROUNDED_DOWN[0]
    cls = DISEASES[0]
    j = CLASSES.index(cls)
    # one diseased tile exactly at float32(t), one just below the next grid step: recall 1.0 needs t
    rows = np.full((2, len(CLASSES)), 0.0, dtype=np.float32)
    rows[0, j] = np.float32(t)
    rows[1, j] = np.float32(0.99)
    y = np.array([j, j])
    chosen = choose_thresholds(rows.astype(np.float64), y, 1.0, 1500.0, 0.4)["thresholds"][cls]
    assert chosen >= t  # the build may pick t itself (ties go to the lowest threshold)...
    flight = _payload_bundle(_card({cls: chosen, DISEASES[1]: 0.5})).decide(rows)
    assert all(d.flagged and d.label == cls for d in flight)  # ...and the drone then reaches recall 1.0


def test_dequantize_is_exact_on_uint8_steps() -> None:
    raw = np.arange(256, dtype=np.uint8)[None, :]
    s = dequantize(raw, 1 / 256, 0)
    assert s.dtype == np.float32
    np.testing.assert_array_equal(s[0].astype(np.float64), np.arange(256) / 256)
    assert dequantize(np.array([[0.25]], np.float32), 0.0, 0).dtype == np.float32
