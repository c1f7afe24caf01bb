"""The rest of the chain for `make bench`: every backend this machine has, replay and render speeds.

Figures, not verdicts: the Edge TPU row says why it is missing when it is; replay and render
speeds say whether the simulator can keep a real-time mission fed on this machine.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from payload.backends.edgetpu import EdgeTpuClassifier, EdgeTpuUnavailable
from payload.bundle import Bundle
from payload.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
TLOG = ROOT / "tests" / "data" / "flights" / "copter_sitl_2015.tlog"
SCENARIO = ROOT / "configs" / "scenarios" / "default.yaml"


def edgetpu_figures(bundle: Bundle, n: int = 50) -> dict:
    """Inference p50/p95 on the Edge TPU when one loads, else the reason it does not."""
    try:
        clf = EdgeTpuClassifier(bundle, None)
    except (EdgeTpuUnavailable, UserError) as err:
        return {"available": False, "reason": str(err)}
    tile = np.zeros((1, bundle.input_height, bundle.input_width, 3), np.uint8)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        clf.classify_batch(tile)
        times.append((time.perf_counter() - t0) * 1000.0)
    clf.close()
    return {"available": True, "inference_ms_p50": float(np.percentile(times, 50)),
            "inference_ms_p95": float(np.percentile(times, 95))}


def replay_figures(tlog: Path = TLOG) -> dict:
    """How fast a recorded flight is read into a replayable timeline (messages per second)."""
    from flight_sim.tlog import read_tlog

    t0 = time.perf_counter()
    tl = read_tlog(tlog)
    s = time.perf_counter() - t0
    return {"tlog": tlog.name, "events": len(tl.events), "flight_s": round(tl.duration, 1),
            "read_s": round(s, 3), "events_per_s": round(len(tl.events) / s, 1),
            "flight_s_per_s": round(tl.duration / s, 1)}


def render_figures(frames: int = 20) -> dict:
    """Frames per second the simulated camera renders (world, haze, camera effects, JPEG) on one OpenCV thread."""
    from flight_sim.render import WorldRenderer
    from flight_sim.scenario import load_scenario
    from flight_sim.stream import encode_jpeg
    from flight_sim.survey import survey_timeline

    s = load_scenario(SCENARIO)
    renderer = WorldRenderer.for_scenario(s)
    tl = survey_timeline(s)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        ts = np.linspace(tl.duration * 0.2, tl.duration * 0.8, frames)
        renderer.render_at(tl.pose_at, float(ts[0]))  # warm-up
        t0 = time.perf_counter()
        for t in ts:
            encode_jpeg(renderer.render_at(tl.pose_at, float(t)), s.camera.jpeg_quality)
        s_elapsed = time.perf_counter() - t0
    finally:
        cv2.setNumThreads(threads)
    return {"resolution": [s.camera.width, s.camera.height], "frames": frames,
            "frames_per_s_one_thread": round(frames / s_elapsed, 1)}
