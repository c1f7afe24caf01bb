"""The one interface every backend implements, and the TFLite plumbing they share.

The interface is deliberately tiny (a batch of uint8 tiles in, float scores out, `name`, `close`)
because the Edge TPU runs in a child process under a watchdog (payload/backends/isolated.py: a USB
transfer error aborts the whole process natively), and only this surface crosses that boundary.

A backend registers itself in its own module with `register_backend(name, settings=..., opener=...,
falls_back_to_cpu=..., rank=...)`: the settings classes it reads from the config's `model` section
(defined in its module), how it is opened, whether the CPU takes over when it fails in flight, and its
place in the list of names (`rank`: the CLI's `--backend` choices and the config's error messages list
the names in that order). `payload/backends/registry.py` imports every backend module and assembles
`ModelSection` from what registered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel

from payload.bundle import Bundle, dequantize
from payload.errors import BundleError


class Classifier(Protocol):
    """What the scheduler needs from a backend."""

    name: str
    input_size: tuple[int, int]

    def classify_batch(self, tiles: np.ndarray) -> np.ndarray:
        """Classify uint8 tiles of shape (N, H, W, 3); return float32 scores (N, C) in 0-1."""

    def close(self) -> None:
        """Release the interpreter (and the accelerator)."""


# how a backend is opened: the bundle, the `model` settings (an instance of every registered settings class,
# so an opener may type it as its own) and `isolate` (the Edge TPU in a watched child process)
Opener = Callable[[Bundle, Any, bool], Classifier]


@dataclass(frozen=True)
class BackendEntry:
    """A registered backend: its name, the settings it reads, how it is opened, whether the CPU takes over
    when it fails in flight, and its place in the list of names."""

    name: str
    settings: tuple[type[BaseModel], ...]
    open: Opener
    falls_back_to_cpu: bool
    rank: int


REGISTERED_BACKENDS: dict[str, BackendEntry] = {}


def register_backend(name: str, *, settings: tuple[type[BaseModel], ...], opener: Opener,
                     falls_back_to_cpu: bool, rank: int) -> None:
    """The backend `name` joins the registry (called once in its module)."""
    if name in REGISTERED_BACKENDS:
        raise ValueError(f"backend {name!r} registered twice")
    if any(e.rank == rank for e in REGISTERED_BACKENDS.values()):
        raise ValueError(f"backend {name!r}: rank {rank} is taken")
    REGISTERED_BACKENDS[name] = BackendEntry(name, settings, opener, falls_back_to_cpu, rank)


def registered_backends() -> dict[str, BackendEntry]:
    """Every registered backend by name, in rank order."""
    return {e.name: e for e in sorted(REGISTERED_BACKENDS.values(), key=lambda e: e.rank)}


# dequantized uint8 softmax scores lie on a 1/256 grid inside 0-1; float rounding may step past by a hair
PROBE_TOLERANCE = 1e-3


def _quant(details: dict[str, Any]) -> tuple[float, int]:
    q = details.get("quantization") or (0.0, 0)
    return float(q[0]), int(q[1])


class TFLiteClassifier:
    """A TFLite interpreter checked against the bundle, running one tile per invoke (batch 1).

    The Edge TPU only runs batch 1, and the CPU's XNNPACK gets no faster from larger batches of an
    int8 ResNet, so tiles go through one by one with no extra copies beyond `set_tensor`.
    """

    def __init__(self, interpreter: Any, bundle: Bundle, model_file: Path, name: str) -> None:
        self.name = name
        self._interp = interpreter
        try:
            interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as err:
            raise BundleError(
                f"{model_file}: the runtime cannot allocate this model ({err}); rebuild the bundle"
            ) from None
        ins = interpreter.get_input_details()
        outs = interpreter.get_output_details()
        if len(ins) != 1 or len(outs) < 1:
            raise BundleError(
                f"{model_file}: expected one input and one output tensor, found {len(ins)} and {len(outs)}; "
                "rebuild the bundle with `make edgetpu`"
            )
        inp, out = ins[0], outs[0]
        shape = [int(s) for s in inp["shape"]]
        want = [1, bundle.input_height, bundle.input_width, 3]
        if np.dtype(inp["dtype"]) != np.uint8 or shape != want:
            raise BundleError(
                f"{model_file}: model input is {np.dtype(inp['dtype']).name} {shape}, the payload needs uint8 "
                f"{want} (RGB 0-255, preprocessing inside the graph, sizes from model_card.json); rebuild with "
                "full-integer quantization and uint8 input"
            )
        out_shape = [int(s) for s in out["shape"]]
        n_out = int(np.prod(out_shape)) if out_shape else 0
        if n_out != len(bundle.labels) or (out_shape and out_shape[0] != 1):
            raise BundleError(
                f"{model_file}: model output has shape {out_shape} but labels.txt has {len(bundle.labels)} "
                f"classes {list(bundle.labels)}; the labels and the model come from different builds"
            )
        self.input_size = (bundle.input_height, bundle.input_width)
        self.n_classes = len(bundle.labels)
        self._in_index = int(inp["index"])
        self._out_index = int(out["index"])
        self._out_dtype = np.dtype(out["dtype"])
        self._out_scale, self._out_zero = _quant(out)
        # Input quantization: the graph takes pixels 0-255; when its input scale/zero point are not the
        # identity, requantize through a 256-entry table (uint8 -> uint8: no float maths per pixel).
        in_scale, in_zero = _quant(inp)
        self._in_lut: np.ndarray | None = None
        if in_scale > 0 and (abs(in_scale - 1.0) > 1e-6 or in_zero != 0):
            levels = np.arange(256, dtype=np.float64) / in_scale + in_zero
            self._in_lut = np.clip(np.rint(levels), 0, 255).astype(np.uint8)
        self._probe(model_file)

    def _probe(self, model_file: Path) -> None:
        """One inference on a mid-grey tile before any flight; refuse a model that fails or returns garbage.

        A model can pass its sha256 (the build wrote it that way) and allocate, yet fail at invoke
        or return NaN or scores outside 0-1 (a broken build, a model that is not a softmax
        classifier). Caught here it is a BundleError (exit 2) on the ground, not a fault in flight.
        """
        tile = np.full((1, *self.input_size, 3), 128, dtype=np.uint8)
        if self._in_lut is not None:
            tile = self._in_lut[tile]
        try:
            self._interp.set_tensor(self._in_index, tile)
            self._interp.invoke()
            scores = self.dequantize(self._interp.get_tensor(self._out_index).reshape(1, -1))
        except (RuntimeError, ValueError) as err:
            raise BundleError(
                f"{model_file}: the probe inference on a mid-grey tile failed ({err}); the model is damaged or "
                "needs ops this runtime lacks; rebuild the bundle"
            ) from None
        bad = None
        if not np.all(np.isfinite(scores)):
            bad = "non-finite scores"
        elif scores.min() < -PROBE_TOLERANCE or scores.max() > 1.0 + PROBE_TOLERANCE:
            bad = "scores outside 0-1"
        if bad:
            raise BundleError(
                f"{model_file}: the probe inference on a mid-grey tile returned {bad} "
                f"{np.round(scores[0], 4).tolist()}; the model is damaged or its output is not softmax scores; "
                "rebuild the bundle"
            )

    def dequantize(self, raw: np.ndarray) -> np.ndarray:
        """Scores from the raw output tensor values: (q - zero_point) * scale, or as-is for float outputs."""
        return dequantize(raw, self._out_scale, self._out_zero)

    def classify_batch(self, tiles: np.ndarray) -> np.ndarray:
        """Run every tile through the interpreter; uint8 (N, H, W, 3) -> float32 (N, C)."""
        if tiles.dtype != np.uint8 or tiles.ndim != 4 or tiles.shape[1:] != (*self.input_size, 3):
            raise ValueError(f"tiles must be uint8 (N, {self.input_size[0]}, {self.input_size[1]}, 3), got "
                             f"{tiles.dtype} {tiles.shape}")
        if self._in_lut is not None:
            tiles = self._in_lut[tiles]
        raw = np.empty((tiles.shape[0], self.n_classes), dtype=self._out_dtype)
        interp = self._interp
        for i in range(tiles.shape[0]):
            interp.set_tensor(self._in_index, tiles[i : i + 1])
            interp.invoke()
            raw[i] = interp.get_tensor(self._out_index).reshape(-1)
        return self.dequantize(raw)

    def close(self) -> None:
        """Drop the interpreter so its delegate (and the USB device) is released."""
        self._interp = None
