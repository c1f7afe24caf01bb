"""Data sets that stream through tf.data: the synthetic generator and a PlantVillage-style folder.

Nothing here holds a whole data set in memory: a split is a list of small records (a class index
and a seed, or a file path) and images are made or decoded batch by batch. Splits are stratified
by class with a fixed seed so that validation (threshold choice) and test (reported metrics) are
stable from build to build.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import canopy
from .config import DataConfig
from .errors import DataError
from .family import HELD_OUT, HELD_OUT_SHAPE, Part, family_image, sample_look
from .synthetic import CLASSES, training_image

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
SPLITS = ("train", "val", "test")


@dataclass
class Split:
    """One split: per item a label and either a file path or a synthetic seed.

    A mixed split (synthetic images and labelled flight tiles, compile/labels.py) has both lists:
    an item with a path ("" = none) is that file, the others are synthetic records by seed.
    """

    labels: np.ndarray
    paths: list[str] | None = None  # folder source
    seeds: np.ndarray | None = None  # synthetic source
    jpeg_quality: tuple[int, int] | None = None  # synthetic source: the camera's JPEG step (data.jpeg_quality)
    generator: str = "canopy"  # synthetic source: data.generator
    part: Part = "train"  # synthetic source: the generator's training region, or its held-out factors

    def __len__(self) -> int:
        return int(self.labels.size)

    @property
    def mixed(self) -> bool:
        """Both kinds of item: files (non-empty paths) and synthetic records (seeds)."""
        return self.paths is not None and self.seeds is not None

    def counts(self) -> dict[str, int]:
        c = Counter(int(x) for x in self.labels)
        return {name: c.get(i, 0) for i, name in enumerate(CLASSES)}


@dataclass
class DataSplits:
    """The three splits, the held-out family set (never trained on), and what the folder scan skipped."""

    source: str
    train: Split
    val: Split
    test: Split
    skipped: dict[str, int] = field(default_factory=dict)
    heldout: Split | None = None
    heldout_what: str | None = None  # what the held-out images differ in, for the report

    def summary(self) -> dict[str, object]:
        counts = {name: getattr(self, name).counts() for name in SPLITS}
        if self.heldout is not None:
            counts["heldout"] = self.heldout.counts()
        return {
            "source": self.source,
            "counts": counts,
            "skipped": dict(self.skipped),
            "heldout": self.heldout_what,
        }


def stratified_split(labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int) -> list[np.ndarray]:
    """Indices of train/val/test with every class split in the same proportions.

    Each class with at least 3 items gives at least one item to every split, so that per-class
    thresholds and recall can always be measured.
    """
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[], [], []]
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        n = idx.size
        n_val = max(int(round(n * val_fraction)), 1 if n >= 3 else 0)
        n_test = max(int(round(n * test_fraction)), 1 if n >= 3 else 0)
        parts[1] += idx[:n_val].tolist()
        parts[2] += idx[n_val : n_val + n_test].tolist()
        parts[0] += idx[n_val + n_test :].tolist()
    return [np.array(sorted(p), dtype=np.int64) for p in parts]


def class_weights(labels: np.ndarray, n_classes: int = len(CLASSES)) -> dict[int, float]:
    """Inverse-frequency weights (mean 1 over the samples) so a rare class is not ignored."""
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    total = counts.sum()
    return {i: (float(total / (n_classes * c)) if c > 0 else 0.0) for i, c in enumerate(counts)}


def synthetic_splits(cfg: DataConfig) -> DataSplits:
    """Synthetic records: equal classes, each image identified by a seed derived from data.seed.

    The held-out set draws its images from the generator's held-out factors (compile.canopy.HELD_OUT,
    or compile.family.HELD_OUT for the leaf generators) with seeds no other split uses, so it
    measures generalisation to looks training never saw.
    """
    n = cfg.synthetic_per_class
    labels = np.repeat(np.arange(len(CLASSES)), n)
    seeds = np.arange(labels.size, dtype=np.int64)
    tr, va, te = stratified_split(labels, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    q, g = cfg.jpeg_quality, cfg.generator
    n_held = cfg.heldout_per_class if cfg.heldout_per_class is not None else max(int(te.size // len(CLASSES)), 1)
    heldout = None
    if n_held > 0:
        h_labels = np.repeat(np.arange(len(CLASSES)), n_held)
        h_seeds = labels.size + np.arange(h_labels.size, dtype=np.int64)
        # the leaf generators share the family's held-out looks; canopy has its own factors
        heldout = Split(h_labels, seeds=h_seeds, jpeg_quality=q, part="heldout",
                        generator="canopy" if g == "canopy" else "family")
    if g == "canopy":
        what = ("canopy views with one held-out factor each: glaucous blue-green leaves, stripe-rust yellow "
                f"pustules, the {canopy.HELD_OUT_CROP} crop, heavy haze (transmittance "
                f"{canopy.HELD_OUT_HAZE[0]:.2f}-{canopy.HELD_OUT_HAZE[1]:.2f})")
    else:
        what = ("looks from held-out regions of the generator family: "
                + ", ".join(f"{k} {lo:.2f}-{hi:.2f}" for k, (lo, hi) in HELD_OUT.items())
                + f", {HELD_OUT_SHAPE} lesions")
    return DataSplits(
        "synthetic",
        Split(labels[tr], seeds=seeds[tr], jpeg_quality=q, generator=g),
        Split(labels[va], seeds=seeds[va], jpeg_quality=q, generator=g),
        Split(labels[te], seeds=seeds[te], jpeg_quality=q, generator=g),
        heldout=heldout,
        heldout_what=what,
    )


def _readable(path: Path) -> bool:
    """Cheap integrity check without decoding the pixels (PIL's verify reads the structure)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.verify()
        return True
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return False


def scan_folder(cfg: DataConfig) -> DataSplits:
    """List a PlantVillage-style folder, map its class folders onto the model's classes, split it."""
    root = Path(cfg.folder or "")
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist; set data.folder to a folder with one sub-folder per class")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir())
    if not subdirs:
        raise DataError(f"data folder {root} has no class sub-folders; put each class's images in its own sub-folder")
    mapping = dict(cfg.class_map) if cfg.class_map else {d.name: d.name for d in subdirs if d.name in CLASSES}
    if not mapping:
        raise DataError(
            f"data folder {root}: no sub-folder maps onto the classes {', '.join(CLASSES)} "
            f"(found {', '.join(d.name for d in subdirs)}); add data.class_map entries 'folder name: class'"
        )
    missing_dirs = [name for name in mapping if not (root / name).is_dir()]
    if missing_dirs:
        raise DataError(
            f"data folder {root}: data.class_map names folders that do not exist: {', '.join(missing_dirs)}"
        )
    ignored = [d.name for d in subdirs if d.name not in mapping]
    if ignored:
        log.warning("ignoring class folders not in data.class_map: %s", ", ".join(ignored))
    paths: list[str] = []
    labels: list[int] = []
    skipped: Counter[str] = Counter()
    for folder_name, cls in sorted(mapping.items()):
        files = sorted(p for p in (root / folder_name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        for p in files:
            if _readable(p):
                paths.append(str(p))
                labels.append(CLASSES.index(cls))
            else:
                skipped[folder_name] += 1
    for folder_name, n in skipped.items():
        log.warning("skipped %d unreadable image(s) in %s", n, root / folder_name)
    label_arr = np.array(labels, dtype=np.int64)
    empty = [c for i, c in enumerate(CLASSES) if c in mapping.values() and not np.any(label_arr == i)]
    if not paths:
        raise DataError(f"data folder {root}: no readable .jpg/.png images found (skipped {sum(skipped.values())})")
    absent = [c for c in CLASSES if c not in mapping.values()]
    if empty or absent:
        raise DataError(
            f"data folder {root}: no readable images for class(es) {', '.join(empty + absent)} "
            f"(unreadable skipped: {dict(skipped) or 0}); every class needs images, check data.class_map"
        )
    arr = np.array(paths, dtype=object)
    held = np.array([Path(p).relative_to(root).parts[0] in cfg.heldout_folders for p in paths], dtype=bool)
    heldout = None
    if cfg.heldout_folders:
        unknown = [f for f in cfg.heldout_folders if f not in mapping]
        if unknown:
            raise DataError(f"data.heldout_folders names folders that are not in data.class_map: {', '.join(unknown)}")
        starved = [c for i, c in enumerate(CLASSES) if not np.any((label_arr == i) & ~held)]
        if starved:
            raise DataError(
                f"data.heldout_folders leaves no training images for class(es) {', '.join(starved)}; keep at "
                "least one folder of every class in training"
            )
        heldout = Split(label_arr[held], paths=arr[held].tolist())
    keep = np.flatnonzero(~held)
    tr, va, te = (keep[i] for i in stratified_split(label_arr[keep], cfg.val_fraction, cfg.test_fraction, cfg.seed))
    return DataSplits(
        "folder",
        Split(label_arr[tr], paths=arr[tr].tolist()),
        Split(label_arr[va], paths=arr[va].tolist()),
        Split(label_arr[te], paths=arr[te].tolist()),
        skipped=dict(skipped),
        heldout=heldout,
        heldout_what=f"held-out folders: {', '.join(cfg.heldout_folders)}" if heldout is not None else None,
    )


def make_splits(cfg: DataConfig) -> DataSplits:
    """The splits for the configured source."""
    return synthetic_splits(cfg) if cfg.source == "synthetic" else scan_folder(cfg)


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """RGB uint8 through a JPEG encode/decode (4:2:0 chroma, as cameras write), like a camera frame."""
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - imencode fails only for empty images
        raise ValueError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def synthetic_image(
    label: int, seed: int, size: int, base_seed: int, jpeg_quality: tuple[int, int] | None = None,
    part: Part = "train", generator: str = "canopy",
) -> np.ndarray:
    """The synthetic image of one record: the same arguments always give the same pixels.

    The held-out part of the leaf generators ("single", "family") comes from the family's held-out
    regions; the canopy generator has its own held-out factors.
    """
    rng = np.random.default_rng([base_seed, int(seed)])
    if generator == "canopy":
        img = canopy.canopy_image(CLASSES[int(label)], size, rng, part)
    elif generator == "single" and part == "train":
        img = training_image(CLASSES[int(label)], size, rng)
    else:
        img = family_image(CLASSES[int(label)], size, rng, part)
    if jpeg_quality is not None:
        img = jpeg_roundtrip(img, int(rng.integers(jpeg_quality[0], jpeg_quality[1] + 1)))
    return img


def make_dataset(
    split: Split,
    size: int,
    batch_size: int,
    base_seed: int,
    shuffle: bool = False,
    repeat: bool = False,
    one_hot: bool = True,
    cache: bool = False,
):
    """A batched tf.data pipeline of (float32 0-255 RGB images, labels) for one split.

    `cache`: each image is made (or decoded) once, on the first pass, and kept in memory (uint8;
    float32 for a folder source); later passes shuffle the kept images. The same images either way
    (a record's pixels depend on its seed only); the caller checks that they fit.
    """
    import tensorflow as tf

    n_classes = len(CLASSES)
    labels = split.labels.astype(np.int32)
    early_shuffle = shuffle and not cache  # without the cache, shuffle the records before making images
    if split.mixed:
        index = np.arange(len(split), dtype=np.int64)
        ds = tf.data.Dataset.from_tensor_slices((labels, index))
        if early_shuffle:
            ds = ds.shuffle(len(split), seed=base_seed, reshuffle_each_iteration=True)

        def _mixed(label, i):
            img = tf.numpy_function(lambda k: record_image(split, int(k), size, base_seed), [i], tf.uint8)
            return tf.ensure_shape(img, (size, size, 3)), label

        ds = ds.map(_mixed, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    elif split.seeds is not None:
        seeds = split.seeds.astype(np.int64)
        q, part, gen = split.jpeg_quality, split.part, split.generator
        ds = tf.data.Dataset.from_tensor_slices((labels, seeds))
        if early_shuffle:
            ds = ds.shuffle(len(split), seed=base_seed, reshuffle_each_iteration=True)

        def _make(label, seed):
            img = tf.numpy_function(
                lambda lab, s: synthetic_image(int(lab), int(s), size, base_seed, q, part, gen), [label, seed], tf.uint8
            )
            return tf.ensure_shape(img, (size, size, 3)), label

        ds = ds.map(_make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        ds = tf.data.Dataset.from_tensor_slices((list(split.paths or []), labels))
        if early_shuffle:
            ds = ds.shuffle(len(split), seed=base_seed, reshuffle_each_iteration=True)

        def _load(path, label):
            raw = tf.io.read_file(path)
            img = tf.io.decode_image(raw, channels=3, expand_animations=False)
            img = tf.image.resize(img, (size, size), antialias=True)
            return tf.clip_by_value(img, 0.0, 255.0), label

        ds = ds.map(_load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.ignore_errors(log_warning=True)  # a file that passed the scan but fails to decode
    if cache:
        ds = ds.cache()
        if shuffle:
            ds = ds.shuffle(len(split), seed=base_seed, reshuffle_each_iteration=True)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y))
    if one_hot:
        ds = ds.map(lambda x, y: (x, tf.one_hot(y, n_classes)))
    if repeat:
        ds = ds.repeat()
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def subset(split: Split, n: int, seed: int = 0) -> Split:
    """Up to n items drawn without replacement across the whole split (splits are class-ordered)."""
    if n >= len(split):
        return split
    idx = np.sort(np.random.default_rng(seed).choice(len(split), size=n, replace=False))
    return Split(
        split.labels[idx],
        paths=[split.paths[i] for i in idx] if split.paths is not None else None,
        seeds=split.seeds[idx] if split.seeds is not None else None,
        jpeg_quality=split.jpeg_quality,
        generator=split.generator,
        part=split.part,
    )


def iterate_images(split: Split, size: int, base_seed: int, limit: int | None = None):
    """Yield (uint8 image, label) one by one without TensorFlow (int8 evaluation, representative set)."""
    n = len(split) if limit is None else min(limit, len(split))
    for i in range(n):
        yield record_image(split, i, size, base_seed), int(split.labels[i])


def file_image(path: str, size: int) -> np.ndarray:
    """An image file as the model's uint8 RGB input (bilinear resize, as the int8 evaluation always did)."""
    from PIL import Image

    with Image.open(path) as im:
        img = im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def record_image(split: Split, i: int, size: int, base_seed: int) -> np.ndarray:
    """Item i of a split as uint8 RGB: its file when it has a path, else its synthetic record."""
    if split.paths is not None and split.paths[i]:
        return file_image(split.paths[i], size)
    if split.seeds is None:
        raise ValueError(f"split item {i} has neither a path nor a seed")
    return synthetic_image(int(split.labels[i]), int(split.seeds[i]), size, base_seed, split.jpeg_quality,
                           split.part, split.generator)


def heldout_factors(split: Split, base_seed: int) -> list[str | None]:
    """Which held-out factor each synthetic record samples (None for folder sources), for the report.

    `family_image` and `canopy_image` draw the look (scene) first from the record's generator, so
    replaying that one draw gives the factor without rendering the image.
    """
    if split.seeds is None:
        return [None] * len(split)
    if split.generator == "canopy":
        return [canopy.sample_scene(CLASSES[int(lab)], np.random.default_rng([base_seed, int(s)]), split.part).held_out
                for lab, s in zip(split.labels, split.seeds, strict=True)]
    return [
        sample_look(CLASSES[int(lab)], np.random.default_rng([base_seed, int(s)]), split.part).held_out
        for lab, s in zip(split.labels, split.seeds, strict=True)
    ]
