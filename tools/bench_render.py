"""`make bench-render`: does the simulated camera keep up with its frame rate on one core, and in bounded memory?

Renders a survey's frames of a 10 ha field (316 x 316 m, the default scenario's crop, light and
camera, 640 x 480) through the whole camera chain: projection through the payload's camera
model, the per-pixel footprint, the world's shading, haze, auto exposure and white balance,
motion blur, read noise and the stream's JPEG. OpenCV runs on one thread and the time counted is
this process's CPU time, so the figure is one core's, whatever else the machine is doing.

    python -m tools.bench_render [--frames 30] [--scenario S] [--json build/bench_render.json]

Prints the ratio to real time (flight seconds rendered per CPU second: frames / fps / CPU s) and the
peak RSS; exits 1 below ratio 1.0 (the camera would fall behind its own frame rate).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from payload.cliutil import run_cli

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "configs" / "scenarios" / "default.yaml"
FIELD_HA = 10.0
MIN_RATIO = 1.0


def verdict(ratio: float, min_ratio: float = MIN_RATIO) -> tuple[int, str]:
    """(exit code, line) for a measured ratio to real time: 1 when the camera cannot keep its frame rate."""
    if not math.isfinite(ratio) or ratio < min_ratio:
        return 1, f"FAIL render ratio {ratio:.2f} x real time < {min_ratio:g}: the camera falls behind its frame rate"
    return 0, f"ok render ratio {ratio:.2f} x real time (>= {min_ratio:g})"


def peak_rss_mb() -> float:
    """This process's peak resident set (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(scenario: Path, frames: int) -> dict:
    """Render `frames` survey frames of a 10 ha version of `scenario` through the whole chain; the figures."""
    from flight_sim.render import WorldRenderer
    from flight_sim.scenario import load_scenario, scenario_from_dict
    from flight_sim.stream import encode_jpeg
    from flight_sim.survey import survey_timeline

    base = load_scenario(scenario)
    side = math.sqrt(FIELD_HA * 10_000.0)
    data = base.model_dump(mode="json", by_alias=True)
    data["field"] = {"width_m": side, "height_m": side}
    data["terrain"] = None
    s = scenario_from_dict(data, f"{scenario} at {FIELD_HA:g} ha")
    rss0 = peak_rss_mb()
    renderer = WorldRenderer.for_scenario(s)
    tl = survey_timeline(s)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        ts = np.linspace(tl.duration * 0.1, tl.duration * 0.9, frames)
        encode_jpeg(renderer.render_at(tl.pose_at, float(ts[0])), s.camera.jpeg_quality)  # warm-up
        c0, w0 = time.process_time(), time.perf_counter()
        for t in ts:
            encode_jpeg(renderer.render_at(tl.pose_at, float(t)), s.camera.jpeg_quality)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    finally:
        cv2.setNumThreads(threads)
    per_frame = cpu / frames
    return {"scenario": str(scenario), "field_ha": FIELD_HA, "resolution": [s.camera.width, s.camera.height],
            "fps": s.camera.fps, "frames": frames, "cpu_ms_per_frame": round(per_frame * 1000, 1),
            "wall_ms_per_frame": round(wall / frames * 1000, 1),
            "ratio_to_real_time": round(1.0 / (per_frame * s.camera.fps), 3),
            "peak_rss_mb": round(peak_rss_mb(), 1), "rss_before_world_mb": round(rss0, 1)}


def _main(argv: Sequence[str] | None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.bench_render", description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", type=Path, default=SCENARIO)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--min-ratio", type=float, default=MIN_RATIO)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    a = ap.parse_args(argv)
    result = measure(a.scenario, max(a.frames, 2))
    code, line = verdict(result["ratio_to_real_time"], a.min_ratio)
    result["verdict"] = line
    text = json.dumps(result, indent=2)
    print(text)
    print(line, file=sys.stderr if code else sys.stdout)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(text + "\n", encoding="utf-8")
    return code


if __name__ == "__main__":
    sys.exit(run_cli(_main))
