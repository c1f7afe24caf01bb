"""The model bundle: the one contract between `compile` (writes it) and `payload` (flies it).

Everything both sides must agree on lives here and nowhere else: the file names, the format
version, the class list, the model card's schema (`ModelCard`), how raw uint8 outputs become
scores (`dequantize`) and how scores become a verdict (`decide`). `compile` imports this module
(it is numpy + pydantic only, so the drone's install can run it too); `payload` never imports
`compile`. Thresholds chosen at build time are therefore applied in flight by the very same code.

Loading verifies the bundle before anything flies with it: a bundle travels from the workstation
to the drone on a USB stick or over a flaky link, and a truncated or swapped file must stop the
payload on the ground with a message that names the file, not produce confident nonsense in the
air. The model's tensor shapes are checked when a backend loads it (payload/backends/base.py),
because that needs the TFLite runtime.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from payload.errors import BundleError

CARD = "model_card.json"
CPU_MODEL = "model_int8.tflite"
EDGETPU_MODEL = "model_int8_edgetpu.tflite"
LABELS = "labels.txt"
# The float Keras weights of the whole trained model (backbone, BatchNorm statistics, head), written by
# every build so that `compile build --init-from BUNDLE` can fine-tune exactly this model. Optional and
# hashed like every file; the payload never loads it (the drone has no TensorFlow).
FLOAT_WEIGHTS = "model_float.weights.h5"
# `edgetpu_compiler --num_segments N` names segment K of the int8 model exactly so (google-coral/edgetpu#557)
EDGETPU_SEGMENT = re.compile(r"^model_int8_segment_(\d+)_of_(\d+)_edgetpu\.tflite$")
REPORT_DIR = "report"
FORMAT_VERSION = 1

CLASSES: tuple[str, ...] = ("healthy", "rust", "powdery_mildew")
HEALTHY = "healthy"
DISEASES: tuple[str, ...] = tuple(c for c in CLASSES if c != HEALTHY)

# The precision of every score comparison, on both sides. The drone dequantizes to float32; if
# the build compared in float64 a score equal to float32(threshold) could be flagged in flight and
# not in the build's evaluation (float32 rounds some thresholds down). Scores are float32 (or
# exact uint8 steps) at their source, so comparing in float32 loses nothing.
SCORE_DTYPE = np.float32


def sha256_file(path: Path) -> str:
    """sha256 hex digest of a file, read in 1 MiB chunks (a ResNet-50 is ~23 MB)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def edgetpu_segment_name(k: int, n: int) -> str:
    """File name of segment `k` of `n` of the Edge TPU model, as the compiler writes it."""
    return f"model_int8_segment_{k}_of_{n}_edgetpu.tflite"


def dequantize(raw: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Scores 0-1 from a model's raw output: (q - zero_point) * scale in float32.

    A float output (or a scale of 0, TFLite's "not quantized") is returned as float32 unchanged.
    """
    raw = np.asarray(raw)
    if raw.dtype.kind == "f" or scale == 0.0:
        return raw.astype(SCORE_DTYPE)
    return (raw.astype(SCORE_DTYPE) - SCORE_DTYPE(zero_point)) * SCORE_DTYPE(scale)


@dataclass(frozen=True)
class Decisions:
    """The decision rule's verdict on N tiles, as arrays (label index into the classes, flagged)."""

    label: np.ndarray  # (N,) int64 index into the class list
    confidence: np.ndarray  # (N,) float32 score of that label
    flagged: np.ndarray  # (N,) bool: a disease passed its threshold


def decide(
    scores: np.ndarray,
    thresholds: Mapping[str, float],
    classes: Sequence[str] = CLASSES,
    disease_classes: Sequence[str] | None = None,
) -> Decisions:
    """The decision rule of the contract, for scores of shape (N, C) in class order.

    The disease classes whose score is >= their threshold are flagged; if any is, the tile's label
    is the flagged class with the highest score (a tie goes to the first in `disease_classes`
    order) and the tile is a disease sighting; otherwise the label is the argmax class and the
    tile is not flagged. Compared in SCORE_DTYPE (float32), whatever dtype comes in.
    """
    s = np.asarray(scores, dtype=SCORE_DTYPE)
    classes = list(classes)
    if s.ndim != 2 or s.shape[1] != len(classes):
        raise ValueError(f"scores must be (N, {len(classes)}), got {s.shape}")
    if disease_classes is None:
        unknown = [c for c in thresholds if c not in classes]
        if unknown:
            raise ValueError(f"thresholds for unknown classes {unknown}; the classes are {classes}")
        disease_classes = [c for c in classes if c in thresholds]
    diseases = [c for c in disease_classes if c in thresholds]
    label: np.ndarray = s.argmax(axis=1).astype(np.int64)
    flagged: np.ndarray = np.zeros(len(s), dtype=bool)
    if diseases:
        idx = np.array([classes.index(c) for c in diseases], dtype=np.int64)
        thr = np.array([thresholds[c] for c in diseases], dtype=SCORE_DTYPE)
        dis = s[:, idx]
        passed = dis >= thr
        flagged = np.asarray(passed.any(axis=1))
        best = np.where(passed, dis, SCORE_DTYPE(-1.0)).argmax(axis=1)
        label = np.where(flagged, idx[best], label)
    confidence = s[np.arange(len(s)), label]
    return Decisions(label, confidence, flagged)


class _CardPart(BaseModel):
    # extra="allow": a bundle from a newer build may carry keys this payload does not know yet
    # (new metrics, new provenance); it must still load, and a rewrite (attach_edgetpu) keeps them.
    model_config = ConfigDict(extra="allow", strict=True)


class InputSpec(_CardPart):
    """The model's input tensor as the card describes it (the backend checks the real tensor)."""

    height: int = Field(gt=0)
    width: int = Field(gt=0)
    channels: int
    dtype: str
    color: str | None = None


class FileEntry(_CardPart):
    """One bundle file's digest and size (size is informative; the digest is what is checked)."""

    sha256: str
    bytes: int | None = None


STAGE_ORDER = ("early", "moderate", "late")  # disease stages, earliest first (flight_sim/world, compile/canopy)
LADDER_STAGE = "moderate"  # the build ladder's stage on cards that do not name it (compile/canopy REFERENCE_STAGE)


def stage_gsd(working_gsd_mm: float | None, gsd_recall: Mapping[str, Any] | None,
              field_detectability: Mapping[str, Any] | None,
              stage: str | None = None) -> tuple[str | None, float | None, str]:
    """(stage, mm per model pixel, where it came from) a flight should be planned at, from a card's keys.

    Disease is seen from higher up the further it has gone, so a working resolution means nothing
    without its stage. A field trial (`field_detectability`, the worst disease per stage) is preferred
    to the build's own ladder (`working_gsd_mm`), which measures the training generator's canopy at one
    reference stage. `stage` None: the earliest stage the card states.
    """
    field = field_detectability or {}
    by_stage = field.get("working_gsd_mm_by_stage") or {}
    ladder_stage = (gsd_recall or {}).get("stage") or LADDER_STAGE
    for st in [stage] if stage is not None else list(STAGE_ORDER):
        g = by_stage.get(st)
        if isinstance(g, int | float):
            return st, float(g), f"the card's field trial (tools.detectability, seed {field.get('seed')}), {st} stage"
        if working_gsd_mm is not None and st == ladder_stage:
            return st, float(working_gsd_mm), f"the card's working_gsd_mm (build ladder), {st} stage"
    return stage, None, "not seen at any measured resolution"


class ModelCard(_CardPart):
    """model_card.json: what `compile` writes and `payload` reads (docs/CONTRACTS.md section 1).

    Only what the payload relies on is required; everything else is optional so that cards of
    older builds (and the tests' tiny bundles) still load, and unknown keys are kept (extra="allow")
    so that cards of newer builds load too. Field order is the order the keys are written in.
    """

    format_version: int
    created_utc: str | None = None
    profile: str | None = None
    classes: list[str] = Field(min_length=1)
    healthy_class: str
    disease_classes: list[str]
    input: InputSpec
    output: dict[str, Any] | None = None
    thresholds: dict[str, float]
    threshold_selection: dict[str, Any] | None = None
    # the evidence grid's calibrated sensor model (payload/geo/sensor.py; compile/sensor.py writes it)
    sensor_model: dict[str, Any] | None = None
    edgetpu: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    # the coarsest ground resolution (mm per model-input pixel) at which the bundle's tile recall
    # at the reference disease stage is still >= the build's floor (0.9): what a flight planner
    # chooses altitude from; null when not measured (folder data, leaf generators) or never reached
    working_gsd_mm: float | None = None
    # the per-resolution recall table behind it (compile/build.py gsd_ladder)
    gsd_recall: dict[str, Any] | None = None
    # a field trial of the bundle: `tools.detectability --record` on the simulator's physical world (never
    # the training generator), per disease and stage the coarsest resolution seen; see `stage_gsd`
    field_detectability: dict[str, Any] | None = None
    training: dict[str, Any] | None = None
    tools: dict[str, Any] | None = None
    # the file table is filled in last, when every other file of the bundle is written
    files: dict[str, FileEntry] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> ModelCard:
        if not all(self.classes):
            raise ValueError("'classes' must be a non-empty list of names")
        if self.input.dtype != "uint8" or self.input.channels != 3:
            raise ValueError(
                f"input must be uint8 with 3 channels, card says dtype {self.input.dtype!r} "
                f"channels {self.input.channels!r}; rebuild with full-integer quantization (uint8 input)"
            )
        if self.healthy_class not in self.classes or any(d not in self.classes for d in self.disease_classes):
            raise ValueError(
                f"healthy_class {self.healthy_class!r} and disease_classes {self.disease_classes!r} must be "
                f"among {self.classes}"
            )
        for d in self.disease_classes:
            t = self.thresholds.get(d)
            if t is None or not math.isfinite(t) or not 0.0 <= t <= 1.0:
                raise ValueError(f"threshold for {d!r} is {t!r}, must be a number in 0-1")
        return self

    def stage_gsd(self, stage: str | None = None) -> tuple[str | None, float | None, str]:
        """(stage, mm per model pixel, where it came from) a flight should be planned at: `stage_gsd`."""
        return stage_gsd(self.working_gsd_mm, self.gsd_recall, self.field_detectability, stage)

    def to_dict(self) -> dict[str, Any]:
        """The card as plain data: the keys it was given (or built with), unknown ones included.

        Python mode, serialized by json.dumps: values come out exactly as the build put them in
        (pydantic's JSON mode would, for one, turn a NaN metric into null).
        """
        return self.model_dump(mode="python", exclude_unset=True)

    def to_json(self) -> str:
        """The text of model_card.json."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    def with_files(self, files: Mapping[str, Mapping[str, Any]]) -> ModelCard:
        """A copy with the file table replaced (validated like the rest)."""
        return ModelCard.model_validate(self.to_dict() | {"files": dict(files)})


def _fail(bundle: Path, what: str, fix: str) -> BundleError:
    return BundleError(f"model bundle {bundle}: {what}; {fix}")


def _problem(err: ValidationError) -> str:
    """The first validation problem as one readable phrase naming the key."""
    e = err.errors()[0]
    where = ".".join(str(p) for p in e["loc"])
    if e["type"] == "missing":
        return f"{CARD} lacks the key '{where}'"
    msg = str(e["msg"]).removeprefix("Value error, ")
    return f"{CARD}: {where + ': ' if where else ''}{msg}"


def read_card(root: Path) -> ModelCard:
    """Read and validate a bundle folder's model card; raise BundleError naming the problem."""
    card_path = root / CARD
    if not root.is_dir():
        raise _fail(root, "folder not found", "set model.bundle to the folder written by `make edgetpu`")
    if not card_path.is_file():
        raise _fail(root, f"{CARD} is missing", "copy the whole bundle folder, or rebuild it with `make edgetpu`")
    try:
        raw = json.loads(card_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _fail(root, f"{CARD} is not valid JSON ({err})", "the file is corrupt; copy the bundle again") from None
    if not isinstance(raw, dict):
        raise _fail(root, f"{CARD} must hold a JSON object", "copy the bundle again")
    version = raw.get("format_version")
    if version != FORMAT_VERSION:
        raise _fail(
            root,
            f"{CARD} has format_version {version!r}, this payload reads {FORMAT_VERSION}",
            "rebuild the bundle with the matching compile version",
        )
    try:
        return ModelCard.model_validate(raw)
    except ValidationError as err:
        raise _fail(root, _problem(err), "rebuild the bundle with `make edgetpu`") from None


@dataclass(frozen=True)
class Decision:
    """The verdict of the decision rule on one tile."""

    label: str
    confidence: float
    flagged: bool


@dataclass(frozen=True)
class Bundle:
    """A verified model bundle: paths of the models, labels, input size and decision thresholds."""

    path: Path
    card: ModelCard
    labels: tuple[str, ...]
    healthy_class: str
    disease_classes: tuple[str, ...]
    thresholds: dict[str, float]
    input_height: int
    input_width: int
    cpu_model: Path
    edgetpu_model: Path | None
    model_sha256: str
    # the Edge TPU model compiled into segments, in pipeline order (one device each); () when not segmented
    edgetpu_segments: tuple[Path, ...] = ()

    @property
    def edgetpu_note(self) -> str:
        """Why the bundle has no Edge TPU model (from the card), for log lines."""
        info = self.card.edgetpu or {}
        return str(info.get("reason") or "the bundle was built without edgetpu_compiler")

    def decide(self, scores: np.ndarray) -> list[Decision]:
        """`decide()` with this bundle's classes and thresholds, one Decision per row of (N, C) scores."""
        d = decide(scores, self.thresholds, self.labels, self.disease_classes)
        return [
            Decision(self.labels[i], float(c), bool(f))
            for i, c, f in zip(d.label.tolist(), d.confidence, d.flagged, strict=True)
        ]


def _verify_files(root: Path, files: Mapping[str, FileEntry]) -> None:
    for rel, meta in files.items():
        p = root / rel
        if not p.is_file():
            raise _fail(root, f"{rel} is listed in {CARD} but missing", "copy the whole bundle folder again")
        got = sha256_file(p)
        if got != meta.sha256.lower():
            raise _fail(
                root,
                f"sha256 mismatch for {rel} (card {meta.sha256[:12]}..., file {got[:12]}...): the file is corrupt "
                "or was changed after the build",
                "copy the bundle again from the workstation, or rebuild it",
            )
    for needed in (CPU_MODEL, LABELS):
        if needed not in files:
            raise _fail(root, f"{needed} is not listed in {CARD}", "rebuild the bundle with `make edgetpu`")
    if (root / EDGETPU_MODEL).is_file() and EDGETPU_MODEL not in files:
        raise _fail(
            root, f"{EDGETPU_MODEL} is present but not listed in {CARD}", "rebuild the bundle; do not add files by hand"
        )
    for p in sorted(root.glob("*_edgetpu.tflite")):
        if EDGETPU_SEGMENT.match(p.name) and p.name not in files:
            raise _fail(root, f"{p.name} is present but not listed in {CARD}",
                        "rebuild the bundle; do not add files by hand")


def _segments(root: Path, files: Mapping[str, FileEntry]) -> tuple[Path, ...]:
    """The segment files the card lists, in order; every one of 0..N-1 of a single N, or a BundleError."""
    found: dict[int, int] = {}
    for name in files:
        m = EDGETPU_SEGMENT.match(name)
        if m:
            found[int(m.group(1))] = int(m.group(2))
    if not found:
        return ()
    counts = set(found.values())
    n = max(counts)
    if len(counts) != 1 or sorted(found) != list(range(n)):
        names = sorted(edgetpu_segment_name(k, v) for k, v in found.items())
        raise _fail(root, f"{CARD} lists Edge TPU segments {names}, not all N segments of one compile",
                    "rebuild the bundle with `make edgetpu` (edgetpu.num_segments)")
    return tuple(root / edgetpu_segment_name(k, n) for k in range(n))


def load_bundle(path: str | Path) -> Bundle:
    """Read and verify a bundle folder; raise BundleError naming the file and the problem."""
    root = Path(path)
    card = read_card(root)
    _verify_files(root, card.files)

    labels = tuple(
        line.strip() for line in (root / LABELS).read_text(encoding="utf-8").splitlines() if line.strip()
    )
    if list(labels) != card.classes:
        raise _fail(
            root,
            f"{LABELS} lists {list(labels)} but {CARD} says classes {card.classes}",
            "the two files come from different builds; copy the bundle again",
        )
    edgetpu = root / EDGETPU_MODEL if EDGETPU_MODEL in card.files else None
    return Bundle(
        path=root,
        card=card,
        labels=labels,
        healthy_class=card.healthy_class,
        disease_classes=tuple(card.disease_classes),
        thresholds={d: float(card.thresholds[d]) for d in card.disease_classes},
        input_height=card.input.height,
        input_width=card.input.width,
        cpu_model=root / CPU_MODEL,
        edgetpu_model=edgetpu,
        model_sha256=card.files[CPU_MODEL].sha256,
        edgetpu_segments=_segments(root, card.files),
    )
