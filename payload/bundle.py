"""Load and verify a model bundle (docs/CONTRACTS.md section 1) before anything flies with it.

A bundle travels from the workstation to the drone on a USB stick or over a flaky link; a truncated
or swapped file must stop the payload on the ground with a message that names the file, not
produce confident nonsense in the air. So every listed file's sha256 is checked, the labels must
match the card, and the decision rule (per-class thresholds) is read from the card here, in one
place. The model's tensor shapes are checked when a backend loads it (payload/backends/base.py),
because that needs the TFLite runtime.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from payload.errors import BundleError

CARD = "model_card.json"
CPU_MODEL = "model_int8.tflite"
EDGETPU_MODEL = "model_int8_edgetpu.tflite"
LABELS = "labels.txt"
FORMAT_VERSION = 1


def sha256_file(path: Path) -> str:
    """sha256 hex digest of a file, read in 1 MiB chunks (a ResNet-50 is ~23 MB)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
    card: dict[str, Any]
    labels: tuple[str, ...]
    healthy_class: str
    disease_classes: tuple[str, ...]
    thresholds: dict[str, float]
    input_height: int
    input_width: int
    cpu_model: Path
    edgetpu_model: Path | None
    model_sha256: str

    @property
    def edgetpu_note(self) -> str:
        """Why the bundle has no Edge TPU model (from the card), for log lines."""
        info = self.card.get("edgetpu") or {}
        return str(info.get("reason") or "the bundle was built without edgetpu_compiler")

    def decide(self, scores: np.ndarray) -> list[Decision]:
        """Apply the CONTRACTS decision rule to dequantized scores of shape (N, C).

        Disease classes at or above their threshold are flagged; the label is then the flagged class
        with the highest score. Otherwise the label is the argmax and the tile is not flagged.
        """
        scores = np.asarray(scores, dtype=np.float32)
        if scores.ndim != 2 or scores.shape[1] != len(self.labels):
            raise ValueError(f"scores must be (N, {len(self.labels)}), got {scores.shape}")
        idx = [self.labels.index(c) for c in self.disease_classes]
        thr = np.array([self.thresholds[c] for c in self.disease_classes], dtype=np.float32)
        out: list[Decision] = []
        for row in scores:
            if idx:
                dis = row[idx]
                passed = dis >= thr
                if passed.any():
                    best = int(np.argmax(np.where(passed, dis, -1.0)))
                    out.append(Decision(self.disease_classes[best], float(dis[best]), True))
                    continue
            top = int(np.argmax(row))
            out.append(Decision(self.labels[top], float(row[top]), False))
        return out


def _fail(bundle: Path, what: str, fix: str) -> BundleError:
    return BundleError(f"model bundle {bundle}: {what}; {fix}")


def _read_card(root: Path) -> dict[str, Any]:
    card_path = root / CARD
    if not root.is_dir():
        raise _fail(root, "folder not found", "set model.bundle to the folder written by `make edgetpu`")
    if not card_path.is_file():
        raise _fail(root, f"{CARD} is missing", "copy the whole bundle folder, or rebuild it with `make edgetpu`")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _fail(root, f"{CARD} is not valid JSON ({err})", "the file is corrupt; copy the bundle again") from None
    if not isinstance(card, dict):
        raise _fail(root, f"{CARD} must hold a JSON object", "copy the bundle again")
    version = card.get("format_version")
    if version != FORMAT_VERSION:
        raise _fail(
            root,
            f"{CARD} has format_version {version!r}, this payload reads {FORMAT_VERSION}",
            "rebuild the bundle with the matching compile version",
        )
    for key in ("classes", "files", "input", "thresholds", "disease_classes", "healthy_class"):
        if key not in card:
            raise _fail(root, f"{CARD} lacks the key '{key}'", "rebuild the bundle with `make edgetpu`")
    return card


def _verify_files(root: Path, files: Any) -> None:
    if not isinstance(files, dict):
        raise _fail(root, f"{CARD}: 'files' must map paths to sha256", "rebuild the bundle")
    for rel, meta in files.items():
        p = root / rel
        if not p.is_file():
            raise _fail(root, f"{rel} is listed in {CARD} but missing", "copy the whole bundle folder again")
        want = meta.get("sha256") if isinstance(meta, dict) else None
        if not isinstance(want, str):
            raise _fail(root, f"{CARD}: no sha256 for {rel}", "rebuild the bundle")
        got = sha256_file(p)
        if got != want.lower():
            raise _fail(
                root,
                f"sha256 mismatch for {rel} (card {want[:12]}..., file {got[:12]}...): the file is corrupt "
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


def load_bundle(path: str | Path) -> Bundle:
    """Read and verify a bundle folder; raise BundleError naming the file and the problem."""
    root = Path(path)
    card = _read_card(root)
    _verify_files(root, card["files"])

    classes = card["classes"]
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes):
        raise _fail(root, f"{CARD}: 'classes' must be a non-empty list of names", "rebuild the bundle")
    labels = tuple(
        line.strip() for line in (root / LABELS).read_text(encoding="utf-8").splitlines() if line.strip()
    )
    if list(labels) != classes:
        raise _fail(
            root,
            f"{LABELS} lists {list(labels)} but {CARD} says classes {classes}",
            "the two files come from different builds; copy the bundle again",
        )

    inp = card["input"]
    if not isinstance(inp, dict):
        raise _fail(root, f"{CARD}: 'input' must be an object", "rebuild the bundle")
    if inp.get("dtype") != "uint8" or inp.get("channels") != 3:
        raise _fail(
            root,
            f"{CARD}: input must be uint8 with 3 channels, card says dtype {inp.get('dtype')!r} "
            f"channels {inp.get('channels')!r}",
            "rebuild with full-integer quantization (uint8 input)",
        )
    h, w = inp.get("height"), inp.get("width")
    if not (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0):
        raise _fail(root, f"{CARD}: input height/width must be positive integers, got {h!r}x{w!r}", "rebuild")

    healthy = card["healthy_class"]
    diseases = card["disease_classes"]
    if healthy not in labels or not isinstance(diseases, list) or any(d not in labels for d in diseases):
        raise _fail(
            root,
            f"{CARD}: healthy_class {healthy!r} and disease_classes {diseases!r} must be among {list(labels)}",
            "rebuild the bundle",
        )
    thresholds_raw = card["thresholds"]
    thresholds: dict[str, float] = {}
    for d in diseases:
        t = thresholds_raw.get(d) if isinstance(thresholds_raw, dict) else None
        if not isinstance(t, int | float) or not math.isfinite(t) or not 0.0 <= t <= 1.0:
            raise _fail(root, f"{CARD}: threshold for {d!r} is {t!r}, must be a number in 0-1", "rebuild the bundle")
        thresholds[d] = float(t)

    files = card["files"]
    edgetpu = root / EDGETPU_MODEL if EDGETPU_MODEL in files else None
    return Bundle(
        path=root,
        card=card,
        labels=labels,
        healthy_class=healthy,
        disease_classes=tuple(diseases),
        thresholds=thresholds,
        input_height=h,
        input_width=w,
        cpu_model=root / CPU_MODEL,
        edgetpu_model=edgetpu,
        model_sha256=files[CPU_MODEL]["sha256"],
    )
