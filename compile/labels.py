"""Fine-tuning a bundle on labelled flight tiles: the label folders, the split by field, the mix.

`payload review` leaves FLIGHT_DIR/labels/: labels.csv (one row per answered tile: tile_id, label,
...) and class folders labels/<class>/<tile_id>.jpg (docs/REVIEW.md). `compile build --labels DIR...
--init-from BUNDLE` reads them here. Three rules, each for a reason:

- labels.csv is the truth (the review page's own rule: the CSV wins over the folders); every row's
  copy must exist and be readable, and `unsure` rows are not a class, so they are ignored.
  `data.scan_folder` is not used for these folders: it splits a folder stratified by class, which
  would put tiles of one field into both training and evaluation, and it requires every class in
  every folder, which one flight's labels rarely have.
- Tiles of one field never land in both training and evaluation. With several DIRs whole DIRs are
  held back (`data.labels_holdout` of them, at least one, at least one kept); with one DIR a share
  of its tiles per class is held back, and the card says evaluation is within one field (neighbour
  tiles of one field look alike, so that figure is optimistic).
- The labelled training tiles are repeated so that they make up `data.labels_share` of the
  training stream (`mix`).

The parent bundle (`load_parent`) must carry its float weights (payload.bundle.FLOAT_WEIGHTS); its
card's model config rebuilds the same graph to load them into.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from payload.bundle import CARD, CPU_MODEL, FLOAT_WEIGHTS, read_card, sha256_file
from payload.errors import BundleError

from .config import ModelConfig
from .data import IMAGE_SUFFIXES, Split, _readable
from .errors import BuildError, DataError
from .metrics import classification_report, decide
from .synthetic import CLASSES

log = logging.getLogger(__name__)

LABELS_DIR = "labels"  # payload/report/review.py writes FLIGHT_DIR/labels/ (compile never imports payload.report)
LABELS_CSV = "labels.csv"
UNSURE = "unsure"


@dataclass
class LabelSource:
    """One DIR's labelled tiles: which flight, the hash of its labels.csv, each tile's file and class."""

    name: str  # the flight folder's name (the labels folder's parent), or the labels folder's own
    folder: Path  # the labels folder (the one holding labels.csv)
    csv_sha256: str
    paths: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    unsure: int = 0

    def counts(self) -> dict[str, int]:
        """Labels per class (unsure not counted)."""
        arr = np.asarray(self.labels, dtype=np.int64)
        return {c: int(np.sum(arr == i)) for i, c in enumerate(CLASSES)}


def labels_folder(path: Path) -> Path:
    """The labels folder of DIR: DIR/labels when DIR is a flight folder, DIR itself when it holds labels.csv."""
    if (path / LABELS_DIR / LABELS_CSV).is_file():
        return path / LABELS_DIR
    if (path / LABELS_CSV).is_file():
        return path
    raise DataError(f"--labels {path}: neither {path / LABELS_DIR / LABELS_CSV} nor {path / LABELS_CSV} exists; "
                    "give a flight folder labelled with `payload review FLIGHT_DIR`, or its labels/ folder")


def read_labels(path: Path) -> LabelSource:
    """Read one DIR's labels.csv and check every labelled tile's copy in its class folder."""
    folder = labels_folder(path)
    csv_path = folder / LABELS_CSV
    name = folder.parent.name if folder.name == LABELS_DIR else folder.name
    src = LabelSource(name=name, folder=folder, csv_sha256=sha256_file(csv_path))
    with csv_path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing_cols = {"tile_id", "label"} - set(reader.fieldnames or ())
        if missing_cols:
            raise DataError(f"{csv_path}: no column(s) {', '.join(sorted(missing_cols))}; it is not a labels.csv "
                            "written by `payload review`")
        for n, row in enumerate(reader, start=2):
            tile, label = (row.get("tile_id") or "").strip(), (row.get("label") or "").strip()
            if label == UNSURE:
                src.unsure += 1
                continue
            if label not in CLASSES:
                raise DataError(f"{csv_path} line {n}: label {label!r} is not one of {', '.join(CLASSES)} or "
                                f"{UNSURE}")
            image = _tile_file(folder / label, tile)
            if image is None:
                raise DataError(f"{csv_path} line {n}: no readable copy of tile {tile!r} in {folder / label}; "
                                f"run `payload review {folder.parent}` once (it restores missing copies) or "
                                "remove the row")
            src.paths.append(str(image))
            src.labels.append(CLASSES.index(label))
    log.info("labels %s (%s): %s, %d unsure ignored", src.name, folder, src.counts(), src.unsure)
    return src


def _tile_file(class_dir: Path, tile: str) -> Path | None:
    """The class folder's copy of a tile (review writes .jpg; any image suffix is accepted), if readable."""
    for suffix in sorted(IMAGE_SUFFIXES):
        p = class_dir / f"{tile}{suffix}"
        if p.is_file() and _readable(p):
            return p
    return None


@dataclass
class LabelSplit:
    """The labelled tiles for training and for evaluation, and what the card says about them."""

    train: Split
    eval: Split
    facts: dict[str, Any]


def split_labels(sources: list[LabelSource], holdout: float, seed: int) -> LabelSplit:
    """Hold back labels for evaluation so that no field is in both training and evaluation.

    Several DIRs: round(holdout x DIRs) whole DIRs (at least 1, at most all but one), drawn with the
    build's seed. One DIR: round(holdout x n) tiles of each class with at least two labels, the rest
    train; the card's `evaluation` says the figures are within one field.
    """
    if not sources:
        raise DataError("--labels needs at least one DIR")
    folders = [s.folder.resolve() for s in sources]
    twice = sorted({str(f) for f in folders if folders.count(f) > 1})
    if twice:
        raise DataError(f"--labels names the same label folder more than once ({', '.join(twice)}): one field "
                        "could land in both training and evaluation; give each flight once")
    rng = np.random.default_rng([seed, 26])
    train_p: list[str] = []
    train_y: list[int] = []
    eval_p: list[str] = []
    eval_y: list[int] = []
    roles: dict[str, str] = {}
    if len(sources) > 1:
        n_hold = min(max(int(round(holdout * len(sources))), 1), len(sources) - 1)
        order = rng.permutation(len(sources))
        held = {int(i) for i in order[:n_hold]}
        for i, src in enumerate(sources):
            role = "evaluation" if i in held else "training"
            roles[str(src.folder)] = role
            (eval_p if i in held else train_p).extend(src.paths)
            (eval_y if i in held else train_y).extend(src.labels)
        rule = (f"by field: {n_hold} of {len(sources)} label folders held back whole (data.labels_holdout "
                f"{holdout:g}); no folder is in both training and evaluation")
        evaluation = "other fields"
    else:
        src = sources[0]
        y = np.asarray(src.labels, dtype=np.int64)
        is_eval = np.zeros(y.size, dtype=bool)
        for cls in np.unique(y):
            idx = np.flatnonzero(y == cls)
            if idx.size < 2:
                continue  # a single label of a class trains; nothing of it could be scored fairly anyway
            k = min(max(int(round(holdout * idx.size)), 1), idx.size - 1)
            is_eval[rng.permutation(idx)[:k]] = True
        for p, lab, e in zip(src.paths, src.labels, is_eval.tolist(), strict=True):
            (eval_p if e else train_p).append(p)
            (eval_y if e else train_y).append(lab)
        roles[str(src.folder)] = "training and evaluation (tiles split)"
        rule = (f"one label folder: {holdout:g} of each class's tiles held back (data.labels_holdout), the rest "
                "trained on")
        evaluation = ("within one field: the held-back tiles come from the same flight as the training tiles, so "
                      "the after figures are optimistic for another field")
    if not train_p or not eval_p:
        raise DataError(f"too few labels to split: {len(train_p)} for training, {len(eval_p)} held back for "
                        "evaluation; label more tiles (at least two of a class), or give several flights")
    train = Split(np.asarray(train_y, dtype=np.int64), paths=train_p)
    ev = Split(np.asarray(eval_y, dtype=np.int64), paths=eval_p)
    facts = {
        "flights": [{"name": s.name, "folder": str(s.folder), "labels_csv_sha256": s.csv_sha256,
                     "labels_per_class": s.counts(), "unsure_ignored": s.unsure, "used_for": roles[str(s.folder)]}
                    for s in sources],
        "labels_per_class": {c: int(sum(s.counts()[c] for s in sources)) for c in CLASSES},
        "split_rule": rule,
        "evaluation": evaluation,
        "train_labels_per_class": train.counts(),
        "eval_labels_per_class": ev.counts(),
    }
    return LabelSplit(train, ev, facts)


def mix(synthetic: Split, labelled: Split, share: float) -> tuple[Split, dict[str, Any]]:
    """The training split: the synthetic records plus each labelled tile repeated r times.

    r = max(1, round(share x S / ((1 - share) x L))) for S synthetic and L labelled tiles, so the
    labels make up about `share` of the training stream; batches are drawn from a shuffle of the
    whole stream, so of each batch on average. Repeats, not sample weights: the class weights stay
    as they are, and a repeated tile can take another augmentation variant each time.
    """
    s_n, l_n = len(synthetic), len(labelled)
    if synthetic.seeds is None or synthetic.paths is not None:
        raise BuildError("labels mix with synthetic data only (data.source: synthetic); a folder source can take "
                         "the label folders as its own class folders instead")
    repeats = repeats_needed(share, s_n, l_n)
    paths = [""] * s_n + list(labelled.paths or []) * repeats
    seeds = np.concatenate([synthetic.seeds, np.full(l_n * repeats, -1, dtype=np.int64)])
    labels = np.concatenate([synthetic.labels, np.tile(labelled.labels, repeats)])
    mixed = Split(labels, paths=paths, seeds=seeds, jpeg_quality=synthetic.jpeg_quality,
                  generator=synthetic.generator, part=synthetic.part)
    achieved = l_n * repeats / len(mixed)
    log.info("training mix: %d synthetic + %d labelled tiles x %d repeats = labels %.1f %% of the stream "
             "(data.labels_share %.2f)", s_n, l_n, repeats, 100 * achieved, share)
    return mixed, {"labels_share": share, "repeats": repeats, "labelled_train_tiles": l_n,
                   "synthetic_train_images": s_n, "achieved_share": round(achieved, 4)}


@dataclass
class ParentBundle:
    """The bundle a fine-tune starts from: its card, int8 model hash, float weights and model config."""

    path: Path
    card: dict[str, Any]
    model_sha256: str
    int8_model: Path
    weights: Path
    model: ModelConfig
    thresholds: dict[str, float]


def load_parent(path: Path) -> ParentBundle:
    """Read --init-from's bundle: verified like the payload does, and it must carry its float weights."""
    from payload.bundle import load_bundle

    try:
        bundle = load_bundle(path)
    except BundleError as err:
        raise BuildError(f"--init-from {path}: {err}") from None
    card = read_card(path).to_dict()
    if FLOAT_WEIGHTS not in bundle.card.files:
        raise BuildError(f"--init-from {path}: the bundle has no {FLOAT_WEIGHTS} (its float weights), so there is "
                         "nothing to fine-tune from; it was built before bundles carried them: rebuild the parent "
                         "with this version of `python -m compile build` (same config), then fine-tune that")
    config = (card.get("training") or {}).get("config") or {}
    if "model" not in config:
        raise BuildError(f"--init-from {path}: its {CARD} has no training.config.model to rebuild the model from; "
                         "rebuild the parent with this version of `python -m compile build`")
    model = ModelConfig.model_validate(config["model"])
    # the graph must be the parent's: `auto` resolved against the parent's weights, written out (the
    # small backbone's graph depends on no stage: backbone, lowpass_px and the head rebuild it as it was)
    if not model.small:
        model = model.model_copy(update={"head_stages": model.resolved_head_stages(),
                                         "trainable_stages": model.resolved_trainable_stages()})
    return ParentBundle(path=path, card=card, model_sha256=bundle.model_sha256, int8_model=path / CPU_MODEL,
                        weights=path / FLOAT_WEIGHTS, model=model, thresholds=dict(bundle.thresholds))


def figures(scores: np.ndarray, y: np.ndarray, thresholds: dict[str, float]) -> dict[str, Any]:
    """Accuracy, disease recall, false alarms and recall per class at thresholds (None: no label of that class)."""
    rep = classification_report(y, decide(scores, thresholds))
    support = {c: rep["per_class"][c]["support"] for c in CLASSES}
    return {
        "images": rep["n"],
        "accuracy": rep["accuracy"],
        "disease_recall": rep["disease_recall"] if any(support[c] for c in CLASSES[1:]) else None,
        "false_alarm_rate": rep["false_alarm_rate"] if support[CLASSES[0]] else None,
        "recall": {c: (rep["per_class"][c]["recall"] if support[c] else None) for c in CLASSES},
        "support": support,
        "confusion_matrix": rep["confusion_matrix"],
    }


def repeats_needed(share: float, synthetic: int, labelled: int) -> int:
    """How often each labelled tile is repeated for labels to make up `share` of the stream (at least once)."""
    return max(1, int(round(share * synthetic / ((1.0 - share) * labelled))))
