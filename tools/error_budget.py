"""Where a flight's tile positions go wrong, split by cause: the error budget (issue 29, docs/TELEMETRY.md).

    python -m tools.error_budget --scenario configs/scenarios/copter_2015.yaml \
        --tlog tests/data/flights/copter_sitl_2015.tlog [--start S --end S] [--json out.json]
    python -m tools.error_budget --scenario configs/scenarios/default.yaml --speed 12 --line-spacing 16

A flight whose truth the simulator knows is replayed offline, without rendering: a frame every
1/fps seconds of the camera, and the telemetry the payload would have received by the time it
looks the frame's pose up. Every tile centre of every frame the payload would place (above
`geotag.min_height_agl_m`) is projected to the ground with the project's own geometry
(payload/geo/camera.py, the payload's camera model and ground; the payload's own pose
interpolation, payload/vehicle/poseinterp.py fed through payload/vehicle/decoders.py), once for
the truth and once per cause with that one cause swapped in:

- truth: the true pose (the replay's fitted trajectory, or the scripted survey's) at the frame's
  true exposure time, the simulator's camera, the simulator's ground;
- attitude: the attitude the payload interpolates from its telemetry at the true exposure time;
- position: the position it interpolates then (interpolation and the autopilot's own error);
- time: the true pose at the payload's stamp instead of at the exposure;
- projection: the payload's camera model and ground (flat at home's altitude, or its DEM) instead
  of the simulator's;
- total: the payload's pose at its stamp, projected with its camera and ground: what it records.

Each figure is the horizontal distance (m) between that projection and the truth's. The causes'
displacements add up to the total when they are small; `interaction` is what they leave.

Two cases are flown by default. "before": the telemetry as recorded (a ground station's 2-4 Hz on
a tlog; `--recorded-hz` on a scripted survey) and a payload that does not know the camera's delay
(`camera.latency_s` 0). "after": the streams the payload asks for (`--requested-hz`, 25 Hz:
flight_sim/resample.py serves them from the fitted trajectory as the simulated vehicle does; a
scripted survey is flown again at that rate) and `camera.latency_s` set to the camera's delay.

The clock: every telemetry sample is stamped with the replay's own time (as `--restamp-time` does,
and as a real autopilot's time_boot_ms is the sample's own time). The payload's frame stamp is the
true exposure plus the camera's delay (`--camera-delay-s`), plus read jitter (`--jitter-ms`),
minus its `camera.latency_s`; the pose is looked up `--lookup-delay-s` after the frame is read,
with the telemetry received by then.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from payload.cliutil import run_cli
from payload.geo.camera import CameraModel, Ground, pixels_to_latlon
from payload.geo.frames import LocalFrame
from payload.geo.frameview import camera_for, ground_under
from payload.geo.surface import GroundSurface
from payload.pipeline.tiling import grid
from payload.settings.camera import CameraSection
from payload.settings.geotag import GeotagSection
from payload.types import Pose
from payload.vehicle.decoders import DECODERS, Rx
from payload.vehicle.poseinterp import StateBuffer

CAUSES = ("attitude", "position", "time", "projection")
FIGURES = (*CAUSES, "total", "interaction")
BANK_EDGES_DEG = (0.0, 10.0, 20.0, 30.0, 40.0, 90.0)
# the types the payload's pose is made of (and what tells it the ground and the fix)
POSE_TYPES = ("ATTITUDE", "GLOBAL_POSITION_INT")
OTHER_TYPES = ("HOME_POSITION", "GPS_RAW_INT")
BUFFER_HORIZON_S = 10.0  # the buffer keeps this much telemetry (the payload keeps 60 s; a pose needs 1)

# one received message: timeline time, type, fields
Message = tuple[float, str, dict[str, Any]]


@dataclass(frozen=True)
class Case:
    """How the payload hears the vehicle and stamps its frames."""

    name: str
    streams_hz: float | None  # None: the telemetry as recorded; else ATTITUDE and GLOBAL_POSITION_INT at this rate
    camera_delay_s: float = 0.1  # the camera's exposure-to-delivery delay (the truth)
    payload_latency_s: float = 0.0  # the payload's camera.latency_s
    jitter_s: float = 0.0  # sd of the read time's jitter
    lookup_delay_s: float = 0.05  # from reading the frame to looking its pose up (inference, queue)


@dataclass
class Budget:
    """Per placed tile: each figure's displacement (east, north metres) from the truth, and the bank then."""

    case: Case
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # figure -> (N, 2)
    bank_deg: np.ndarray = field(default_factory=lambda: np.zeros(0))
    frames: int = 0  # frames placed
    frames_skipped: int = 0  # frames the payload would not place (below min height, no pose)
    ground_offset_m: list[float] = field(default_factory=list)  # per frame: payload's flat ground minus the true one

    def metres(self, figure: str) -> np.ndarray:
        return np.hypot(self.vectors[figure][:, 0], self.vectors[figure][:, 1])


# ---------------------------------------------------------------- the telemetry the payload hears


def restamped(messages: Sequence[Message]) -> list[Message]:
    """Each message's time_boot_ms set to its timeline time (ms, unrounded): one clock for truth and telemetry."""
    out = []
    for t, name, f in messages:
        g = dict(f)
        if "time_boot_ms" in g:
            g["time_boot_ms"] = t * 1000.0
        out.append((t, name, g))
    return out


def recorded_stream(timeline: Any, t0: float, t1: float) -> list[Message]:
    """The timeline's own pose, home and fix messages between t0 and t1, as recorded."""
    out: list[Message] = []
    for name in (*POSE_TYPES, *OTHER_TYPES):
        out.extend((e.t, e.name, e.fields) for e in timeline.of(name) if t0 <= e.t <= t1 or name == "HOME_POSITION")
    out.sort(key=lambda m: m[0])
    return out


def requested_stream(timeline: Any, hz: float, t0: float, t1: float) -> list[Message]:
    """ATTITUDE and GLOBAL_POSITION_INT at `hz` as the simulated vehicle serves them after SET_MESSAGE_INTERVAL
    (flight_sim/resample.py: from the fitted trajectory on a replay), home and the fix as recorded."""
    from flight_sim.resample import Resampler

    rs = Resampler(timeline)
    out: list[Message] = []
    for name in POSE_TYPES:
        for t in np.arange(t0, t1 + 1e-9, 1.0 / hz):
            f = rs.fields_at(name, float(t))
            if f is not None:
                out.append((float(t), name, f))
    out.extend(m for m in recorded_stream(timeline, t0, t1) if m[1] in OTHER_TYPES)
    out.sort(key=lambda m: m[0])
    return out


def sampled_stream(pose_at: Callable[[float], Pose], hz: float, t0: float, t1: float,
                   home_alt_m: float | None = None, dt: float = 1e-3) -> list[Message]:
    """ATTITUDE and GLOBAL_POSITION_INT sampled from a pose function at `hz` (velocities and body rates by
    central differences; the rates only matter to a fit, the payload reads the angles): for hand-worked cases."""
    from payload.geo.frames import geodetic_to_enu

    out: list[Message] = []
    for t in np.arange(t0, t1 + 1e-9, 1.0 / hz):
        t = float(t)
        p, a, b = pose_at(t), pose_at(t - dt), pose_at(t + dt)
        e, n, u = geodetic_to_enu(b.lat_deg, b.lon_deg, b.alt_m, a.lat_deg, a.lon_deg, a.alt_m)
        v = np.array([float(n), float(e), -float(u)]) / (2 * dt)
        out.append((t, "ATTITUDE", {"time_boot_ms": t * 1000.0, "roll": p.roll_rad, "pitch": p.pitch_rad,
                                    "yaw": p.yaw_rad, "rollspeed": (b.roll_rad - a.roll_rad) / (2 * dt),
                                    "pitchspeed": (b.pitch_rad - a.pitch_rad) / (2 * dt),
                                    "yawspeed": (b.yaw_rad - a.yaw_rad) / (2 * dt)}))
        ground = p.alt_m if home_alt_m is None else home_alt_m
        out.append((t, "GLOBAL_POSITION_INT", {
            "time_boot_ms": t * 1000.0, "lat": p.lat_deg * 1e7, "lon": p.lon_deg * 1e7, "alt": p.alt_m * 1e3,
            "relative_alt": (p.alt_m - ground) * 1e3, "vx": v[0] * 100, "vy": v[1] * 100, "vz": v[2] * 100,
            "hdg": 0}))
    if home_alt_m is not None:
        p = pose_at(t0)
        out.insert(0, (t0, "HOME_POSITION", {"latitude": p.lat_deg * 1e7, "longitude": p.lon_deg * 1e7,
                                             "altitude": home_alt_m * 1e3}))
    return out


class Listener:
    """The payload's state buffer, fed message by message through its own decoders up to a moment."""

    def __init__(self, messages: Sequence[Message]) -> None:
        self.buffer = StateBuffer(horizon_s=BUFFER_HORIZON_S)
        self._msgs = sorted(messages, key=lambda m: m[0])
        self._next = 0

    def hear_until(self, t: float) -> None:
        while self._next < len(self._msgs) and self._msgs[self._next][0] <= t:
            ts, name, f = self._msgs[self._next]
            self._next += 1
            decode = DECODERS.get(name)
            if decode is not None:
                decode(SimpleNamespace(**f), Rx(self.buffer, ts))


# ---------------------------------------------------------------- the budget


def _en(frame: LocalFrame, latlon: np.ndarray) -> np.ndarray:
    e, n, _ = frame.to_enu(latlon[:, 0], latlon[:, 1], frame.alt0)
    return np.stack([np.asarray(e, dtype=float), np.asarray(n, dtype=float)], axis=1)


def tile_centres(cam: CameraModel, rows: int, cols: int, overlap: float = 0.0) -> np.ndarray:
    """(N, 2) pixel centres of the payload's tile grid (payload/pipeline/tiling.py)."""
    return np.array([b.center for b in grid(cam.width, cam.height, rows, cols, overlap)], dtype=float)


def error_budget(
    truth: Callable[[float], Pose],
    messages: Sequence[Message],
    frame_times: Sequence[float],
    case: Case,
    cam_true: CameraModel,
    ground_true: Ground,
    uv: np.ndarray,
    cam_payload: CameraModel | None = None,
    geotag: GeotagSection | None = None,
    surface: GroundSurface | None = None,
    seed: int = 0,
    boot_of: Callable[[float], float] | None = None,
) -> Budget:
    """Every placed tile's displacement from the truth, per cause (see the module's docstring).

    `messages` are what the vehicle sends (timeline time, type, fields; time_boot_ms on the same clock);
    `frame_times` the true exposure times; `uv` the tile centres; `surface` the payload's terrain (None: flat
    ground at home's altitude, as `geotag.ground: home`). `boot_of` maps a timeline time to the autopilot's
    boot clock the messages' time_boot_ms count (None: the same clock, as `restamped` makes it); the payload's
    stamp is then that of the exposure plus its error.
    """
    cam_payload = cam_payload or cam_true
    geotag = geotag or GeotagSection()
    rng = np.random.default_rng(seed)
    listener = Listener(messages)
    frame: LocalFrame | None = None
    vec: dict[str, list[np.ndarray]] = {k: [] for k in FIGURES}
    bank: list[np.ndarray] = []
    out = Budget(case)
    for t in sorted(float(x) for x in frame_times):
        read = t + case.camera_delay_s + (rng.normal(0.0, case.jitter_s) if case.jitter_s > 0 else 0.0)
        stamp = read - case.payload_latency_s
        listener.hear_until(read + case.lookup_delay_s)
        boot = t if boot_of is None else boot_of(t)
        est_stamp = listener.buffer.state_at_boot(boot + stamp - t)
        est_true = listener.buffer.state_at_boot(boot)
        if est_stamp is None or est_true is None:
            out.frames_skipped += 1
            continue
        ground_pay, ground_alt = ground_under(surface, est_stamp, geotag)
        if not est_stamp.pose.alt_m - ground_alt >= geotag.min_height_agl_m:
            out.frames_skipped += 1
            continue
        tp = truth(t)
        if frame is None:
            frame = LocalFrame(tp.lat_deg, tp.lon_deg, float(ground_alt))
        pe, pt = est_stamp.pose, est_true.pose
        ground_pay_true = ground_under(surface, est_true, geotag)[0]
        poses = {
            "truth": (cam_true, tp, ground_true),
            "attitude": (cam_true, Pose(tp.lat_deg, tp.lon_deg, tp.alt_m, pt.roll_rad, pt.pitch_rad, pt.yaw_rad),
                         ground_true),
            "position": (cam_true, Pose(pt.lat_deg, pt.lon_deg, pt.alt_m, tp.roll_rad, tp.pitch_rad, tp.yaw_rad),
                         ground_true),
            "time": (cam_true, truth(stamp), ground_true),
            "projection": (cam_payload, tp, ground_pay_true),
            "total": (cam_payload, pe, ground_pay),
        }
        en = {k: _en(frame, pixels_to_latlon(c, uv, p, g)) for k, (c, p, g) in poses.items()}
        ok = np.all([np.all(np.isfinite(x), axis=1) for x in en.values()], axis=0)
        if not ok.any():
            out.frames_skipped += 1
            continue
        out.frames += 1
        if not isinstance(ground_true, GroundSurface) and not isinstance(ground_pay, GroundSurface):
            out.ground_offset_m.append(float(ground_alt) - float(ground_true))
        d = {k: en[k][ok] - en["truth"][ok] for k in (*CAUSES, "total")}
        d["interaction"] = d["total"] - sum(d[k] for k in CAUSES)
        for k in FIGURES:
            vec[k].append(d[k])
        bank.append(np.full(int(ok.sum()), abs(math.degrees(tp.roll_rad))))
    out.vectors = {k: np.concatenate(v) if v else np.zeros((0, 2)) for k, v in vec.items()}
    out.bank_deg = np.concatenate(bank) if bank else np.zeros(0)
    return out


def _stat(x: np.ndarray) -> dict[str, float | None]:
    if x.size == 0:
        return {"median": None, "p95": None}
    return {"median": round(float(np.median(x)), 3), "p95": round(float(np.percentile(x, 95)), 3)}


def summary(b: Budget, edges: Sequence[float] = BANK_EDGES_DEG) -> dict[str, Any]:
    """Median and p95 (m) of every figure, over all tiles and per bank-angle bin."""
    c = b.case
    bins = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (b.bank_deg >= lo) & (b.bank_deg < hi)
        bins.append({"bank_deg": [lo, hi], "tiles": int(sel.sum()),
                     **{k: _stat(b.metres(k)[sel]) for k in FIGURES}})
    return {
        "case": c.name,
        "streams": "recorded" if c.streams_hz is None else f"{c.streams_hz:g} Hz",
        "camera_delay_s": c.camera_delay_s, "payload_latency_s": c.payload_latency_s, "jitter_s": c.jitter_s,
        "lookup_delay_s": c.lookup_delay_s,
        "frames": b.frames, "frames_skipped": b.frames_skipped, "tiles": int(b.bank_deg.size),
        "payload_ground_minus_true_m": None if not b.ground_offset_m else round(float(np.median(b.ground_offset_m)), 3),
        "all": {k: _stat(b.metres(k)) for k in FIGURES},
        "by_bank": bins,
    }


def table(summaries: Sequence[dict[str, Any]]) -> str:
    """The cases side by side as a markdown table: median / p95 (m) per figure, all tiles then per bank bin."""
    head = "| case | bank | tiles | " + " | ".join(FIGURES) + " |"
    lines = [head, "|" + "---|" * (3 + len(FIGURES))]

    def cell(s: dict[str, float | None]) -> str:
        return "-" if s["median"] is None else f"{s['median']:.2f} / {s['p95']:.2f}"

    for s in summaries:
        lines.append(f"| {s['case']} | all | {s['tiles']} | " + " | ".join(cell(s["all"][k]) for k in FIGURES) + " |")
        for b in s["by_bank"]:
            if b["tiles"]:
                lo, hi = b["bank_deg"]
                lines.append(f"| {s['case']} | {lo:g}-{hi:g}° | {b['tiles']} | "
                             + " | ".join(cell(b[k]) for k in FIGURES) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- a scenario's flight


def sim_boot_clock(timeline: Any) -> Callable[[float], float]:
    """The simulated vehicle's boot clock at a timeline time, as it stamps the camera's exposures without
    restamping (flight_sim/vehicle.py `VehicleEndpoint.boot_s_now`): the newest recorded ATTITUDE's
    time_boot_ms, moved on by the timeline time since it."""
    def boot(t: float) -> float:
        e = timeline.latest("ATTITUDE", t) or timeline.latest("GLOBAL_POSITION_INT", t)
        return t if e is None else e.fields["time_boot_ms"] / 1000.0 + (t - e.t)
    return boot


def _payload_geotag(s: Any) -> GeotagSection:
    """The geotag section the mission gives the payload (tools/mission/run.py payload_config)."""
    from flight_sim.scenario import lowest_agl_m

    if s.terrain is not None:
        return GeotagSection(ground="home", min_height_agl_m=round(0.5 * lowest_agl_m(s), 1))
    return GeotagSection(ground="home", min_height_agl_m=round(0.5 * s.flight.altitude_m, 1))


def flight_budget(scenario: Path, tlog: Path | None, cases: Sequence[Case], start: float | None = None,
                  end: float | None = None, overrides: dict[str, float] | None = None,
                  recorded_hz: float = 4.0, origin_alt_m: float | None = None,
                  clock: str = "replay") -> list[dict[str, Any]]:
    """Each case's summary for a scenario's flight: the tlog replayed over its field, or its scripted survey."""
    from flight_sim.scenario import load_scenario, payload_camera
    from flight_sim.survey import survey_timeline
    from flight_sim.terrain import scenario_surface
    from flight_sim.tlog import read_tlog

    s = load_scenario(scenario)
    if overrides:
        s = s.model_copy(update={"flight": s.flight.model_copy(update=overrides)})
    if origin_alt_m is not None:  # the field (the simulator's ground) at another altitude
        s = s.model_copy(update={"origin": s.origin.model_copy(update={"alt": origin_alt_m})})
    c = s.camera
    cam_true = c.model()
    cam_pay = camera_for(CameraSection(**payload_camera(c)), c.width, c.height)
    surface = scenario_surface(s)
    ground_true: Ground = surface if surface is not None else s.origin.alt
    geotag = _payload_geotag(s)
    uv = tile_centres(cam_pay, c.tile_rows, c.tile_cols, c.tile_overlap)
    out = []
    replay = read_tlog(tlog) if tlog is not None else None
    for case in cases:
        if replay is not None:
            tl = replay
        else:  # a scripted survey is flown again with its streams at the case's rate
            hz = recorded_hz if case.streams_hz is None else case.streams_hz
            tl = survey_timeline(s.model_copy(update={"flight": s.flight.model_copy(
                update={"telemetry_rate_hz": hz})}))
        t_first = float(tl.truth.t[0])
        t0 = max(t_first, tl.ready_s) if start is None else start
        t1 = t_first + tl.duration if end is None else end
        if replay is not None and case.streams_hz is not None:
            msgs = requested_stream(tl, case.streams_hz, t0 - 2.0, t1 + 2.0)
        else:
            msgs = recorded_stream(tl, t0 - 2.0, t1 + 2.0)
        frames = np.arange(t0, t1 - case.camera_delay_s - 1.0, 1.0 / c.fps)
        if clock == "recorded":  # the messages' own time_boot_ms, as the mission's vehicle sends them
            b = error_budget(tl.pose_at, msgs, frames, case, cam_true, ground_true, uv, cam_pay, geotag, surface,
                             seed=s.seed, boot_of=sim_boot_clock(tl))
        else:
            b = error_budget(tl.pose_at, restamped(msgs), frames, case, cam_true, ground_true, uv, cam_pay, geotag,
                             surface, seed=s.seed)
        summ = summary(b)
        if replay is None:
            summ["streams"] = f"{recorded_hz if case.streams_hz is None else case.streams_hz:g} Hz (scripted)"
        else:
            summ["streams"] = summ["streams"] if case.streams_hz is not None else \
                f"recorded ({_rate(tl, 'ATTITUDE', t0, t1):.1f} Hz ATTITUDE)"
        summ["clock"] = clock
        out.append(summ)
    return out


def _rate(tl: Any, name: str, t0: float, t1: float) -> float:
    ts = [e.t for e in tl.of(name) if t0 <= e.t <= t1]
    return (len(ts) - 1) / (ts[-1] - ts[0]) if len(ts) > 1 else 0.0


def default_cases(camera_delay_s: float, requested_hz: float, jitter_s: float, lookup_delay_s: float) -> list[Case]:
    """before: recorded streams, a payload unaware of the delay; after: requested streams, the delay set."""
    before = Case("before", None, camera_delay_s, 0.0, jitter_s, lookup_delay_s)
    return [before, replace(before, name="after", streams_hz=requested_hz, payload_latency_s=camera_delay_s)]


def _main(argv: Sequence[str] | None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.error_budget", description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", type=Path, required=True)
    ap.add_argument("--tlog", type=Path, default=None, help="replay this flight over the field (else: the survey)")
    ap.add_argument("--start", type=float, default=None, help="from this timeline second")
    ap.add_argument("--end", type=float, default=None, help="up to this timeline second")
    ap.add_argument("--camera-delay-s", type=float, default=0.1,
                    help="the camera's exposure-to-delivery delay (default 0.1 s)")
    ap.add_argument("--requested-hz", type=float, default=25.0, help="the after case's stream rate (default 25)")
    ap.add_argument("--recorded-hz", type=float, default=4.0,
                    help="a scripted survey's stream rate in the before case (default 4)")
    ap.add_argument("--jitter-ms", type=float, default=0.0, help="sd of the frame read time's jitter (default 0)")
    ap.add_argument("--lookup-delay-s", type=float, default=0.05,
                    help="from reading a frame to looking its pose up (default 0.05 s)")
    ap.add_argument("--speed", type=float, default=None, help="a scripted survey's speed (m/s)")
    ap.add_argument("--line-spacing", type=float, default=None, help="a scripted survey's line spacing (m)")
    ap.add_argument("--origin-alt", type=float, default=None,
                    help="put the field (the simulator's ground) at this altitude (m AMSL) instead of the scenario's")
    ap.add_argument("--clock", choices=("replay", "recorded"), default="replay",
                    help="replay: every message stamped with the replay's time (default); recorded: the messages' "
                    "own time_boot_ms, as the mission's vehicle sends a tlog without --restamp-time")
    ap.add_argument("--json", type=Path, default=None, help="also write the summaries here")
    a = ap.parse_args(argv)
    overrides: dict[str, float] = {}
    if a.speed is not None:
        overrides["speed_mps"] = a.speed
    if a.line_spacing is not None:
        overrides["line_spacing_m"] = a.line_spacing
    cases = default_cases(a.camera_delay_s, a.requested_hz, a.jitter_ms / 1000.0, a.lookup_delay_s)
    out = flight_budget(a.scenario, a.tlog, cases, a.start, a.end, overrides, a.recorded_hz, a.origin_alt, a.clock)
    for s in out:
        print(f"{s['case']}: streams {s['streams']}, camera delay {s['camera_delay_s']} s, payload camera.latency_s "
              f"{s['payload_latency_s']} s; {s['frames']} frames placed ({s['frames_skipped']} not), "
              f"{s['tiles']} tiles; "
              f"the payload's flat ground minus the simulator's: {s['payload_ground_minus_true_m']} m (median)")
    print("\nmedian / p95 of each tile's ground-position error, metres\n")
    print(table(out))
    if a.json is not None:
        a.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run_cli(_main, argv))


if __name__ == "__main__":
    main()
