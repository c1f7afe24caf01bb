"""One folder per flight (payload/ops/flights.py): which folder a run gets, when it resumes one, and the list."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from payload.errors import ConfigError
from payload.ops.flights import (
    BOOT_MATCH_S,
    FLIGHT_FILE,
    VehicleIdentity,
    flights_table,
    folder_name,
    list_flights,
    open_flight,
    open_flight_dir,
    read_marker,
)

T0 = 1_796_616_720.0  # 2026-12-07T04:12:00Z
BOOT = T0 - 600.0
VEHICLE = VehicleIdentity(sysid=1, boot_utc=BOOT, boot_mono=5000.0, host_boot="host-a")


def crash(root: Path, who: VehicleIdentity, now: float = T0) -> Path:
    """A run that started and was killed: its marker still says running, its lock is free."""
    ff = open_flight(root, who, now=now)
    (ff.path / "detections.jsonl").write_text('{"schema": "cropscout.detection/1", "id": "a"}\n')
    ff.release()
    return ff.path


def test_the_folder_name_is_the_utc_start_then_vehicle_and_boot_and_sorts_by_start() -> None:
    assert folder_name(T0, VehicleIdentity()) == "2026-12-07T041200Z"
    assert folder_name(T0, VEHICLE) == "2026-12-07T041200Z_sys1_boot040200Z"
    later = folder_name(T0 + 3600, VehicleIdentity(sysid=2))
    assert later == "2026-12-07T051200Z_sys2"
    assert sorted([later, folder_name(T0, VEHICLE)])[0].startswith("2026-12-07T04")
    assert all(c.isalnum() or c in "-_" for c in folder_name(T0, VEHICLE))


def test_same_flight_needs_the_same_vehicle_and_autopilot_boot() -> None:
    assert VEHICLE.same_flight(VehicleIdentity(1, BOOT + 0.2, 5000.2, "host-a"))
    assert not VEHICLE.same_flight(VehicleIdentity(2, BOOT, 5000.0, "host-a"))  # another vehicle
    assert not VEHICLE.same_flight(VehicleIdentity(1, BOOT + 900, 5900.0, "host-a"))  # the autopilot rebooted
    assert not VEHICLE.same_flight(VehicleIdentity(1, None))  # unknown: never the same flight
    assert not VehicleIdentity().same_flight(VehicleIdentity())
    # the companion's clock stepped between the crash and the restart: the monotonic boot still matches
    assert VEHICLE.same_flight(VehicleIdentity(1, BOOT + 3600, 5000.1, "host-a"))
    # the companion itself rebooted: only the wall-clock boot can be compared
    assert VEHICLE.same_flight(VehicleIdentity(1, BOOT + BOOT_MATCH_S / 2, 12.0, "host-b"))
    assert not VEHICLE.same_flight(VehicleIdentity(1, BOOT + 2 * BOOT_MATCH_S, 12.0, "host-b"))


def test_a_restart_resumes_only_an_unfinished_run_of_the_same_flight(tmp_path: Path) -> None:
    root = tmp_path / "flights"
    killed = crash(root, VEHICLE)
    assert read_marker(killed)["state"] == "running"
    # another flight (the autopilot rebooted) never joins it
    other = open_flight(root, VehicleIdentity(1, BOOT + 900, 5900.0, "host-a"), now=T0 + 1000)
    assert other.path != killed and not other.resumed
    other.finish({"frames_processed": 3})
    # an unknown vehicle never resumes anything
    unknown = open_flight(root, VehicleIdentity(host_boot="host-a"), now=T0 + 2000)
    assert unknown.path not in (killed, other.path)
    unknown.finish()
    # the same flight does, and says so in the marker
    again = open_flight(root, VehicleIdentity(1, BOOT + 0.1, 5000.1, "host-a"), now=T0 + 30)
    assert again.path == killed and again.resumed
    assert read_marker(killed)["resumes"] == 1 and (killed / "detections.jsonl").is_file()
    again.finish({"frames_processed": 7})
    marker = read_marker(killed)
    assert marker["state"] == "finished" and marker["stats"]["frames_processed"] == 7
    assert sorted(p.name for p in killed.iterdir()) == ["detections.jsonl", FLIGHT_FILE]  # no lock file left
    # a finished flight is never appended to: the same flight's next run gets a new folder
    after = open_flight(root, VEHICLE, now=T0 + 60)
    assert after.path != killed and not after.resumed
    after.release()


def test_a_folder_held_by_a_live_run_is_not_resumed(tmp_path: Path) -> None:
    live = open_flight(tmp_path, VEHICLE, now=T0)  # not released: its process is alive
    second = open_flight(tmp_path, VEHICLE, now=T0)
    assert second.path != live.path and second.path.name == live.path.name + "-2"
    with pytest.raises(ConfigError, match="another payload is writing to it"):
        open_flight_dir(live.path, VEHICLE)
    live.release()
    second.release()


def test_flight_dir_names_the_folder_continues_an_unfinished_one_and_refuses_a_finished_one(tmp_path: Path) -> None:
    folder = tmp_path / "mission"
    folder.mkdir()
    (folder / "payload.yaml").write_text("model: {}\n")  # a tool's own files beside the flight's
    ff = open_flight_dir(folder, VehicleIdentity())
    assert ff.path == folder and not ff.resumed and read_marker(folder)["state"] == "running"
    ff.release()
    again = open_flight_dir(folder, VehicleIdentity())
    assert again.resumed
    again.finish()
    with pytest.raises(ConfigError, match="never appended to.*payload export A B --out C"):
        open_flight_dir(folder, VehicleIdentity())


def test_a_failed_start_leaves_no_empty_flight(tmp_path: Path) -> None:
    ff = open_flight(tmp_path, VEHICLE, now=T0)
    ff.abandon_if_empty()
    assert list(tmp_path.iterdir()) == []
    kept = open_flight(tmp_path, VEHICLE, now=T0)
    (kept.path / "classifications.jsonl").write_text("{}\n")
    kept.abandon_if_empty()  # something was written: it stays, unfinished
    assert kept.path.is_dir() and read_marker(kept.path)["state"] == "running"


def _features(path: Path, feats: list[dict]) -> None:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))


def test_flights_lists_start_duration_area_zones_and_state(tmp_path: Path) -> None:
    done = open_flight(tmp_path, VEHICLE, now=T0)
    _features(done.path / "coverage.geojson", [{"properties": {"min_looks": 1, "area_m2": 25_000.0}},
                                               {"properties": {"min_looks": 3, "area_m2": 12_000.0}}])
    _features(done.path / "zones.geojson", [{"properties": {"id": "rust-1"}}, {"properties": {"id": "rust-2"}}])
    done.marker["started_utc"] = T0  # finish() stamps the real end: give the start a known value
    done.finish()
    marker = json.loads((done.path / FLIGHT_FILE).read_text())
    killed = crash(tmp_path, VehicleIdentity(2), now=T0 + 3600)
    live = open_flight(tmp_path, VehicleIdentity(3), now=T0 + 7200)
    legacy = tmp_path / "old_flat_output"
    legacy.mkdir()
    (legacy / "detections.jsonl").write_text("")
    (tmp_path / "notes").mkdir()  # not a flight: not listed
    (tmp_path / "detections.jsonl").write_text("")  # records of the flat layout, in the root itself

    rows = {r.folder: r for r in list_flights(tmp_path)}
    assert set(rows) == {".", done.path.name, killed.name, live.path.name, legacy.name}
    assert list_flights(tmp_path)[0].folder == "." and rows["."].state == "no marker"
    d = rows[done.path.name]
    assert (d.start, d.area_ha, d.zones, d.state, d.sysid) == ("2026-12-07T041200Z", 2.5, 2, "finished", 1)
    assert d.duration_s == pytest.approx(marker["finished_utc"] - T0, abs=0.1)
    assert rows[killed.name].state == "unfinished" and rows[killed.name].zones is None
    assert rows[live.path.name].state == "running"
    assert rows[legacy.name].state == "no marker"
    table = flights_table(list(rows.values())).splitlines()
    assert table[0].split() == ["folder", "start", "duration", "area_ha", "zones", "state", "sysid", "resumes"]
    assert any(line.startswith(done.path.name) and "2.50" in line and "finished" in line for line in table)
    live.release()
    with pytest.raises(ConfigError, match="not a folder"):
        list_flights(tmp_path / "nope")
