"""The payload's frame stamps scored against the camera's truth: `frame_stamp_error_ms` in report.json.

The simulated camera knows when it exposed each frame (flight_sim/stream.py: `X-Exposure-Time`, on the
vehicle's boot clock) and which frames it sent on each stream connection, in order. The payload reads
the stream through OpenCV, which drops the part headers, and counts the frames it reads from 0
(`frame.seq`); a reader that reads every part of its connection in order (TCP, and FFmpeg's MJPEG
demuxer, which keeps the parts it probed at open: tests/flight_sim/test_stream_frametime.py) therefore
holds in its frame k the k-th part sent on its connection. Each look record gives the payload's
stamp on the vehicle's clock (`frame.t_boot_s`: the capture stamp, less `camera.latency_s`, mapped
through the payload's clock sync, exactly the time the pose was looked up at). The error is that
stamp minus the true exposure time: positive when the payload thinks the frame was taken later than
it was, which places the ground ahead along the track by speed x error.

Only the payload's first connection is matched: after a reconnect the parts that were in flight when
the first one broke may or may not have been read, so the count no longer says which part a frame
is. The report says how many frames were matched and how many connections there were.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flight_sim.stream import MjpegServer
from payload.files.jsonl import read_jsonl
from payload.geo.looks import LOOK_SCHEMA

TRUTH_FILE = "frame_times.json"
RECONNECT_MARGIN = 16  # parts at the end of a broken connection that may not have been read


def camera_truth(server: MjpegServer, latency_s: float) -> dict[str, Any]:
    """What the camera served: every frame's exposure time and delivery, and the indices sent per connection."""
    served, connections = server.log_snapshot()
    return {
        "what": "the simulated camera's truth (flight_sim/stream.py): exposure_s on the vehicle's boot clock",
        "camera_latency_s": latency_s,
        "frames": [{"index": f.index, "sim_t": round(f.sim_t, 6), "exposure_s": round(f.exposure_s, 6),
                    "delivery_delay_s": round(f.delivered_mono - f.exposure_mono, 6),
                    "delivered_mono": round(f.delivered_mono, 6)} for f in served],
        "connections": connections,
    }


def write_truth(out_dir: Path, truth: dict[str, Any]) -> Path:
    """The truth beside the flight's records, so `python -m tools.latency` can compare its estimate with it."""
    path = out_dir / TRUTH_FILE
    path.write_text(json.dumps(truth) + "\n", encoding="utf-8")
    return path


def read_truth(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / TRUTH_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def read_looks(out_dir: Path) -> list[dict[str, Any]]:
    """The look records of a flight folder (one per classified frame)."""
    path = out_dir / "detections.jsonl"
    if not path.is_file():
        return []
    return [r for r in read_jsonl(path).records if r.get("schema") == LOOK_SCHEMA]


def matchable_indices(connections: Sequence[Sequence[int]]) -> list[int]:
    """The camera's frame index of each payload frame seq that can be told: the first connection's parts
    (all of them when it was the only one, else less the margin that may have been lost when it broke)."""
    if not connections:
        return []
    first = list(connections[0])
    return first if len(connections) == 1 else first[: max(0, len(first) - RECONNECT_MARGIN)]


def stamp_errors(looks: Iterable[dict[str, Any]], truth: dict[str, Any]) -> tuple[np.ndarray, int]:
    """Per matched look, the payload's stamp minus the true exposure time (s); and how many looks had a stamp
    but could not be matched."""
    errors, unmatched, _ = _match(looks, truth)
    return np.asarray(errors, dtype=float), unmatched


def _match(looks: Iterable[dict[str, Any]], truth: dict[str, Any]) -> tuple[list[float], int, int]:
    """The stamp errors, the unmatched looks, and the matches that cannot be right: a frame read (its stamp plus
    the latency taken off, on this machine's monotonic clock) before its part was delivered. A count above 0
    means the order matching failed (another reader on the stream, a connection the payload did not use)."""
    frames = {int(f["index"]): f for f in truth["frames"]}
    by_seq = matchable_indices(truth["connections"])
    errors: list[float] = []
    unmatched = impossible = 0
    for look in looks:
        if look.get("schema") != LOOK_SCHEMA:
            continue
        frame = look.get("frame") or {}
        seq, stamp = frame.get("seq"), frame.get("t_boot_s")
        if stamp is None or seq is None:
            continue
        if not 0 <= int(seq) < len(by_seq) or by_seq[int(seq)] not in frames:
            unmatched += 1
            continue
        part = frames[by_seq[int(seq)]]
        errors.append(float(stamp) - float(part["exposure_s"]))
        read = frame.get("t_mono")
        if read is not None and part.get("delivered_mono") is not None:
            read_mono = float(read) + float(frame.get("latency_s") or 0.0)
            impossible += int(read_mono < float(part["delivered_mono"]) - 1e-3)
    return errors, unmatched, impossible


LATE_MARGIN_S = 0.005


def camera_delivery(truth: dict[str, Any]) -> dict[str, Any]:
    """How long the simulated camera took from exposure to delivery, and how many frames it could not hold to
    its latency: a frame that takes longer to render and encode than `camera.latency_s` goes out when it is
    ready, so on a loaded machine the camera is slower than the scenario says."""
    delays = np.array([float(f["delivery_delay_s"]) for f in truth["frames"]])
    if delays.size == 0:
        return {"camera_delivery_ms_median": None, "camera_late_frames": 0}
    late = int(np.sum(delays > float(truth.get("camera_latency_s") or 0.0) + LATE_MARGIN_S))
    return {"camera_delivery_ms_median": round(1000.0 * float(np.median(delays)), 2), "camera_late_frames": late}


def frame_stamp_error(out_dir: Path, truth: dict[str, Any]) -> dict[str, Any]:
    """report.json's `frame_stamp_error_ms`: the payload's stamps against the truth, in milliseconds."""
    looks = read_looks(out_dir)
    errors, unmatched, impossible = _match(looks, truth)
    err = np.asarray(errors, dtype=float)
    latency = {float((lk.get("frame") or {}).get("latency_s") or 0.0) for lk in looks}
    out: dict[str, Any] = {
        "what": "payload's frame stamp (camera.latency_s taken off, on the vehicle's clock through its clock sync) "
                "minus the true exposure time; + = stamped late (placed ahead along the track)",
        "matched": int(err.size),
        "unmatched": unmatched,
        # frames matched to a part delivered after they were read: must be 0, or the matching is wrong
        "read_before_delivery": impossible,
        "connections": len(truth["connections"]),
        "camera_latency_s": truth.get("camera_latency_s"),
        "payload_latency_s": sorted(latency)[0] if len(latency) == 1 else sorted(latency),
        **camera_delivery(truth),
    }
    if err.size == 0:
        return {**out, "median": None, "p95": None, "p95_abs": None, "min": None, "max": None}
    ms = 1000.0 * err
    return {**out, "median": round(float(np.median(ms)), 2), "p95": round(float(np.percentile(ms, 95)), 2),
            "p95_abs": round(float(np.percentile(np.abs(ms), 95)), 2), "min": round(float(ms.min()), 2),
            "max": round(float(ms.max()), 2)}
