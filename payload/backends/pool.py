"""Several Edge TPUs behind one `Classifier`: the same model on each (a pool), or one segment each (a pipeline).

The scheduler keeps one frame in flight and hands its tiles over as one batch; it does not change
for several devices. What changes is who classifies the batch:

- `ReplicaPool` (frigate's way: one process per device, `usb:0`, `usb:1`, `pci:0`): every member is the
  whole model on one device, in its own watched child (payload/backends/isolated.py). The batch's tiles
  go into one queue and every live member pulls from it, one tile at a time, so a slow or busy device
  takes fewer. A member that faults (a USB abort, SIGKILL, a hang, garbage) gives its tile back to the
  queue, where another member takes it, and is reopened once in the background; the frame does not wait
  for that. Only when every member is gone does `classify_batch` raise, and the scheduler's CPU
  fallback re-runs the frame (payload/backends/registry.py `cpu_fallback`). Scores come back by tile
  index, so their order is the frame's whatever device answered.
- `SegmentPipeline` (`edgetpu_compiler --num_segments N`): stage k runs segment k on device k; each tile
  goes through the stages in order, and stage k works on tile i+1 while stage k+1 works on tile i. The
  parent relays each stage's raw output tensor to the next stage's child (the children never talk to
  each other: each stays a child the watchdog can kill). Every stage is one thread reading one FIFO
  queue, so tiles leave in the order they came in. A segment cannot move to another device (each
  device holds its own segment's parameters), so a stage that fails for good after its one restart fails
  the frame and the CPU takes over, as for one device.

Neither knows what a device is: they are given openers (the Edge TPU backend's, or a test's) and
call `classify_batch` on what those return.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from payload.backends.base import Classifier
from payload.backends.isolated import IsolatedBackendError

log = logging.getLogger("payload.backend.pool")

# how long a member thread waits on an empty queue before it looks again whether the frame is done (the
# member that finishes the frame's last tile wakes the others at once; this is only the backstop)
_POLL_S = 0.5


@dataclass
class _Member:
    """One device of a pool: its string, its classifier (None while dead or reopening), its reopen budget."""

    device: str
    open: Callable[[], Classifier]
    clf: Classifier | None = None
    reopens_left: int = 1
    reopening: threading.Thread | None = None
    tiles: int = 0
    faults: list[str] = field(default_factory=list)


class ReplicaPool:
    """The same model on several devices, all pulling one batch's tiles from one queue (see the module doc)."""

    def __init__(self, devices: Sequence[str], openers: Sequence[Callable[[], Classifier]], n_classes: int,
                 *, reopens: int = 1) -> None:
        if not devices or len(devices) != len(openers):
            raise ValueError("a pool needs one opener per device")
        self.n_classes = n_classes
        self._lock = threading.Lock()
        self._closed = False
        self.members = [_Member(d, o, reopens_left=reopens) for d, o in zip(devices, openers, strict=True)]
        errors = self._open_all()
        live = [m for m in self.members if m.clf is not None]
        if not live:
            for m in self.members:
                m.reopens_left = 0
            raise errors[0][1]
        for dev, err in errors:
            log.warning("Edge TPU %s did not open (%s); flying with %d of %d devices", dev, err, len(live),
                        len(self.members))
        first = live[0].clf
        assert first is not None
        self.input_size: tuple[int, int] = (int(first.input_size[0]), int(first.input_size[1]))
        self.name = ""
        self._rename()

    def _open_all(self) -> list[tuple[str, BaseException]]:
        """Open every member at once (each child takes seconds to start); return the failures."""
        errors: list[tuple[str, BaseException]] = []

        def one(m: _Member) -> None:
            try:
                m.clf = m.open()
            except Exception as err:  # noqa: BLE001 - collected, the first re-raised when none opens
                errors.append((m.device, err))

        threads = [threading.Thread(target=one, args=(m,), name=f"open-{m.device}") for m in self.members]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        order = [m.device for m in self.members]
        return sorted(errors, key=lambda e: order.index(e[0]))

    def _rename(self) -> None:
        """`name` (what the stats and the log call the backend): the live devices out of all, one member's name."""
        live = [m.clf for m in self.members if m.clf is not None]
        first = live[0].name if live else "none live"
        devs = ", ".join(m.device + ("" if m.clf is not None else " (down)") for m in self.members)
        self.name = f"edgetpu pool, {len(live)} of {len(self.members)} devices [{devs}]: {first}"

    @property
    def alive(self) -> int:
        """How many members can classify now."""
        return sum(m.clf is not None for m in self.members)

    def classify_batch(self, tiles: np.ndarray) -> np.ndarray:
        """Every tile classified by some live member, scores in the tiles' order; IsolatedBackendError when
        every member is gone (after waiting for any being reopened)."""
        n = tiles.shape[0]
        out = np.empty((n, self.n_classes), dtype=np.float32)
        pending = list(range(n))
        while pending:
            live = [m for m in self.members if m.clf is not None]
            if not live:
                waiting = [t for t in (m.reopening for m in self.members) if t is not None]
                if not waiting:
                    raise IsolatedBackendError("every Edge TPU of the pool failed: " + "; ".join(
                        f"{m.device}: {m.faults[-1] if m.faults else 'never opened'}" for m in self.members))
                for t in waiting:
                    t.join()
                continue
            pending = self._round(tiles, pending, live, out)
        return out

    def _round(self, tiles: np.ndarray, pending: list[int], live: list[_Member], out: np.ndarray) -> list[int]:
        """Serve `pending` with the `live` members; return what is left when all of them died mid-way."""
        work: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in pending:
            work.put(i)
        state = {"done": 0}
        target = len(pending)

        def serve(m: _Member) -> None:
            clf = m.clf
            assert clf is not None
            while True:
                with self._lock:
                    if state["done"] == target:
                        return
                try:
                    i = work.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                if i < 0:  # the frame is done: woken so as not to sit out the poll
                    return
                try:
                    scores = clf.classify_batch(tiles[i : i + 1])
                except Exception as err:  # noqa: BLE001 - the tile goes back; the member is down
                    work.put(i)
                    self._lost(m, clf, err)
                    return
                out[i] = scores[0]
                m.tiles += 1
                with self._lock:
                    state["done"] += 1
                    last = state["done"] == target
                if last:
                    for _ in live:
                        work.put(-1)

        threads = [threading.Thread(target=serve, args=(m,), name=f"tpu-{m.device}") for m in live]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        left: list[int] = []
        while True:
            try:
                i = work.get_nowait()
            except queue.Empty:
                break
            if i >= 0:
                left.append(i)
        return sorted(left)

    def _lost(self, m: _Member, clf: Classifier, err: BaseException) -> None:
        """Take a faulted member out, and reopen it once in the background (a new child on the same device)."""
        text = f"{type(err).__name__}: {err}"
        m.faults.append(text)
        with self._lock:
            m.clf = None
            self._rename()
        with contextlib.suppress(Exception):
            clf.close()
        others = self.alive
        if m.reopens_left <= 0 or self._closed:
            log.error("Edge TPU %s failed for good (%s); %d other device(s) carry on", m.device, text, others)
            return
        m.reopens_left -= 1
        log.error("Edge TPU %s failed (%s); its tile went back to the queue, %d other device(s) carry on while it "
                  "is reopened", m.device, text, others)

        def reopen() -> None:
            try:
                new = m.open()
            except Exception as err2:  # noqa: BLE001 - a device that does not come back stays down
                m.faults.append(f"reopen: {type(err2).__name__}: {err2}")
                log.error("Edge TPU %s did not come back (%s)", m.device, err2)
                m.reopening = None
                return
            with self._lock:
                if self._closed:
                    new.close()
                else:
                    m.clf = new
                    self._rename()
                m.reopening = None
            log.warning("Edge TPU %s is back: %s", m.device, new.name)

        m.reopening = threading.Thread(target=reopen, name=f"reopen-{m.device}", daemon=True)
        m.reopening.start()

    def close(self) -> None:
        """Close every member (each child releases its device), waiting for any reopen under way."""
        with self._lock:
            self._closed = True
        for m in self.members:
            t = m.reopening
            if t is not None:
                t.join(30)
            clf, m.clf = m.clf, None
            if clf is not None:
                with contextlib.suppress(Exception):
                    clf.close()
        self._rename()


class SegmentPipeline:
    """Segments of one model, one stage (child, device) each, tiles streamed through in order (module doc)."""

    def __init__(self, stages: Sequence[Any], n_classes: int, input_size: tuple[int, int],
                 devices: Sequence[str]) -> None:
        self.stages = list(stages)
        self.devices = list(devices)
        self.n_classes = n_classes
        self.input_size = input_size
        self.name = (f"edgetpu pipeline of {len(self.stages)} segments [{', '.join(self.devices)}]: "
                     f"{getattr(self.stages[0], 'name', '?')}")
        # the tile order each stage saw during the last batch (the pipeline's order, for the log and tests)
        self.last_order: list[list[int]] = []

    def classify_batch(self, tiles: np.ndarray) -> np.ndarray:
        """Every tile through every stage in order; IsolatedBackendError when a stage fails for good."""
        n = tiles.shape[0]
        out = np.empty((n, self.n_classes), dtype=np.float32)
        k_last = len(self.stages) - 1
        queues: list[queue.SimpleQueue[tuple[int, np.ndarray] | None]] = [queue.SimpleQueue() for _ in self.stages]
        order: list[list[int]] = [[] for _ in self.stages]
        errors: list[str] = []

        def stage(k: int) -> None:
            clf = self.stages[k]
            while True:
                item = queues[k].get()
                if item is None or errors:
                    if k < k_last:
                        queues[k + 1].put(None)
                    return
                i, x = item
                try:
                    y = clf.classify_batch(x)
                except Exception as err:  # noqa: BLE001 - the frame fails; the scheduler's fallback re-runs it
                    errors.append(f"segment {k} on {self.devices[k]}: {type(err).__name__}: {err}")
                    if k < k_last:
                        queues[k + 1].put(None)
                    return
                order[k].append(i)
                if k == k_last:
                    out[i] = y[0]
                else:
                    queues[k + 1].put((i, y))

        threads = [threading.Thread(target=stage, args=(k,), name=f"segment-{k}") for k in range(len(self.stages))]
        for t in threads:
            t.start()
        for i in range(n):
            queues[0].put((i, tiles[i : i + 1]))
        queues[0].put(None)
        for t in threads:
            t.join()
        self.last_order = order
        if errors:
            raise IsolatedBackendError("the Edge TPU pipeline failed: " + "; ".join(errors))
        return out

    def close(self) -> None:
        """Close every stage (each child releases its device)."""
        for s in self.stages:
            with contextlib.suppress(Exception):
                s.close()
