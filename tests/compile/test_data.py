"""Splits, class weights, the PlantVillage-style folder reader and the tf.data pipelines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from compile.config import DataConfig
from compile.data import (
    class_weights,
    iterate_images,
    make_dataset,
    make_splits,
    scan_folder,
    stratified_split,
    subset,
    synthetic_image,
)
from compile.errors import DataError


def test_stratified_split_keeps_class_proportions_and_is_seeded() -> None:
    labels = np.array([0] * 100 + [1] * 40 + [2] * 10)
    tr, va, te = stratified_split(labels, 0.2, 0.1, seed=5)
    assert len(set(tr) | set(va) | set(te)) == labels.size and not (set(tr) & set(va) | set(tr) & set(te))
    for cls, n in ((0, 100), (1, 40), (2, 10)):
        assert np.sum(labels[va] == cls) == round(n * 0.2)
        assert np.sum(labels[te] == cls) == max(round(n * 0.1), 1)
    again = stratified_split(labels, 0.2, 0.1, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip((tr, va, te), again, strict=True))
    other = stratified_split(labels, 0.2, 0.1, seed=6)
    assert not np.array_equal(va, other[1])


def test_class_weights_balance_a_rare_class() -> None:
    w = class_weights(np.array([0] * 80 + [1] * 15 + [2] * 5))
    assert w[2] > w[1] > w[0]
    assert w[0] * 80 + w[1] * 15 + w[2] * 5 == pytest.approx(100)


def test_synthetic_splits_are_disjoint_and_reproducible() -> None:
    cfg = DataConfig(synthetic_per_class=20)
    s = make_splits(cfg)
    seeds = [set(s.train.seeds), set(s.val.seeds), set(s.test.seeds)]
    assert not (seeds[0] & seeds[1] or seeds[0] & seeds[2] or seeds[1] & seeds[2])
    assert s.summary()["counts"]["val"] == {"healthy": 3, "rust": 3, "powdery_mildew": 3}
    assert np.array_equal(synthetic_image(1, 7, 32, 1234), synthetic_image(1, 7, 32, 1234))
    sub = subset(s.train, 6, seed=1)
    assert len(sub) == 6 and len(set(sub.labels.tolist())) > 1  # drawn across classes, not the first six


def _write_images(folder: Path, n: int, colour: tuple[int, int, int], suffix: str = ".png") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (20 + i, 24), colour).save(folder / f"img{i}{suffix}")


@pytest.fixture
def plant_folder(tmp_path: Path) -> Path:
    root = tmp_path / "pv"
    _write_images(root / "Corn___healthy", 6, (40, 160, 40), ".jpg")
    _write_images(root / "Corn___Common_rust", 5, (160, 80, 30))
    _write_images(root / "Corn___Powdery", 4, (230, 230, 230))
    _write_images(root / "Corn___Blight", 3, (90, 60, 20))  # not mapped: ignored
    (root / "Corn___Common_rust" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (root / "Corn___healthy" / "notes.txt").write_text("not an image")
    return root


CLASS_MAP = {"Corn___healthy": "healthy", "Corn___Common_rust": "rust", "Corn___Powdery": "powdery_mildew"}


def test_folder_reader_maps_classes_and_skips_unreadable(plant_folder: Path) -> None:
    cfg = DataConfig(source="folder", folder=str(plant_folder), class_map=CLASS_MAP, val_fraction=0.2,
                     test_fraction=0.2)
    s = scan_folder(cfg)
    assert s.skipped == {"Corn___Common_rust": 1}
    total = {k: sum(s.summary()["counts"][sp][k] for sp in ("train", "val", "test")) for k in ("healthy", "rust")}
    assert total == {"healthy": 6, "rust": 5}
    assert all("Blight" not in p for p in s.train.paths + s.val.paths + s.test.paths)
    img, label = next(iterate_images(s.test, 32, 0))
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8 and label in (0, 1, 2)


def test_folder_errors_name_the_problem(plant_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        scan_folder(DataConfig(source="folder", folder=str(tmp_path / "nope")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        scan_folder(DataConfig(source="folder", folder=str(tmp_path / "empty")))
    with pytest.raises(DataError, match="class_map"):
        scan_folder(DataConfig(source="folder", folder=str(plant_folder)))  # folder names are not class names
    with pytest.raises(DataError, match="folders that do not exist: Corn___Mildew"):
        scan_folder(DataConfig(source="folder", folder=str(plant_folder),
                               class_map={**CLASS_MAP, "Corn___Mildew": "powdery_mildew"}))
    for p in (plant_folder / "Corn___Powdery").iterdir():
        p.write_bytes(b"garbage")
    with pytest.raises(DataError, match="no readable images for class.*powdery_mildew"):
        scan_folder(DataConfig(source="folder", folder=str(plant_folder), class_map=CLASS_MAP))


def test_tf_data_pipelines_stream_batches(plant_folder: Path) -> None:
    syn = make_splits(DataConfig(synthetic_per_class=10))
    x, y = next(iter(make_dataset(syn.train, 32, 4, base_seed=1234)))
    assert tuple(x.shape) == (4, 32, 32, 3) and tuple(y.shape) == (4, 3)
    first = syn.train
    assert first.jpeg_quality == (60, 95)  # the default: every synthetic image goes through a camera's JPEG step
    assert np.allclose(x.numpy()[0], synthetic_image(int(first.labels[0]), int(first.seeds[0]), 32, 1234,
                                                     first.jpeg_quality))
    folder = scan_folder(DataConfig(source="folder", folder=str(plant_folder), class_map=CLASS_MAP))
    n = sum(int(b[0].shape[0]) for b in make_dataset(folder.train, 24, 3, base_seed=0, one_hot=False))
    assert n == len(folder.train)
    xb, _ = next(iter(make_dataset(folder.train, 24, 3, base_seed=0)))
    assert float(np.max(xb)) <= 255.0 and tuple(xb.shape[1:]) == (24, 24, 3)


def test_synthetic_images_go_through_jpeg_like_camera_frames() -> None:
    """Camera frames are JPEGs: 4:2:0 chroma smears small rust lesions, so the model must train on that."""
    clean = synthetic_image(1, 7, 64, 1234)
    a = synthetic_image(1, 7, 64, 1234, (60, 95))
    assert np.array_equal(a, synthetic_image(1, 7, 64, 1234, (60, 95)))  # deterministic per record
    assert a.shape == clean.shape and a.dtype == np.uint8
    diff = np.abs(a.astype(int) - clean.astype(int))
    assert 0.3 < diff.mean() < 12.0  # the same image, with compression artefacts
    low = synthetic_image(1, 7, 64, 1234, (10, 10))
    assert np.abs(low.astype(int) - clean.astype(int)).mean() > diff.mean()  # lower quality, more damage
    # the pixels before the JPEG step are the ones the clean image has (same generator stream)
    assert np.abs(synthetic_image(0, 3, 64, 1234, (100, 100)).astype(int)
                  - synthetic_image(0, 3, 64, 1234).astype(int)).mean() < 6.0  # 4:2:0 chroma even at 100
    folder_split = subset(make_splits(DataConfig(synthetic_per_class=10, jpeg_quality=None)).train, 5)
    assert folder_split.jpeg_quality is None
    assert subset(make_splits(DataConfig(synthetic_per_class=10)).train, 5).jpeg_quality == (60, 95)


@pytest.mark.parametrize("bad", [[0, 90], [90, 60], [50, 101]])
def test_jpeg_quality_range_is_checked(bad: list[int]) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="data.jpeg_quality must be"):
        DataConfig(jpeg_quality=bad)
