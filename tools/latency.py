"""`python -m tools.latency FLIGHT_DIR`: the camera latency a flight's own sightings show.

A frame stamped L seconds after its exposure is placed with the pose L seconds later: the vehicle has
moved on by v*L, so everything the frame saw lands v*L ahead along the track. On opposite passes over
the same ground the shifts point opposite ways, so the same spot is seen 2*v*L apart: 0.1 s at 5 m/s
puts the two passes' sightings 1 m apart. Half the mean offset divided by the speed is the latency.

With every sighting i of spot k at p_i = c_k + v_i * L + noise (v_i the vehicle's velocity then), the
least-squares L over all spots is

    L = sum_i (p_i - mean_k p) . (v_i - mean_k v) / sum_i |v_i - mean_k v|^2

which for two opposite passes at one speed is exactly (offset / 2) / v. Only spots seen from opposite
directions are used: on one pass the shift cannot be told from where the spot is.

What it measures is the stamp's lateness still left in the records, on top of the `camera.latency_s`
the flight was flown with (each look records it): the camera's delay if that was 0, the error of the
setting otherwise. The suggested setting is the two added. Anything else that shifts sightings along
the direction of travel is counted as latency too: a camera pitched forward by an unknown angle moves
the ground ahead by height*tan(angle) on every pass, the same way. At one speed and height the two
cannot be told apart; flying the opposite passes at two speeds separates them (the shift from time
grows with speed, the one from the mount does not).

When the folder holds the mission's truth (tools/mission/frametime.py, frame_times.json), the
payload's stamp errors against it are printed beside the estimate.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from payload.cliutil import run_cli
from payload.errors import UserError
from payload.files.jsonl import read_jsonl
from payload.geo.frames import geodetic_to_enu
from payload.geo.looks import LOOK_SCHEMA
from payload.sinks.jsonl import DETECTION_SCHEMA_PREFIX

MAX_GAP_S = 1.5  # looks further apart than this are not one stretch of track (a drop, a stop)
MIN_SPEED_MPS = 1.0  # a hovering vehicle's sightings carry no along-track shift to measure
OPPOSITE_COS = -0.8  # two sightings' directions of travel at least ~143 degrees apart: opposite passes


class LatencyError(UserError):
    """The folder cannot give an estimate (no records, no opposite passes)."""


@dataclass(frozen=True)
class Sighting:
    """One detection: where it was placed (metres east, north) and the vehicle's velocity then (m/s)."""

    east: float
    north: float
    ve: float
    vn: float


@dataclass(frozen=True)
class Estimate:
    """The latency the sightings show, and what it rests on."""

    latency_s: float  # the stamps' remaining lateness (+ = stamped after exposure)
    stderr_s: float
    spots: int  # ground spots seen on opposite passes
    sightings: int
    mean_speed_mps: float
    shift_m: float  # latency_s * mean speed: how far ahead along the track the sightings land
    flown_latency_s: float | None  # the camera.latency_s the flight was flown with (None: mixed)
    suggested_latency_s: float | None


def estimate(spots: Iterable[Sequence[Sighting]]) -> tuple[float, float, int, int, float]:
    """(latency, its standard error, spots used, sightings used, mean speed) from sightings grouped by spot."""
    num = den = 0.0
    used: list[Sequence[Sighting]] = []
    for spot in spots:
        if not _opposite(spot):
            continue
        p = np.array([[s.east, s.north] for s in spot])
        v = np.array([[s.ve, s.vn] for s in spot])
        dp, dv = p - p.mean(axis=0), v - v.mean(axis=0)
        num += float(np.sum(dp * dv))
        den += float(np.sum(dv * dv))
        used.append(spot)
    if not used or den <= 0:
        raise LatencyError("no ground was seen from opposite directions (a lawnmower's neighbouring lines over the "
                           "same disease, or a second pass back over it): nothing to estimate the latency from")
    lat = num / den
    resid = 0.0
    n = 0
    for spot in used:
        p = np.array([[s.east, s.north] for s in spot])
        v = np.array([[s.ve, s.vn] for s in spot])
        c = (p - v * lat).mean(axis=0)
        resid += float(np.sum((p - c - v * lat) ** 2))
        n += len(spot)
    dof = max(2 * n - 2 * len(used) - 1, 1)
    stderr = math.sqrt(resid / dof / den)
    speed = float(np.mean([math.hypot(s.ve, s.vn) for spot in used for s in spot]))
    return lat, stderr, len(used), n, speed


def _opposite(spot: Sequence[Sighting]) -> bool:
    d = np.array([[s.ve, s.vn] for s in spot])
    d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
    return bool(len(spot) >= 2 and float((d @ d.T).min()) <= OPPOSITE_COS)


def group_spots(sightings: Sequence[Sighting], link_m: float) -> list[list[Sighting]]:
    """Sightings of the same ground: chained together when closer than link_m (single linkage on a grid)."""
    parent = list(range(len(sightings)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    cells: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, s in enumerate(sightings):
        cells[(math.floor(s.east / link_m), math.floor(s.north / link_m))].append(i)
    for (cx, cy), members in cells.items():
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for j in cells.get((cx + dx, cy + dy), ()):
                    for i in members:
                        a, b = sightings[i], sightings[j]
                        if i < j and math.hypot(a.east - b.east, a.north - b.north) <= link_m:
                            parent[root(i)] = root(j)
    groups: dict[int, list[Sighting]] = defaultdict(list)
    for i, s in enumerate(sightings):
        groups[root(i)].append(s)
    return list(groups.values())


def _velocities(looks: list[dict[str, Any]], origin: tuple[float, float]) -> dict[tuple[str, int], tuple[float, float]]:
    """Each look's vehicle velocity (east, north m/s) from its neighbours on the track, keyed (run_id, seq)."""
    by_run: dict[str, list[tuple[float, int, float, float]]] = defaultdict(list)
    for lk in looks:
        veh, frame = lk.get("vehicle"), lk.get("frame") or {}
        t = frame.get("t_boot_s", frame.get("t_mono"))
        if not veh or t is None or frame.get("seq") is None:
            continue
        e, n, _ = geodetic_to_enu(float(veh["lat"]), float(veh["lon"]), 0.0, origin[0], origin[1], 0.0)
        by_run[str(lk.get("run_id"))].append((float(t), int(frame["seq"]), float(e), float(n)))
    out: dict[tuple[str, int], tuple[float, float]] = {}
    for run, track in by_run.items():
        track.sort()
        for i, (t, seq, _e, _n) in enumerate(track):
            a = track[i - 1] if i > 0 and t - track[i - 1][0] <= MAX_GAP_S else track[i]
            b = track[i + 1] if i + 1 < len(track) and track[i + 1][0] - t <= MAX_GAP_S else track[i]
            if b[0] > a[0]:
                out[(run, seq)] = ((b[2] - a[2]) / (b[0] - a[0]), (b[3] - a[3]) / (b[0] - a[0]))
    return out


def sightings_of(records: Iterable[dict[str, Any]]) -> tuple[list[Sighting], set[float]]:
    """The trusted, placed detections of a flight with the vehicle's velocity then; and the latencies flown."""
    recs = list(records)
    looks = [r for r in recs if r.get("schema") == LOOK_SCHEMA]
    dets = [r for r in recs if str(r.get("schema", "")).startswith(DETECTION_SCHEMA_PREFIX)
            and r.get("trusted") and r.get("lat") is not None and r.get("lon") is not None]
    flown = {float((lk.get("frame") or {}).get("latency_s") or 0.0) for lk in looks}
    if not dets:
        return [], flown
    origin = (float(dets[0]["lat"]), float(dets[0]["lon"]))
    vel = _velocities(looks, origin)
    out = []
    for d in dets:
        v = vel.get((str(d.get("run_id")), int(d["frame"]["seq"])))
        if v is None or math.hypot(*v) < MIN_SPEED_MPS:
            continue
        e, n, _ = geodetic_to_enu(float(d["lat"]), float(d["lon"]), 0.0, origin[0], origin[1], 0.0)
        out.append(Sighting(float(e), float(n), v[0], v[1]))
    return out, flown


def estimate_flight(flight_dir: Path, link_m: float = 6.0) -> Estimate:
    """The latency a flight folder's detections show (see the module's docstring)."""
    path = flight_dir / "detections.jsonl"
    if not path.is_file():
        raise LatencyError(f"{flight_dir}: no detections.jsonl; give a flight folder the payload wrote")
    sightings, flown = sightings_of(read_jsonl(path).records)
    if not sightings:
        raise LatencyError(f"{path}: no trusted detections with a moving vehicle; nothing to estimate from")
    lat, se, spots, n, speed = estimate(group_spots(sightings, link_m))
    flown_one = next(iter(flown)) if len(flown) == 1 else None
    return Estimate(round(lat, 4), round(se, 4), spots, n, round(speed, 2), round(lat * speed, 3), flown_one,
                    None if flown_one is None else round(max(0.0, flown_one + lat), 3))


def _main(argv: Sequence[str] | None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tools.latency",
        description="Estimate the camera's exposure-to-delivery latency from a flight folder: the along-track offset "
        "between opposite passes' sightings of the same ground (docs/TELEMETRY.md, 'Frame time').")
    ap.add_argument("flight_dir", type=Path)
    ap.add_argument("--link-m", type=float, default=6.0,
                    help="sightings closer than this are the same ground (default 6 m: about a tile's footprint)")
    ap.add_argument("--json", type=Path, default=None, help="also write the estimate here")
    a = ap.parse_args(argv)
    est = estimate_flight(a.flight_dir, a.link_m)
    out: dict[str, Any] = asdict(est)
    from tools.mission.frametime import frame_stamp_error, read_truth

    truth = read_truth(a.flight_dir)
    if truth is not None:
        out["mission_truth"] = frame_stamp_error(a.flight_dir, truth)
    print(json.dumps(out, indent=2))
    if est.suggested_latency_s is not None:
        print(f"camera.latency_s: {est.suggested_latency_s}   (flown with {est.flown_latency_s}; the sightings show "
              f"{est.latency_s:+.3f} s +- {est.stderr_s:.3f} s more, {est.shift_m:+.2f} m along the track at "
              f"{est.mean_speed_mps} m/s, from {est.spots} spots seen on opposite passes)")
    if a.json is not None:
        a.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run_cli(_main, argv))


if __name__ == "__main__":
    main()
