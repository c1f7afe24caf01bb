"""One bundle build: data -> training -> evaluation -> int8 -> pre-check -> compiler -> bundle.

Order matters for the operator: everything that can fail on bad input (config, data, weights)
fails before training starts; the agreement floor fails before anything is written over an
existing bundle; a missing compiler fails only after the complete int8 bundle is in place, since
that bundle is useful on its own (CPU fallback, Coral's web compiler).
"""

from __future__ import annotations

import json
import logging
import platform
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from payload.bundle import CARD, CPU_MODEL, FLOAT_WEIGHTS, FORMAT_VERSION, LABELS, ModelCard

from . import report
from .bundle import finalize, staging_dir
from .config import BuildConfig
from .data import heldout_factors, iterate_images, make_splits, subset
from .edgetpu import run_compiler
from .errors import BuildError, CompilerError, CompilerNotFoundError, NothingMappedError, QuantizationError
from .metrics import DISEASES, choose_thresholds, classification_report, cost_table, decide
from .roc import auc_summary, per_class_roc
from .sensor import calibrate_sensor_model
from .synthetic import CLASSES, HEALTHY
from .tflite_check import check_model

log = logging.getLogger(__name__)
INT8_NAME = CPU_MODEL


@dataclass
class BuildResult:
    bundle: Path
    card: dict[str, Any]
    compiler_error: CompilerError | None


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def int8_scores(path: Path, split, size: int, base_seed: int) -> tuple[np.ndarray, np.ndarray, tuple[float, int]]:
    """Scores of the int8 model on a split, image by image as on the drone."""
    from tqdm import tqdm

    from .quantize import Int8Runner

    runner = Int8Runner(path)
    scores, labels = [], []
    images = iterate_images(split, size, base_seed)
    for img, label in tqdm(images, total=len(split), desc="int8 eval", unit="img", disable=None, leave=False):
        scores.append(runner.scores(img))
        labels.append(label)
    return np.asarray(scores, dtype=np.float64), np.asarray(labels), runner.input_quantization


def _evaluate(scores: np.ndarray, y: np.ndarray, thresholds: dict[str, float], cfg: BuildConfig) -> dict[str, Any]:
    argmax = classification_report(y, scores.argmax(axis=1))
    at_thr = classification_report(y, decide(scores, thresholds))
    return {
        "argmax": argmax,
        "at_thresholds": at_thr,
        "cost": cost_table(y, decide(scores, thresholds), cfg.evaluate.cost_missed_disease,
                           cfg.evaluate.cost_false_alarm),
    }


def _evaluate_heldout(model, int8_path: Path, splits, thr_float: dict[str, float], thr_int8: dict[str, float],
                      cfg: BuildConfig) -> dict[str, Any] | None:
    """Float and int8 figures on the held-out generator families, overall and per held-out factor.

    The in-distribution test split says how well the model learnt its generator; this says how it
    does on looks it never saw, which is the closer stand-in for a real field.
    """
    from .train import predict_split

    split = splits.heldout
    if split is None or len(split) == 0:
        return None
    size, seed = cfg.model.input_size, cfg.data.seed
    log.info("evaluating float and int8 on %d held-out images (%s)", len(split), splits.heldout_what)
    held_f, y = predict_split(model, split, size, seed)
    held_q, _, _ = int8_scores(int8_path, split, size, seed)
    m_f = _evaluate(held_f, y, thr_float, cfg)
    m_q = _evaluate(held_q, y, thr_int8, cfg)
    m_f["roc_auc"] = auc_summary(per_class_roc(held_f, y))
    m_q["roc_auc"] = auc_summary(per_class_roc(held_q, y))
    factors = np.array([f or "-" for f in heldout_factors(split, seed)])
    by_factor = {f: _factor_figures(held_q[factors == f], y[factors == f], thr_int8)
                 for f in sorted(set(factors.tolist()))}
    worst = min(by_factor, key=lambda f: (by_factor[f]["accuracy"], f))
    log.info("held-out: int8 accuracy at thresholds %.4f, disease recall %.4f; by factor %s; worst %s",
             m_q["at_thresholds"]["accuracy"], m_q["at_thresholds"]["disease_recall"],
             {f: round(v["accuracy"], 3) for f, v in by_factor.items()}, worst)
    return {"what": splits.heldout_what, "images": int(len(y)), "float": m_f, "int8": m_q,
            "int8_by_factor": by_factor,
            # the headline: a model is as good as its worst unseen condition, not their average
            "headline": {"factor": worst, "accuracy": by_factor[worst]["accuracy"],
                         "disease_recall": by_factor[worst]["disease_recall"]}}


def _factor_figures(scores: np.ndarray, y: np.ndarray, thresholds: dict[str, float]) -> dict[str, Any]:
    """Accuracy at thresholds and disease recall (diseased tiles flagged as any disease) of one factor's images."""
    pred = decide(scores, thresholds)
    diseased = y != CLASSES.index(HEALTHY)
    flagged = pred != CLASSES.index(HEALTHY)
    return {"images": int(len(y)), "accuracy": float(np.mean(pred == y)),
            "disease_recall": float(flagged[diseased].mean()) if diseased.any() else None}


def gsd_ladder(int8_path: Path, cfg: BuildConfig, thresholds: dict[str, float]) -> dict[str, Any] | None:
    """Tile recall per ground resolution at the reference stage, and the working ground resolution.

    Every tile lies wholly inside a patch at the reference stage (compile.canopy.REFERENCE_STAGE),
    drawn whether or not the disease is visible at that resolution: the ladder measures where the
    bundle stops seeing it. Recall counts a tile as found when it is flagged as its own disease.
    `working_gsd_mm` is the coarsest rung up to which every rung's worst-disease recall reaches
    evaluate.gsd_min_recall (a rung that fails ends the run, so a lucky coarse rung cannot claim
    it); None when even the finest fails.
    """
    from tqdm import tqdm

    from . import canopy
    from .quantize import Int8Runner

    ev, size = cfg.evaluate, cfg.model.input_size
    if cfg.data.source != "synthetic" or cfg.data.generator != "canopy" or ev.gsd_images == 0:
        return None
    runner = Int8Runner(int8_path)
    counts = {"healthy": max(ev.gsd_images // 2, 1), **{d: ev.gsd_images for d in DISEASES}}
    jobs = [(g, cls, i) for g in ev.gsd_ladder_mm for cls, n in counts.items() for i in range(n)]
    rows: dict[str, dict[str, Any]] = {}
    scores: dict[tuple[float, str], list[np.ndarray]] = {}
    for g, cls, i in tqdm(jobs, desc="gsd ladder", unit="img", disable=None, leave=False):
        rng = np.random.default_rng([cfg.data.seed, 7_000_003, int(round(g * 1000)), CLASSES.index(cls), i])
        img = canopy.ladder_image(cls, size, g, rng)
        if cfg.data.jpeg_quality is not None:
            from .data import jpeg_roundtrip

            img = jpeg_roundtrip(img, int(rng.integers(cfg.data.jpeg_quality[0], cfg.data.jpeg_quality[1] + 1)))
        scores.setdefault((g, cls), []).append(runner.scores(img))
    for g in ev.gsd_ladder_mm:
        row: dict[str, Any] = {}
        for cls in counts:
            pred = decide(np.asarray(scores[(g, cls)]), thresholds)
            if cls == HEALTHY:
                row["false_alarm_rate"] = float(np.mean(pred != CLASSES.index(HEALTHY)))
            else:
                row[cls] = float(np.mean(pred == CLASSES.index(cls)))
        row["worst"] = min(row[d] for d in DISEASES)
        rows[f"{g:g}"] = row
        log.info("gsd %5.1f mm/px: recall %s, false alarms %.3f", g,
                 ", ".join(f"{d} {row[d]:.2f}" for d in DISEASES), row["false_alarm_rate"])
    working = None
    for g in sorted(ev.gsd_ladder_mm):
        if rows[f"{g:g}"]["worst"] < ev.gsd_min_recall:
            break
        working = float(g)
    log.info("working ground resolution: %s mm per model-input pixel (recall >= %.2f at stage %s)",
             working, ev.gsd_min_recall, canopy.REFERENCE_STAGE)
    return {"working_gsd_mm": working, "stage": canopy.REFERENCE_STAGE,
            "stage_incidence_severity": list(canopy.STAGES[canopy.REFERENCE_STAGE]),
            "min_recall": ev.gsd_min_recall, "images_per_disease": ev.gsd_images,
            "recall_by_gsd_mm": rows}


def run_build(
    cfg: BuildConfig, out: Path, profile: str = "default", cpu_only: bool = False, save_float: Path | None = None,
    labels: list[Path] | None = None, init_from: Path | None = None,
) -> BuildResult:
    """Build a bundle into `out`. Raises UserError subclasses for operator-fixable problems.

    With `init_from` (and `labels`) the build fine-tunes that bundle: its float weights and its model
    config (the parent's graph replaces `cfg.model`), the labelled tiles mixed into the synthetic
    training split, before/after figures on the held-back labels (compile/labels.py).
    """
    from . import labels as labels_mod
    from .model import check_weights, describe_weights, export_model
    from .quantize import convert_int8
    from .train import predict_split, train

    t0 = time.monotonic()
    cpu_only = cpu_only or cfg.edgetpu.cpu_only
    cfg, parent, label_sources = fine_tune_inputs(cfg, labels, init_from)
    if parent is None:
        check_weights(cfg.model)  # offline imagenet or a bad file fails here, before any data or training
    if cfg.resolved_train() is not cfg.train:
        t = cfg.resolved_train()
        log.info("no backbone stage trains: the head's schedule (train.head_only): %d epochs, batch %d, lr %g",
                 t.epochs, t.batch_size, t.learning_rate)
        cfg = cfg.model_copy(update={"train": t})
    backbone = describe_weights(cfg.model.weights, cfg.model.backbone)
    if parent is not None:
        backbone = str(parent.card.get("backbone_weights") or backbone)
    learnt_from = learnt_from_text(cfg.data.source, bool(label_sources))
    warnings = random_backbone_warnings(backbone, cfg.model.small, learnt_from)
    splits = make_splits(cfg.data)
    label_split = None
    label_facts: dict[str, Any] | None = None
    if label_sources:
        label_split = labels_mod.split_labels(label_sources, cfg.data.labels_holdout, cfg.data.seed)
        splits.train, mix_facts = labels_mod.mix(splits.train, label_split.train, cfg.data.labels_share)
        label_facts = label_split.facts | {"mix": mix_facts}
    log.info("data (%s): %s", splits.source, json.dumps(splits.summary()["counts"]))
    size, seed = cfg.model.input_size, cfg.data.seed
    staging = staging_dir(out)
    workdir = Path(tempfile.mkdtemp(prefix="cropscout-train-"))
    try:
        (staging / "report").mkdir()
        t_train = time.monotonic()
        if parent is None:
            trained, history, train_facts = train(cfg, splits, workdir)
        else:
            trained, history, train_facts = train(cfg, splits, workdir, init_weights=parent.weights)
        train_s = time.monotonic() - t_train
        model = export_model(trained)
        # the whole float model, for a later --init-from (payload.bundle.FLOAT_WEIGHTS; never loaded in flight)
        model.save_weights(str(staging / FLOAT_WEIGHTS))
        if save_float is not None:
            save_float.parent.mkdir(parents=True, exist_ok=True)
            model.save(save_float)
            log.info("float model saved to %s", save_float)

        log.info("evaluating the float model on validation (%d) and test (%d)", len(splits.val), len(splits.test))
        val_f, y_val = predict_split(model, splits.val, size, seed)
        test_f, y_test = predict_split(model, splits.test, size, seed)

        log.info("quantizing to full int8 (%d representative images)", cfg.quantize.representative_images)
        t_q = time.monotonic()
        int8_path = staging / INT8_NAME
        rep_split = subset(splits.train, cfg.quantize.representative_images, seed=seed)
        rep = (img for img, _ in iterate_images(rep_split, size, seed))
        convert_int8(model, rep, int8_path)
        quant_s = time.monotonic() - t_q
        log.info("quantized in %.1f s; evaluating the int8 model", quant_s)
        val_q, _, in_q = int8_scores(int8_path, splits.val, size, seed)
        test_q, _, _ = int8_scores(int8_path, splits.test, size, seed)

        # thresholds for the model that ships (int8), chosen on validation only
        ev = cfg.evaluate
        chosen = choose_thresholds(val_q, y_val, ev.target_recall, ev.cost_missed_disease, ev.cost_false_alarm,
                                   ev.min_threshold)
        chosen_float = choose_thresholds(val_f, y_val, ev.target_recall, ev.cost_missed_disease,
                                         ev.cost_false_alarm, ev.min_threshold)
        thresholds = chosen["thresholds"]
        m_float = _evaluate(test_f, y_test, chosen_float["thresholds"], cfg)
        m_int8 = _evaluate(test_q, y_test, thresholds, cfg)
        roc = {"float": per_class_roc(test_f, y_test), "int8": per_class_roc(test_q, y_test)}
        m_float["roc_auc"] = auc_summary(roc["float"])
        m_int8["roc_auc"] = auc_summary(roc["int8"])
        agreement = float(np.mean(test_f.argmax(1) == test_q.argmax(1)))
        fidelity = {
            "agreement": agreement,
            "accuracy_delta": m_int8["argmax"]["accuracy"] - m_float["argmax"]["accuracy"],
            "agreement_floor": cfg.quantize.agreement_floor,
            "max_abs_score_diff": float(np.abs(test_f - test_q).max()),
        }
        log.info(
            "test accuracy float %.4f int8 %.4f, agreement %.4f; int8 disease recall at thresholds %.4f",
            m_float["argmax"]["accuracy"], m_int8["argmax"]["accuracy"], agreement,
            m_int8["at_thresholds"]["disease_recall"],
        )
        if agreement < cfg.quantize.agreement_floor:
            raise QuantizationError(
                f"int8 and float models agree on only {agreement:.3f} of the test images (floor "
                f"{cfg.quantize.agreement_floor}); raise quantize.representative_images, train longer, or lower "
                "quantize.agreement_floor knowingly"
            )
        heldout = _evaluate_heldout(model, int8_path, splits, chosen_float["thresholds"], thresholds, cfg)
        if label_split is not None and parent is not None and label_facts is not None:
            label_facts |= label_figures(parent, int8_path, label_split.eval, thresholds, cfg)
        ladder = gsd_ladder(int8_path, cfg, thresholds)
        precheck = check_model(int8_path, cfg.edgetpu.min_runtime_version)
        log.info("pre-check: %s", "OK" if precheck.ok else "; ".join(precheck.errors))

        if cpu_only:
            reason = "built with --cpu-only (edgetpu_compiler not run)"
        else:
            reason = "not compiled yet"

        (staging / LABELS).write_text("\n".join(CLASSES) + "\n", encoding="utf-8")
        metrics = {"float": m_float, "int8": m_int8, "fidelity": fidelity,
                   "thresholds_int8": chosen, "thresholds_float": chosen_float,
                   "data": splits.summary(), "roc": roc, "backbone_weights": backbone, "warnings": warnings,
                   "heldout": heldout, "gsd_ladder": ladder, "labels": label_facts}
        (staging / "report" / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        (staging / "report" / "history.json").write_text(json.dumps(history, indent=1) + "\n")
        report.confusion_png(m_float["argmax"]["confusion_matrix"], "float, test, argmax",
                             staging / "report" / "confusion_matrix_float.png")
        report.confusion_png(m_int8["at_thresholds"]["confusion_matrix"], "int8, test, at thresholds",
                             staging / "report" / "confusion_matrix_int8.png")
        if heldout is not None:
            report.confusion_png(heldout["int8"]["at_thresholds"]["confusion_matrix"],
                                 "int8, held-out families, at thresholds",
                                 staging / "report" / "confusion_matrix_heldout_int8.png")
        report.training_png(history, staging / "report" / "training_curves.png")
        report.threshold_png(val_q, y_val, chosen, cfg.evaluate.target_recall,
                             staging / "report" / "threshold_recall.png")
        report.roc_png(roc, staging / "report" / "roc_curves.png")
        feature_maps(model, splits.test, size, seed, staging / "report" / "feature_maps.png")
        build_s = time.monotonic() - t0
        card = ModelCard.model_validate({
            "format_version": FORMAT_VERSION,
            "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "profile": profile,
            "backbone_weights": backbone,
            "warnings": warnings,
            "classes": list(CLASSES),
            "healthy_class": HEALTHY,
            "disease_classes": list(DISEASES),
            "input": {"height": size, "width": size, "channels": 3, "dtype": "uint8", "color": "RGB",
                      "quantization": {"scale": in_q[0], "zero_point": in_q[1]},
                      "preprocessing": _preprocessing_text(cfg.model)},
            "output": {"dtype": "uint8", "meaning": "softmax scores, dequantize to 0-1"},
            "thresholds": thresholds,
            "threshold_selection": {k: v for k, v in chosen.items() if k != "thresholds"},
            "sensor_model": calibrate_sensor_model(val_q, y_val, thresholds, CLASSES, HEALTHY, DISEASES),
            "edgetpu": {
                "compiled": False,
                "cpu_only": cpu_only,
                "reason": reason,
                "summary": None,
                "precheck": precheck.to_dict() | {"path": INT8_NAME},
                "min_runtime_version": cfg.edgetpu.min_runtime_version,
            },
            "metrics": {
                "float": _card_metrics(m_float),
                "int8": _card_metrics(m_int8),
                "agreement": agreement,
                "accuracy_delta": fidelity["accuracy_delta"],
                "test_images": int(len(y_test)),
                "validation_images": int(len(y_val)),
                "heldout": None if heldout is None else {
                    "what": heldout["what"],
                    "images": heldout["images"],
                    "float": _card_metrics(heldout["float"]),
                    "int8": _card_metrics(heldout["int8"]),
                    "int8_by_factor": heldout["int8_by_factor"],
                    "headline": heldout["headline"],
                },
            },
            **({} if parent is None else {
                # the parent's int8 model hash (its card's files[model_int8.tflite]): which bundle this one refines
                "parent_model_sha256": parent.model_sha256,
                "init_from": {"path": str(parent.path), "created_utc": parent.card.get("created_utc"),
                              "profile": parent.card.get("profile"), "thresholds": parent.thresholds},
                "labels": label_facts,
            }),
            "working_gsd_mm": None if ladder is None else ladder["working_gsd_mm"],
            "gsd_recall": ladder,
            "training": train_facts | {
                "backbone": _backbone_text(cfg.model, learnt_from),
                "weights": cfg.model.weights,
                # ResNet stages; null for the small backbone, which has none (every one of its layers trains)
                "head_stages": None if cfg.model.small else cfg.model.resolved_head_stages(),
                "head_pooling": cfg.model.head_pooling,
                "trainable_stages": None if cfg.model.small else cfg.model.resolved_trainable_stages(),
                "head_units": cfg.model.head_units,
                "data": splits.summary(),
                "augment": cfg.augment.model_dump(mode="json"),
                "seed": seed,
                "train_seconds": round(train_s, 1),
                "quantize_seconds": round(quant_s, 1),
                "build_seconds": round(build_s, 1),
                "peak_rss_mb": round(peak_rss_mb(), 1),
                "representative_images": cfg.quantize.representative_images,
                "config": cfg.model_dump(mode="json", exclude={"profiles"}),
            },
            "tools": {
                "tensorflow": _version("tensorflow-cpu") or _version("tensorflow"),
                "keras": _version("keras"),
                "ai_edge_litert": _version("ai-edge-litert"),
                "numpy": np.__version__,
                "python": platform.python_version(),
                "edgetpu_compiler": None,
            },
        })
        written = finalize_card(staging, out, card)
        log.info("int8 bundle written to %s in %.0f s (peak RSS %.0f MB)", out, build_s, peak_rss_mb())
        for warning in warnings:
            log.warning("%s", warning)
        compiler_error: CompilerError | None = None
        if not cpu_only:
            try:
                written = attach_edgetpu(out, cfg.edgetpu.compiler, cfg.edgetpu.min_runtime_version,
                                         cfg.edgetpu.timeout_s, cfg.edgetpu.num_segments)
            except CompilerError as err:
                compiler_error = err
                written = json.loads((out / CARD).read_text())
        return BuildResult(out, written, compiler_error)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def fine_tune_inputs(cfg: BuildConfig, labels: list[Path] | None,
                     init_from: Path | None) -> tuple[BuildConfig, Any, list[Any]]:
    """The parent bundle and the label folders of a fine-tune, read before anything trains.

    Returns the config with the parent's model config in place of `cfg.model` (the same graph, to
    load its weights into), the parent (None for an ordinary build) and the label sources.
    """
    from . import labels as labels_mod

    if labels and init_from is None:
        raise BuildError("--labels needs --init-from BUNDLE: labels fine-tune a bundle (the labels alone are too few "
                         "to train one); to train from scratch on labelled folders use data.source: folder")
    if init_from is not None and not labels:
        raise BuildError("--init-from needs --labels DIR [DIR ...]: the labelled flight tiles to fine-tune on")
    if init_from is None:
        return cfg, None, []
    parent = labels_mod.load_parent(init_from)
    log.info("fine-tuning %s (model %s...): its graph %s", init_from, parent.model_sha256[:12],
             json.dumps(parent.model.model_dump(mode="json")))
    sources = [labels_mod.read_labels(Path(d)) for d in labels or []]
    return cfg.model_copy(update={"model": parent.model}), parent, sources


def label_figures(parent: Any, int8_path: Path, split: Any, thresholds: dict[str, float],
                  cfg: BuildConfig) -> dict[str, Any]:
    """Before/after on the held-back labels: the parent's int8 model at its thresholds, then this one's.

    Both are the int8 models that fly, each with its own card's thresholds, so `before` is what the
    parent did over that ground and `after` what the fine-tuned bundle will do.
    """
    from .labels import figures

    size, seed = cfg.model.input_size, cfg.data.seed
    log.info("scoring the parent and the fine-tuned int8 models on %d held-back labels", len(split))
    before, y, _ = int8_scores(parent.int8_model, split, size, seed)
    after, _, _ = int8_scores(int8_path, split, size, seed)
    out = {"before": figures(before, y, parent.thresholds), "after": figures(after, y, thresholds)}
    for side in ("before", "after"):
        f = out[side]
        log.info("held-back labels, %s: accuracy %.3f, disease recall %s, false alarms %s, recall %s", side,
                 f["accuracy"], f["disease_recall"], f["false_alarm_rate"], json.dumps(f["recall"]))
    return out


def attach_edgetpu(bundle: Path, compiler: str = "edgetpu_compiler", min_runtime: int = 14,
                   timeout_s: float = 600, num_segments: int = 1) -> dict[str, Any]:
    """Compile a bundle's int8 model and rewrite the bundle with the Edge TPU model, log and summary.

    With `num_segments` > 1 the bundle carries the compiler's N segment models and logs instead
    (payload/bundle.py `EDGETPU_SEGMENT`), every one hashed in the card's file table like any file.

    Works on any complete bundle, so an int8 bundle built where the compiler is missing can be
    compiled later on a machine that has it. On failure the bundle is rewritten without any
    Edge TPU file and its card says why; the CompilerError is then raised.
    """
    card_path = bundle / CARD
    if not card_path.is_file() or not (bundle / INT8_NAME).is_file():
        raise BuildError(f"{bundle} is not a model bundle (no {CARD} or {INT8_NAME}); build one first")
    card = ModelCard.model_validate_json(card_path.read_text())
    staging = staging_dir(bundle)
    try:
        for p in bundle.rglob("*"):
            if p.is_file() and p.name != CARD and "_edgetpu." not in p.name:
                target = staging / p.relative_to(bundle)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(p, target)
        edgetpu = dict(card.edgetpu or {})
        summary: dict[str, Any] | None = None
        try:
            log.info("running edgetpu_compiler on %s", bundle / INT8_NAME)
            summary = run_compiler(staging / INT8_NAME, staging, compiler, min_runtime, timeout_s, num_segments)
            check_mapped(summary)
        except CompilerError as err:
            for stray in staging.glob("*_edgetpu.*"):
                stray.unlink()  # never ship a half-written Edge TPU model, nor one the TPU would not run
            not_found = isinstance(err, CompilerNotFoundError)
            mapped_nothing = isinstance(err, NothingMappedError)
            edgetpu.update(compiled=False, cpu_only=False, summary=summary if mapped_nothing else None,
                           reason="edgetpu_compiler not found" if not_found else f"edgetpu_compiler failed: {err}")
            tools = (card.tools or {}) | {"edgetpu_compiler": None}
            card = card.model_copy(update={"edgetpu": edgetpu, "tools": tools})
            finalize(staging, bundle, card)
            raise
        edgetpu.update(compiled=True, cpu_only=False, reason=None, summary=summary, min_runtime_version=min_runtime,
                       num_segments=max(num_segments, 1), model_files=summary["model_files"])
        card = card.model_copy(
            update={"edgetpu": edgetpu, "tools": (card.tools or {}) | {"edgetpu_compiler": summary.get("version")}}
        )
        if not summary.get("fully_mapped", True):
            log.warning("only %s of %s ops run on the Edge TPU; see %s", summary.get("ops_on_tpu"),
                        summary.get("total_ops"), summary.get("log_file"))
        return finalize_card(staging, bundle, card)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def check_mapped(summary: dict[str, Any]) -> None:
    """Raise NothingMappedError when the compiler put no op on the Edge TPU.

    The real compiler then still prints "Model compiled successfully" and writes a
    `*_edgetpu.tflite` that is the input model again (0 Edge TPU subgraphs); shipping it as
    compiled would put a CPU model on the drone labelled as an Edge TPU one.
    """
    if summary.get("subgraphs") == 0 or summary.get("ops_on_tpu") == 0:
        first = next((f"{op} ({', '.join(row['cpu_reasons'])})" for op, row in summary.get("ops", {}).items()
                      if row["cpu"] and not any("More than one subgraph" in r for r in row["cpu_reasons"])), None)
        raise NothingMappedError(
            f"edgetpu_compiler mapped no operation to the Edge TPU (0 Edge TPU subgraphs, "
            f"{summary.get('ops_on_cpu')} of {summary.get('total_ops')} ops on the CPU"
            + (f"; first unmapped: {first}" if first else "") + "); run `python -m compile check -v` on the model, "
            "and try a newer -m (edgetpu.min_runtime_version) or Coral's web compiler"
        )


def finalize_card(staging: Path, bundle: Path, card: ModelCard) -> dict[str, Any]:
    """Finalize and return the card as written (with its file table)."""
    finalize(staging, bundle, card)
    return json.loads((bundle / CARD).read_text())


def learnt_from_text(data_source: str, fine_tuned: bool) -> str:
    """What the small backbone's weights were learnt from, for its card text and warning."""
    what = "synthetic data" if data_source == "synthetic" else "the training images (data.folder)"
    return f"{what} and labelled flight tiles" if fine_tuned else what


def random_backbone_warnings(backbone: str, small: bool = False, learnt_from: str = "synthetic data") -> list[str]:
    """The loud line a backbone without pretrained weights earns in the card, the report and the build's output.

    `backbone` is the card's backbone_weights (compile.model.describe_weights); `small` the small CNN,
    which is not ResNet-50 at all, its weights learnt from `learnt_from` alone.
    """
    if small:
        return [f"backbone: small CNN, not ResNet-50 and not ImageNet transfer learning: every weight was "
                f"trained from scratch on {learnt_from}; for offline demos and tests only, build with the "
                "default profile and --weights imagenet for a model to fly"]
    if not backbone.startswith("none"):
        return []
    return ["backbone weights: none (random init): the frozen ResNet-50 stages are random features, not "
            "ImageNet transfer learning; for offline demos and tests only, build with --weights imagenet "
            "(or a local notop .h5 file) for a model to fly"]


def _backbone_text(model_cfg: Any, learnt_from: str = "synthetic data") -> str:
    """What the network is: the small CNN, ResNet50, or which part of it (stages deeper than the head's
    deepest are not in the graph)."""
    from .model import SMALL_FILTERS

    if model_cfg.small:
        lowpass = (f"; Gaussian low-pass sigma {model_cfg.lowpass_px:g} px in front" if model_cfg.lowpass_px > 0
                   else "")
        return f"small CNN ({len(SMALL_FILTERS)} convolutions, every weight learned from {learnt_from}{lowpass})"
    head_stages = model_cfg.resolved_head_stages()
    if head_stages[-1] == "conv5":
        return "ResNet50"
    return f"ResNet50 stem to {head_stages[-1]} (deeper stages unused by the head: head_stages)"


def _preprocessing_text(model_cfg: Any) -> str:
    """The card's input.preprocessing: what the graph does to the 0-255 RGB input before the backbone."""
    if model_cfg.small:
        lowpass = (f", then a fixed Gaussian low-pass (sigma {model_cfg.lowpass_px:g} px, one depthwise conv)"
                   if model_cfg.lowpass_px > 0 else "")
        return f"inside the graph: 0-255 to [-1, 1], one 1x1 conv{lowpass}"
    return "inside the graph: RGB->BGR and ImageNet mean (caffe), one 1x1 conv"


FEATURE_STAGE = "conv3"  # 28x28 at 224 px (12x12 at 96): fine enough to see lesions, deep enough to be features


def feature_maps(model: Any, split: Any, size: int, base_seed: int, path: Path,
                 stage: str = FEATURE_STAGE) -> Path | None:
    """The feature-map figure: the first test leaf of each class through the network up to `stage`.

    For the small backbone: its last convolution's maps (the ones its head pools), `stage` unused.
    """
    from .model import BASE_NAME, SMALL_NAME, STAGE_OUTPUT, STAGES, front_model, head_stages_of, is_small

    small = is_small(model)
    if not small and BASE_NAME not in [layer.name for layer in model.layers]:  # a stand-in network (tests)
        log.info("no %s backbone in the model: no feature-map figure", BASE_NAME)
        return None
    picked: dict[int, np.ndarray] = {}
    for img, label in iterate_images(split, size, base_seed):
        picked.setdefault(label, img)
        if len(picked) == len(CLASSES):
            break
    if not picked:
        return None
    labels = sorted(picked)
    images = [picked[k] for k in labels]
    if small:
        probe = front_model(model, SMALL_NAME)
        maps = np.concatenate([np.asarray(probe.predict_on_batch(img[None].astype(np.float32))) for img in images])
        return report.feature_maps_png(images, [CLASSES[k] for k in labels], maps,
                                       "small_conv3 (the small CNN's last convolution)", path)
    in_graph = head_stages_of(model)[-1]  # the trunk stops at the deepest stage the head reads
    if STAGES.index(stage) > STAGES.index(in_graph):
        stage = in_graph
    probe = front_model(model, STAGE_OUTPUT[stage])
    maps = np.concatenate([np.asarray(probe.predict_on_batch(img[None].astype(np.float32))) for img in images])
    return report.feature_maps_png(images, [CLASSES[k] for k in labels], maps, f"{STAGE_OUTPUT[stage]} (stage "
                                   f"{stage})", path)


def _card_metrics(m: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers for the card (the full report is report/metrics.json)."""
    a, t = m["argmax"], m["at_thresholds"]
    return {
        "accuracy": a["accuracy"],
        "macro_f1": a["macro_f1"],
        "weighted_f1": a["weighted_f1"],
        "recall": {c: a["per_class"][c]["recall"] for c in CLASSES},
        "at_thresholds": {
            "accuracy": t["accuracy"],
            "disease_recall": t["disease_recall"],
            "false_alarm_rate": t["false_alarm_rate"],
            "recall": {c: t["per_class"][c]["recall"] for c in CLASSES},
            "precision": {c: t["per_class"][c]["precision"] for c in CLASSES},
        },
        "cost": m["cost"],
        "roc_auc": m.get("roc_auc"),
    }
