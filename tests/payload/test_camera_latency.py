"""camera.latency_s: a frame's stamp is moved back to its exposure, so the pose looked up is the one then."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from payload.capture.sources import FolderSource, InProcessSource, make_source
from payload.config import PayloadConfig, load_payload_config
from payload.files.jsonl import read_jsonl
from payload.geo.looks import LOOK_SCHEMA
from payload.pipeline.geotag import GeotagHandler
from payload.settings.camera import CameraSection
from payload.sinks.jsonl import iter_detections
from payload.types import FrameResult
from tests.configtests import expect_config_error, set_path, write_yaml
from tests.payload.geotagdoubles import LABELS, ScriptedTelemetry, frame_result

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "configs" / "payload.yaml"


def _grey() -> np.ndarray:
    return np.full((48, 64, 3), 100, np.uint8)


def test_default_is_zero_and_a_measured_latency_is_taken() -> None:
    assert CameraSection().latency_s == 0.0
    assert load_payload_config(EXAMPLE).camera.latency_s == 0.0
    assert CameraSection(latency_s=0.08).latency_s == pytest.approx(0.08)


@pytest.mark.parametrize(("value", "fragment"), [(-0.05, "cannot be negative"), (float("nan"), "cannot be negative"),
                                                 (80, "milliseconds")])
def test_a_negative_or_absurd_latency_is_refused_clearly(tmp_path: Path, value: float, fragment: str) -> None:
    data = set_path(yaml.safe_load(EXAMPLE.read_text()), "camera.latency_s", value)
    msg = expect_config_error(load_payload_config, write_yaml(tmp_path, data), "camera.latency_s", fragment)
    assert "exposure to delivery" in msg or "seconds" in msg


def test_the_stamp_moves_back_by_the_latency() -> None:
    src = InProcessSource(iter([_grey(), _grey()]))
    src.latency_s = 0.12
    before_mono, before_wall = time.monotonic(), time.time()
    f = src.read()
    after_mono, after_wall = time.monotonic(), time.time()
    assert f is not None and f.latency_s == pytest.approx(0.12)
    assert before_mono - 0.12 <= f.t_mono <= after_mono - 0.12
    assert before_wall - 0.12 <= f.t_wall <= after_wall - 0.12 + 1e-3
    # the same source without a latency stamps at the read
    plain = InProcessSource(iter([_grey()]))
    t0 = time.monotonic()
    g = plain.read()
    assert g is not None and g.latency_s == 0.0 and g.t_mono >= t0


def test_make_source_hands_the_latency_to_the_source(tmp_path: Path) -> None:
    cfg = PayloadConfig.model_validate({"model": {"bundle": str(tmp_path)}, "output": {"dir": str(tmp_path / "o")},
                                        "source": {"kind": "opencv", "uri": "http://127.0.0.1:9/stream.mjpg"},
                                        "camera": {"latency_s": 0.07}})
    assert make_source(cfg.source, cfg.camera.latency_s).latency_s == pytest.approx(0.07)
    assert make_source(cfg.source).latency_s == 0.0


def test_a_photos_own_capture_time_is_not_moved(tmp_path: Path) -> None:
    import cv2

    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "IMG_20260601_100012_250.jpg"), _grey())
    src = FolderSource(folder, time_from="filename")
    src.latency_s = 0.1
    src.open()
    t0 = time.monotonic()
    f = src.read()
    assert f is not None
    assert f.t_wall == pytest.approx(1780308012.25, abs=1e-3)  # the camera's own stamp is its exposure
    assert f.t_mono <= t0 - 0.1 + 0.5 and f.t_mono < time.monotonic() - 0.1 + 1e-6


def test_the_pose_looked_up_is_the_one_at_exposure(tmp_path: Path) -> None:
    """Flying north at 20 m/s, a 0.1 s latency is 2 m: the frame read at t=5.1 s is placed where the
    vehicle was at 5.0 s, and its look says so (t_boot_s, latency_s)."""
    tel = ScriptedTelemetry(north_mps=20.0)
    cfg = PayloadConfig.model_validate({"model": {"bundle": str(tmp_path / "b")}, "output": {"dir": str(tmp_path)},
                                        "sinks": {"layers_interval_s": 0}})
    h = GeotagHandler(cfg, labels=LABELS, model_sha256="ab" * 32, telemetry=tel, run_id="run1")
    read = frame_result(1, 5.1, [(288, 208, 64, 64)])
    late = read.frame
    moved = replace(late, t_mono=late.t_mono - 0.1, latency_s=0.1)  # what the source stamps with latency_s 0.1
    h.handle(read)
    h.handle(FrameResult(moved, read.tiles, read.inference_ms, read.backend, read.t_inferred_mono))
    h.close()
    recs = read_jsonl(tmp_path / "detections.jsonl").records
    looks = [r for r in recs if r.get("schema") == LOOK_SCHEMA]
    dets = list(iter_detections(tmp_path / "detections.jsonl"))
    assert [lk["frame"]["t_boot_s"] for lk in looks] == pytest.approx([5.1, 5.0])
    assert [lk["frame"]["latency_s"] for lk in looks] == pytest.approx([0.0, 0.1])
    north = [d["lat"] for d in dets]
    assert len(north) == 2
    metres = (north[0] - north[1]) * math.pi / 180 * 6_371_000
    assert metres == pytest.approx(2.0, abs=0.05)
