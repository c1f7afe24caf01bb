"""Telemetry faults on a real loopback MAVLink link (pymavlink vehicle -> dronekit -> Telemetry -> records).

- a radio gap (the vehicle sends nothing at all, heartbeats included) of 10 s (60 s under -m slow):
  every frame is still recorded, flagged pose_stale with the pose age, and the link comes back by
  itself afterwards (records trusted again);
- GPS fix loss: records flagged no_fix while it lasts;
- hostile traffic: random bytes, corrupted MAVLink packets and a second vehicle with another system id
  (spoofing our position from 1 km away) on the same port: no crash, and with telemetry.vehicle_sysid
  set only our vehicle's position is used.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pymap3d
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payload.config import PayloadConfig, TelemetrySection
from payload.files.jsonl import read_jsonl
from payload.pipeline.geotag import GeotagHandler
from payload.vehicle.telemetry import Telemetry
from tests.mavtestvehicle import MavTestVehicle, VehicleState, free_udp_port
from tests.payload.geotagdoubles import LABELS, frame_result
from tests.payload.test_telemetry_link import HOME, straight_flight
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(200)
BOXES = [(0, 0, 64, 64), (288, 208, 64, 64)]


class CuttableVehicle(MavTestVehicle):
    """The loopback vehicle with a radio that can be cut: while `cut`, nothing at all is sent."""

    cut = False

    def _send(self, msg) -> None:
        if not self.cut:
            super()._send(msg)


def _cfg(tmp_path: Path) -> PayloadConfig:
    return PayloadConfig.model_validate({"model": {"bundle": str(tmp_path / "b")},
                                         "output": {"dir": str(tmp_path / "out")},
                                         "sinks": {"layers_interval_s": 3600}, "alerts": {"enabled": False}})


def _run_gap(tmp_path: Path, gap_s: float) -> None:
    port = free_udp_port()
    vehicle = CuttableVehicle(port, straight_flight, home=HOME, rate_hz=4.0, boot_offset_s=731.0).start()
    tel = Telemetry(TelemetrySection(connection=f"udp:127.0.0.1:{port}", connect_timeout_s=10.0, link_timeout_s=1.0,
                                     reconnect_max_s=1.0))
    handler = None
    try:
        tel.start()
        assert wait_for(lambda: tel.buffer.home is not None and tel.buffer.counts()["position"] >= 6, 10.0)
        handler = GeotagHandler(_cfg(tmp_path), labels=LABELS, model_sha256="ab" * 32, telemetry=tel)
        seq = 0
        phases: dict[int, str] = {}

        def frames_for(seconds: float, phase: str, until=None) -> float:
            nonlocal seq
            t0 = time.monotonic()
            while time.monotonic() - t0 < seconds:
                handler.handle(frame_result(seq, time.monotonic() - 0.05, BOXES))
                phases[seq] = phase
                seq += 1
                if until is not None and until():
                    return time.monotonic() - t0
                time.sleep(0.25)
            return time.monotonic() - t0

        frames_for(2.0, "before")
        vehicle.cut = True
        t_cut = time.monotonic()
        frames_for(gap_s, "gap")
        vehicle.cut = False
        lost_after = tel.link_lost_count

        def trusted_again() -> bool:
            recs = read_jsonl(handler.out_dir / "detections.jsonl").records
            return bool(recs) and recs[-1]["trusted"]

        back_s = frames_for(30.0, "return", trusted_again)
        frames_for(1.5, "after")
        # GPS fix lost for 2 s
        vehicle.fix_type = 1
        assert wait_for(lambda: (g := tel.buffer.latest_gps()) is not None and g.fix_type == 1, 3.0)
        frames_for(2.0, "nofix")
        vehicle.fix_type = 3
        assert wait_for(lambda: (g := tel.buffer.latest_gps()) is not None and g.fix_type == 3, 3.0)
        frames_for(0.6, "fix_returning")  # frames captured while the last no-fix sample is current
        frames_for(1.0, "fix")
        handler.close()
        recs = [r for r in read_jsonl(handler.out_dir / "detections.jsonl").records
                if r.get("schema") == "cropscout.detection/1"]  # besides the map's look records
        assert len(recs) == seq * len(BOXES)  # every frame recorded, none dropped for want of a pose
        by = {ph: [r for r in recs if phases[r["frame"]["seq"]] == ph] for ph in set(phases.values())}
        untrusted = [(phases[r["frame"]["seq"]], r["frame"]["seq"], r["flags"]) for r in by["before"] + by["after"]
                     + by["fix"] if not r["trusted"]]
        assert not untrusted, untrusted
        gap = by["gap"]
        stale = [r for r in gap if "pose_stale" in r["flags"] or "no_telemetry" in r["flags"]]
        assert len(stale) >= len(gap) - 2 * 2 * len(BOXES)  # all but the first ~max_pose_age of the gap
        ages = [r["pose"]["age_s"] for r in stale if r["pose"] is not None]
        assert ages and max(ages) > gap_s - 2.0  # the record says how old its pose is
        assert all(not r["trusted"] for r in stale)
        assert any("no_fix" in r["flags"] for r in by["nofix"])
        assert lost_after >= 1 and tel.link_ok
        if gap_s > 2 * tel.cfg.link_timeout_s + 1:
            assert tel.reconnect_count >= 1  # the supervisor reopened the link by itself
        assert back_s < 20.0
        print(f"TELEMETRY GAP {gap_s:.0f} s: {seq} frames, {len(recs)} detections, 0 lost, {len(stale)} flagged "
              f"stale (max pose age {max(ages):.1f} s), link back and records trusted {back_s:.2f} s after the "
              f"radio returned (gap measured {time.monotonic() - t_cut:.0f} s incl. later phases); "
              f"link_lost {tel.link_lost_count}, reconnects {tel.reconnect_count}")
    finally:
        if handler is not None:
            handler.close()
        tel.close()
        vehicle.stop()


def test_telemetry_gap_10s_then_back(tmp_path: Path) -> None:
    _run_gap(tmp_path, 10.0)


@pytest.mark.slow
def test_telemetry_gap_60s_then_back(tmp_path: Path) -> None:
    _run_gap(tmp_path, 60.0)


def far_away(t_boot: float) -> VehicleState:
    """A spoofed track 1 km north of ours."""
    s = straight_flight(t_boot)
    lat, lon, alt = pymap3d.enu2geodetic(0.0, 1000.0, 0.0, s.lat, s.lon, s.alt)
    return VehicleState(float(lat), float(lon), float(alt), s.vn, s.ve, s.vd, s.roll, s.pitch, s.yaw)


def _junk_sender(port: int, stop: threading.Event, counts: dict[str, int]) -> None:
    """Random bytes, MAVLink-looking frames with bad CRCs, truncated and oversized packets."""
    from pymavlink.dialects.v20 import ardupilotmega as mav2

    rng = np.random.default_rng(1234)
    enc = mav2.MAVLink(None, srcSystem=1, srcComponent=1)  # OUR system id, but broken packets
    good = enc.global_position_int_encode(1, 0, 0, 0, 0, 0, 0, 0, 0).pack(enc)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        while not stop.is_set():
            kind = int(rng.integers(0, 5))
            if kind == 0:
                data = rng.integers(0, 256, int(rng.integers(1, 600)), dtype=np.uint8).tobytes()
            elif kind == 1:  # bit flips in a valid packet
                b = bytearray(good)
                # 1-3 distinct bits (CRC-16 catches them all; flipping one bit twice would send a VALID
                # packet from our own system id, which no receiver can tell from the real thing)
                for bit in rng.choice(len(b) * 8, size=int(rng.integers(1, 4)), replace=False):
                    b[int(bit) // 8] ^= 1 << (int(bit) % 8)
                data = bytes(b)
            elif kind == 2:  # truncated
                data = good[: int(rng.integers(1, len(good)))]
            elif kind == 3:  # STX + huge length + junk
                data = bytes([0xFD, 0xFF]) + rng.integers(0, 256, 300, dtype=np.uint8).tobytes()
            else:  # v1 magic with garbage
                data = bytes([0xFE]) + rng.integers(0, 256, int(rng.integers(1, 300)), dtype=np.uint8).tobytes()
            try:
                s.sendto(data, ("127.0.0.1", port))
                counts["sent"] = counts.get("sent", 0) + 1
            except OSError:
                pass
            stop.wait(0.002)


def test_spoofed_system_and_junk_bytes_are_ignored(tmp_path: Path) -> None:
    port = free_udp_port()
    # the spoofer starts first, so its HEARTBEAT is the first one the payload hears
    spoofer = MavTestVehicle(port, far_away, home=HOME, rate_hz=8.0, boot_offset_s=731.0, sysid=66).start()
    time.sleep(0.5)
    vehicle = MavTestVehicle(port, straight_flight, home=HOME, rate_hz=4.0, boot_offset_s=731.0, sysid=1).start()
    stop = threading.Event()
    counts: dict[str, int] = {}
    junk = threading.Thread(target=_junk_sender, args=(port, stop, counts), daemon=True)
    tel = Telemetry(TelemetrySection(connection=f"udp:127.0.0.1:{port}", connect_timeout_s=30.0, link_timeout_s=1.0,
                                     vehicle_sysid=1))
    try:
        junk.start()
        tel.start()
        assert wait_for(lambda: tel.buffer.counts()["position"] >= 12, 15.0)
        t_end = time.monotonic() + 4.0
        worst = 0.0
        n = 0
        while time.monotonic() < t_end:
            t = time.monotonic() - 0.1
            est = tel.state_at(t)
            assert est is not None
            truth = straight_flight(vehicle.boot_s(t))
            e, nn, _ = pymap3d.geodetic2enu(est.pose.lat_deg, est.pose.lon_deg, truth.alt, truth.lat, truth.lon,
                                             truth.alt)
            worst = max(worst, math.hypot(e, nn))
            n += 1
            time.sleep(0.1)
        assert tel.link_ok
        # the README's figure is 0.01 m (measured here under load too); 10x that still fails on a single
        # spoofed pose (1 km off) or a clock-sync slip of ~20 ms, and never on a slow machine
        assert worst < 0.1, f"a pose came from the spoofer or the clock sync slipped: {worst:.2f} m off"
        assert counts.get("sent", 0) > 500
        print(f"HOSTILE LINK: {counts['sent']} junk datagrams + a sysid-66 spoofer; {n} poses checked, worst "
              f"{worst:.2f} m from our vehicle's truth; link ok")
    finally:
        stop.set()
        junk.join(5)
        tel.close()
        vehicle.stop()
        spoofer.stop()


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(junk=st.lists(st.one_of(st.binary(min_size=1, max_size=300),
                               st.binary(max_size=300).map(lambda b: b"\xfd\xff" + b),
                               st.binary(max_size=60).map(lambda b: b"\xfe" + b)), min_size=1, max_size=5))
def test_no_junk_datagram_swallows_the_next_good_packet(junk: list[bytes]) -> None:
    """Property of the UDP framing fix: whatever junk datagrams come first, the HEARTBEAT datagram that
    follows them is parsed (before the fix a datagram starting 0xFD 0xFF ate the next ~280 bytes)."""
    from types import SimpleNamespace

    from pymavlink import mavutil

    from payload.vehicle.mavpatch import frame_udp_datagrams

    master = mavutil.mavlink_connection("udpin:127.0.0.1:0", source_system=255)
    try:
        port = master.port.getsockname()[1]
        assert frame_udp_datagrams(SimpleNamespace(_handler=SimpleNamespace(master=master)))
        enc = mavutil.mavlink.MAVLink(None, srcSystem=1, srcComponent=1)
        hb = enc.heartbeat_encode(2, 3, 0, 0, 4).pack(enc)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for j in junk:
                s.sendto(j, ("127.0.0.1", port))
            s.sendto(hb, ("127.0.0.1", port))
        got = None
        deadline = time.monotonic() + 3.0
        while got is None and time.monotonic() < deadline:
            try:
                m = master.recv_match(type="HEARTBEAT", blocking=True, timeout=0.2)
            except mavutil.mavlink.MAVError:
                continue
            if m is not None and m.get_srcSystem() == 1:
                got = m
        assert got is not None, "the HEARTBEAT after the junk was swallowed"
    finally:
        master.close()


def test_udp_client_addresses_can_grow_while_a_send_is_under_way() -> None:
    """The race behind a connect timeout under junk traffic: pymavlink's UDP server write() loops
    over the client addresses while its receive side adds new ones."""
    from types import SimpleNamespace

    from pymavlink import mavutil

    from payload.vehicle.mavpatch import frame_udp_datagrams

    master = mavutil.mavlink_connection("udpin:127.0.0.1:0")
    try:
        plain = {("127.0.0.1", 1)}
        with pytest.raises(RuntimeError):  # what pymavlink's own set does
            for _ in plain:
                plain.add(("127.0.0.1", 2))
        assert frame_udp_datagrams(SimpleNamespace(_handler=SimpleNamespace(master=master)))
        master.clients.add(("127.0.0.1", 1))
        for i, _ in enumerate(master.clients):
            master.clients.add(("127.0.0.1", 100 + i))  # a new sender arrives mid-write
        assert len(master.clients) == 2
        master.clients -= {("127.0.0.1", 1)}  # write() prunes dead clients in place
        assert master.clients == {("127.0.0.1", 100)} and type(master.clients).__name__ == "SnapshotSet"
        master.write(b"\\xfe")  # sends to every live client without raising
    finally:
        master.close()
