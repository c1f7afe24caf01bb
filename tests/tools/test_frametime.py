"""The mission's frame-stamp error: payload frames matched to the camera's truth by the order they were sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from payload.geo.looks import LOOK_SCHEMA
from tools.mission.frametime import RECONNECT_MARGIN, frame_stamp_error, matchable_indices, read_truth, stamp_errors


def _truth(connections: list[list[int]], n: int = 60) -> dict:
    # frame i exposed at boot time 100 + i / 10 (a 10 fps camera)
    return {"camera_latency_s": 0.1, "connections": connections,
            "frames": [{"index": i, "sim_t": i / 10, "exposure_s": 100 + i / 10, "delivery_delay_s": 0.1}
                       for i in range(1, n + 1)]}


def _look(seq: int, t_boot: float | None, latency: float = 0.0) -> dict:
    return {"schema": LOOK_SCHEMA, "frame": {"seq": seq, "t_boot_s": t_boot, "latency_s": latency}}


def test_one_connection_matches_every_frame_a_broken_one_loses_its_tail() -> None:
    assert matchable_indices([[3, 4, 6, 7]]) == [3, 4, 6, 7]
    first = list(range(1, 41))
    assert matchable_indices([first, [45, 46]]) == first[: 40 - RECONNECT_MARGIN]
    assert matchable_indices([]) == []


def test_errors_are_the_stamp_minus_the_exposure_of_the_part_the_frame_was() -> None:
    # the payload missed part 3 (a slow client skips), so its frame 2 is part 4
    truth = _truth([[1, 2, 4, 5]])
    looks = [_look(0, 100.1 + 0.030), _look(1, 100.2 + 0.050), _look(2, 100.4 - 0.010), _look(3, None),
             _look(9, 101.0), {"schema": "something else", "frame": {"seq": 1, "t_boot_s": 0.0}}]
    err, unmatched = stamp_errors(looks, truth)
    assert err.tolist() == pytest.approx([0.030, 0.050, -0.010])
    assert unmatched == 1  # seq 9 was never sent on the connection


def test_the_report_entry_in_milliseconds(tmp_path: Path) -> None:
    truth = _truth([list(range(1, 21))])
    looks = [_look(k, 100 + (k + 1) / 10 + 0.001 * (k + 1), latency=0.08) for k in range(20)]  # 1..20 ms late
    (tmp_path / "detections.jsonl").write_text("".join(json.dumps(lk) + "\n" for lk in looks), encoding="utf-8")
    (tmp_path / "frame_times.json").write_text(json.dumps(truth), encoding="utf-8")
    got = frame_stamp_error(tmp_path, read_truth(tmp_path) or {})
    assert got["matched"] == 20 and got["unmatched"] == 0 and got["connections"] == 1
    assert got["median"] == pytest.approx(10.5, abs=0.01)
    assert got["p95"] == pytest.approx(19.05, abs=0.01)
    assert got["min"] == pytest.approx(1.0, abs=0.01) and got["max"] == pytest.approx(20.0, abs=0.01)
    assert got["payload_latency_s"] == pytest.approx(0.08) and got["camera_latency_s"] == pytest.approx(0.1)
    assert got["camera_delivery_ms_median"] == pytest.approx(100.0) and got["camera_late_frames"] == 0
    assert got["read_before_delivery"] == 0  # no delivery times in this truth: nothing to check against


def test_a_frame_matched_to_a_part_delivered_after_it_was_read_is_counted(tmp_path: Path) -> None:
    """Part i delivered at monotonic 10 + i / 10; the payload read its frame 1 at 10.25 (stamp 10.17 + 0.08 of
    latency): part 2 (10.2) fits, but if its frames were really parts 3, 4 ... the match is impossible."""
    truth = _truth([[1, 2, 3]], n=4)
    for f in truth["frames"]:
        f["delivered_mono"] = 10 + f["index"] / 10
    look = {"schema": LOOK_SCHEMA, "frame": {"seq": 1, "t_boot_s": 100.22, "t_mono": 10.17, "latency_s": 0.08}}
    (tmp_path / "detections.jsonl").write_text(json.dumps(look) + "\n", encoding="utf-8")
    assert frame_stamp_error(tmp_path, truth)["read_before_delivery"] == 0
    truth["connections"] = [[3, 4]]
    got = frame_stamp_error(tmp_path, truth)
    assert got["read_before_delivery"] == 1 and got["matched"] == 1


def test_the_mission_gives_the_payload_the_cameras_latency_unless_told_otherwise() -> None:
    from flight_sim.scenario import load_scenario
    from payload.config import PayloadConfig
    from tools.mission.run import ROOT, MissionPlan, payload_config

    s = load_scenario(ROOT / "configs" / "scenarios" / "wheat_30m.yaml")
    s = s.model_copy(update={"camera": s.camera.model_copy(update={"latency_s": 0.12})})
    got = {}
    for told in (None, 0.0):
        plan = MissionPlan(Path("s.yaml"), Path("/tmp/o"), Path("/tmp/b"), payload_latency_s=told)
        cfg = payload_config(plan, s, "tcp:127.0.0.1:1", "http://127.0.0.1:2/stream.mjpg")
        got[told] = PayloadConfig.model_validate(cfg).camera.latency_s
    assert got == {None: pytest.approx(0.12), 0.0: 0.0}


def test_frames_the_camera_could_not_hold_to_its_latency_are_counted() -> None:
    from tools.mission.frametime import camera_delivery

    truth = _truth([[1, 2, 3]], n=4)
    for f, delay in zip(truth["frames"], (0.1, 0.104, 0.14, 0.2), strict=True):
        f["delivery_delay_s"] = delay
    assert camera_delivery(truth) == {"camera_delivery_ms_median": 122.0, "camera_late_frames": 2}


def test_no_looks_no_figures(tmp_path: Path) -> None:
    got = frame_stamp_error(tmp_path, _truth([[1, 2]]))
    assert got["matched"] == 0 and got["median"] is None and got["p95"] is None
