"""`make soak`: a long accelerated flight through the real payload pipeline, watching for leaks.

Real-time MAVLink cannot be sped up without changing what is measured (dronekit threads, sockets),
so the flight is simulated in-process at full speed on a simulated clock: a synthetic camera (a
fixed pool of 640x480 frames, so the source itself allocates nothing new) at `fps` frames per second
of flight time, a telemetry double that feeds the REAL StateBuffer (payload/vehicle/poseinterp.py, with its
horizon trimming) 10 Hz samples of a lawnmower survey ahead of each frame, and the REAL pipeline
behind it: capture -> mailbox -> tiling -> CPU TFLite backend -> bounded queue -> writer ->
per-frame records + geotagging (detections.jsonl fsync'd, the disease map, layers rewritten in the
background, crops). Every `sample_every_s` of flight time it samples RSS, threads (Python and
native) and open file descriptors.

Pass criteria (issue 8), for both flights (a healthy field, and a scouting flight where a share of
tiles is flagged): RSS growth after warm-up < 5 MB, no thread or fd growth, stable stats (inference
time per tile in the last tenth within 2x of the first tenth after warm-up). No detection record is
held in memory (the layers are streamed from detections.jsonl), so memory must not grow with the
number of sightings either; the report gives the RSS growth per detection to show it.

    python -m tools.soak --hours 2 [--bundle DIR] [--out DIR] [--fps 1]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from payload.backends.cpu import CpuClassifier
from payload.bundle import Bundle, load_bundle
from payload.capture.sources import InProcessSource
from payload.config import PayloadConfig
from payload.pipeline.geotag import FanOutHandler, GeotagHandler
from payload.pipeline.scheduler import Pipeline
from payload.pipeline.tiling import Tiler
from payload.sinks.records import JsonlRecordHandler
from payload.types import Frame
from payload.vehicle.poseinterp import StateBuffer
from payload.vehicle.samples import AttitudeSample, GpsSample, PositionSample

HOME = (52.2053, 0.1218, 12.0)
RSS_LIMIT_MB = 5.0


class SurveyTelemetry:
    """A telemetry double on the simulated clock: a lawnmower survey fed into a real StateBuffer.

    `advance(t)` adds 10 Hz position/attitude/GPS samples up to flight time `t` (+0.2 s, so a frame's
    pose is interpolated, not extrapolated); boot time and companion time are the same clock.
    """

    def __init__(self, rate_hz: float = 10.0, speed_mps: float = 5.0, leg_m: float = 300.0,
                 spacing_m: float = 25.0, alt_m: float = 30.0) -> None:
        self.buffer = StateBuffer(horizon_s=60.0)
        self.buffer.set_home(*HOME)
        self.rate_hz = rate_hz
        self.speed = speed_mps
        self.leg = leg_m
        self.spacing = spacing_m
        self.alt = alt_m
        self._t_next = 0.0
        self.statustexts = 0

    def _enu(self, t: float) -> tuple[float, float, float]:
        d = t * self.speed
        turn = self.leg + self.spacing
        lap, s = divmod(d, turn)
        leg = int(lap)
        if s < self.leg:
            north = s if leg % 2 == 0 else self.leg - s
            east = leg * self.spacing
            yaw = 0.0 if leg % 2 == 0 else math.pi
        else:
            north = self.leg if leg % 2 == 0 else 0.0
            east = leg * self.spacing + (s - self.leg)
            yaw = math.pi / 2
        return east % 2000.0, north, yaw

    def advance(self, t: float) -> None:
        lat0, lon0, alt0 = HOME
        while self._t_next <= t + 0.2:
            tt = self._t_next
            e, n, yaw = self._enu(tt)
            lat = lat0 + n / 111_320.0
            lon = lon0 + e / (111_320.0 * math.cos(math.radians(lat0)))
            alt = alt0 + self.alt
            self.buffer.add_position(PositionSample(tt, lat, lon, alt, self.alt, 0.0, 0.0, 0.0), t_rx_mono=tt)
            self.buffer.add_attitude(AttitudeSample(tt, 0.0, 0.0, yaw), t_rx_mono=tt)
            self.buffer.add_gps(GpsSample(tt, 3, 0.8, 12))
            self._t_next += 1.0 / self.rate_hz

    def state_at(self, t_mono: float) -> Any:
        return self.buffer.state_at(t_mono)

    def send_statustext(self, severity: int, text: str) -> bool:
        self.statustexts += 1
        return True

    def summary(self) -> dict[str, Any]:
        return {"connection": "soak double", "link_ok": True}


@dataclass
class Sample:
    flight_s: float
    wall_s: float
    rss_mb: float
    threads_py: int
    threads_native: int
    fds: int
    frames: int
    detections: int
    grid_mb: float = 0.0  # the disease map's evidence grid: it follows the ground flown over, by design
    native: dict[str, int] = field(default_factory=dict)  # threads Python did not start, by kernel name
    zones: int = 0  # zones alive in the map (each holds its outline and attributes; forgotten ones a box)


@dataclass
class SoakReport:
    flight_s: float
    wall_s: float
    frames: int
    frames_dropped: int
    tiles: int
    detections: int
    handler_errors: int
    warmup_s: float
    rss_start_mb: float
    rss_end_mb: float
    rss_growth_mb: float  # beyond the evidence grid's own growth (judged against rss_limit_mb)
    rss_growth_kb_per_detection: float | None
    threads_py: tuple[int, int]
    threads_native: tuple[int, int]
    fds: tuple[int, int]
    tile_ms_first: float
    tile_ms_last: float
    ok: bool
    grid_growth_mb: float = 0.0
    rss_limit_mb: float = RSS_LIMIT_MB
    zones: tuple[int, int] = (0, 0)  # zones alive in the map at the first and the last tenth after warm-up
    failures: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)

    def text(self) -> str:
        h = self.flight_s / 3600.0
        lines = [
            f"soak: {h:.2f} h of flight ({self.frames} frames, {self.tiles} tiles, {self.detections} detections) "
            f"in {self.wall_s:.0f} s wall ({self.flight_s / max(self.wall_s, 1e-9):.0f}x)",
            f"  RSS after {self.warmup_s / 60:.0f} min warm-up {self.rss_start_mb:.1f} MB -> end "
            f"{self.rss_end_mb:.1f} MB: "
            f"growth {self.rss_growth_mb:+.2f} MB besides the map grid's {self.grid_growth_mb:+.2f} MB of new "
            f"ground (limit {self.rss_limit_mb:g} MB)"
            + (f", {self.rss_growth_kb_per_detection:.3f} kB per detection" if self.rss_growth_kb_per_detection
               is not None else ""),
            f"  zones alive {self.zones[0]} -> {self.zones[1]}; threads (python) {self.threads_py[0]} -> "
            f"{self.threads_py[1]}, threads (native) "
            f"{self.threads_native[0]} -> {self.threads_native[1]}, open fds {self.fds[0]} -> {self.fds[1]}",
            f"  inference per tile p50 {self.tile_ms_first:.3f} ms (first tenth) -> {self.tile_ms_last:.3f} ms "
            f"(last tenth); frames dropped {self.frames_dropped}, handler errors {self.handler_errors}",
            "  PASS" if self.ok else "  FAIL: " + "; ".join(self.failures),
        ]
        return "\n".join(lines)


def _frame_pool(n: int = 16, shape: tuple[int, int] = (480, 640), seed: int = 7) -> list[np.ndarray]:
    """A fixed pool of field frames: patches of varied colour (green crop, soil, reddish lesions) with noise.

    Varied colours give the classifier varied scores, so a threshold can pick a chosen share of tiles.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    pool = []
    for _ in range(n):
        img = np.empty((h, w, 3), np.uint8)
        for y in range(0, h, 40):
            for x in range(0, w, 40):
                base = rng.integers(0, 256, 3)
                img[y : y + 40, x : x + 40] = np.clip(base + rng.integers(-20, 21, (min(40, h - y), min(40, w - x), 3)),
                                                      0, 255)
        pool.append(img)
    return pool


class FlagRateClassifier:
    """The real backend runs every tile; the scores handed on flag every `1/rate`-th tile as a disease.

    A real field is mostly healthy, and the tiny test model's scores are nearly flat (a few quantized
    levels), so no threshold gives a realistic share of detections. The soak measures the pipeline,
    the backend and the writers, so the backend still classifies every tile (TFLite is exercised)
    and only the verdict is scripted: exactly `rate` of the tiles become detections.
    """

    def __init__(self, inner: Any, bundle: Bundle, rate: float) -> None:
        self.inner = inner
        self.name = f"{inner.name} (soak: {rate:.0%} of tiles flagged)"
        self.input_size = inner.input_size
        self.every = max(1, round(1.0 / rate)) if rate > 0 else 0
        n = len(bundle.labels)
        self.healthy = np.full(n, 0.02, np.float32)
        self.healthy[bundle.labels.index(bundle.healthy_class)] = 0.96
        self.sick = [np.full(n, 0.02, np.float32) for _ in bundle.disease_classes]
        for row, c in zip(self.sick, bundle.disease_classes, strict=True):
            row[bundle.labels.index(c)] = 0.96
        self.count = 0

    def classify_batch(self, tiles: np.ndarray) -> np.ndarray:
        real = self.inner.classify_batch(tiles)
        out = np.empty_like(real)
        for i in range(len(real)):
            self.count += 1
            flagged = self.every and self.count % self.every == 0
            out[i] = self.sick[(self.count // max(self.every, 1)) % len(self.sick)] if flagged else self.healthy
        return out

    def close(self) -> None:
        self.inner.close()


def _measure(proc: psutil.Process) -> tuple[float, int, int, int]:
    gc.collect()
    return proc.memory_info().rss / 1e6, threading.active_count(), proc.num_threads(), proc.num_fds()


def native_threads() -> dict[str, int]:
    """This process's threads that Python did not start, counted by kernel name (`/proc/self/task/*/comm`).

    A native thread (one a C library starts: TFLite's or OpenBLAS's pool, GDAL's workers) has no
    `threading.Thread`, so Python cannot say whose it is; what is left is its kernel name (a named
    library thread says which library) and the moment it first appears in the samples. Python's own
    threads are recognised by their `native_id`. Empty where /proc is missing.
    """
    ours = {t.native_id for t in threading.enumerate()}
    names: dict[str, int] = {}
    try:
        entries = list(Path("/proc/self/task").iterdir())
    except OSError:
        return names
    for t in entries:
        if not t.name.isdigit() or int(t.name) in ours:
            continue
        try:
            name = (t / "comm").read_text(encoding="utf-8", errors="replace").strip()
        except OSError:  # the thread ended between the listing and the read
            continue
        names[name] = names.get(name, 0) + 1
    return dict(sorted(names.items()))


def new_threads(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Thread names counted more often in `after` than in `before`, with how many more."""
    return {k: n - before.get(k, 0) for k, n in after.items() if n > before.get(k, 0)}


def run_soak(
    bundle: Bundle,
    out_dir: Path,
    *,
    flight_s: float = 7200.0,
    fps: float = 1.0,
    warmup_s: float | None = None,
    sample_every_s: float = 60.0,
    num_threads: int = 1,
    crops: bool = True,
    layers_interval_s: float = 5.0,
    flag_rate: float | None = 0.02,
    formats: tuple[str, ...] = ("geojson", "kml", "csv"),
    log: Any = None,
    rss_limit_mb: float = RSS_LIMIT_MB,
) -> SoakReport:
    """Fly `flight_s` seconds of simulated survey through the pipeline as fast as it goes; measure."""
    from payload.pipeline.heap import pin_malloc_thresholds

    pin_malloc_thresholds()  # as `payload run` does (payload/pipeline/runner.py)
    warmup = warmup_s if warmup_s is not None else min(600.0, flight_s / 6)
    pool = _frame_pool()
    cfg = PayloadConfig.model_validate({
        "model": {"bundle": str(bundle.path), "backend": "cpu", "num_threads": num_threads},
        "tiling": {"rows": 3, "cols": 4},
        "output": {"dir": str(out_dir)},
        "sinks": {"crops": crops, "layers_interval_s": layers_interval_s, "formats": list(formats)},
        "alerts": {"min_interval_s": 5.0},
        "preflight": {"min_free_disk_mb": 50.0},
    })
    tel = SurveyTelemetry()
    geo = GeotagHandler(cfg, labels=bundle.labels, model_sha256=bundle.model_sha256, telemetry=tel)
    handler = FanOutHandler([JsonlRecordHandler(out_dir / "classifications.jsonl", bundle), geo])
    clf: Any = CpuClassifier(bundle, num_threads)
    if flag_rate is not None:
        clf = FlagRateClassifier(clf, bundle, flag_rate)
    n_frames = int(flight_s * fps)
    proc = psutil.Process()
    samples: list[Sample] = []
    t_wall0 = time.monotonic()
    state = {"k": 0}
    next_sample = [0.0]

    def produce() -> Frame | None:
        k = state["k"]
        if k >= n_frames:
            return None
        t = k / fps
        # keep capture within a few frames of the writer: on the drone the queue never holds a minute
        # of flight, and a pose older than the telemetry buffer's horizon would be flagged stale
        deadline = time.monotonic() + 30.0
        while k - pipe.written > 4 and time.monotonic() < deadline and not pipe.stopping:
            time.sleep(0.0005)
        if t >= next_sample[0]:
            next_sample[0] = t + sample_every_s
            rss, tpy, tnat, fds = _measure(proc)
            samples.append(Sample(t, time.monotonic() - t_wall0, rss, tpy, tnat, fds, k, geo.written, _grid_mb(geo),
                                  native_threads(), _zones(geo)))
            if log is not None and len(samples) % 10 == 1:
                log(f"  flight {t / 60:6.1f} min  rss {rss:7.1f} MB  threads {tpy}/{tnat}  fds {fds}  "
                    f"detections {geo.written}")
        tel.advance(t)
        state["k"] = k + 1
        return Frame(pool[k % len(pool)], k, t, 1.79e9 + t, "soak")

    src = InProcessSource(produce, name="soak")
    src.lossless = True  # capture waits for inference: every simulated second of flight is classified
    t = cfg.tiling
    pipe = Pipeline(src, clf, handler, bundle, Tiler(t.rows, t.cols, t.overlap, (bundle.input_height,
                    bundle.input_width)), queue_size=64, stats_interval_s=3600.0)
    tile_ms: list[tuple[float, float]] = []
    orig_add = pipe.tile_ms.add

    span = max(n_frames / fps - warmup, 1.0)
    windows = ((warmup, warmup + span / 10), (n_frames / fps - span / 10, math.inf))

    def add(ms: float) -> None:
        ts = state["k"] / fps
        if any(a <= ts < b for a, b in windows):  # only the compared windows: the soak must not grow itself
            tile_ms.append((ts, ms))
        orig_add(ms)

    pipe.tile_ms.add = add  # type: ignore[method-assign]
    stats = pipe.run()
    rss, tpy, tnat, fds = _measure(proc)
    samples.append(Sample(n_frames / fps, time.monotonic() - t_wall0, rss, tpy, tnat, fds, n_frames, geo.written,
                          _grid_mb(geo), native_threads(), _zones(geo)))
    wall = time.monotonic() - t_wall0

    final = samples[-1]  # after the run: the pipeline's threads have ended
    after = [s for s in samples[:-1] if s.flight_s >= warmup]
    if len(after) < 2:
        after = samples[-3:-1] if len(samples) >= 3 else samples[:]
    tail = after[-max(1, len(after) // 10):]
    head = after[: max(1, len(after) // 10)]
    rss_start = statistics.median(s.rss_mb for s in head)
    rss_end = statistics.median(s.rss_mb for s in tail)
    # the evidence grid allocates a chunk for each new piece of ground: memory that follows the field
    # (make bench: <= 20 MB for 100 ha), not a leak; what must stay flat is everything else
    grid_growth = statistics.median(x.grid_mb for x in tail) - statistics.median(x.grid_mb for x in head)
    growth = rss_end - rss_start - grid_growth
    det_growth = tail[-1].detections - head[0].detections
    first = [ms for ts, ms in tile_ms if warmup <= ts < warmup + span / 10]
    last = [ms for ts, ms in tile_ms if ts >= n_frames / fps - span / 10]
    ms_first = statistics.median(first) if first else float("nan")
    ms_last = statistics.median(last) if last else float("nan")
    failures = []
    if growth >= rss_limit_mb:
        failures.append(f"RSS grew {growth:.2f} MB after warm-up besides the map grid")
    # growth = the fewest in the last tenth above the most in the first tenth (the layer writer's
    # short-lived thread and the files it has open for a moment are not growth)
    for what in ("threads_py", "threads_native", "fds"):
        lo_end = min(getattr(x, what) for x in tail)
        hi_start = max(getattr(x, what) for x in head)
        if lo_end > hi_start:
            failures.append(f"{what} grew {hi_start} -> {lo_end}" + (_native_growth(samples) if what == "threads_native"
                                                                      else ""))
    if final.threads_py > samples[0].threads_py or final.fds > samples[0].fds:
        failures.append(f"left behind after the run: threads {samples[0].threads_py} -> {final.threads_py}, "
                        f"fds {samples[0].fds} -> {final.fds}")
    if first and last and ms_last > 2 * ms_first:
        failures.append(f"inference per tile slowed {ms_first:.3f} -> {ms_last:.3f} ms")
    if stats.handler_errors:
        failures.append(f"{stats.handler_errors} handler errors")
    if stats.frames_processed != n_frames:
        failures.append(f"{n_frames - stats.frames_processed} frames not processed")
    return SoakReport(
        flight_s=n_frames / fps, wall_s=wall, frames=stats.frames_processed, frames_dropped=stats.frames_dropped,
        tiles=stats.tiles, detections=geo.written, handler_errors=stats.handler_errors, warmup_s=warmup,
        rss_start_mb=rss_start, rss_end_mb=rss_end, rss_growth_mb=growth,
        rss_growth_kb_per_detection=(growth * 1000.0 / det_growth) if det_growth > 0 else None,
        threads_py=(min(x.threads_py for x in head), min(x.threads_py for x in tail)),
        threads_native=(min(x.threads_native for x in head), min(x.threads_native for x in tail)),
        fds=(min(x.fds for x in head), min(x.fds for x in tail)), tile_ms_first=ms_first, tile_ms_last=ms_last,
        ok=not failures, failures=failures, samples=samples, grid_growth_mb=grid_growth, rss_limit_mb=rss_limit_mb,
        zones=(head[0].zones, tail[-1].zones),
    )


def _native_growth(samples: list[Sample]) -> str:
    """Where a native thread came from, as far as the samples tell: its kernel name and when it first showed."""
    first = samples[0].native
    for s in samples:
        extra = new_threads(first, s.native)
        if extra:
            names = ", ".join(f"{n} x {k!r}" for k, n in extra.items())
            return f" (first seen at {s.flight_s / 60:.0f} min of flight, {s.detections} detections: {names})"
    return ""


def _grid_mb(geo: GeotagHandler) -> float:
    return geo.map.grid.nbytes / 2**20


def _zones(geo: GeotagHandler) -> int:
    return len(geo.map.zones)


def _tiny_bundle(where: Path) -> Bundle:
    """The payload tests' tiny 32x32 int8 bundle, built by a child process.

    Building needs TensorFlow, and importing it here would add ~600 MB and its threads to the very
    process whose memory and threads the soak measures.
    """
    import subprocess

    path = where / "tiny_bundle"
    subprocess.run([sys.executable, "-m", "tests.payload.tinymodel", str(path)], check=True,  # noqa: S603
                   capture_output=True, cwd=Path(__file__).resolve().parents[1], timeout=600)
    return load_bundle(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, default=2.0, help="flight time to simulate (default 2)")
    ap.add_argument("--fps", type=float, default=1.0, help="camera frames per second of flight time")
    ap.add_argument("--bundle", help="model bundle (default: build the tiny test bundle; needs TensorFlow)")
    ap.add_argument("--out", help="output folder (default: a temporary one)")
    ap.add_argument("--scouting-rate", type=float, nargs="+", default=[0.02, 0.10],
                    help="fractions of tiles flagged, one scouting flight each after the healthy one "
                    "(default: 0.02 0.10); 0 alone skips them")
    ap.add_argument("--max-rss-growth-mb", type=float, default=RSS_LIMIT_MB,
                    help=f"target: RSS growth after warm-up besides the map grid (default {RSS_LIMIT_MB:g})")
    ap.add_argument("--json", help="also write the reports here")
    args = ap.parse_args(argv)
    reports: dict[str, SoakReport] = {}
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        bundle = load_bundle(args.bundle) if args.bundle else _tiny_bundle(Path(tmp))
        base = Path(args.out) if args.out else Path(tmp) / "out"
        flights = [("healthy field (the leak gate: no detections)", "healthy", 0.0)]
        for rate in args.scouting_rate:
            if rate < 0 or rate > 1:
                raise SystemExit(f"--scouting-rate {rate}: give a fraction between 0 and 1 (0.02 = 2 %)")
            if rate > 0:
                flights.append((f"scouting ({rate:.0%} of tiles flagged)", f"scouting_{round(rate * 100):g}pct", rate))
        for title, key, rate in flights:
            print(f"soak, {title}: {args.hours:g} h of flight at {args.fps:g} fps, bundle {bundle.path}", flush=True)
            reports[key] = run_soak(bundle, base / key, flight_s=args.hours * 3600.0, fps=args.fps, flag_rate=rate,
                                    log=lambda s: print(s, flush=True), rss_limit_mb=args.max_rss_growth_mb)
            print(reports[key].text(), flush=True)
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps({k: asdict(r) for k, r in reports.items()}, indent=2) + "\n",
                                       encoding="utf-8")
    failed = [k for k, r in reports.items() if not r.ok]
    for k in failed:
        print(f"MISS {k}: " + "; ".join(reports[k].failures), file=sys.stderr)
    print("soak: " + ("all flights passed" if not failed else f"FAILED: {', '.join(failed)}"), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
