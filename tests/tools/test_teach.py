"""tools.teach: the page's first N tiles answered with the truth, the figures on the second field (no mission flown
here but in the slow case)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from flight_sim.scenario import load_scenario
from flight_sim.world.world import LABEL_OUTSIDE
from payload.geo.looks import LOOK_SCHEMA
from payload.report.review import LABELS_CSV, LABELS_DIR, UNSURE, ReviewApp
from payload.sinks.review import REVIEW_DIR, REVIEW_JSONL, REVIEW_SCHEMA, TILES_DIR
from tools.teach import (
    answer_counts,
    answer_first,
    flight_tile_figures,
    retrain_command,
    review_answer,
    second_field,
    side_figures,
    summary_table,
)

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["healthy", "rust", "powdery_mildew"]
H, W = 40, 80  # a frame: review tiles of 20 x 20 px along its top; the looks' grid 1 x 4 tiles of 20 x 40


def _review_record(tile_id: str, info: float, seq: int, x: int, label: str = "rust") -> dict:
    return {"schema": REVIEW_SCHEMA, "id": tile_id, "kind": "margin", "informativeness": info,
            "margin": round(1 - info, 5), "label": label, "flagged": True,
            "scores": {"healthy": 0.4, "rust": 0.5, "powdery_mildew": 0.1}, "classes": CLASSES,
            "thresholds": {"rust": 0.3, "powdery_mildew": 0.3}, "zones_crossed": [], "footprint": None,
            "pose": None, "trusted": True, "flags": [], "frame": {"seq": seq, "utc": None, "t_wall": 0.0},
            "tile": {"x": x, "y": 0, "w": 20, "h": 20, "row": 0, "col": x // 20}, "model_sha256": "abc",
            "run_id": "run", "image": f"{TILES_DIR}/{tile_id}.jpg"}


# every frame's truth: tile 0 (x 0-20) healthy, tile 1 (x 20-40) rust, tile 2 (x 40-60) powdery mildew,
# tile 3 (x 60-80) a tenth rust (mixed); frame 2's tile 0 is outside the field (soil); frame 9 has no truth
def _labels(seq: int) -> np.ndarray | None:
    if seq == 9:
        return None
    lab = np.zeros((H, W), np.uint8)
    lab[:, 20:40] = 1
    lab[:, 40:60] = 2
    lab[:2, 60:80] = 1  # 2 of 20 rows: 10 % rust
    if seq == 2:
        lab[:, 0:20] = LABEL_OUTSIDE
    return lab


@pytest.fixture
def flight(tmp_path: Path) -> Path:
    """A flight folder whose review.jsonl lists its tiles out of the page's order (and one line replaced)."""
    root = tmp_path / "flight"
    (root / REVIEW_DIR / TILES_DIR).mkdir(parents=True)
    jpeg = cv2.imencode(".jpg", np.full((20, 20, 3), 90, np.uint8))[1].tobytes()
    recs = [("a", 0.50, 1, 0), ("b", 0.99, 1, 20), ("c", 0.90, 1, 40), ("d", 0.95, 1, 60), ("e", 0.70, 2, 0),
            ("f", 0.80, 9, 20), ("g", 0.60, 1, 20), ("h", 0.99, 1, 0)]
    with (root / REVIEW_DIR / REVIEW_JSONL).open("w", encoding="utf-8") as fh:
        for tid, info, seq, x in recs:
            (root / REVIEW_DIR / TILES_DIR / f"{tid}.jpg").write_bytes(jpeg)
            fh.write(json.dumps(_review_record(tid, info, seq, x)) + "\n")
    return root


def test_the_truth_answers_tile_evals_rule_and_unsure_where_a_person_would_hesitate() -> None:
    assert review_answer(np.array([1.0, 0.0, 0.0, 0.0])) == "healthy"
    assert review_answer(np.array([0.7, 0.3, 0.0, 0.0])) == "rust"
    assert review_answer(np.array([0.5, 0.0, 0.25, 0.25])) == "powdery_mildew"  # at the threshold, half in
    assert review_answer(np.array([0.9, 0.1, 0.0, 0.0])) == UNSURE  # some rust, under a quarter: mixed
    assert review_answer(np.array([0.2, 0.4, 0.4, 0.0])) == UNSURE  # two diseases: mixed
    assert review_answer(np.array([0.0, 0.3, 0.0, 0.7])) == UNSURE  # mostly outside the field, some rust
    assert review_answer(np.array([0.2, 0.0, 0.0, 0.8])) == "healthy"  # headland soil: healthy, as in training


def test_the_first_n_in_the_pages_order_are_answered_with_the_truth_through_the_pages_writer(flight: Path) -> None:
    order = [t["id"] for t in ReviewApp(flight).page_order()]
    assert order == ["b", "h", "d", "c", "f", "e", "g", "a"]  # most informative first, ties by id
    answers = answer_first(flight, 5, _labels)
    assert [a["id"] for a in answers] == order[:5]
    assert [a["answer"] for a in answers] == ["rust", "healthy", UNSURE, "powdery_mildew", UNSURE]
    assert answers[4]["truth_shares"] is None  # frame 9: the camera's log cannot name it
    assert answer_counts(answers) == {"healthy": 1, "rust": 1, "powdery_mildew": 1, UNSURE: 2}
    with (flight / LABELS_DIR / LABELS_CSV).open(newline="", encoding="utf-8") as fh:
        rows = {r["tile_id"]: r for r in csv.DictReader(fh)}
    assert {k: r["label"] for k, r in rows.items()} == {a["id"]: a["answer"] for a in answers}
    assert rows["b"]["model_label"] == "rust" and rows["b"]["model_sha256"] == "abc"
    for a in answers:
        assert (flight / LABELS_DIR / a["answer"] / f"{a['id']}.jpg").is_file()
    # the page, opened again, goes on from the first unlabelled tile; so does a second pass of the truth
    assert [t["id"] for t in ReviewApp(flight).page_order()] == order[5:]
    more = answer_first(flight, 10, _labels)
    assert [(a["id"], a["answer"]) for a in more] == [("e", "healthy"), ("g", "rust"), ("a", "healthy")]


def _look(seq: int, tiles: list[tuple[int, int, str, bool]], trusted: bool = True) -> dict:
    return {"schema": LOOK_SCHEMA, "frame": {"seq": seq, "width": W, "height": H}, "trusted": trusted,
            "classes": CLASSES, "tiles": [{"row": r, "col": c, "label": lab, "flagged": f, "scores": [0.0] * 3}
                                          for r, c, lab, f in tiles]}


def test_tile_figures_count_every_tile_of_every_trusted_look(tmp_path: Path) -> None:
    looks = [
        # frame 1: healthy tile called mildew (a false alarm), rust found, mildew called rust, the mixed tile
        # (10 % rust: healthy by tile_eval's rule) left healthy
        _look(1, [(0, 0, "powdery_mildew", True), (0, 1, "rust", True), (0, 2, "rust", True), (0, 3, "rust", False)]),
        # frame 2: the outside tile called rust (a false alarm), rust missed (flagged False: healthy)
        _look(2, [(0, 0, "rust", True), (0, 1, "rust", False)]),
        _look(3, [(0, 0, "rust", True)], trusted=False),  # not scored
        _look(9, [(0, 0, "rust", True)]),  # no truth: not scored
    ]
    (tmp_path / "detections.jsonl").write_text("".join(json.dumps(r) + "\n" for r in looks), encoding="utf-8")
    fig = flight_tile_figures(tmp_path, _labels, rows=1, cols=4)
    assert fig["recall_rust"] == pytest.approx(0.5)
    assert fig["recall_powdery_mildew"] == 0.0
    assert fig["called_other_disease_powdery_mildew"] == 1.0
    assert fig["false_alarm_rate"] == pytest.approx(2 / 3)  # healthy, healthy (mixed), outside: 2 called
    counts = (fig["tiles_scored"], fig["looks_scored"], fig["looks_untrusted"], fig["looks_without_truth"])
    assert counts == (6, 2, 1, 1)
    report = {"patches_found": 2, "patches_total": 3, "false_zones": 1, "centroid_error_m_median": 0.8}
    side = side_figures(report, fig, ["rust", "powdery_mildew"])
    assert side["tile_recall_rust"] == pytest.approx(0.5) and side["tile_recall_powdery_mildew"] == 0.0
    assert side["tile_recall_worst"] == 0.0
    assert (side["patches_found"], side["false_zones"], side["centroid_error_m_median"]) == (2, 1, 0.8)
    after = side_figures(report | {"patches_found": 3, "centroid_error_m_median": None},
                         fig | {"recall_powdery_mildew": None}, ["rust", "powdery_mildew"])
    assert after["tile_recall_worst"] == pytest.approx(0.5)  # a disease without tiles is not the worst
    text = summary_table({"second_seed": 42, "before": side, "after": after, "labels_asked": 30,
                          "labels_answered": 30, "labels_per_class": {"healthy": 20, "rust": 4,
                                                                      "powdery_mildew": 1, UNSURE: 5}})
    lines = text.splitlines()
    assert "seed 42" in lines[0]
    assert lines[1].split()[-2:] == ["0.500", "0.500"]  # tile recall rust, before and after
    assert lines[2].split()[-2:] == ["0.000", "-"]
    assert lines[4].split()[-2:] == ["2/3", "3/3"]
    assert lines[6].split()[-2:] == ["0.800", "-"]
    assert "healthy 20, rust 4, powdery_mildew 1, unsure 5" in lines[-1]


def test_the_second_field_keeps_crop_camera_and_flight_and_draws_the_rest_from_its_seed() -> None:
    s = load_scenario(ROOT / "configs" / "scenarios" / "wheat_30m.yaml")
    s2 = second_field(s, 1234)
    assert (s2.crop, s2.camera, s2.flight, s2.field, s2.origin, s2.terrain) == \
        (s.crop, s.camera, s.flight, s.field, s.origin, s.terrain)
    assert s2.seed == 1234 and s2.patches != s.patches
    assert second_field(s, 1234) == s2  # a seed gives one field


def test_the_fine_tune_is_compile_build_with_the_parents_profile(tmp_path: Path) -> None:
    cmd = retrain_command(tmp_path / "P", {"profile": "quick", "edgetpu": {"compiled": False}}, [tmp_path / "D1"],
                          tmp_path / "child")
    assert cmd[:3] == [sys.executable, "-m", "compile"]
    i = cmd.index("build")
    assert cmd[i:i + 3] == ["build", "--profile", "quick"]
    assert cmd[cmd.index("--labels") + 1] == str(tmp_path / "D1")
    assert cmd[cmd.index("--init-from") + 1] == str(tmp_path / "P")
    assert cmd[-1] == "--cpu-only"
    assert "--cpu-only" not in retrain_command(tmp_path / "P", {"profile": "quick", "edgetpu": {"compiled": True}},
                                               [tmp_path / "D1"], tmp_path / "child")


@pytest.mark.slow
def test_the_loop_end_to_end_on_a_window_of_the_default_field(tmp_path: Path) -> None:
    """Three short missions and one quick fine-tune (about 10 minutes on 2 cores)."""
    parent = tmp_path / "parent"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "compile", "build", "--profile", "quick", "--weights", "none",
                    "--cpu-only", "--out", str(parent)], cwd=ROOT, env=env, check=True)
    out = tmp_path / "teach"
    done = subprocess.run([sys.executable, "-m", "tools.teach", "--bundle", str(parent), "--labels", "12",
                           "--out", str(out), "--second-seed", "5", "--start", "30", "--end", "90"],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["second_seed"] == 5 and summary["labels_answered"] == 12
    assert sum(summary["labels_per_class"].values()) == 12
    assert summary["child_parent_model_sha256"] == summary["parent_model_sha256"] != summary["child_model_sha256"]
    for side in ("before", "after"):
        assert {"tile_recall_rust", "tile_recall_powdery_mildew", "false_alarm_rate", "patches_found",
                "false_zones", "centroid_error_m_median"} <= set(summary[side])
        assert summary[side]["tiles_scored"] > 0
    assert "teach [4/4]" in done.stdout and "summary:" in done.stdout
