"""`python -m tools.latency`: the camera latency from opposite passes' sightings of the same ground."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from payload.geo.frames import enu_to_geodetic
from payload.geo.looks import LOOK_SCHEMA
from tools.latency import LatencyError, Sighting, _main, estimate, estimate_flight, group_spots

ORIGIN = (52.2, 0.12)
SPOTS = [(20.0, 10.0), (60.0, 10.0), (35.0, 30.0), (80.0, 30.0)]  # metres east, north


def test_hand_worked_opposite_passes() -> None:
    """0.1 s at 5 m/s: each pass places the spot 0.5 m ahead of it, so the passes' sightings are 1 m apart."""
    east_pass = Sighting(10.5, 0.0, 5.0, 0.0)
    west_pass = Sighting(9.5, 0.0, -5.0, 0.0)
    lat, se, spots, n, speed = estimate([[east_pass, west_pass]])
    assert lat == pytest.approx(0.1) and (spots, n, speed) == (1, 2, pytest.approx(5.0))
    assert se == pytest.approx(0.0, abs=1e-9)
    # the other way round the stamps are early: a negative latency, which a setting too large leaves
    lat_early, *_ = estimate([[Sighting(9.5, 0.0, 5.0, 0.0), Sighting(10.5, 0.0, -5.0, 0.0)]])
    assert lat_early == pytest.approx(-0.1)


def test_one_direction_only_is_not_enough() -> None:
    same_way = [[Sighting(10.5, 0.0, 5.0, 0.0), Sighting(10.4, 0.0, 5.0, 0.0)]]
    with pytest.raises(LatencyError, match="opposite directions"):
        estimate(same_way)


def test_sightings_are_grouped_by_the_ground_they_saw() -> None:
    s = [Sighting(0, 0, 1, 0), Sighting(1, 0, 1, 0), Sighting(2.5, 0, 1, 0), Sighting(30, 0, 1, 0)]
    groups = sorted(group_spots(s, link_m=2.0), key=len)
    assert [len(g) for g in groups] == [1, 3]


def _write_flight(folder: Path, latency_s: float, flown_latency_s: float = 0.0, speed: float = 5.0,
                  seed: int = 1) -> Path:
    """A lawnmower of east and west lines 20 m apart at `speed`, 5 frames a second; every frame within 6 m of a
    spot (along the track) sees it, placed where the tile grid puts it (+-2 m) and v * latency ahead."""
    rng = np.random.default_rng(seed)
    recs: list[dict] = []
    t, seq = 0.0, 0
    for line, north in enumerate((0.0, 20.0, 40.0)):
        direction = 1.0 if line % 2 == 0 else -1.0
        xs = np.arange(0.0, 100.0 + 1e-9, speed / 5.0)
        for x in xs if direction > 0 else xs[::-1]:
            lat, lon, _ = enu_to_geodetic(x, north, 0.0, ORIGIN[0], ORIGIN[1], 0.0)
            recs.append({"schema": LOOK_SCHEMA, "run_id": "r1", "vehicle": {"lat": lat, "lon": lon, "alt_m": 40.0},
                         "frame": {"seq": seq, "t_mono": t, "t_boot_s": t + 50.0, "latency_s": flown_latency_s}})
            for se, sn in SPOTS:
                if abs(se - x) <= 6.0 and abs(sn - north) <= 12.0:
                    e = se + rng.uniform(-2, 2) + direction * speed * latency_s
                    n = sn + rng.uniform(-2, 2)
                    dlat, dlon, _ = enu_to_geodetic(e, n, 0.0, ORIGIN[0], ORIGIN[1], 0.0)
                    recs.append({"schema": "cropscout.detection/1", "run_id": "r1", "trusted": True,
                                 "lat": float(dlat), "lon": float(dlon), "frame": {"seq": seq, "t_mono": t}})
            t += 0.2
            seq += 1
        t += 5.0  # the turn
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "detections.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    return folder


@pytest.mark.parametrize("latency", [0.0, 0.1, 0.15])
def test_a_known_latency_is_recovered_from_a_flight_folder(tmp_path: Path, latency: float) -> None:
    est = estimate_flight(_write_flight(tmp_path / "f", latency))
    assert est.latency_s == pytest.approx(latency, abs=0.04)
    assert abs(est.latency_s - latency) <= 3 * est.stderr_s + 0.005
    assert est.spots == len(SPOTS) and est.mean_speed_mps == pytest.approx(5.0, abs=0.1)
    assert est.flown_latency_s == 0.0 and est.suggested_latency_s == pytest.approx(max(0.0, est.latency_s), abs=1e-3)


def test_the_suggestion_adds_what_the_flight_was_flown_with(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Flown with camera.latency_s 0.05 on a 0.12 s camera, the records are still 0.07 s late."""
    folder = _write_flight(tmp_path / "f", 0.07, flown_latency_s=0.05, speed=8.0)
    est = estimate_flight(folder)
    assert est.latency_s == pytest.approx(0.07, abs=0.03)
    assert est.suggested_latency_s == pytest.approx(0.12, abs=0.03)
    assert _main([str(folder), "--json", str(tmp_path / "est.json")]) == 0
    printed = capsys.readouterr().out
    assert "camera.latency_s:" in printed and "flown with 0.05" in printed
    assert json.loads((tmp_path / "est.json").read_text())["spots"] == len(SPOTS)


def test_a_folder_without_records_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LatencyError, match="no detections.jsonl"):
        estimate_flight(tmp_path)
