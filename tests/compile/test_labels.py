"""Fine-tuning from labelled flight tiles (issue 26 item 3): `compile build --labels DIR... --init-from BUNDLE`.

A tiny parent (64 px, 40 images per class, 3 epochs: ~15 s) is built once per module through the CLI,
then fine-tuned on label folders written as `payload review` writes them (labels.csv + class folders of
JPEG tiles; tools/synthetic_labels.py), drawn from the canopy generator's held-out looks so the labels
show what the parent never trained on.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from compile.bundle import finalize, staging_dir
from compile.config import DataConfig
from compile.errors import BuildError, DataError
from compile.labels import labels_folder, load_parent, mix, read_labels, repeats_needed, split_labels
from compile.synthetic import CLASSES
from payload.bundle import CARD, CPU_MODEL, FLOAT_WEIGHTS, ModelCard, load_bundle, sha256_file
from tools.synthetic_labels import write_flight  # labels.csv with payload review's own columns

ROOT = Path(__file__).resolve().parents[2]
TINY = {"data": {"synthetic_per_class": 40, "jpeg_quality": None, "heldout_per_class": 0},
        "augment": {"enabled": False},
        "model": {"input_size": 64, "weights": "none"},
        "train": {"epochs": 3, "batch_size": 32, "head_only": {"epochs": 3, "batch_size": 32, "learning_rate": 1e-3}},
        "evaluate": {"gsd_images": 0},
        "quantize": {"representative_images": 16, "agreement_floor": 0.5}}


def build(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "compile", "build", "--profile", "tiny", "--cpu-only", *args],
                          capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny parent, three labelled flights, and the parent fine-tuned on them (~35 s on 2 cores)."""
    tmp = tmp_path_factory.mktemp("labels")
    cfg = tmp / "build.yaml"
    cfg.write_text(yaml.safe_dump({"profiles": {"tiny": TINY}}))
    parent, child = tmp / "parent", tmp / "child"
    proc = build("--config", str(cfg), "--out", str(parent))
    assert proc.returncode == 0, proc.stderr[-3000:]
    flights = [write_flight(tmp / f"flight{k}", k, 8) for k in (1, 2, 3)]
    # one given as a flight folder, one as its labels/ folder: both forms are accepted
    proc = build("--config", str(cfg), "--out", str(child), "--init-from", str(parent),
                 "--labels", str(flights[0]), str(flights[1]), str(flights[2] / "labels"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "fine-tuned from model" in proc.stdout and "held-back labels" in proc.stdout
    return {"tmp": tmp, "cfg": cfg, "parent": parent, "child": child, "flights": tmp}


def card(path: Path) -> dict:
    return json.loads((path / CARD).read_text())


# --- reading and splitting labels (no training) -------------------------------------------------------------

def test_labels_read_from_a_flight_or_its_labels_folder_unsure_ignored(tmp_path: Path) -> None:
    flight = write_flight(tmp_path / "f1", 1, 3, unsure=2)
    assert labels_folder(flight) == labels_folder(flight / "labels") == flight / "labels"
    src = read_labels(flight)
    assert src.name == "f1" and src.unsure == 2
    assert src.counts() == {c: 3 for c in CLASSES}
    assert src.csv_sha256 == sha256_file(flight / "labels" / "labels.csv")
    assert all("/unsure/" not in p for p in src.paths)
    assert [Path(p).parent.name for p in src.paths] == [CLASSES[k] for k in src.labels]


def test_missing_labels_or_copies_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="payload review"):
        read_labels(tmp_path)
    flight = write_flight(tmp_path / "f1", 1, 2)
    (flight / "labels" / "rust" / "f1_rust_001.jpg").unlink()
    with pytest.raises(DataError, match="f1_rust_001"):
        read_labels(flight)


def test_several_fields_are_held_back_whole(tmp_path: Path) -> None:
    sources = [read_labels(write_flight(tmp_path / f"f{k}", k, 3)) for k in range(4)]
    s = split_labels(sources, 0.3, seed=7)
    train_dirs = {Path(p).parents[1] for p in s.train.paths or []}
    eval_dirs = {Path(p).parents[1] for p in s.eval.paths or []}
    assert train_dirs and eval_dirs and not train_dirs & eval_dirs
    assert len(eval_dirs) == 1  # round(0.3 x 4)
    roles = {f["name"]: f["used_for"] for f in s.facts["flights"]}
    assert sorted(roles.values()).count("evaluation") == 1
    assert s.facts["evaluation"] == "other fields"
    assert s.facts["labels_per_class"] == {c: 12 for c in CLASSES}
    with pytest.raises(DataError, match="more than once"):  # a flight and its own labels/ folder
        split_labels([sources[0], read_labels(tmp_path / "f0" / "labels"), sources[1]], 0.3, seed=7)


def test_one_field_holds_back_tiles_and_says_so(tmp_path: Path) -> None:
    s = split_labels([read_labels(write_flight(tmp_path / "f1", 1, 10))], 0.3, seed=7)
    assert not set(s.train.paths or []) & set(s.eval.paths or [])
    assert s.eval.counts() == {c: 3 for c in CLASSES} and s.train.counts() == {c: 7 for c in CLASSES}
    assert "within one field" in s.facts["evaluation"]
    with pytest.raises(DataError, match="too few labels"):
        split_labels([read_labels(write_flight(tmp_path / "f2", 2, 1))], 0.3, seed=7)


def test_mix_repeats_labels_to_their_share() -> None:
    from compile.data import synthetic_splits

    syn = synthetic_splits(DataConfig(synthetic_per_class=100)).train
    labelled_paths = [f"/x/{i}.jpg" for i in range(20)]
    from compile.data import Split

    lab = Split(np.arange(20) % 3, paths=labelled_paths)
    mixed, facts = mix(syn, lab, 0.3)
    r = repeats_needed(0.3, len(syn), 20)
    assert facts["repeats"] == r == round(0.3 * len(syn) / (0.7 * 20))
    assert mixed.mixed and len(mixed) == len(syn) + 20 * r
    assert sum(1 for p in mixed.paths or [] if p) == 20 * r
    assert abs(facts["achieved_share"] - 0.3) < 0.05
    assert (mixed.seeds[: len(syn)] == syn.seeds).all()


# --- the fine-tune, end to end --------------------------------------------------------------------------------

def test_card_names_parent_flights_counts_and_before_after(tuned: dict[str, Path]) -> None:
    c, p = card(tuned["child"]), card(tuned["parent"])
    assert c["parent_model_sha256"] == p["files"][CPU_MODEL]["sha256"] != c["files"][CPU_MODEL]["sha256"]
    lab = c["labels"]
    assert lab["labels_per_class"] == {cls: 24 for cls in CLASSES}
    names = {f["name"]: f for f in lab["flights"]}
    assert set(names) == {"flight1", "flight2", "flight3"}
    for name, f in names.items():
        assert f["labels_csv_sha256"] == sha256_file(tuned["flights"] / name / "labels" / "labels.csv")
        assert f["unsure_ignored"] == 2
    assert sorted(f["used_for"] for f in names.values()) == ["evaluation", "training", "training"]
    assert lab["eval_labels_per_class"] == {cls: 8 for cls in CLASSES}
    for side in ("before", "after"):
        fig = lab[side]
        assert fig["images"] == 24 and set(fig["recall"]) == set(CLASSES)
        assert all(0 <= r <= 1 for r in fig["recall"].values())
    assert lab["mix"]["labelled_train_tiles"] == 48 and lab["mix"]["repeats"] >= 1
    # the parent's thresholds score `before`: recompute it from the parent's int8 model
    assert c["init_from"]["thresholds"] == p["thresholds"]
    assert c["training"]["init_weights"].endswith(FLOAT_WEIGHTS)


def test_every_build_carries_its_float_weights_and_they_come_back(tuned: dict[str, Path]) -> None:
    """The parent's float weights rebuild its model: the random backbone included, scores as the int8 model's."""
    from compile.data import synthetic_splits
    from compile.model import build_model, export_model
    from compile.quantize import Int8Runner

    parent = tuned["parent"]
    for b in (parent, tuned["child"]):
        assert FLOAT_WEIGHTS in card(b)["files"]
    info = load_parent(parent)
    model = export_model(build_model(info.model.model_copy(update={"weights": "none"})))
    model.load_weights(str(parent / FLOAT_WEIGHTS))
    split = synthetic_splits(DataConfig(**TINY["data"])).test
    from compile.data import iterate_images

    imgs = np.stack([img for img, _ in iterate_images(split, 64, 1234, limit=12)])
    f = np.asarray(model.predict_on_batch(imgs.astype(np.float32)))
    q = np.stack([Int8Runner(parent / CPU_MODEL).scores(img) for img in imgs])
    assert np.abs(f - q).max() < 0.1  # a freshly built random backbone would differ by far more
    assert (f.argmax(1) == q.argmax(1)).mean() >= 0.9


def test_fine_tuned_bundle_loads_and_classifies_in_the_payload(tuned: dict[str, Path], tmp_path: Path) -> None:
    child = tuned["child"]
    b = load_bundle(child)
    assert b.model_sha256 == card(child)["files"][CPU_MODEL]["sha256"]
    tile = next((tuned["flights"] / "flight1" / "labels" / "rust").glob("*.jpg"))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-m", "payload", "classify", "--bundle", str(child), "--backend", "cpu",
                          "--json", str(tile)], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stderr
    assert str(tile.name) in out.stdout and "rust" in out.stdout
    # payload run over a folder of frames, no telemetry (on purpose): the bundle flies unchanged
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, src in enumerate(sorted((tuned["flights"] / "flight2" / "labels" / "healthy").glob("*.jpg"))[:3]):
        shutil.copy(src, frames / f"IMG_20261207_0500{i:02d}.jpg")
    cfg = {"model": {"bundle": str(child), "backend": "cpu", "num_threads": 1},
           "source": {"kind": "folder", "uri": str(frames), "time_from": "rate", "rate_hz": 1.0},
           "tiling": {"rows": 1, "cols": 1}, "output": {"dir": str(tmp_path / "out")},
           "telemetry": {"allow_none": True}}
    (tmp_path / "payload.yaml").write_text(yaml.safe_dump(cfg))
    run = subprocess.run([sys.executable, "-m", "payload", "run", "--config", str(tmp_path / "payload.yaml")],
                         capture_output=True, text=True, timeout=180, cwd=ROOT, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    flight = next(p for p in (tmp_path / "out").iterdir() if p.is_dir())
    assert len((flight / "classifications.jsonl").read_text().splitlines()) == 3


def test_init_from_a_bundle_without_weights_names_the_fix(tuned: dict[str, Path], tmp_path: Path) -> None:
    old = tmp_path / "old"
    staging = staging_dir(old)
    for p in tuned["parent"].rglob("*"):
        if p.is_file() and p.name not in (CARD, FLOAT_WEIGHTS):
            (staging / p.relative_to(tuned["parent"])).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, staging / p.relative_to(tuned["parent"]))
    finalize(staging, old, ModelCard.model_validate_json((tuned["parent"] / CARD).read_text()))
    load_bundle(old)  # a valid bundle, as every bundle before this version
    with pytest.raises(BuildError, match="rebuild the parent with this version"):
        load_parent(old)
    proc = build("--config", str(tuned["cfg"]), "--out", str(tmp_path / "x"), "--init-from", str(old),
                 "--labels", str(tuned["flights"] / "flight1"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"no {FLOAT_WEIGHTS}" in proc.stderr and "rebuild the parent" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_labels_and_init_from_go_together(tuned: dict[str, Path], tmp_path: Path) -> None:
    for args, says in ((("--labels", str(tuned["flights"] / "flight1")), "--labels needs --init-from"),
                       (("--init-from", str(tuned["parent"])), "--init-from needs --labels")):
        proc = build("--config", str(tuned["cfg"]), "--out", str(tmp_path / "x"), *args)
        assert proc.returncode == 2 and says in proc.stderr, proc.stderr[-2000:]


# --- a small-backbone parent (the quick profile's model.backbone: small) --------------------------------------

TINY_SMALL = {**TINY, "model": {"backbone": "small", "lowpass_px": 1.5, "input_size": 64, "weights": "none"},
              "train": {"epochs": 2, "batch_size": 32, "learning_rate": 2e-3}}


@pytest.fixture(scope="module")
def tuned_small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny small-CNN parent and its fine-tune on two labelled flights (one held back): ~40 s on 2 cores."""
    tmp = tmp_path_factory.mktemp("labels_small")
    cfg = tmp / "build.yaml"
    cfg.write_text(yaml.safe_dump({"profiles": {"tiny": TINY_SMALL}}))
    parent, child = tmp / "parent", tmp / "child"
    proc = build("--config", str(cfg), "--out", str(parent))
    assert proc.returncode == 0, proc.stderr[-3000:]
    flights = [write_flight(tmp / f"flight{k}", k, 6) for k in (1, 2)]
    proc = build("--config", str(cfg), "--out", str(child), "--init-from", str(parent),
                 "--labels", str(flights[0]), str(flights[1]))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "fine-tuned from model" in proc.stdout and "WARNING: backbone: small CNN" in proc.stdout
    return {"parent": parent, "child": child}


@pytest.mark.slow  # two more builds (~40 s): the default suite keeps the ResNet parent's fine-tune
def test_a_small_parent_rebuilds_its_own_graph_and_fine_tunes_it(tuned_small: dict[str, Path]) -> None:
    """load_parent gives back the small CNN with its low-pass (no ResNet, no stages); its float weights load into
    that graph and score as its int8 model; the child keeps the graph and says what it learnt from."""
    from compile.data import iterate_images, synthetic_splits
    from compile.model import build_model, export_model, is_small
    from compile.quantize import Int8Runner

    parent, child = tuned_small["parent"], tuned_small["child"]
    info = load_parent(parent)
    assert info.model.small and info.model.lowpass_px == 1.5 and info.model.weights == "none"
    assert info.model.head_stages == "auto"  # ResNet fields left as they were: the small graph reads none
    model = export_model(build_model(info.model))
    assert is_small(model)
    model.load_weights(str(parent / FLOAT_WEIGHTS))  # the same graph, layer for layer
    split = synthetic_splits(DataConfig(**TINY["data"])).test
    imgs = np.stack([img for img, _ in iterate_images(split, 64, 1234, limit=8)])
    f = np.asarray(model.predict_on_batch(imgs.astype(np.float32)))
    q = np.stack([Int8Runner(parent / CPU_MODEL).scores(img) for img in imgs])
    assert np.abs(f - q).max() < 0.1  # freshly initialised convolutions would score far from the parent's int8
    c, p = card(child), card(parent)
    assert c["training"]["config"]["model"] == p["training"]["config"]["model"]
    assert c["training"]["init_weights"].endswith(FLOAT_WEIGHTS) and c["parent_model_sha256"]
    assert c["training"]["backbone"] == ("small CNN (3 convolutions, every weight learned from synthetic data and "
                                         "labelled flight tiles; Gaussian low-pass sigma 1.5 px in front)")
    assert c["training"]["activation_cache_reason"] == "off: every layer of the small backbone trains"
    assert c["backbone_weights"] == p["backbone_weights"] and "small CNN" in c["warnings"][0]
