"""Training under a tf.distribute strategy, with the usual guards against over- and under-training.

The same code trains on a laptop CPU and on a multi-GPU box: with several GPUs the model is
built under MirroredStrategy and the global batch is split across them. By default the frozen
stages run once per image and the trainable ones train on their cached output
(compile/actcache.py); `train.activation_cache: false` trains the whole graph on every step.
The small backbone (`model.backbone: small`) has no frozen stage: it always trains the whole graph,
on images made once and kept in memory (compile/actcache.py `fit_images`).
"""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .actcache import SMALL_NO_CACHE, fit_cached, fit_images, image_cache_mb, plan_cache
from .config import BuildConfig
from .data import DataSplits, class_weights, iterate_images, make_dataset, subset
from .model import FEATURES_NORM, build_model, calibrate_batchnorm, describe_weights

log = logging.getLogger(__name__)


def pick_strategy():
    """MirroredStrategy over several GPUs, else the default (single-device) strategy."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        log.info("training on %d GPUs with MirroredStrategy", len(gpus))
        return tf.distribute.MirroredStrategy()
    log.info("training on %s", "1 GPU" if gpus else "the CPU")
    return tf.distribute.get_strategy()


def set_seeds(seed: int) -> None:
    """Seed Python, numpy and TensorFlow, and ask TensorFlow for deterministic kernels.

    Without determinism two quick builds from the same config measured held-out mildew recall 0.96
    and 0.953 (multi-threaded reductions add in a different order): a build could not be
    reproduced, nor a card's figure checked by building again.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def train(cfg: BuildConfig, splits: DataSplits, workdir: Path,
          init_weights: Path | None = None) -> tuple[Any, dict[str, list[float]], dict[str, Any]]:
    """Train the classifier; return (best Keras model, history, training facts for the model card).

    With `init_weights` (a parent bundle's payload.bundle.FLOAT_WEIGHTS, compile/labels.py) the model
    is built with `cfg.model` (the parent's graph), every weight is loaded from the file (backbone,
    BatchNorm statistics, head: a random backbone comes back identical, no download happens) and
    BatchNorm is not calibrated again, so training starts exactly where the parent stopped.
    """
    import keras

    from .model import export_model

    set_seeds(cfg.data.seed)
    strategy = pick_strategy()
    size, bs = cfg.model.input_size, cfg.train.batch_size
    global_bs = bs * strategy.num_replicas_in_sync
    steps = cfg.train.steps_per_epoch or max(math.ceil(len(splits.train) / global_bs), 1)
    augment = cfg.augment.active(cfg.model.weights)
    with strategy.scope():
        if init_weights is None:
            model = build_model(cfg.model, cfg.augment, seed=cfg.data.seed)
        else:
            # the graph only: weights come from the file, so no backbone weights are read or downloaded
            # (augmentation stays as the parent's weights kind resolves it)
            model = build_model(cfg.model.model_copy(update={"weights": "none"}),
                                cfg.augment.model_copy(update={"enabled": augment}), seed=cfg.data.seed)
            export_model(model).load_weights(str(init_weights))  # shares its layers with `model`
            log.info("initialised every weight from %s", init_weights)
    small = cfg.model.small
    random_init = describe_weights(cfg.model.weights, cfg.model.backbone).startswith("none")
    if small:
        log.warning("backbone: small CNN, not ResNet-50 and not ImageNet transfer learning: every weight is "
                    "learnt from scratch on the training data; for offline demos and tests, not a model to fly")
        log.info("head reads the small CNN's last convolution (%s pooling); every layer trains (fixed: the 0-255 "
                 "scaling%s)", "+".join(cfg.model.head_pooling),
                 f" and the Gaussian low-pass, sigma {cfg.model.lowpass_px:g} px" if cfg.model.lowpass_px else "")
    else:
        if random_init:
            log.warning("backbone weights: none (random init): the frozen stages are RANDOM features, not ImageNet "
                        "transfer learning; fine for offline demos and tests, not for a model to fly")
        log.info("head reads %s (%s pooling); trainable backbone stages: %s",
                 "+".join(cfg.model.resolved_head_stages()), "+".join(cfg.model.head_pooling),
                 ", ".join(cfg.model.resolved_trainable_stages()) or "none")
    # before any activation is cached: the frozen stages (random init) and the features norm are BN
    if init_weights is None:
        n_cal = min(128 if size <= 128 else 48, len(splits.train))
        cal = np.stack([img for img, _ in iterate_images(subset(splits.train, n_cal, seed=cfg.data.seed), size,
                                                           cfg.data.seed)])
        every = random_init and not small  # the small CNN has no BatchNorm of its own
        log.info("calibrating BatchNorm statistics (%s) on %d training images",
                 "every layer: random init" if every else "features norm", len(cal))
        calibrate_batchnorm(model, cal, None if every else (FEATURES_NORM,))
    else:
        log.info("BatchNorm statistics kept from the parent (a fine-tune changes the head, not the features' scale)")
    log.info("augmentation: %s", "on" if augment else
             f"off (augment.enabled: {cfg.augment.enabled}, weights {cfg.model.weights})")
    ckpt = workdir / "best.weights.h5"
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=cfg.train.early_stopping_patience, restore_best_weights=True
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=cfg.train.reduce_lr_factor, patience=cfg.train.reduce_lr_patience, verbose=1
        ),
        keras.callbacks.ModelCheckpoint(str(ckpt), monitor="val_loss", save_best_only=True, save_weights_only=True),
        keras.callbacks.CSVLogger(str(workdir / "history.csv")),
    ]
    weights = class_weights(splits.train.labels) if cfg.train.class_weights else None
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    total = sum(int(np.prod(w.shape)) for w in model.weights)
    log.info(
        "training %d epochs x %d steps, batch %d, input %d px, %d of %d parameters trainable",
        cfg.train.epochs, steps, global_bs, size, trainable, total,
    )
    cache_facts: dict[str, Any] = {"activation_cache": None}
    plan = None
    if small:
        cache_facts["activation_cache_reason"] = SMALL_NO_CACHE
    elif not cfg.train.activation_cache:
        cache_facts["activation_cache_reason"] = "off (train.activation_cache: false)"
    else:
        plan = plan_cache(model, cfg.model.resolved_trainable_stages(), len(splits.train), len(splits.val),
                          cfg.augment.variants if augment else 1, cfg.train.activation_cache_mb,
                          cfg.train.activation_cache_disk_mb, workdir)
        if plan.where is None:
            cache_facts["activation_cache_reason"] = plan.reason
            plan = None
    if plan is not None:
        with strategy.scope():
            hist, facts = fit_cached(
                model, cfg.model_copy(update={"train": cfg.train.model_copy(update={"batch_size": global_bs})}),
                splits.train, splits.val, plan, workdir, steps, callbacks, weights, augment,
                lambda: keras.optimizers.Adam(cfg.train.learning_rate),
            )
        cache_facts = facts | {"activation_cache_reason": plan.reason}
    else:
        (log.info if small else log.warning)("activation cache not used: %s; every step runs the whole network",
                                             cache_facts["activation_cache_reason"])
        with strategy.scope():
            model.compile(
                optimizer=keras.optimizers.Adam(cfg.train.learning_rate),
                loss="categorical_crossentropy",
                metrics=["accuracy"],
            )
        # the small backbone's epochs are cheap next to drawing its images: made once, kept in memory
        image_mb = image_cache_mb(splits.train, splits.val, size)
        if small and image_mb <= cfg.train.activation_cache_mb:
            log.info("image cache: the %d training and %d validation images are made once and kept in memory "
                     "(%.0f MB <= train.activation_cache_mb %d)", len(splits.train), len(splits.val), image_mb,
                     cfg.train.activation_cache_mb)
            bs_cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"batch_size": global_bs})})
            hist, image_facts = fit_images(model, bs_cfg, splits.train, splits.val, steps, callbacks, weights)
            cache_facts |= image_facts
        else:
            if small:
                log.warning("image cache: %.0f MB > train.activation_cache_mb %d; every epoch makes its images "
                            "again", image_mb, cfg.train.activation_cache_mb)
            train_ds = make_dataset(splits.train, size, global_bs, cfg.data.seed, shuffle=True, repeat=True)
            val_ds = make_dataset(splits.val, size, global_bs, cfg.data.seed + 1)
            hist = model.fit(
                train_ds,
                epochs=cfg.train.epochs,
                steps_per_epoch=steps,
                validation_data=val_ds,
                class_weight=weights,
                callbacks=callbacks,
                verbose=1 if sys.stderr.isatty() else 2,  # a progress bar in a terminal, one line per epoch in logs
            )
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    (workdir / "history.json").write_text(json.dumps(history, indent=1))
    facts = {
        "epochs_run": len(history.get("loss", [])),
        "epochs_max": cfg.train.epochs,
        "steps_per_epoch": steps,
        "batch_size": global_bs,
        "replicas": strategy.num_replicas_in_sync,
        "learning_rate": cfg.train.learning_rate,
        "class_weights": {str(k): round(v, 4) for k, v in (weights or {}).items()},
        "parameters": total,
        "trainable_parameters": trainable,
        "best_val_loss": min(history.get("val_loss", [float("nan")])),
        "augment_active": augment,
        "init_weights": None if init_weights is None else str(init_weights),
    } | cache_facts
    return model, history, facts


def predict_split(model, split, size: int, base_seed: int, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Float scores for a split, batch by batch, from the same uint8 images the int8 model sees."""
    scores, labels, buf = [], [], []
    for img, label in iterate_images(split, size, base_seed):
        buf.append(img)
        labels.append(label)
        if len(buf) == batch:
            scores.append(model.predict_on_batch(np.stack(buf).astype(np.float32)))
            buf = []
    if buf:
        scores.append(model.predict_on_batch(np.stack(buf).astype(np.float32)))
    return np.concatenate(scores).astype(np.float64), np.asarray(labels)
