"""How well a tlog replay's fitted trajectory predicts recorded samples it was not given, against straight lines.

    python -m tools.trajectory_check tests/data/flights/copter_sitl_2015.tlog [--sysid 1] [--json out.json]

Issue 29's method: every other ATTITUDE and GLOBAL_POSITION_INT sample is left out (so the gap is
twice the recorded one), the rest are fitted as the replay fits them (flight_sim/trajectory.py), and
each left-out sample is predicted by the fit and by linear interpolation between its neighbours
(angles the short way round, as flight_sim/resample.py did before the fit). Done twice (odd, then
even samples left out), so every inner sample is predicted once. It prints roll/pitch misses
(degrees) and horizontal position misses (metres): median, p90, max, and the same over the samples
whose body rate exceeds --fast-dps (the manoeuvres where the miss matters).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from flight_sim.timeline import Event
from flight_sim.tlog import read_tlog
from flight_sim.trajectory import Trajectory, metres_per_degree


def _wrap(a: np.ndarray) -> np.ndarray:
    return (a + math.pi) % (2 * math.pi) - math.pi


def _unique(events: list[Event]) -> list[Event]:
    out: list[Event] = []
    for e in events:
        if not out or e.t > out[-1].t:
            out.append(e)
    return out


def _attitude_misses(att: list[Event], pos: list[Event]) -> dict[str, np.ndarray]:
    """Per predicted sample: roll/pitch misses (rad) of the fit and of the line, and the sample's body rate."""
    fit_miss, lin_miss, rate = [], [], []
    for parity in (0, 1):
        left = list(range(1 + parity, len(att) - 1, 2))
        kept = [e for k, e in enumerate(att) if k not in set(left)]
        fit = Trajectory(pos, kept)
        t = np.array([att[k].t for k in left])
        roll, pitch, _ = fit.attitude_at(t)
        for j, k in enumerate(left):
            a, b, e = att[k - 1], att[k + 1], att[k]
            w = (e.t - a.t) / (b.t - a.t)
            for key, got in (("roll", roll[j]), ("pitch", pitch[j])):
                fit_miss.append(abs(_wrap(np.array(got - e.fields[key]))))
                d = _wrap(np.array(b.fields[key] - a.fields[key]))
                lin_miss.append(abs(_wrap(np.array(a.fields[key] + w * d - e.fields[key]))))
                rate.append(math.hypot(e.fields["rollspeed"], e.fields["pitchspeed"], e.fields["yawspeed"]))
    return {"fit": np.degrees(fit_miss), "linear": np.degrees(lin_miss), "rate_dps": np.degrees(rate)}


def _position_misses(pos: list[Event], att: list[Event]) -> dict[str, np.ndarray]:
    """Per predicted sample: horizontal misses (m) of the fit and of the line, and the sample's speed."""
    fit_miss, lin_miss, speed = [], [], []
    for parity in (0, 1):
        left = list(range(1 + parity, len(pos) - 1, 2))
        kept = [e for k, e in enumerate(pos) if k not in set(left)]
        fit = Trajectory(kept, att)
        t = np.array([pos[k].t for k in left])
        lat, lon, _ = fit.position_at(t)
        for j, k in enumerate(left):
            a, b, e = pos[k - 1], pos[k + 1], pos[k]
            w = (e.t - a.t) / (b.t - a.t)
            true_lat, true_lon = e.fields["lat"] / 1e7, e.fields["lon"] / 1e7
            mlat, mlon = metres_per_degree(np.array(true_lat), np.array(e.fields["alt"] / 1e3))
            fit_miss.append(math.hypot((lat[j] - true_lat) * mlat, (lon[j] - true_lon) * mlon))
            llat = (a.fields["lat"] + w * (b.fields["lat"] - a.fields["lat"])) / 1e7
            llon = (a.fields["lon"] + w * (b.fields["lon"] - a.fields["lon"])) / 1e7
            lin_miss.append(math.hypot((llat - true_lat) * mlat, (llon - true_lon) * mlon))
            speed.append(math.hypot(e.fields["vx"], e.fields["vy"]) / 100)
    return {"fit": np.array(fit_miss), "linear": np.array(lin_miss), "speed_mps": np.array(speed)}


def _stats(x: np.ndarray) -> dict[str, float]:
    if len(x) == 0:
        return {"n": 0}
    return {"n": len(x), "median": float(np.median(x)), "p90": float(np.percentile(x, 90)), "max": float(x.max())}


def check(path: Path, sysid: int | None, fast_dps: float) -> dict[str, object]:
    """The figures for one tlog."""
    tl = read_tlog(path, sysid=sysid)
    pos = _unique([e for e in tl.of("GLOBAL_POSITION_INT") if e.fields["lat"] or e.fields["lon"]])
    att = _unique(tl.of("ATTITUDE"))
    am = _attitude_misses(att, pos)
    pm = _position_misses(pos, att)
    fast = am["rate_dps"] > fast_dps
    return {
        "tlog": str(path),
        "attitude_hz": (len(att) - 1) / (att[-1].t - att[0].t),
        "position_hz": (len(pos) - 1) / (pos[-1].t - pos[0].t),
        "roll_pitch_deg": {"fit": _stats(am["fit"]), "linear": _stats(am["linear"])},
        f"roll_pitch_deg_above_{fast_dps:g}_dps": {"fit": _stats(am["fit"][fast]),
                                                   "linear": _stats(am["linear"][fast])},
        "horizontal_m": {"fit": _stats(pm["fit"]), "linear": _stats(pm["linear"])},
    }


def _print(out: dict[str, object]) -> None:
    print(f"{out['tlog']}: ATTITUDE {out['attitude_hz']:.2f} Hz, GLOBAL_POSITION_INT {out['position_hz']:.2f} Hz; "
          "every other sample predicted from the rest (gap doubled)")
    for key, block in out.items():
        if not isinstance(block, dict):
            continue
        for method, s in block.items():
            if s["n"]:
                print(f"  {key:28s} {method:7s} n={s['n']:5d}  median {s['median']:.3f}  p90 {s['p90']:.3f}  "
                      f"max {s['max']:.3f}")
            else:
                print(f"  {key:28s} {method:7s} n=0")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tlog", type=Path)
    ap.add_argument("--sysid", type=int, default=None)
    ap.add_argument("--fast-dps", type=float, default=60.0, help="a 'fast' sample's body rate, deg/s (default 60)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    out = check(args.tlog, args.sysid, args.fast_dps)
    _print(out)
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
