"""Run a Classifier in a child process under a watchdog, so an Edge TPU crash cannot end the flight.

A USB Edge TPU can abort the whole process natively (libedgetpu's "Deadline exceeded: USB transfer
error 2"): no Python exception, no `finally`, the payload is simply gone. So
the delegate lives in a spawned child process; the parent only sees a pipe. Tiles go to the child
as raw bytes, and the child answers tile by tile, so a hang is caught after `tile_deadline_s` no
matter how many tiles a frame has, and a dead child is seen at once (the pipe reaches EOF).

Faults detected: the child died (abort, SIGKILL, segfault), no answer within the deadline (hang),
an exception inside the child, and garbage output (wrong shape, NaN/inf, scores outside 0-1). On the
first fault the child is killed and restarted once and the whole batch (the frame in flight) is run
again. On a fault after that the wrapper raises `IsolatedBackendError`; the scheduler's fallback then
opens the CPU backend and re-runs the same frame there, so the frame is not lost.

A child may also run one segment of a pipeline (payload/backends/pool.py): its classifier then carries
an `IoSpec` (what it takes and gives per item, the raw tensor that crosses its cut), the tiles go over
the pipe with their dtype, and the parent checks each answer against the spec instead of the score rules.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, NoReturn

import numpy as np

from payload.backends.base import Classifier

log = logging.getLogger("payload.backend.isolated")

SCORE_TOLERANCE = 1e-3  # dequantized uint8 scores sit exactly in 0-1; allow float rounding only


class IsolatedBackendError(RuntimeError):
    """The isolated backend faulted again after its restart (or could not be restarted)."""


class ChildFaultError(Exception):
    """One fault of the child: `kind` is died, hang, error or garbage."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass
class FaultEvent:
    """One fault as seen by the parent, for the log, the stats and the reliability tests."""

    kind: str
    detail: str
    detected_s: float  # from the start of the call (or of the stalled tile, for a hang) to detection
    action: str  # "restart" or "give up"
    recovered_s: float | None = None  # fault detection -> batch answered again by a new child


@dataclass(frozen=True)
class IoSpec:
    """What a child that is not a whole classifier takes and gives per item (one Edge TPU segment of a pipeline).

    A child without one takes uint8 tiles and answers scores (the `Classifier` surface); a segment child
    takes the previous segment's raw output tensor and answers its own, so the parent checks each answer
    against this instead of against the score rules.
    """

    in_shape: tuple[int, ...]
    in_dtype: str
    out_shape: tuple[int, ...]
    out_dtype: str


# -- child side ----------------------------------------------------------------------------------------


def _child_main(conn: Connection, factory: Callable[..., Classifier], args: tuple[Any, ...],
                warmup: bool) -> None:
    """Body of the child: build the classifier, then answer batches until the pipe closes."""
    # The payload decides when the backend stops; a Ctrl-C or a systemd SIGTERM sent to the whole
    # process group must not kill the child under the frame in flight.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        clf = factory(*args)
        spec: IoSpec | None = getattr(clf, "io_spec", None)
        if warmup:
            if spec is None:
                h, w = clf.input_size
                clf.classify_batch(np.zeros((1, h, w, 3), dtype=np.uint8))
            else:
                clf.classify_batch(np.zeros((1, *spec.in_shape), dtype=spec.in_dtype))
        conn.send(("ready", clf.name, tuple(clf.input_size), spec))
    except BaseException as err:  # noqa: BLE001 - everything goes back to the parent
        with contextlib.suppress(Exception):
            conn.send(("error", _picklable(err), traceback.format_exc()))
        return
    try:
        while True:
            try:
                header = conn.recv()
            except (EOFError, OSError):
                return  # the parent is gone or closed the pipe
            if header is None:
                return
            shape, dtype = tuple(header[0]), np.dtype(header[1])
            tiles = np.frombuffer(conn.recv_bytes(), dtype=dtype).reshape(shape)
            for i in range(shape[0]):
                try:
                    scores = np.asarray(clf.classify_batch(tiles[i : i + 1]))
                except Exception as err:  # noqa: BLE001 - reported to the parent, which decides
                    conn.send(("error", _picklable(err), traceback.format_exc()))
                    break
                conn.send(("tile", i, scores))
    finally:
        with contextlib.suppress(Exception):
            clf.close()


def _picklable(err: BaseException) -> BaseException:
    """The exception itself when it survives pickling, else a RuntimeError carrying its text."""
    import pickle

    try:
        pickle.loads(pickle.dumps(err))
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(err).__name__}: {err}")
    return err


# -- parent side ---------------------------------------------------------------------------------------


class IsolatedClassifier:
    """A Classifier whose real work happens in a child process, restarted once on a fault.

    `factory(*args)` runs in the child (it must be importable by name: 'spawn' start method) and
    returns the real Classifier. Errors it raises while opening (EdgeTpuUnavailable, BundleError) are
    re-raised here unchanged, so backend selection works as without isolation.
    """

    def __init__(
        self,
        factory: Callable[..., Classifier],
        args: tuple[Any, ...],
        n_classes: int,
        *,
        tile_deadline_s: float = 0.8,
        start_timeout_s: float = 60.0,
        restarts: int = 1,
        warmup: bool = True,
    ) -> None:
        self._factory = factory
        self._args = args
        self.n_classes = n_classes
        self.tile_deadline_s = tile_deadline_s
        self.start_timeout_s = start_timeout_s
        self.restarts_left = restarts
        self.warmup = warmup
        self.restarts = 0
        self.faults: list[FaultEvent] = []
        self._ctx = mp.get_context("spawn")
        self._proc: Any = None
        self._conn: Connection | None = None
        self._failed: str | None = None
        self.child_name = "?"
        self.input_size: tuple[int, int] = (0, 0)
        self.io_spec: IoSpec | None = None
        self.name = "isolated (starting)"
        self._start()

    # -- child lifecycle ---------------------------------------------------------------------------
    def _start(self) -> None:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=_child_main, args=(child, self._factory, self._args, self.warmup),
                                 name="backend-child", daemon=True)
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        deadline = time.monotonic() + self.start_timeout_s
        try:
            msg = self._recv(deadline, "starting")
        except ChildFaultError:
            self._kill()
            raise
        if msg[0] == "error":
            self._kill()
            raise msg[1]
        _, self.child_name, size, self.io_spec = msg
        self.input_size = (int(size[0]), int(size[1]))
        self.name = f"{self.child_name} [isolated, pid {proc.pid}]"
        log.info("backend child started: %s", self.name)

    def _kill(self) -> None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
        if proc is not None:
            if proc.is_alive():
                proc.kill()
            proc.join(5.0)
            with contextlib.suppress(Exception):
                proc.close()

    def _recv(self, deadline: float, doing: str) -> Any:
        """Next message from the child, or ChildFaultError when it dies or misses `deadline`."""
        conn, proc = self._conn, self._proc
        assert conn is not None and proc is not None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChildFaultError("hang", f"no answer from the child while {doing}")
            try:
                ready = conn.poll(min(left, 0.05))
            except (EOFError, OSError) as err:
                raise ChildFaultError("died", self._death(err)) from None
            if ready:
                try:
                    return conn.recv()
                except (EOFError, OSError) as err:
                    raise ChildFaultError("died", self._death(err)) from None
            if not proc.is_alive():
                raise ChildFaultError("died", self._death(None))

    def _death(self, err: BaseException | None) -> str:
        proc = self._proc
        if proc is not None:
            proc.join(0.5)
            code = proc.exitcode
            if code is not None and code < 0:
                try:
                    return f"child killed by {signal.Signals(-code).name}"
                except ValueError:
                    return f"child killed by signal {-code}"
            if code is not None:
                return f"child exited with code {code}"
        return f"pipe to the child broke ({err})"

    # -- the Classifier interface ------------------------------------------------------------------
    def _run_once(self, tiles: np.ndarray) -> np.ndarray:
        conn = self._conn
        assert conn is not None
        try:
            conn.send((tiles.shape, tiles.dtype.str))
            conn.send_bytes(np.ascontiguousarray(tiles).data.cast("B"))
        except (OSError, ValueError) as err:
            raise ChildFaultError("died", self._death(err)) from None
        n = tiles.shape[0]
        spec = self.io_spec
        if spec is not None and not self._scores_out(spec):
            out = np.empty((n, *spec.out_shape), dtype=np.dtype(spec.out_dtype))
        else:
            out = np.empty((n, self.n_classes), dtype=np.float32)
        for i in range(n):
            msg = self._recv(time.monotonic() + self.tile_deadline_s, f"classifying tile {i + 1} of {n}")
            if msg[0] == "error":
                raise ChildFaultError("error", f"{type(msg[1]).__name__}: {msg[1]}")
            if msg[0] != "tile" or msg[1] != i:
                raise ChildFaultError("garbage", f"unexpected message {msg[0]!r} for tile {i}")
            out[i] = self._check(msg[2], i)
        return out

    def _scores_out(self, spec: IoSpec) -> bool:
        """Whether a segment child answers scores (the last segment of a pipeline)."""
        return spec.out_shape == (self.n_classes,) and np.dtype(spec.out_dtype) == np.float32

    def _check(self, scores: Any, i: int) -> np.ndarray:
        spec = self.io_spec
        if spec is not None and not self._scores_out(spec):
            return self._check_tensor(scores, i, spec)
        arr = np.asarray(scores)
        if arr.shape != (1, self.n_classes):
            raise ChildFaultError("garbage", f"tile {i}: scores of shape {arr.shape}, expected (1, {self.n_classes})")
        if arr.dtype.kind not in "fiu":
            raise ChildFaultError("garbage", f"tile {i}: scores of dtype {arr.dtype}")
        arr = arr.astype(np.float32)
        if not np.all(np.isfinite(arr)):
            raise ChildFaultError("garbage", f"tile {i}: non-finite scores {arr.tolist()}")
        if arr.min() < -SCORE_TOLERANCE or arr.max() > 1.0 + SCORE_TOLERANCE:
            raise ChildFaultError("garbage", f"tile {i}: scores outside 0-1 {arr.tolist()}")
        return arr[0]

    def _check_tensor(self, raw: Any, i: int, spec: IoSpec) -> np.ndarray:
        """A segment's output: exactly the shape and dtype its model declares (else garbage)."""
        arr = np.asarray(raw)
        if arr.shape != (1, *spec.out_shape) or arr.dtype != np.dtype(spec.out_dtype):
            raise ChildFaultError("garbage", f"item {i}: output {arr.dtype} {arr.shape}, expected "
                                  f"{spec.out_dtype} {(1, *spec.out_shape)}")
        return arr[0]

    def _check_input(self, tiles: np.ndarray) -> None:
        spec = self.io_spec
        if spec is not None:
            if tiles.dtype != np.dtype(spec.in_dtype) or tiles.shape[1:] != spec.in_shape:
                raise ValueError(f"input must be {spec.in_dtype} (N, {', '.join(map(str, spec.in_shape))}), got "
                                 f"{tiles.dtype} {tiles.shape}")
        elif tiles.dtype != np.uint8 or tiles.ndim != 4 or tiles.shape[1:] != (*self.input_size, 3):
            raise ValueError(f"tiles must be uint8 (N, {self.input_size[0]}, {self.input_size[1]}, 3), got "
                             f"{tiles.dtype} {tiles.shape}")

    def classify_batch(self, tiles: np.ndarray) -> np.ndarray:
        """Classify in the child; on a fault restart it once and re-run this batch, then give up."""
        if self._failed is not None:
            raise IsolatedBackendError(self._failed)
        self._check_input(tiles)
        t0 = time.monotonic()
        try:
            return self._run_once(tiles)
        except ChildFaultError as fault:
            first, detected = fault, time.monotonic() - t0
        self._kill()
        if self.restarts_left <= 0:
            self._give_up(first, detected)
        event = FaultEvent(first.kind, first.detail, detected, "restart")
        self.faults.append(event)
        log.error("backend child fault (%s) detected after %.2f s: %s; restarting it and re-running the frame",
                  first.kind, detected, first.detail)
        self.restarts_left -= 1
        self.restarts += 1
        t_restart = time.monotonic()
        try:
            self._start()
        except Exception as err:  # noqa: BLE001 - any failure to come back is final
            self._failed = f"{self.child_name} could not be restarted: {type(err).__name__}: {err}"
            log.error("%s", self._failed)
            raise IsolatedBackendError(self._failed) from None
        t1 = time.monotonic()
        try:
            result = self._run_once(tiles)
        except ChildFaultError as fault:
            detected = time.monotonic() - t1
            self._kill()
            self._give_up(fault, detected)
        event.recovered_s = time.monotonic() - t_restart
        return result

    def _give_up(self, fault: ChildFaultError, detected: float) -> NoReturn:
        self.faults.append(FaultEvent(fault.kind, fault.detail, detected, "give up"))
        self._failed = f"{self.child_name} failed after {self.restarts} restart(s): {fault}"
        log.error("backend child fault (%s) after %.2f s: %s; no restart left, giving the backend up",
                  fault.kind, detected, fault.detail)
        raise IsolatedBackendError(self._failed)

    def close(self) -> None:
        """Ask the child to finish, then make sure it is gone (the Edge TPU is released with it)."""
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.send(None)
            proc = self._proc
            if proc is not None:
                proc.join(2.0)
        self._kill()

    @property
    def alive(self) -> bool:
        """Whether a child is running (False after close or a final fault)."""
        return self._proc is not None and self._proc.is_alive()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._kill()
