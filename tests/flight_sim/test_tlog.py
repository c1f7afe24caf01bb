"""The tlog reader: the recorded copter flight, mixed links, bad CRCs, gaps, and every bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from flight_sim.errors import TlogError
from flight_sim.timeline import Timeline
from flight_sim.tlog import read_tlog, write_tlog
from tests.flight_sim.conftest import COPTER_TLOG, TlogBuilder, attitude, gps, heartbeat, position

PLANE, COPTER, GCS, GIMBAL = 1, 2, 6, 26


def test_copter_flight_is_read_with_its_bad_crc_packets_skipped_and_counted(copter: Timeline) -> None:
    assert copter.sysid == 1 and copter.compid == 1
    assert copter.vehicle_type == COPTER and copter.autopilot == 3
    assert copter.bad_crc == 1314
    assert copter.bad_crc_by_msgid == {142: 1314}
    assert len(copter.params) == 491
    assert len({p.name for p in copter.params}) == 491
    counts = {n: len(copter.of(n)) for n in copter.names()}
    assert counts["GLOBAL_POSITION_INT"] == 2833 and counts["ATTITUDE"] == 2829 and counts["MOUNT_STATUS"] == 2825
    assert counts["HEARTBEAT"] == 1047  # the autopilot's only: the GCS's 1,374 heartbeats are not the vehicle's
    assert 1000 < copter.duration < 1100
    times = [e.t for e in copter.events]
    assert times == sorted(times)
    assert any("truncated" in n for n in copter.notes)  # the reference file's last record is cut short


def test_home_is_synthesised_at_arming_when_the_log_has_none(copter: Timeline) -> None:
    homes = copter.of("HOME_POSITION")
    assert homes, "dronekit's home_location needs HOME_POSITION"
    armed_t = next(e.t for e in copter.of("HEARTBEAT") if e.fields["base_mode"] & 128)
    assert homes[0].t >= armed_t - 1e-6
    before = [e for e in copter.of("GLOBAL_POSITION_INT") if e.t <= armed_t and e.fields["lat"] != 0][-1]
    assert homes[0].fields["latitude"] == before.fields["lat"]
    assert homes[0].fields["longitude"] == before.fields["lon"]


def test_true_track_is_the_fit_through_the_recorded_samples(copter: Timeline) -> None:
    # between samples the pose is the fitted trajectory's (tests/flight_sim/test_trajectory.py)
    pos = [e for e in copter.of("GLOBAL_POSITION_INT") if e.fields["lat"] != 0]
    a, b = pos[500], pos[501]
    assert copter.fit is not None
    mid = copter.pose_at((a.t + b.t) / 2)
    assert mid.lat_deg == pytest.approx(float(copter.fit.position_at((a.t + b.t) / 2)[0][0]), abs=1e-12)
    assert mid.lat_deg == pytest.approx((a.fields["lat"] + b.fields["lat"]) / 2e7, abs=5e-7)  # metres, not more
    assert copter.pose_at(a.t).lon_deg == pytest.approx(a.fields["lon"] / 1e7, abs=1e-12)


def test_written_tlog_replays_identically(copter: Timeline, tmp_path: Path) -> None:
    back = read_tlog(write_tlog(copter, tmp_path / "copy.tlog"))
    assert back.events == copter.events
    assert back.params == copter.params
    assert back.bad_crc == 0 and not back.notes  # the copy has HOME_POSITION, intact CRCs, no truncation


def _mixed_link(b: TlogBuilder) -> None:
    """GCS + gimbal heartbeats, a plane (sysid 2) and a copter (sysid 3), a 6 s gap, bad CRCs, garbage."""
    for k in range(30):
        t = float(k)
        if k in range(10, 16):
            continue  # a 6-second hole in the recording (radio out of range)
        b.add(t, 255, 190, "HEARTBEAT", heartbeat(GCS, autopilot=8))
        b.add(t + 0.01, 2, 154, "HEARTBEAT", heartbeat(GIMBAL, autopilot=8))
        b.add(t + 0.02, 2, 1, "HEARTBEAT", heartbeat(PLANE, custom_mode=10, armed=True))
        b.add(t + 0.03, 3, 1, "HEARTBEAT", heartbeat(COPTER, custom_mode=3, armed=True))
        for sysid, lat in ((2, -35.1), (3, -35.2)):
            b.add(t + 0.1, sysid, 1, "GLOBAL_POSITION_INT", position(t, lat + k * 1e-5, 149.1))
            b.add(t + 0.2, sysid, 1, "ATTITUDE", attitude(t))
            b.add(t + 0.3, sysid, 1, "GPS_RAW_INT", gps(t, lat, 149.1))
        b.add(t + 0.4, 2, 1, "SYS_STATUS", {}, corrupt_crc=True)
        if k == 20:
            b.garbage(b"\x00\x13garbage from a serial glitch\xff" * 3)
    b.add(30.0, 2, 1, "PARAM_VALUE", {"param_id": "TRIM_ARSPD_CM", "param_value": 1500.0, "param_type": 9,
                                       "param_count": 1, "param_index": 0})  # fmt: skip


def test_mixed_link_picks_the_first_autopilot_and_keeps_gaps(tlog_builder: TlogBuilder, tmp_path: Path) -> None:
    _mixed_link(tlog_builder)
    p = tlog_builder.write(tmp_path / "mixed.tlog")
    tl = read_tlog(p)
    assert (tl.sysid, tl.compid, tl.vehicle_type) == (2, 1, PLANE)
    assert tl.bad_crc == 24
    assert any("garbage" in n for n in tl.notes)
    assert [p.name for p in tl.params] == ["TRIM_ARSPD_CM"]
    hb = tl.of("HEARTBEAT")
    assert {e.fields["type"] for e in hb} == {PLANE}  # neither GCS, gimbal nor the other vehicle
    assert all(e.fields["lat"] < -35.09e7 for e in tl.of("GLOBAL_POSITION_INT"))
    gaps = [b.t - a.t for a, b in zip(hb, hb[1:], strict=False)]
    assert max(gaps) == pytest.approx(7.0, abs=1e-6)
    other = read_tlog(p, sysid=3)
    assert other.vehicle_type == COPTER and other.sysid == 3


def test_default_parameters_when_none_were_recorded(tlog_builder: TlogBuilder, tmp_path: Path) -> None:
    _mixed_link(tlog_builder)
    tl = read_tlog(tlog_builder.write(tmp_path / "mixed.tlog"), sysid=3)
    names = [p.name for p in tl.params]
    assert "SYSID_THISMAV" in names and "FRAME_CLASS" in names
    assert any("default parameters" in n for n in tl.notes)


def test_unknown_sysid_lists_the_autopilots(tlog_builder: TlogBuilder, tmp_path: Path) -> None:
    _mixed_link(tlog_builder)
    p = tlog_builder.write(tmp_path / "mixed.tlog")
    with pytest.raises(TlogError, match=r"no autopilot with system id 9.*autopilots seen: 2, 3"):
        read_tlog(p, sysid=9)


def test_not_a_tlog(tmp_path: Path) -> None:
    text = tmp_path / "notes.tlog"
    text.write_text("this is a text file, not a telemetry log\n" * 20)
    with pytest.raises(TlogError, match="not a telemetry log") as info:
        read_tlog(text)
    assert str(text) in str(info.value)
    bin_log = tmp_path / "00000001.BIN"
    bin_log.write_bytes(b"\xa3\x95\x80\x80" + bytes(200))
    with pytest.raises(TlogError, match="DataFlash"):
        read_tlog(bin_log)
    with pytest.raises(TlogError, match="file not found"):
        read_tlog(tmp_path / "missing.tlog")


def test_truncated_file(tmp_path: Path) -> None:
    cut = tmp_path / "cut.tlog"
    cut.write_bytes(COPTER_TLOG.read_bytes()[:3001])
    with pytest.raises(TlogError, match="truncated") as info:
        read_tlog(cut)
    msg = str(info.value)
    assert str(cut) in msg and "of 3001 is cut short" in msg and "not a usable flight" in msg, msg


def test_truncated_tail_of_a_usable_log_is_replayed_with_a_note(tmp_path: Path) -> None:
    data = COPTER_TLOG.read_bytes()
    cut = tmp_path / "cut.tlog"
    cut.write_bytes(data[: len(data) // 2 + 7])
    tl = read_tlog(cut)
    assert any("truncated" in n for n in tl.notes)
    assert 400 < tl.duration < 700


def test_no_position_messages(tlog_builder: TlogBuilder, tmp_path: Path) -> None:
    for k in range(5):
        tlog_builder.add(k, 1, 1, "HEARTBEAT", heartbeat(COPTER))
        tlog_builder.add(k + 0.1, 1, 1, "ATTITUDE", attitude(k))
    with pytest.raises(TlogError, match="no GLOBAL_POSITION_INT messages from system 1"):
        read_tlog(tlog_builder.write(tmp_path / "nopos.tlog"))


def test_no_fix_ever(tlog_builder: TlogBuilder, tmp_path: Path) -> None:
    for k in range(5):
        tlog_builder.add(k, 1, 1, "HEARTBEAT", heartbeat(COPTER))
        tlog_builder.add(k + 0.1, 1, 1, "ATTITUDE", attitude(k))
        tlog_builder.add(k + 0.2, 1, 1, "GPS_RAW_INT", gps(k, 0, 0))
        tlog_builder.add(k + 0.3, 1, 1, "GLOBAL_POSITION_INT", position(k, 0, 0))
    with pytest.raises(TlogError, match="never has a position fix"):
        read_tlog(tlog_builder.write(tmp_path / "nofix.tlog"))


def test_no_autopilot(tlog_builder: TlogBuilder, tmp_path: Path) -> None:
    for k in range(5):
        tlog_builder.add(k, 255, 190, "HEARTBEAT", heartbeat(GCS, autopilot=8))
        tlog_builder.add(k + 0.5, 1, 1, "GLOBAL_POSITION_INT", position(k, -35, 149))
    with pytest.raises(TlogError, match=r"no autopilot in this log.*255/190 \(type 6"):
        read_tlog(tlog_builder.write(tmp_path / "gcs_only.tlog"))


def test_mavlink2_log_is_read(tmp_path: Path) -> None:
    """MAVLink 2 packets (with extension fields and v2-only messages) are read; the replay sends v1 fields."""
    import struct

    from pymavlink.dialects.v20 import ardupilotmega as m2

    class Sink:
        def __init__(self) -> None:
            self.buf = bytearray()

        def write(self, b: bytes) -> None:
            self.buf += b

    sink = Sink()
    enc = m2.MAVLink(sink, srcSystem=7, srcComponent=1)
    out = bytearray()

    def rec(t: float, msg: object) -> None:
        enc.send(msg)
        out.extend(struct.pack(">Q", int((1_700_000_000 + t) * 1e6)) + bytes(sink.buf))
        sink.buf.clear()

    for k in range(5):
        rec(k, enc.heartbeat_encode(19, 3, 209, 3, 4, 3))  # a VTOL (MAV_TYPE_VTOL_TAILSITTER_DUOROTOR)
        rec(k + 0.1, enc.global_position_int_encode(k * 1000, -351234567, 1491234567, 600000, 20000, 0, 0, 0, 0))
        rec(k + 0.2, enc.attitude_encode(k * 1000, 0.1, 0.2, 0.3, 0, 0, 0))
        rec(k + 0.3, enc.gps_raw_int_encode(k, 3, -351234567, 1491234567, 600000, 100, 100, 0, 0, 9, alt_ellipsoid=5))
        rec(k + 0.4, enc.open_drone_id_system_update_encode(0, 0, 0, 0, 0, 0))  # id 12919: v2 only, ignored
    p = tmp_path / "v2.tlog"
    p.write_bytes(bytes(out))
    tl = read_tlog(p)
    assert (tl.sysid, tl.vehicle_type) == (7, 19)
    assert tl.of("GLOBAL_POSITION_INT")[0].fields["lat"] == -351234567
    assert "alt_ellipsoid" not in tl.of("GPS_RAW_INT")[0].fields
    assert tl.bad_crc == 0
