"""The activation cache: run the frozen stages once per image, train the rest on what they output.

With stages frozen (and BatchNorm frozen everywhere, see compile/model.py) the frozen part of the
network, input -> caffe_preprocess -> conv1..conv4 by default, computes the same activations for
the same image in every epoch. Pushing every image through it again each epoch was most of the
default build's time. Here it runs once per training image and augmentation variant; the
activations are kept as float16 in RAM, or in an np.memmap file when they do not fit
`train.activation_cache_mb`; only the trainable stages and the head train on them, as the "tail"
model, which shares its layers (and so its variables) with the full model. The full model then
goes through export, int8 conversion and evaluation exactly as before.

What changes against the uncached path is augmentation: it draws from `augment.variants` fixed
random variants per image (made before the frozen pass) instead of a fresh one per pass.

The small backbone (`model.backbone: small`) has no frozen part: there is nothing to cache, and
compile/train.py does not plan a cache for it (`plan_cache` says so if asked).
"""

from __future__ import annotations

import logging
import math
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .data import Split, make_dataset
from .model import (
    BASE_NAME,
    FEATURES,
    STAGES,
    front_model,
    head_stages_of,
    is_small,
    stage_input_layer,
    tail_model,
)
from .synthetic import CLASSES

if TYPE_CHECKING:
    from .config import BuildConfig

log = logging.getLogger(__name__)

# Why the small backbone trains uncached (the training facts' activation_cache_reason): the cache holds
# the output of frozen layers, and the small backbone has none before its first trainable convolution
# (its fixed scaling and low-pass cost less to run again than to cache).
SMALL_NO_CACHE = "off: every layer of the small backbone trains"
CACHE_DTYPE = np.float16  # conv activations fit float16's range; halves the memory of float32


@dataclass
class CachePlan:
    """Where the cache goes (memory, disk) or why there is none (where None, reason says why)."""

    where: str | None
    cut_layer: str | None
    shape: tuple[int, ...]
    items: int
    mb: float
    reason: str


@dataclass
class CachedSplit:
    """Activations of one split: x is (variants, images, h, w, c), y the class indices."""

    x: np.ndarray
    y: np.ndarray

    @property
    def variants(self) -> int:
        return int(self.x.shape[0])

    def __len__(self) -> int:
        return int(self.y.size)


def cut_layer_for(trainable_stages: list[str], head_stages: list[str] | None = None) -> str | None:
    """Where the frozen part ends: the first trainable stage's input, FEATURES when no stage trains.

    None when nothing is worth caching (conv1 trains) or a head stage lies before the cut (its
    pooled features would have to be cached beside the activations; not done: such a config
    trains uncached).
    """
    if not trainable_stages:
        return FEATURES
    first = min(trainable_stages, key=STAGES.index)
    if head_stages and min(STAGES.index(s) for s in head_stages) < STAGES.index(first):
        return None
    return stage_input_layer(first)


def plan_cache(model: Any, trainable_stages: list[str], n_train: int, n_val: int, variants: int,
               memory_mb: float, disk_mb: float, workdir: Path) -> CachePlan:
    """Decide memory, disk or no cache from the activation size and the configured bounds."""
    if is_small(model):
        return CachePlan(None, None, (), 0, 0.0, SMALL_NO_CACHE)
    heads = head_stages_of(model)
    cut = cut_layer_for(trainable_stages, heads)
    if cut is None:
        why = ("no stage before the first trainable one is frozen (conv1 trains)" if "conv1" in trainable_stages
               else f"the head reads stage {heads[0]}, before the first trainable stage")
        return CachePlan(None, None, (), 0, 0.0, why)
    layer = model.get_layer(FEATURES) if cut == FEATURES else model.get_layer(BASE_NAME).get_layer(cut)
    shape = tuple(int(d) for d in layer.output.shape[1:])
    items = n_train * variants + n_val
    mb = items * int(np.prod(shape)) * np.dtype(CACHE_DTYPE).itemsize / 2**20
    what = f"{items} x {shape} float16 = {mb:.0f} MB"
    if mb <= memory_mb:
        return CachePlan("memory", cut, shape, items, mb, f"{what} <= train.activation_cache_mb {memory_mb:g}")
    free_mb = shutil.disk_usage(workdir).free / 2**20
    if mb <= disk_mb and mb < 0.9 * free_mb:
        return CachePlan("disk", cut, shape, items, mb,
                         f"{what} > train.activation_cache_mb {memory_mb:g}: np.memmap in {workdir}")
    return CachePlan(None, cut, shape, items, mb,
                     f"{what} exceeds train.activation_cache_mb {memory_mb:g} and train.activation_cache_disk_mb "
                     f"{disk_mb:g} (or {free_mb:.0f} MB free disk)")


def _allocate(plan: CachePlan, name: str, variants: int, n: int, workdir: Path) -> np.ndarray:
    shape = (variants, n, *plan.shape)
    if plan.where == "disk":
        return np.lib.format.open_memmap(workdir / f"activations_{name}.npy", mode="w+", dtype=CACHE_DTYPE,
                                         shape=shape)
    return np.empty(shape, dtype=CACHE_DTYPE)


def fill_cache(model: Any, plan: CachePlan, split: Split, size: int, base_seed: int, variants: int, augment: bool,
               workdir: Path, name: str, batch_size: int = 32) -> CachedSplit:
    """Push each image of `split` (and each augmentation variant) through the frozen part once.

    Images stream through `make_dataset` (parallel generation, prefetch) in split order; with
    `augment` every variant is a fresh draw of the model's augmentation block, applied before the
    frozen pass. Progress: a tqdm bar in a terminal, and a log line about every 25 %.
    """
    from tqdm import tqdm

    front = front_model(model, plan.cut_layer)
    aug = model.get_layer("augment") if augment else None
    n = len(split)
    x = _allocate(plan, name, variants, n, workdir)
    labels = np.empty(n, dtype=np.int64)
    ds = make_dataset(split, size, batch_size, base_seed, shuffle=False, repeat=False, one_hot=False)
    total, done, pos, next_log, overflow = n * variants, 0, 0, 0.25, 0
    t0 = time.monotonic()
    bar = tqdm(total=total, desc=f"caching {name} activations", unit="img", disable=None, leave=False)
    try:
        for images, y in ds:
            k = int(images.shape[0])
            labels[pos:pos + k] = np.asarray(y)
            for v in range(variants):
                batch = aug(images, training=True) if aug is not None else images  # eager: a new draw each call
                act = np.asarray(front.predict_on_batch(batch)).astype(CACHE_DTYPE)
                overflow += int(np.isinf(act).sum())
                x[v, pos:pos + k] = act
            pos += k
            done += k * variants
            bar.update(k * variants)
            if done >= next_log * total or pos == n:
                rate = done / max(time.monotonic() - t0, 1e-9)
                log.info("caching %s activations: %d/%d (%.0f %%), %.1f img/s", name, done, total,
                         100.0 * done / total, rate)
                next_log = math.floor(done / total * 4 + 1) / 4
    finally:
        bar.close()
    if overflow:
        log.warning("%s: %d activations overflowed float16 (|x| > 65504); they are inf in the cache", name, overflow)
    if pos < n:  # a folder image that passed the scan but failed to decode (make_dataset skips it)
        log.warning("%s: %d of %d images could not be decoded and are left out of the cache", name, n - pos, n)
        x = x[:, :pos]
        labels = labels[:pos]
    return CachedSplit(x, labels)


def batches(cache: CachedSplit, batch_size: int, class_weights: dict[int, float] | None, shuffle: bool,
            seed: int) -> Iterator[tuple[Any, ...]]:
    """An endless stream of (float32 activations, one-hot labels[, sample weights]) batches.

    Shuffled: full batches from successive permutations of the images (as tf.data's shuffle +
    repeat gives the uncached path), each image as one variant drawn at random, so any
    steps_per_epoch sees every image equally often. Unshuffled (validation): the split in order,
    variant 0, restarting after its last (short) batch, so `validation_steps` batches are one pass.
    """
    rng = np.random.default_rng(seed)
    n = len(cache)
    eye = np.eye(len(CLASSES), dtype=np.float32)
    weights = None
    if class_weights:
        weights = np.array([class_weights.get(i, 1.0) for i in range(len(CLASSES))], dtype=np.float32)

    def batch(idx: np.ndarray, var: np.ndarray) -> tuple[Any, ...]:
        sort = np.argsort(idx, kind="stable")  # ascending offsets: sequential reads from a memmap
        idx, var = idx[sort], var[sort]
        xb = np.asarray(cache.x[var, idx], dtype=np.float32)
        yb = eye[cache.y[idx]]
        return (xb, yb, weights[cache.y[idx]]) if weights is not None else (xb, yb)

    if not shuffle:
        zeros = np.zeros(n, dtype=np.int64)
        while True:
            for start in range(0, n, batch_size):
                yield batch(np.arange(start, min(start + batch_size, n)), zeros[start:start + batch_size])
    pend_idx = np.empty(0, dtype=np.int64)
    pend_var = np.empty(0, dtype=np.int64)
    while True:
        while pend_idx.size < batch_size:
            pend_idx = np.concatenate([pend_idx, rng.permutation(n)])
            pend_var = np.concatenate([pend_var, rng.integers(0, cache.variants, size=n)])
        yield batch(pend_idx[:batch_size], pend_var[:batch_size])
        pend_idx, pend_var = pend_idx[batch_size:], pend_var[batch_size:]


def fit_cached(model: Any, cfg: BuildConfig, train_split: Split, val_split: Split, plan: CachePlan, workdir: Path,
               steps: int, callbacks: list, class_weights: dict[int, float] | None, augment: bool,
               optimizer_factory: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
    """Fill the caches, then fit the tail model on them; returns (Keras History, cache facts).

    `model` is the full model (BatchNorm already calibrated); training the tail trains its layers.
    """
    size, seed, bs = cfg.model.input_size, cfg.data.seed, cfg.train.batch_size
    variants = cfg.augment.variants if augment else 1
    log.info("activation cache (%s): %s", plan.where, plan.reason)
    t0 = time.monotonic()
    train_cache = fill_cache(model, plan, train_split, size, seed, variants, augment, workdir, "train")
    val_cache = fill_cache(model, plan, val_split, size, seed + 1, 1, False, workdir, "val")
    cache_s = time.monotonic() - t0
    log.info("activation cache filled in %.1f s: %d train images x %d variant(s), %d validation images, "
             "input of %s", cache_s, len(train_cache), variants, len(val_cache), plan.cut_layer)
    tail = tail_model(model, plan.cut_layer)
    tail.compile(optimizer=optimizer_factory(), loss="categorical_crossentropy", metrics=["accuracy"])
    val_steps = max(math.ceil(len(val_cache) / bs), 1)
    hist = tail.fit(
        batches(train_cache, bs, class_weights, shuffle=True, seed=seed),
        epochs=cfg.train.epochs,
        steps_per_epoch=steps,
        validation_data=batches(val_cache, bs, None, shuffle=False, seed=seed),
        validation_steps=val_steps,
        shuffle=False,  # the stream is shuffled already (batches)
        callbacks=callbacks,
        verbose=1 if sys.stderr.isatty() else 2,
    )
    facts = {
        "activation_cache": plan.where,
        "activation_cache_layer": plan.cut_layer,
        "activation_cache_mb": round(plan.mb, 1),
        "activation_cache_variants": variants,
        "activation_cache_seconds": round(cache_s, 1),
    }
    return hist, facts


# -- the small backbone: no frozen part, so the images themselves are what is kept ----------------------

def image_cache_mb(train_split: Split, val_split: Split, size: int) -> float:
    """MB that the training and validation images take in `image_cache` (uint8; float32 for a folder source)."""
    return sum(len(s) * size * size * 3 * np.dtype(_image_dtype(s)).itemsize
               for s in (train_split, val_split)) / 2**20


def _image_dtype(split: Split) -> type:
    # synthetic records and labelled tiles are uint8; a folder source's images are resized floats
    return np.float32 if split.seeds is None else np.uint8


def image_cache(split: Split, size: int, base_seed: int, name: str, batch_size: int = 64) -> CachedSplit:
    """Every image of `split` made (or decoded) once, through `make_dataset`'s parallel pipeline, kept in memory."""
    dtype = _image_dtype(split)
    x: np.ndarray = np.empty((1, len(split), size, size, 3), dtype=dtype)
    labels = np.empty(len(split), dtype=np.int64)
    pos = 0
    t0 = time.monotonic()
    for images, y in make_dataset(split, size, batch_size, base_seed, shuffle=False, repeat=False, one_hot=False):
        k = int(images.shape[0])
        x[0, pos:pos + k] = np.asarray(images).astype(dtype)  # uint8 images come back as exact floats
        labels[pos:pos + k] = np.asarray(y)
        pos += k
    log.info("image cache: %d %s images made in %.1f s", pos, name, time.monotonic() - t0)
    return CachedSplit(x[:, :pos], labels[:pos])


def fit_images(model: Any, cfg: BuildConfig, train_split: Split, val_split: Split, steps: int, callbacks: list,
               class_weights: dict[int, float] | None) -> tuple[Any, dict[str, Any]]:
    """Train the whole (compiled) small-backbone model on its images, each made once: returns (History, facts).

    Every layer of the small CNN trains, so there are no activations to cache; what costs is drawing
    the images, more than a training step's share of each. They are made once (through the uncached
    path's parallel pipeline, in split order) and the batches are drawn from memory exactly as
    `fit_cached` draws activations (`batches`: seeded permutations, class weights as sample weights).
    Augmentation, if on, is the model's own layers, fresh on every step. (Fitting on a cached tf.data
    pipeline instead held the end of `fit` up by 11-17 s with class weights on.)
    """
    size, seed, bs = cfg.model.input_size, cfg.data.seed, cfg.train.batch_size
    t0 = time.monotonic()
    train_cache = image_cache(train_split, size, seed, "training")
    val_cache = image_cache(val_split, size, seed + 1, "validation")
    made_s = time.monotonic() - t0
    hist = model.fit(
        batches(train_cache, bs, class_weights, shuffle=True, seed=seed),
        epochs=cfg.train.epochs,
        steps_per_epoch=steps,
        validation_data=batches(val_cache, bs, None, shuffle=False, seed=seed),
        validation_steps=max(math.ceil(len(val_cache) / bs), 1),
        shuffle=False,  # the stream is shuffled already (batches)
        callbacks=callbacks,
        verbose=1 if sys.stderr.isatty() else 2,
    )
    mb = (train_cache.x.nbytes + val_cache.x.nbytes) / 2**20
    return hist, {"image_cache_mb": round(mb, 1), "image_cache_seconds": round(made_s, 1)}
