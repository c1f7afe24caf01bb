"""Fault-injecting Classifier doubles that run INSIDE the isolated backend's child process.

`make_faulty` is the child-side factory handed to `IsolatedClassifier`: it must be importable by
name because the child is spawned. Scores are a deterministic function of the tile (its mean colour),
so a test can check that a re-run frame got exactly the scores it would have had without the fault.

The fault fires on the Nth `classify_batch` call of a child (the isolated wrapper sends one tile per
call). With `once_marker` set, only the first child that reaches the Nth call faults (it creates the
marker file first), so the restarted child works; without it every child faults (persistent fault,
which must end in the CPU failover).
"""

from __future__ import annotations

import os
import resource
import signal
import time
from pathlib import Path

import numpy as np

FAULTS = ("abort", "sigkill", "hang", "raise", "wrong_shape", "nan", "out_of_range", "exit", "none")


def expected_scores(tiles: np.ndarray, n_classes: int) -> np.ndarray:
    """The scores a healthy double gives: a softmax over the tile's mean R, G, B (padded/cut to C)."""
    means = tiles.reshape(tiles.shape[0], -1, 3).mean(axis=1).astype(np.float64) / 64.0
    logits = np.resize(means, (tiles.shape[0], n_classes)) if n_classes != 3 else means
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class HealthyClassifier:
    """The same deterministic scores in-process: the CPU fallback of the tests."""

    def __init__(self, n_classes: int = 3, size: int = 32, name: str = "cpu (test double)") -> None:
        self.name = name
        self.input_size = (size, size)
        self.n_classes = n_classes
        self.calls = 0
        self.closed = False

    def classify_batch(self, tiles: np.ndarray) -> np.ndarray:
        self.calls += 1
        return expected_scores(tiles, self.n_classes)

    def close(self) -> None:
        self.closed = True


class FaultyClassifier(HealthyClassifier):
    """Healthy until call `at_call`, then one fault of `fault`'s kind (see FAULTS)."""

    def __init__(self, n_classes: int, size: int, fault: str, at_call: int, once_marker: str | None,
                 startup_fault: bool = False) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
        if startup_fault:
            raise RuntimeError("delegate did not load (test double)")
        super().__init__(n_classes, size, name="edgetpu (fault-injecting test double)")
        self.fault = fault
        self.at_call = at_call
        self.once_marker = Path(once_marker) if once_marker else None

    def _should_fault(self) -> bool:
        if self.fault == "none" or self.calls != self.at_call:
            return False
        if self.once_marker is None:
            return True
        try:
            fd = os.open(self.once_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        os.close(fd)
        return True

    def classify_batch(self, tiles: np.ndarray) -> np.ndarray:
        self.calls += 1
        if not self._should_fault():
            return expected_scores(tiles, self.n_classes)
        f = self.fault
        if f == "abort":  # what libedgetpu does on "Deadline exceeded: USB transfer error 2"
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            os.abort()
        if f == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if f == "exit":
            os._exit(3)
        if f == "hang":
            time.sleep(3600)
        if f == "raise":
            raise RuntimeError("Failed to invoke the delegate (test double)")
        if f == "wrong_shape":
            return np.zeros((tiles.shape[0], self.n_classes + 2), np.float32)
        if f == "nan":
            return np.full((tiles.shape[0], self.n_classes), np.nan, np.float32)
        # out_of_range: raw uint8 values that were never dequantized
        return np.full((tiles.shape[0], self.n_classes), 200.0, np.float32)


def make_faulty(n_classes: int, size: int, fault: str, at_call: int, once_marker: str | None = None,
                startup_fault: bool = False) -> FaultyClassifier:
    """Child-side factory for IsolatedClassifier (picklable by reference)."""
    return FaultyClassifier(n_classes, size, fault, at_call, once_marker, startup_fault)
