"""The scheduler: newest-frame mailbox, drops counted, results never lost, clean stop, failover."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from payload.backends.cpu import CpuClassifier
from payload.bundle import load_bundle
from payload.capture.sources import FrameSource, InProcessSource
from payload.errors import CameraError
from payload.pipeline.scheduler import Mailbox, Pipeline
from payload.pipeline.tiling import Tiler
from payload.sinks.records import JsonlRecordHandler
from payload.types import Frame
from tests.payload.doubles import RecordingHandler, ScriptedClassifier


def frame(seq: int) -> Frame:
    return Frame(np.zeros((64, 64, 3), np.uint8), seq, time.monotonic(), time.time(), "t")


def test_mailbox_keeps_only_the_newest() -> None:
    box = Mailbox()
    assert box.put(frame(0)) is False
    assert box.put(frame(1)) is True
    assert box.put(frame(2)) is True
    assert box.dropped == 2
    got = box.get(0)
    assert got is not None and got.seq == 2
    assert box.get(0.01) is None  # empty: timeout
    box.put(frame(3))
    box.close()
    assert not box.closed  # a frame is still inside
    got = box.get(0)
    assert got is not None and got.seq == 3
    assert box.closed and box.get(None) is None  # closed and empty: no wait


def test_lossless_put_waits_for_the_reader_or_an_abort() -> None:
    box = Mailbox()
    box.put(frame(0))
    done = []
    t = threading.Thread(target=lambda: done.append(box.put(frame(1), wait=True)))
    t.start()
    t.join(0.3)
    assert t.is_alive() and not done  # waiting: the slot is full
    got = box.get(1)
    t.join(5)
    assert got is not None and got.seq == 0 and done == [False] and box.dropped == 0
    abort = threading.Event()
    t = threading.Thread(target=lambda: done.append(box.put(frame(2), wait=True, abort=abort)))
    t.start()
    abort.set()
    t.join(5)
    assert done == [False, True] and box.dropped == 1  # shutdown: the newest frame wins as usual


def pipeline(source: FrameSource, clf, handler, bundle_dir: Path, **kw) -> Pipeline:
    return Pipeline(source, clf, handler, load_bundle(bundle_dir), Tiler(2, 2, 0.0, (32, 32)), **kw)


def test_stale_frames_are_dropped_and_counted(tiny_bundle_dir: Path) -> None:
    in_flight, release = threading.Event(), threading.Event()

    def produce():
        yield np.zeros((64, 64, 3), np.uint8)
        assert in_flight.wait(10)
        for _ in range(9):
            yield np.zeros((64, 64, 3), np.uint8)
        release.set()

    calls = []

    def gate() -> None:
        calls.append(1)
        if len(calls) == 1:
            in_flight.set()
            assert release.wait(10)

    handler = RecordingHandler()
    stats = pipeline(InProcessSource(produce()), ScriptedClassifier(gate=gate), handler, tiny_bundle_dir).run()
    assert [r.frame.seq for r in handler.results] == [0, 9]  # 1-8 went stale while 0 was classified
    assert (stats.frames_captured, stats.frames_processed, stats.frames_dropped) == (10, 2, 8)
    assert stats.tiles == 8 and handler.closed
    # offered: every captured frame's 2x2 tiles; classified: only the two frames that ran
    assert (stats.tiles_offered, stats.tiles_classified) == (40, 8)
    assert stats.as_dict()["tiles_offered"] == 40 and "tiles 8/40 offered" in stats.line()


def test_a_staggered_grid_offers_its_mean_count_per_frame(tiny_bundle_dir: Path) -> None:
    """3x3 and its staggered 2x2-ish cut alternate; a replay classifies every frame, so offered == classified."""
    frames = iter([np.zeros((64, 64, 3), np.uint8)] * 4)
    src = InProcessSource(frames)
    src.lossless = True
    pipe = Pipeline(src, ScriptedClassifier(), RecordingHandler(), load_bundle(tiny_bundle_dir),
                    Tiler(3, 3, 0.0, (32, 32), stagger=True))
    stats = pipe.run()
    assert stats.frames_processed == 4
    assert stats.tiles_offered == stats.tiles_classified == stats.tiles
    assert stats.latency_ms_p50 is not None and stats.inference_ms_p50 is not None


def endless() -> InProcessSource:
    img = np.zeros((64, 64, 3), np.uint8)
    return InProcessSource(lambda: img)


def test_stop_finishes_in_flight_work_and_flushes(tiny_bundle_dir: Path) -> None:
    handler = RecordingHandler()
    p = pipeline(endless(), ScriptedClassifier(gate=lambda: time.sleep(0.002)), handler, tiny_bundle_dir,
                 queue_size=2)
    timer = threading.Timer(0.3, p.stop)
    timer.start()
    stats = p.run()
    timer.join()
    assert handler.closed
    assert stats.frames_processed > 0
    assert len(handler.results) == stats.frames_processed  # everything classified was handed over
    assert stats.frames_captured == stats.frames_processed + stats.frames_dropped


def test_handler_errors_are_counted_and_the_flight_goes_on(tiny_bundle_dir: Path) -> None:
    handler = RecordingHandler(fail_calls={1})
    src = InProcessSource([np.zeros((64, 64, 3), np.uint8)] * 3)
    stats = pipeline(src, ScriptedClassifier(), handler, tiny_bundle_dir).run()
    assert stats.handler_errors == 1 and handler.calls == stats.frames_processed
    assert len(handler.results) == stats.frames_processed - 1 and handler.closed


def test_inference_error_without_fallback_is_raised_after_flushing(tiny_bundle_dir: Path) -> None:
    handler = RecordingHandler()
    p = pipeline(endless(), ScriptedClassifier(fail_times=1), handler, tiny_bundle_dir)
    with pytest.raises(RuntimeError, match="USB transfer error"):
        p.run()
    assert handler.closed


def test_failing_accelerator_hands_over_to_the_cpu(tiny_bundle_dir: Path) -> None:
    handler = RecordingHandler()
    tpu = ScriptedClassifier(fail_times=1, name="edgetpu (test)")
    cpu = ScriptedClassifier(name="cpu (test)")
    src = InProcessSource([np.zeros((64, 64, 3), np.uint8)])
    stats = pipeline(src, tpu, handler, tiny_bundle_dir, fallback=lambda: cpu).run()
    assert tpu.closed and stats.backend_failovers == 1 and stats.backend == "cpu (test)"
    assert [r.backend for r in handler.results] == ["cpu (test)"]  # the frame was retried, not lost


def test_rate_cap_spaces_inferences(tiny_bundle_dir: Path) -> None:
    handler = RecordingHandler()
    starts: list[float] = []
    clf = ScriptedClassifier(gate=lambda: starts.append(time.monotonic()))
    p = pipeline(endless(), clf, handler, tiny_bundle_dir, max_rate_hz=20.0)
    stopped_at = []

    def stop() -> None:
        stopped_at.append(time.monotonic())
        p.stop()

    timer = threading.Timer(0.5, stop)
    timer.start()
    p.run()
    timer.join()
    # frames still in the pipeline at stop are finished at once rather than held back by the cap
    times = [t for t in starts if t < stopped_at[0]]
    assert len(times) >= 3
    # inference never starts faster than 20 Hz: a lower bound that sleeping guarantees, whatever the load
    assert min(np.diff(times)) >= 0.045


class StuckSource(FrameSource):
    """A camera whose read never returns (a hung RTSP stream)."""

    name = "stuck"

    def __init__(self) -> None:
        super().__init__()
        self.never = threading.Event()

    def read(self) -> Frame | None:
        self.never.wait(30)
        return None


def test_stop_does_not_wait_for_a_hung_camera(tiny_bundle_dir: Path) -> None:
    src = StuckSource()
    p = pipeline(src, ScriptedClassifier(), RecordingHandler(), tiny_bundle_dir, join_timeout_s=0.3)
    threading.Timer(0.1, p.stop).start()
    t0 = time.monotonic()
    p.run()
    src.never.set()
    assert time.monotonic() - t0 < 10


def test_real_pipeline_writes_every_frame_as_jsonl(tmp_path: Path, tiny_bundle_dir: Path) -> None:
    bundle = load_bundle(tiny_bundle_dir)
    rng = np.random.default_rng(5)
    frames = [rng.integers(0, 256, (90, 120, 3), dtype=np.uint8) for _ in range(6)]
    out = tmp_path / "rec.jsonl"
    handler = JsonlRecordHandler(out, bundle)
    p = Pipeline(InProcessSource(frames), CpuClassifier(bundle, 1), handler, bundle, Tiler(2, 3, 0.25, (32, 32)))
    stats = p.run()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == stats.frames_processed >= 1
    rec = lines[-1]
    assert rec["seq"] == 5  # the newest frame is always classified
    assert rec["model_sha256"] == bundle.model_sha256 and rec["backend"].startswith("cpu")
    assert len(rec["tiles"]) == 6 and set(rec["tiles"][0]["scores"]) == set(bundle.labels)
    assert rec["flagged"] == sum(t["flagged"] for t in rec["tiles"])
    # append: a second run adds to the same file
    handler2 = JsonlRecordHandler(out, bundle)
    Pipeline(InProcessSource(frames[:1]), CpuClassifier(bundle, 1), handler2, bundle,
             Tiler(1, 1, 0.0, (32, 32))).run()
    assert len(out.read_text().splitlines()) == len(lines) + 1


class ClosedCamera(FrameSource):
    name = "closed"

    def open(self) -> None:
        raise CameraError("camera 'x' did not open (test)")

    def read(self) -> Frame | None:
        raise AssertionError("never read")


def test_a_camera_that_will_not_open_releases_handler_and_backend(tiny_bundle_dir: Path) -> None:
    handler, clf = RecordingHandler(), ScriptedClassifier()
    with pytest.raises(CameraError, match="did not open"):
        pipeline(ClosedCamera(), clf, handler, tiny_bundle_dir).run()
    assert handler.closed and clf.closed


def test_unpaced_folder_replay_classifies_every_image(tmp_path: Path, tiny_bundle_dir: Path) -> None:
    import cv2

    from payload.capture.sources import FolderSource

    for i in range(8):
        cv2.imwrite(str(tmp_path / f"img_{i}.png"), np.full((40, 40, 3), i * 20, np.uint8))
    handler = RecordingHandler()
    slow = ScriptedClassifier(gate=lambda: time.sleep(0.02))
    stats = pipeline(FolderSource(tmp_path, time_from="rate", rate_hz=1.0), slow, handler, tiny_bundle_dir).run()
    assert [r.frame.seq for r in handler.results] == list(range(8))
    assert (stats.frames_captured, stats.frames_processed, stats.frames_dropped) == (8, 8, 0)
