"""The real-time pipeline: capture thread -> newest-frame mailbox -> inference -> bounded queue -> writer.

A stale frame is worth less than a fresh one, so capture never waits for inference: it overwrites
the single-slot mailbox, and every overwritten frame is counted as a drop. (A recording replayed
as fast as possible, `source.lossless`, is the exception: there is no "live", so capture waits and
every frame is classified.) Inference results go to
the writer through a bounded queue that blocks when full (nothing classified is ever thrown away;
back-pressure ends up as mailbox drops). On stop (SIGINT/SIGTERM), capture stops, the frame in flight
and the one waiting are finished, the writer flushes, and `run()` returns the final statistics.
A camera read stuck in the driver is the source's to catch (OpenCVSource's stall watchdog reopens
the camera in flight, and its read() returns at once on stop); abandoning a capture thread still
stuck after `join_timeout_s` at stop is the last resort for sources without a watchdog.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

import numpy as np

from payload.backends.base import Classifier
from payload.bundle import Bundle
from payload.capture.sources import FrameSource
from payload.pipeline.choose import TileChooser, choose, tile_budget
from payload.pipeline.stats import PipelineStats, Window
from payload.pipeline.tiling import Tiler
from payload.types import Frame, FrameResult, ResultHandler, TileResult

log = logging.getLogger("payload.scheduler")

_END = object()


class Mailbox:
    """A single slot holding the newest frame; putting over an unread frame counts a drop."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._closed = False
        self.dropped = 0

    def put(self, frame: Frame, wait: bool = False, abort: threading.Event | None = None) -> bool:
        """Store `frame`; return True if it replaced one that was never read.

        With `wait` (a recording replayed as fast as it is classified), first wait until the slot is
        free, so nothing is dropped; `abort` being set ends the wait (shutdown).
        """
        with self._cond:
            if wait:
                while self._frame is not None and not self._closed and not (abort is not None and abort.is_set()):
                    self._cond.wait(0.1)
            replaced = self._frame is not None
            if replaced:
                self.dropped += 1
            self._frame = frame
            self._cond.notify()
            return replaced

    def get(self, timeout: float | None = None) -> Frame | None:
        """Take the newest frame, waiting up to `timeout`; None on timeout or when closed and empty."""
        with self._cond:
            self._cond.wait_for(lambda: self._frame is not None or self._closed, timeout)
            frame, self._frame = self._frame, None
            self._cond.notify_all()  # a waiting lossless put may go on
            return frame

    def close(self) -> None:
        """No more frames will come; wakes the reader (a frame still inside can be taken)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed and self._frame is None


class Pipeline:
    """Runs a source, a classifier and a result handler on three threads until stopped or exhausted.

    `fallback` builds a replacement classifier if the current one raises during inference (an
    Edge TPU unplugged in flight); the frame is then retried on the new one. Whether there is one,
    and what it is, is the backend registry's policy (payload/backends/registry.py cpu_fallback).
    """

    def __init__(
        self,
        source: FrameSource,
        classifier: Classifier,
        handler: ResultHandler,
        bundle: Bundle,
        tiler: Tiler,
        *,
        queue_size: int = 64,
        max_rate_hz: float | None = None,
        stats_interval_s: float = 10.0,
        fallback: Callable[[], Classifier] | None = None,
        join_timeout_s: float = 5.0,
        chooser: TileChooser | None = None,
    ) -> None:
        self.source = source
        self.classifier = classifier
        self.handler = handler
        self.bundle = bundle
        self.tiler = tiler
        self.max_rate_hz = max_rate_hz
        self.stats_interval_s = stats_interval_s
        self.fallback = fallback
        self.join_timeout_s = join_timeout_s
        # with a chooser, a frame the chip cannot finish in time has its most valuable tiles classified
        # (payload/pipeline/choose.py); without one, every tile of the newest frame (frames are dropped)
        self.chooser = chooser
        self.choose_ms = Window()
        self.frame_interval_s = Window(64)
        self.tiles_cut = 0  # tiles of the processed frames, classified or not
        self.mailbox = Mailbox()
        self.results: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._done = threading.Event()
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()
        self.processed = 0
        self.written = 0
        self.tiles = 0
        self.handler_errors = 0
        self.failovers = 0
        self.inference_ms = Window()
        self.tile_ms = Window()
        self.latency_ms = Window()
        self._t_start = time.monotonic()

    # -- control -----------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the pipeline to stop (safe from a signal handler): capture ends, in-flight work finishes."""
        self._stop.set()
        self.source.stop()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stats(self) -> PipelineStats:
        elapsed = max(time.monotonic() - self._t_start, 1e-9)
        c = self.source.counters
        return PipelineStats(
            backend=self.classifier.name,
            elapsed_s=round(elapsed, 3),
            frames_captured=c.captured,
            frames_processed=self.processed,
            frames_dropped=self.mailbox.dropped,
            frames_unreadable=c.unreadable,
            camera_reconnects=c.reconnects,
            camera_stalls=c.stalls,
            tiles=self.tiles,
            tiles_per_s=self.tiles / elapsed,
            tiles_offered=self.tiles_offered(c.captured),
            tiles_classified=self.tiles,
            tile_choice="map" if self.chooser is not None else "all",
            choose_ms_p50=self.choose_ms.percentile(50),
            inference_ms_p50=self.inference_ms.percentile(50),
            inference_ms_p95=self.inference_ms.percentile(95),
            tile_ms_p50=self.tile_ms.percentile(50),
            latency_ms_p50=self.latency_ms.percentile(50),
            latency_ms_p95=self.latency_ms.percentile(95),
            handler_errors=self.handler_errors,
            backend_failovers=self.failovers,
        )

    def tiles_offered(self, captured: int) -> int:
        """Tiles of every captured frame: those classified, and a never-classified frame's share at the
        mean tiles per classified frame (a staggered grid alternates its count; a frame never cut has none)."""
        per_frame = self.tiles_cut / self.processed if self.processed else self.tiler.rows * self.tiler.cols
        return self.tiles_cut + round(max(captured - self.processed, 0) * per_frame)

    # -- threads -----------------------------------------------------------------------------------
    def _fail(self, where: str, err: BaseException) -> None:
        log.error("%s failed: %s: %s; stopping the pipeline", where, type(err).__name__, err, exc_info=err)
        with self._lock:
            self._errors.append(err)
        self.stop()

    def _capture(self) -> None:
        prev: float | None = None
        try:
            while not self._stop.is_set():
                frame = self.source.read()
                if frame is None:
                    break
                if prev is not None and frame.t_mono > prev:
                    self.frame_interval_s.add(frame.t_mono - prev)
                prev = frame.t_mono
                self.mailbox.put(frame, wait=self.source.lossless, abort=self._stop)
        except Exception as err:  # noqa: BLE001 - reported and re-raised by run()
            self._fail("capture", err)
        finally:
            self.mailbox.close()

    def _classify(self, tiles: np.ndarray) -> np.ndarray:
        try:
            return self.classifier.classify_batch(tiles)
        except Exception as err:
            if self.fallback is None:
                raise
            old = self.classifier.name
            log.error("backend %s failed during inference (%s: %s); handing over to the CPU", old,
                      type(err).__name__, err)
            try:
                self.classifier.close()
            except Exception:  # the failed backend may not close cleanly
                log.debug("closing the failed backend raised", exc_info=True)
            self.classifier = self.fallback()
            self.fallback = None
            self.failovers += 1
            log.warning("backend now %s", self.classifier.name)
            return self.classifier.classify_batch(tiles)

    def _choose(self, frame: Frame, boxes: list, batch: np.ndarray, period: float) -> tuple[list, np.ndarray]:
        """The tiles this frame can afford (all when the chip keeps up, the source is lossless, or no chooser)."""
        if self.chooser is None or self.source.lossless:
            return boxes, batch
        interval = self.frame_interval_s.percentile(50)
        if interval is not None and period:
            interval = max(interval, period)
        tile_ms = self.tile_ms.percentile(50)
        budget = tile_budget(interval, None if tile_ms is None else tile_ms / 1000.0, len(boxes))
        if budget >= len(boxes):
            return boxes, batch
        t0 = time.perf_counter()
        keep = choose(self.chooser.values(frame, boxes), len(boxes), budget, frame.seq)
        self.choose_ms.add((time.perf_counter() - t0) * 1000.0)
        return [boxes[i] for i in keep], batch[keep]

    def _infer(self) -> None:
        next_due = 0.0
        period = 1.0 / self.max_rate_hz if self.max_rate_hz else 0.0
        try:
            while True:
                if period:
                    wait = next_due - time.monotonic()
                    if wait > 0:
                        self._stop.wait(wait)
                frame = self.mailbox.get(timeout=0.5)
                if frame is None:
                    if self.mailbox.closed:
                        break
                    continue
                boxes, batch = self.tiler.tiles(frame.pixels)
                self.tiles_cut += len(boxes)
                boxes, batch = self._choose(frame, boxes, batch, period)
                next_due = time.monotonic() + period  # the cap spaces the starts of inference
                t0 = time.perf_counter()
                scores = self._classify(batch)
                ms = (time.perf_counter() - t0) * 1000.0
                decisions = self.bundle.decide(scores)
                tiles = tuple(
                    TileResult(box, scores[i].copy(), d.label, d.confidence, d.flagged)
                    for i, (box, d) in enumerate(zip(boxes, decisions, strict=True))
                )
                result = FrameResult(frame, tiles, ms, self.classifier.name, time.monotonic())
                self.inference_ms.add(ms)
                self.tile_ms.add(ms / max(len(tiles), 1))
                self.processed += 1
                self.tiles += len(tiles)
                self.results.put(result)
        except Exception as err:  # noqa: BLE001 - reported and re-raised by run()
            self._fail("inference", err)
        finally:
            self.results.put(_END)

    def _write(self) -> None:
        try:
            while True:
                item = self.results.get()
                if item is _END:
                    break
                assert isinstance(item, FrameResult)
                try:
                    self.handler.handle(item)
                except Exception as err:  # noqa: BLE001 - one bad write must not end the flight
                    self.handler_errors += 1
                    log.error("result handler failed on frame %d: %s: %s", item.frame.seq, type(err).__name__, err)
                    continue
                self.written += 1
                self.latency_ms.add((time.monotonic() - item.frame.t_mono) * 1000.0)
        finally:
            try:
                self.handler.close()
            except Exception as err:  # noqa: BLE001
                self._fail("closing the result handler", err)
            self._done.set()

    # -- main --------------------------------------------------------------------------------------
    def run(self) -> PipelineStats:
        """Open the source, run until the stream ends or `stop()`, and return the final statistics.

        Must be called from the main thread when signal handlers are to work (they only set a flag).
        Raises the first error of a worker thread after everything has been flushed.
        """
        try:
            self.source.open()
        except BaseException:
            self.handler.close()
            self.classifier.close()
            raise
        self._t_start = time.monotonic()
        threads = {
            "capture": threading.Thread(target=self._capture, name="capture", daemon=True),
            "inference": threading.Thread(target=self._infer, name="inference", daemon=True),
            "writer": threading.Thread(target=self._write, name="writer", daemon=True),
        }
        for t in threads.values():
            t.start()
        next_stats = time.monotonic() + self.stats_interval_s
        stop_seen_at: float | None = None
        try:
            while not self._done.wait(0.2):
                now = time.monotonic()
                if now >= next_stats:
                    log.info("stats: %s", self.stats().line())
                    next_stats = now + self.stats_interval_s
                if self._stop.is_set():
                    if stop_seen_at is None:
                        stop_seen_at = now
                        log.info("stopping: capture ends, finishing the frame in flight and flushing records")
                    elif threads["capture"].is_alive() and now - stop_seen_at > self.join_timeout_s:
                        log.warning("capture thread stuck in a camera read for %.0f s; closing the mailbox without it",
                                    self.join_timeout_s)
                        self.mailbox.close()
        finally:
            for name in ("capture", "inference", "writer"):
                threads[name].join(self.join_timeout_s)
            self.source.close()
            try:
                self.classifier.close()
            except Exception:
                log.debug("closing the backend raised", exc_info=True)
        final = self.stats()
        log.info("final stats: %s", final.line())
        if self._errors:
            raise self._errors[0]
        return final
