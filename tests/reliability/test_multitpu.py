"""Several Edge TPUs in watched children: a pool that loses a child mid-flight, and a pipeline of segments.

Pool members are real isolated children (payload/backends/isolated.py) running the fault-injecting double
of tests/reliability/faulty.py, whose scores are a function of the tile, so a tile that moved to another
device must come back with exactly the scores it would have had. The pipeline runs the compiler double's
real segment models (tests/compile/fake_edgetpu_compiler) through the runtime double in each child.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from payload.backends.isolated import IsolatedBackendError, IsolatedClassifier
from payload.backends.pool import ReplicaPool, SegmentPipeline
from payload.bundle import load_bundle
from payload.capture.sources import InProcessSource
from payload.pipeline.scheduler import Pipeline
from payload.pipeline.tiling import Tiler
from tests.payload.doubles import RecordingHandler
from tests.reliability.faulty import HealthyClassifier, expected_scores, make_faulty

pytestmark = pytest.mark.timeout(240)

N_CLASSES = 3
SIZE = 32
DEADLINE_S = 2.0  # as in test_isolated.py: a loaded 2-core machine is slow now and then
DEVICES = ["usb:0", "usb:1", "pci:0"]
HERE = Path(__file__).resolve().parent
FAKE = HERE.parent / "compile" / "fake_edgetpu_compiler"


def member(fault: str = "none", at_call: int = 0, marker: Path | None = None) -> IsolatedClassifier:
    """One pool member: its own child, no restart of its own (the pool moves the tile and reopens)."""
    return IsolatedClassifier(make_faulty, (N_CLASSES, SIZE, fault, at_call, str(marker) if marker else None),
                              N_CLASSES, tile_deadline_s=DEADLINE_S, restarts=0)


def gated_frames(n: int, handler: RecordingHandler, on_frame=None, timeout: float = 60.0):
    """Frames released one at a time after the previous one was written: a missing frame is a lost frame."""
    rng = np.random.default_rng(11)
    for k in range(n):
        deadline = time.monotonic() + timeout
        while len(handler.results) < k and time.monotonic() < deadline:
            time.sleep(0.005)
        if on_frame is not None:
            on_frame(k)
        yield rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)


def check_every_frame(pipe: Pipeline, handler: RecordingHandler, n: int) -> None:
    assert [r.frame.seq for r in handler.results] == list(range(n))  # 0 frames lost, in order
    for r in handler.results:
        _, batch = pipe.tiler.tiles(r.frame.pixels)
        np.testing.assert_allclose(np.stack([t.scores for t in r.tiles]), expected_scores(batch, N_CLASSES),
                                   rtol=1e-6)


@pytest.mark.parametrize("how,comes_back", [("self", True), ("external", False)])
def test_one_child_of_three_killed_mid_flight(how: str, comes_back: bool, tmp_path: Path,
                                             tiny_bundle_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """SIGKILL to one child: its tile goes to the others, no frame or record is lost, the CPU never takes over.

    `self`: the child kills itself in the middle of a batch (on its 2nd tile) and its device is reopened;
    `external`: the child is killed from outside between frames and its device does not come back, so two
    devices carry the rest of the flight.
    """
    n_frames = 10
    handler = RecordingHandler()
    marker = tmp_path / "fired"
    reopened: list[str] = []

    def opener(k: int, first: list[bool]) -> IsolatedClassifier:
        if first[0]:
            first[0] = False
            return member("sigkill", 3, marker) if (how == "self" and k == 1) else member()  # its 2nd tile
        reopened.append(DEVICES[k])
        if not comes_back:
            raise IsolatedBackendError(f"{DEVICES[k]} is gone (test)")
        return member()

    pool = ReplicaPool(DEVICES, [functools.partial(opener, k, [True]) for k in range(3)], N_CLASSES)
    victim = pool.members[1].clf
    assert isinstance(victim, IsolatedClassifier)
    victim_pid = victim._proc.pid

    def kill_outside(k: int) -> None:
        if how == "external" and k == 3:
            os.kill(victim_pid, signal.SIGKILL)

    fallbacks: list[HealthyClassifier] = []
    pipe = Pipeline(InProcessSource(gated_frames(n_frames, handler, kill_outside)), pool, handler,
                    load_bundle(tiny_bundle_dir), Tiler(2, 3, 0.0, (SIZE, SIZE)),
                    fallback=lambda: fallbacks.append(HealthyClassifier()) or fallbacks[-1], stats_interval_s=60)
    stats = pipe.run()
    check_every_frame(pipe, handler, n_frames)
    assert stats.frames_dropped == 0 and stats.frames_processed == n_frames
    assert stats.backend_failovers == 0 and not fallbacks  # the CPU never took over
    assert reopened == ["usb:1"]
    assert "SIGKILL" in pool.members[1].faults[0]
    if how == "self":
        assert marker.exists()
    # the two others classified tiles after the kill; all tiles of the flight were classified once
    assert pool.members[0].tiles > 0 and pool.members[2].tiles > 0
    assert sum(m.tiles for m in pool.members) == 6 * n_frames
    # the run closed the pool (waiting for the reopen under way): no child is left
    assert pool.alive == 0 and pool.members[1].reopening is None
    if comes_back:
        assert "Edge TPU usb:1 is back" in caplog.text
    else:
        assert "Edge TPU usb:1 did not come back" in caplog.text
    print(f"POOL {how}: {n_frames}/{n_frames} frames, tiles per device "
          f"{[(m.device, m.tiles) for m in pool.members]}, faults {pool.members[1].faults}")


def test_every_child_dead_hands_the_flight_to_the_cpu(tiny_bundle_dir: Path) -> None:
    """All three devices fault for good (and do not come back): the scheduler's CPU fallback re-runs the frame."""
    n_frames = 6
    handler = RecordingHandler()
    openers = [functools.partial(member, "abort", 4 + k) for k in range(3)]
    pool = ReplicaPool(DEVICES, openers, N_CLASSES, reopens=0)
    fallbacks: list[HealthyClassifier] = []
    pipe = Pipeline(InProcessSource(gated_frames(n_frames, handler)), pool, handler, load_bundle(tiny_bundle_dir),
                    Tiler(2, 3, 0.0, (SIZE, SIZE)),
                    fallback=lambda: fallbacks.append(HealthyClassifier()) or fallbacks[-1], stats_interval_s=60)
    stats = pipe.run()
    check_every_frame(pipe, handler, n_frames)
    assert stats.backend_failovers == 1 and len(fallbacks) == 1
    assert pool.alive == 0 and all(m.faults for m in pool.members)
    with pytest.raises(IsolatedBackendError, match="every Edge TPU of the pool failed"):
        pool.classify_batch(np.zeros((1, SIZE, SIZE, 3), np.uint8))


# --- the pipeline of segments -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def segmented_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model (batch 1) compiled by the compiler double into 3 segments, as `make edgetpu` would."""
    from compile.build import attach_edgetpu
    from tests.payload import tinymodel

    root = tinymodel.write_bundle(tmp_path_factory.mktemp("seg") / "bundle", tinymodel.build_tflite(batch_size=1))
    old = os.environ.get("FAKE_EDGETPU_PYTHON")
    os.environ["FAKE_EDGETPU_PYTHON"] = sys.executable
    try:
        attach_edgetpu(root, str(FAKE), 14, 120, num_segments=3)
    finally:
        if old is None:
            del os.environ["FAKE_EDGETPU_PYTHON"]
        else:
            os.environ["FAKE_EDGETPU_PYTHON"] = old
    return root


def distinct_tiles(bundle, n: int) -> np.ndarray:
    """`n` tiles whose scores differ pairwise on the tiny model (picked from many), so a reordering cannot go
    unseen; the tiny model's uint8 scores take few values, hence the picking."""
    from payload.backends.cpu import CpuClassifier

    rng = np.random.default_rng(2)
    pool = np.clip(rng.integers(0, 256, (400, 1, 1, 3)) + rng.integers(-40, 40, (400, SIZE, SIZE, 3)), 0, 255)
    pool = pool.astype(np.uint8)
    scores = CpuClassifier(bundle, 1).classify_batch(pool)
    firsts = {tuple(r): i for i, r in reversed(list(enumerate(scores.tolist())))}
    picked = sorted(firsts.values())[:n]
    assert len(picked) == n, f"the tiny model gives only {len(firsts)} distinct score rows"
    return pool[picked]


def test_the_pipeline_keeps_the_order_and_computes_the_whole_model(segmented_bundle: Path) -> None:
    from payload.backends.cpu import CpuClassifier
    from payload.backends.edgetpu import open_edgetpu, open_segment_pipeline
    from tests.reliability.segmentchild import segment_with_runtime_double

    bundle = load_bundle(segmented_bundle)
    assert len(bundle.edgetpu_segments) == 3
    pipe = open_segment_pipeline(bundle, DEVICES, True, child=segment_with_runtime_double,
                                 tile_deadline_s=DEADLINE_S)
    try:
        assert isinstance(pipe, SegmentPipeline) and len(pipe.stages) == 3
        assert [s.name.split(" (")[0] for s in pipe.stages] == [f"edgetpu segment {k} of 3" for k in (1, 2, 3)]
        assert [f"device {d}" in s.name for s, d in zip(pipe.stages, DEVICES, strict=True)] == [True] * 3
        batch = distinct_tiles(bundle, 8)
        want = CpuClassifier(bundle, 1).classify_batch(batch)
        got = pipe.classify_batch(batch)
        np.testing.assert_array_equal(got, want)  # the three children's result is the whole model's, tile by tile
        assert pipe.last_order == [list(range(8))] * 3  # every stage saw the tiles in frame order
    finally:
        pipe.close()
    assert not any(s.alive for s in pipe.stages)
    with pytest.raises(Exception, match="compiled into 3 segments, one per device, but model.device names 2"):
        open_edgetpu(bundle, "usb:0,usb:1", isolate=True)


def test_a_killed_segment_child_restarts_and_the_order_holds(segmented_bundle: Path, tmp_path: Path) -> None:
    """The middle segment's child dies (SIGKILL) mid-batch: it restarts once, re-runs that tile, order kept."""
    from payload.backends.cpu import CpuClassifier
    from payload.backends.edgetpu import open_segment_pipeline
    from tests.reliability.segmentchild import killing_segment

    bundle = load_bundle(segmented_bundle)
    marker = tmp_path / "fired"
    # item 1 is the child's warm-up, item 2 the probe tile: item 7 is the 5th tile of the batch
    pipe = open_segment_pipeline(bundle, DEVICES, True, child=killing_segment(1, 7, str(marker)),
                                 tile_deadline_s=DEADLINE_S)
    try:
        batch = distinct_tiles(bundle, 8)
        got = pipe.classify_batch(batch)
        assert marker.exists()
        np.testing.assert_array_equal(got, CpuClassifier(bundle, 1).classify_batch(batch))
        assert pipe.last_order == [list(range(8))] * 3
        middle = pipe.stages[1]
        assert middle.restarts == 1 and middle.faults[0].kind == "died"
    finally:
        pipe.close()


def test_the_pipeline_in_the_scheduler_loses_no_frame(segmented_bundle: Path) -> None:
    from payload.backends.cpu import CpuClassifier
    from payload.backends.edgetpu import open_segment_pipeline
    from tests.reliability.segmentchild import segment_with_runtime_double

    bundle = load_bundle(segmented_bundle)
    pipe_clf = open_segment_pipeline(bundle, DEVICES, True, child=segment_with_runtime_double,
                                     tile_deadline_s=DEADLINE_S)
    handler = RecordingHandler()
    n = 6
    pipe = Pipeline(InProcessSource(gated_frames(n, handler)), pipe_clf, handler, bundle,
                    Tiler(2, 3, 0.0, (SIZE, SIZE)), stats_interval_s=60)
    stats = pipe.run()
    assert [r.frame.seq for r in handler.results] == list(range(n)) and stats.frames_dropped == 0
    cpu = CpuClassifier(bundle, 1)
    for r in handler.results:
        _, tiles = pipe.tiler.tiles(r.frame.pixels)
        np.testing.assert_array_equal(np.stack([t.scores for t in r.tiles]), cpu.classify_batch(tiles))
    assert not any(s.alive for s in pipe_clf.stages)  # the run closed every child


def test_a_lone_device_is_reopened_before_the_frame_gives_up() -> None:
    """With its only device down, the pool waits for the reopen and finishes the frame there; close ends it."""
    reopened = threading.Event()

    def opener(first: list[bool]) -> IsolatedClassifier:
        if first[0]:
            first[0] = False
            return member("raise", 3)  # call 1 is the warm-up: the 2nd tile of the batch raises
        reopened.set()
        return member()

    pool = ReplicaPool(["usb:0"], [functools.partial(opener, [True])], N_CLASSES)
    batch = np.random.default_rng(9).integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
    try:
        np.testing.assert_allclose(pool.classify_batch(batch), expected_scores(batch, N_CLASSES), rtol=1e-6)
        assert reopened.is_set() and pool.alive == 1 and len(pool.members[0].faults) == 1
        clf = pool.members[0].clf
    finally:
        pool.close()
    assert pool.alive == 0 and not clf.alive


def test_payload_run_wiring_with_three_devices_loses_no_record(monkeypatch: pytest.MonkeyPatch,
                                                              tiny_tpu_bundle_dir: Path, tmp_path: Path) -> None:
    """`build_pipeline` with model.device usb:0,usb:1,pci:0: the runner gets a pool of three watched children;
    one SIGKILLs itself mid-flight; every frame has its record in classifications.jsonl, in order, and no
    frame went to the CPU."""
    import json

    import payload.backends.edgetpu as tpu
    import payload.pipeline.runner as runner
    from payload.config import PayloadConfig

    opened: list[str] = []
    marker = tmp_path / "fired"

    def edgetpu_child(bundle, device, *, restarts=1, tile_deadline_s=0.8):
        opened.append(device)
        assert restarts == 0  # in a pool, the pool moves the tile and reopens, not the child
        return member("sigkill", 3, marker) if device == "usb:1" else member()  # its 2nd tile

    monkeypatch.setattr(tpu, "open_edgetpu_isolated", edgetpu_child)
    cfg = PayloadConfig.model_validate({
        "model": {"bundle": str(tiny_tpu_bundle_dir), "backend": "edgetpu", "device": "usb:0,usb:1,pci:0",
                  "num_threads": 1},
        "tiling": {"rows": 2, "cols": 2}, "output": {"dir": str(tmp_path / "out")},
        "preflight": {"min_free_disk_mb": 1}, "scheduler": {"stats_interval_s": 60},
    })
    n = 10
    recs_path = tmp_path / "out" / "classifications.jsonl"

    def frames():
        rng = np.random.default_rng(1)
        for k in range(n):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if len(recs_path.read_text().splitlines() if recs_path.exists() else []) >= k:
                    break
                time.sleep(0.01)
            yield rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)

    pipe = runner.build_pipeline(cfg, source=InProcessSource(frames()))
    assert isinstance(pipe.classifier, ReplicaPool) and sorted(opened) == sorted(DEVICES)
    stats = pipe.run()
    assert marker.exists() and stats.backend_failovers == 0
    recs = [json.loads(line) for line in recs_path.read_text().splitlines()]
    assert [r["seq"] for r in recs] == list(range(n))  # 0 records lost, in order
    assert opened.count("usb:1") == 2  # killed, then reopened
    print(f"RUNNER POOL: {n}/{n} records; devices opened {opened}")


def test_open_classifier_gives_a_segmented_bundle_a_pipeline(segmented_bundle: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process (`payload classify`): the selection itself picks the pipeline for a segmented bundle, one
    delegate per device, segment k on devices[k]; `all` with three devices found does the same."""
    from payload.backends import open_classifier
    from payload.backends.cpu import CpuClassifier
    from tests.payload import doubles
    from tests.payload.doubles import Calls

    calls = Calls()
    doubles.install_pycoral(monkeypatch, Calls(), tpus=[{"type": "usb", "path": "a"}, {"type": "usb", "path": "b"},
                                                        {"type": "pci", "path": "/dev/apex_0"}])
    monkeypatch.setattr("payload.backends.edgetpu._pycoral_edgetpu", lambda: None)  # the load_delegate path
    doubles.install_runtime(monkeypatch, "ai_edge_litert", doubles.fake_runtime("ai_edge_litert", calls))
    bundle = load_bundle(segmented_bundle)
    clf = open_classifier(bundle, "edgetpu", "all")
    try:
        assert isinstance(clf, SegmentPipeline) and clf.devices == DEVICES
        assert [o["device"] for _, o in calls.load_delegate] == DEVICES
        assert [Path(i["model_path"]).name for i in calls.interpreters] == [p.name for p in bundle.edgetpu_segments]
        batch = distinct_tiles(bundle, 6)
        np.testing.assert_array_equal(clf.classify_batch(batch), CpuClassifier(bundle, 1).classify_batch(batch))
    finally:
        clf.close()
