"""Disk full and below the free-space floor: crops stop first, detections.jsonl goes on, the operator
hears about it (log + STATUSTEXT), nothing crashes, and no record handed to the writer is lost.

The free space is a double (a settable `disk_usage`), and "disk full" is a file object double whose
writes fail with ENOSPC (optionally after writing half the bytes, as a real full disk does).
"""

from __future__ import annotations

import errno
import logging
import time
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest

from payload.capture.sources import InProcessSource
from payload.config import PayloadConfig
from payload.files.jsonl import JsonlWriter, read_jsonl
from payload.ops.diskguard import DiskGuard
from payload.pipeline.geotag import GeotagHandler
from payload.pipeline.scheduler import Pipeline
from payload.pipeline.tiling import Tiler
from payload.types import Frame
from tests.payload.geotagdoubles import LABELS, ScriptedTelemetry, frame_result
from tests.reliability.faulty import HealthyClassifier

Usage = namedtuple("Usage", "total used free")
BOXES = [(0, 0, 64, 64), (288, 208, 64, 64), (560, 400, 80, 80)]


class FakeDisk:
    """A settable `shutil.disk_usage` double."""

    def __init__(self, free_mb: float) -> None:
        self.free_mb = free_mb
        self.fail = False
        self.calls = 0

    def __call__(self, path: str) -> Usage:
        self.calls += 1
        if self.fail:
            raise OSError(errno.EIO, "statvfs failed (test)")
        free = int(self.free_mb * 1e6)
        return Usage(64_000_000_000, 64_000_000_000 - free, free)


class FullDiskFile:
    """Wraps the writer's raw file: while `full`, writes fail with ENOSPC, after `partial` bytes if set."""

    def __init__(self, real) -> None:
        self.real = real
        self.full = False
        self.partial = 0
        self.failures = 0

    def write(self, data) -> int:
        if self.full:
            self.failures += 1
            if self.partial and len(data) > self.partial:
                n = self.real.write(bytes(data[: self.partial]))
                self.partial = 0
                return n  # a short write: the next call finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.real.write(data)

    def __getattr__(self, name: str):
        return getattr(self.real, name)


def _cfg(tmp_path: Path, crops: bool = True) -> PayloadConfig:
    return PayloadConfig.model_validate({
        "model": {"bundle": str(tmp_path / "b")}, "output": {"dir": str(tmp_path / "out")},
        "sinks": {"crops": crops, "layers_interval_s": 3600}, "alerts": {"min_interval_s": 0},
        "preflight": {"min_free_disk_mb": 200.0},
    })


def test_guard_hysteresis_alert_retry_and_statvfs_failure() -> None:
    disk, sent = FakeDisk(1000), []
    link = {"up": False}

    def send(sev: int, text: str) -> bool:
        if link["up"]:
            sent.append((sev, text))
        return link["up"]

    t = [0.0]
    g = DiskGuard("/x", 200, send=send, check_every_s=1.0, usage=disk, clock=lambda: t[0])
    assert g.crops_allowed()
    disk.free_mb = 150
    assert g.crops_allowed()  # not checked again within check_every_s
    t[0] += 1.0
    assert not g.crops_allowed() and g.low and g.low_events == 1
    assert not sent  # no link: the alert waits
    link["up"] = True
    t[0] += 0.1
    assert not g.crops_allowed()
    assert sent == [(2, "cropscout: disk 150MB free, crops off")]
    disk.free_mb = 220  # above the floor but inside the margin: no flapping
    t[0] += 1.0
    assert not g.crops_allowed()
    disk.free_mb = 260
    t[0] += 1.0
    assert g.crops_allowed() and not g.low
    assert sent[-1] == (5, "cropscout: disk 260MB free, crops on") and all(len(s) <= 50 for _, s in sent)
    disk.fail = True
    t[0] += 1.0
    assert g.crops_allowed() and g.check_errors == 1  # cannot tell: keep going
    assert g.crops_skipped == 3


def test_below_the_floor_crops_stop_records_continue_operator_alerted(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    tel = ScriptedTelemetry(t_end=10.0)
    h = GeotagHandler(_cfg(tmp_path), labels=LABELS, model_sha256="ab" * 32, telemetry=tel)
    disk = FakeDisk(5000)
    h.disk._usage = disk
    h.disk._every = 0.0
    seq = 0

    def frames(n: int) -> None:
        nonlocal seq
        for _ in range(n):
            h.handle(frame_result(seq, 1.0 + seq * 0.1, BOXES))
            seq += 1

    crops = tmp_path / "out" / "crops"
    frames(3)
    n_crops_before = len(list(crops.glob("*.jpg")))
    assert n_crops_before == 3 * len(BOXES)
    disk.free_mb = 120  # below the 200 MB floor
    with caplog.at_level(logging.ERROR, logger="payload.disk"):
        frames(4)
    assert len(list(crops.glob("*.jpg"))) == n_crops_before  # crops stopped
    assert "crops stop, detections.jsonl goes on" in caplog.text
    assert any(sev == 2 and "crops off" in text for sev, text in tel.statustexts)
    disk.free_mb = 900
    frames(2)
    assert len(list(crops.glob("*.jpg"))) == n_crops_before + 2 * len(BOXES)  # and resume
    assert any("crops on" in text for _, text in tel.statustexts)
    h.close()
    recs = read_jsonl(tmp_path / "out" / "detections.jsonl")
    dets = [r for r in recs.records if r.get("schema") == "cropscout.detection/1"]  # besides the map's look records
    assert len(dets) == seq * len(BOXES) and not recs.bad_lines  # every record written
    assert h.disk.crops_skipped == 4 * len(BOXES)
    no_crop = [r for r in dets if not r.get("crop")]
    assert len(no_crop) == 4 * len(BOXES)


@pytest.mark.parametrize("partial", [0, 37])
def test_disk_full_queues_records_without_torn_lines(tmp_path: Path, partial: int) -> None:
    w = JsonlWriter(tmp_path / "d.jsonl")
    f = FullDiskFile(w._f)
    w._f = f
    for i in range(3):
        w.write({"i": i})
    f.full, f.partial = True, partial
    for i in range(3, 8):
        with pytest.raises(OSError, match="No space left"):
            w.write({"i": i})
    raw = (tmp_path / "d.jsonl").read_bytes()
    assert raw.endswith(b"\n") and raw.count(b"\n") == 3  # the half-written record was cut away
    assert len(w.pending) == 5
    f.full = False
    w.write({"i": 8})
    w.close()
    res = read_jsonl(tmp_path / "d.jsonl")
    assert [r["i"] for r in res.records] == list(range(9)) and not res.bad_lines
    assert w.write_errors == 5  # one failed attempt per write call (the queue head fails first)


def test_pipeline_survives_a_full_disk_and_loses_no_record(tmp_path: Path, tiny_bundle_dir: Path) -> None:
    from payload.bundle import load_bundle

    bundle = load_bundle(tiny_bundle_dir)
    bundle = bundle.__class__(**{**bundle.__dict__, "thresholds": {"rust": 0.0, "powdery_mildew": 0.0}})
    tel = ScriptedTelemetry(t_end=10.0)
    h = GeotagHandler(_cfg(tmp_path), labels=bundle.labels, model_sha256="ab" * 32, telemetry=tel)
    h.disk._usage = FakeDisk(100)  # below the floor from the start: no crops
    writer = h.sink("jsonl").writer
    f = FullDiskFile(writer._f)
    writer._f = f
    n = 30
    rng = np.random.default_rng(3)

    def produce():
        for k in range(n):
            if k == 10:
                f.full, f.partial = True, 50
            if k == 20:
                f.full = False
            while h.written < k * 4 and k:  # no mailbox drops: one frame at a time
                time.sleep(0.002)
            yield Frame(rng.integers(0, 256, (64, 64, 3), np.uint8), k, 1.0 + k * 0.1, 1.79e9 + k, "t")

    pipe = Pipeline(InProcessSource(produce()), HealthyClassifier(), h, bundle, Tiler(2, 2, 0.0, (32, 32)),
                    stats_interval_s=60)
    stats = pipe.run()
    assert stats.frames_processed == n and stats.handler_errors == 0
    res = read_jsonl(tmp_path / "out" / "detections.jsonl")
    assert not res.bad_lines
    dets = [r for r in res.records if r.get("schema") == "cropscout.detection/1"]  # besides the map's look records
    assert len(dets) == n * 4
    assert sorted((r["frame"]["seq"], r["tile"]["row"], r["tile"]["col"]) for r in dets) == sorted(
        (k, r, c) for k in range(n) for r in range(2) for c in range(2))
    assert f.failures >= 1 and not list((tmp_path / "out").glob("crops/*.jpg"))
    print(f"DISK FULL: {f.failures} failed writes over 10 frames; {len(dets)}/{n * 4} records on disk, "
          f"0 torn lines, handler errors {stats.handler_errors}")
