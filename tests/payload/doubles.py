"""Test doubles of what this machine does not have: libedgetpu, pycoral, tflite-runtime, a camera.

The runtime doubles wrap the real ai_edge_litert Interpreter (so the model really runs) but record
how they were called and ignore the delegate; `load_delegate` can fail the two ways the real one
does: OSError when the library is missing, ValueError("Failed to load delegate ...") when no
accelerator answers.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np
import pytest
from ai_edge_litert import interpreter as real_runtime

from payload.types import FrameResult

MISSING_LIB = OSError("libedgetpu.so.1: cannot open shared object file: No such file or directory")
NO_DEVICE = ValueError("Failed to load delegate from libedgetpu.so.1\n")


class Calls:
    def __init__(self) -> None:
        self.load_delegate: list[tuple[str, dict]] = []
        self.interpreters: list[dict[str, Any]] = []
        self.make_interpreter: list[tuple[str, str | None]] = []


def fake_runtime(name: str, calls: Calls, delegate_error: BaseException | None = None) -> types.ModuleType:
    """A module with the TFLite runtime API (Interpreter, load_delegate)."""
    mod = types.ModuleType(name)

    class FakeDelegate:
        def __init__(self, library: str, options: dict) -> None:
            self.library, self.options = library, options

    def load_delegate(library: str, options: dict | None = None) -> FakeDelegate:
        calls.load_delegate.append((library, dict(options or {})))
        if delegate_error is not None:
            raise delegate_error
        return FakeDelegate(library, dict(options or {}))

    def Interpreter(  # noqa: N802 - the runtime's name
        model_path: str, num_threads: int | None = None, experimental_delegates: list | None = None
    ):
        calls.interpreters.append(
            {"runtime": name, "model_path": model_path, "num_threads": num_threads, "delegates": experimental_delegates}
        )
        return real_runtime.Interpreter(model_path=model_path, num_threads=num_threads or 1)

    mod.load_delegate = load_delegate
    mod.Interpreter = Interpreter
    return mod


def install_runtime(monkeypatch: pytest.MonkeyPatch, which: str, module: types.ModuleType | None) -> None:
    """Make `import <which>.interpreter` give `module` (None = ImportError)."""
    monkeypatch.setitem(sys.modules, f"{which}.interpreter", module)


def no_pycoral(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pycoral", None)
    monkeypatch.setitem(sys.modules, "pycoral.utils", None)
    monkeypatch.setitem(sys.modules, "pycoral.utils.edgetpu", None)


def install_pycoral(
    monkeypatch: pytest.MonkeyPatch, calls: Calls, error: BaseException | None = None, tpus: list | None = None
) -> None:
    """A pycoral.utils.edgetpu with make_interpreter / list_edge_tpus."""
    edgetpu = types.ModuleType("pycoral.utils.edgetpu")

    def make_interpreter(model_path_or_content: str, device: str | None = None, delegate: Any = None):
        calls.make_interpreter.append((model_path_or_content, device))
        if error is not None:
            raise error
        return real_runtime.Interpreter(model_path=model_path_or_content)

    edgetpu.make_interpreter = make_interpreter
    edgetpu.list_edge_tpus = lambda: list(tpus or [])
    pkg, utils = types.ModuleType("pycoral"), types.ModuleType("pycoral.utils")
    pkg.utils, utils.edgetpu = utils, edgetpu
    monkeypatch.setitem(sys.modules, "pycoral", pkg)
    monkeypatch.setitem(sys.modules, "pycoral.utils", utils)
    monkeypatch.setitem(sys.modules, "pycoral.utils.edgetpu", edgetpu)


class FakeCapture:
    """cv2.VideoCapture double driven by a script shared across reopenings.

    `opens` says, per open attempt, whether isOpened() is True; `reads` is consumed by read():
    an ndarray (ok, frame), None (ok True but no frame) or False (read failure = camera lost).
    """

    def __init__(self, opens: list[bool], reads: list[Any]) -> None:
        self.opens, self.reads = opens, reads
        self.targets: list[Any] = []
        self.released = 0
        self._open = False

    def __call__(self, target: Any) -> FakeCapture:
        self.targets.append(target)
        self._open = self.opens.pop(0) if self.opens else False
        return self

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self._open

    def read(self) -> tuple[bool, Any]:
        if not self._open or not self.reads:
            return False, None
        item = self.reads.pop(0)
        if item is False:
            self._open = False
            return False, None
        return True, item

    def release(self) -> None:
        self.released += 1
        self._open = False


class RecordingHandler:
    """A ResultHandler that keeps every result and notes that it was closed."""

    def __init__(self, fail_calls: set[int] | None = None) -> None:
        self.results: list[FrameResult] = []
        self.closed = False
        self.fail_calls = fail_calls or set()
        self.calls = 0

    def handle(self, result: FrameResult) -> None:
        self.calls += 1
        if self.calls in self.fail_calls:
            raise OSError("disk full (test)")
        self.results.append(result)

    def close(self) -> None:
        self.closed = True


class ScriptedClassifier:
    """A Classifier double with fixed scores; can block on an event or fail once."""

    def __init__(self, n_classes: int = 3, gate: Any = None, fail_times: int = 0, name: str = "scripted") -> None:
        self.name = name
        self.input_size = (32, 32)
        self.n_classes = n_classes
        self.gate = gate
        self.fail_times = fail_times
        self.batches = 0
        self.closed = False

    def classify_batch(self, tiles: np.ndarray) -> np.ndarray:
        if self.gate is not None:
            self.gate()
        if self.fail_times:
            self.fail_times -= 1
            raise RuntimeError("Deadline exceeded: USB transfer error 2 (test)")
        self.batches += 1
        out = np.zeros((tiles.shape[0], self.n_classes), np.float32)
        out[:, 0] = 1.0
        return out

    def close(self) -> None:
        self.closed = True
