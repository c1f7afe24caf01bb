"""Helpers for the geotagging tests: frames with flagged tiles, a telemetry fed from a script."""

from __future__ import annotations

import math

import numpy as np

from payload.types import Frame, FrameResult, TileBox, TileResult
from payload.vehicle.poseinterp import StateBuffer
from payload.vehicle.samples import AttitudeSample, GpsSample, PositionSample

LABELS = ("healthy", "rust", "powdery_mildew")
HOME = (52.2053, 0.1218, 12.0)  # lat, lon, alt MSL


def frame_result(
    seq: int, t_mono: float, boxes: list[tuple[int, int, int, int]], label: str = "rust", conf: float = 0.9
) -> FrameResult:
    """A 640x480 frame whose tiles at `boxes` (x, y, w, h) are flagged `label`."""
    rng = np.random.default_rng(seq)
    pixels = rng.integers(0, 255, size=(480, 640, 3), dtype=np.uint8)
    frame = Frame(pixels=pixels, seq=seq, t_mono=t_mono, t_wall=1.79e9 + t_mono, source="test")
    scores = np.array([1 - conf, conf, 0.0]) if label == "rust" else np.array([1 - conf, 0.0, conf])
    tiles = tuple(
        TileResult(TileBox(x, y, w, h, row=i, col=i), scores, label, conf, True) for i, (x, y, w, h) in enumerate(boxes)
    )
    healthy = TileResult(TileBox(0, 0, 10, 10, 9, 9), np.array([0.9, 0.05, 0.05]), "healthy", 0.9, False)
    return FrameResult(frame=frame, tiles=tiles + (healthy,), inference_ms=5.0, backend="cpu", t_inferred_mono=t_mono)


class ScriptedTelemetry:
    """Telemetry double: a StateBuffer fed with a hover (or a flight north at north_mps), plus a STATUSTEXT recorder."""

    def __init__(
        self,
        lat: float = HOME[0],
        lon: float = HOME[1],
        alt: float = HOME[2] + 30.0,
        yaw_deg: float = 0.0,
        fix_type: int = 3,
        hdop: float = 0.8,
        attitude: tuple[float, float, float] | None = None,
        t_end: float = 10.0,
        rate_hz: float = 10.0,
        north_mps: float = 0.0,
        roll_rate_dps: float = 0.0,
    ) -> None:
        """`roll_rate_dps`: rolling at that rate through the given roll at t = 5 s (a manoeuvre around 5 s)."""
        self.buffer = StateBuffer()
        self.buffer.set_home(*HOME)
        r, p, y = attitude if attitude is not None else (0.0, 0.0, math.radians(yaw_deg))
        n = int(t_end * rate_hz) + 1
        for i in range(n):
            t = i / rate_hz
            lat_t = lat + north_mps * t / 111_195.0  # flying north (the map discounts a hover's repeated views)
            self.buffer.add_position(PositionSample(t, lat_t, lon, alt, alt - HOME[2], north_mps, 0, 0), t_rx_mono=t)
            roll = r + math.radians(roll_rate_dps) * (t - 5.0)
            self.buffer.add_attitude(AttitudeSample(t, roll, p, y), t_rx_mono=t)
            self.buffer.add_gps(GpsSample(t, fix_type, hdop, 11))
        self.statustexts: list[tuple[int, str]] = []
        self.link = True

    def state_at(self, t_mono: float):
        return self.buffer.state_at(t_mono)

    def send_statustext(self, severity: int, text: str) -> bool:
        if not self.link:
            return False
        self.statustexts.append((severity, text))
        return True

    def summary(self) -> dict:
        gps = self.buffer.latest_gps()
        return {
            "connection": "scripted",
            "link_ok": self.link,
            "connect_time_s": 0.3,
            "last_message_age_s": 0.05,
            "clock_offset_source": self.buffer.clock.source,
            "fix_type": gps.fix_type,
            "hdop": gps.hdop,
            "satellites": gps.satellites,
            "home": self.buffer.home,
        }
