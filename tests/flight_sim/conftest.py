"""Shared fixtures for the simulator tests: the recorded copter flight, the example scenario, ports."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest

from flight_sim import mav
from flight_sim.scenario import Scenario, load_scenario
from flight_sim.survey import survey_timeline
from flight_sim.timeline import Timeline
from flight_sim.tlog import read_tlog

ROOT = Path(__file__).resolve().parents[2]
COPTER_TLOG = ROOT / "tests" / "data" / "flights" / "copter_sitl_2015.tlog"
WHEAT_30M = ROOT / "configs" / "scenarios" / "wheat_30m.yaml"  # the old default survey: the geometry these tests know


@pytest.fixture(scope="session")
def copter() -> Timeline:
    return read_tlog(COPTER_TLOG)


@pytest.fixture(scope="session")
def scenario() -> Scenario:
    return load_scenario(WHEAT_30M)


@pytest.fixture(scope="session")
def survey(scenario: Scenario) -> Timeline:
    return survey_timeline(scenario)


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TlogBuilder:
    """Writes hand-made tlogs: records from any system/component, bad CRCs, garbage, gaps."""

    def __init__(self, t0: float = 1_700_000_000.0) -> None:
        self.t0 = t0
        self.buf = bytearray()
        self._enc: dict[tuple[int, int], mav.Encoder] = {}

    def packet(self, sysid: int, compid: int, name: str, fields: dict) -> bytes:
        enc = self._enc.setdefault((sysid, compid), mav.Encoder(sysid, compid))
        return enc.pack(name, fields)

    def add(self, t: float, sysid: int, compid: int, name: str, fields: dict, corrupt_crc: bool = False) -> None:
        pkt = bytearray(self.packet(sysid, compid, name, fields))
        if corrupt_crc:
            pkt[-1] ^= 0xFF
        self.buf += struct.pack(">Q", int(round((self.t0 + t) * 1e6))) + pkt

    def garbage(self, data: bytes) -> None:
        self.buf += data

    def write(self, path: Path) -> Path:
        path.write_bytes(bytes(self.buf))
        return path


def heartbeat(vtype: int, autopilot: int = 3, custom_mode: int = 0, armed: bool = False) -> dict:
    return {
        "type": vtype,
        "autopilot": autopilot,
        "base_mode": 81 | (128 if armed else 0),
        "custom_mode": custom_mode,
        "system_status": 4,
        "mavlink_version": 3,
    }


def position(t: float, lat: float, lon: float, alt_m: float = 100.0) -> dict:
    return {
        "time_boot_ms": int(t * 1000),
        "lat": int(round(lat * 1e7)),
        "lon": int(round(lon * 1e7)),
        "alt": int(alt_m * 1000),
        "relative_alt": int((alt_m - 50) * 1000),
        "vx": 100,
        "vy": 0,
        "vz": 0,
        "hdg": 9000,
    }


def attitude(t: float, yaw: float = 0.5) -> dict:
    return {"time_boot_ms": int(t * 1000), "roll": 0.1, "pitch": -0.05, "yaw": yaw,
            "rollspeed": 0.0, "pitchspeed": 0.0, "yawspeed": 0.0}  # fmt: skip


def gps(t: float, lat: float, lon: float) -> dict:
    return {"time_usec": int(t * 1e6), "fix_type": 3, "lat": int(lat * 1e7), "lon": int(lon * 1e7), "alt": 100000,
            "eph": 100, "epv": 100, "vel": 100, "cog": 9000, "satellites_visible": 10}  # fmt: skip


@pytest.fixture
def tlog_builder() -> TlogBuilder:
    return TlogBuilder()
