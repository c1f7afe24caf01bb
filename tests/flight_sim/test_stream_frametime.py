"""Frame time on the simulated camera's stream: every part says when it was exposed, and arrives later.

The payload cannot read these headers (OpenCV drops them); the mission does, to score the payload's
stamps. So the tests read the raw multipart stream the way the mission's truth is built.
"""

from __future__ import annotations

import socket
import time
import urllib.request
from urllib.parse import urlparse

import numpy as np
import pytest

from flight_sim.clock import SimClock
from flight_sim.scenario import Scenario
from flight_sim.sim import Simulation
from flight_sim.stream import CameraStreamer, MjpegServer, SimCamera
from tests.flight_sim.conftest import free_udp_port

BOOT_OFFSET_S = 1234.5  # the fake vehicle's boot clock reads monotonic + this


def _grey(_t: float) -> np.ndarray:
    return np.full((48, 64, 3), 90, np.uint8)


def read_parts(url: str, n: int, timeout_s: float = 15.0) -> list[tuple[dict[str, str], float]]:
    """The first n parts of an MJPEG stream: each part's headers and the monotonic time it was read."""
    u = urlparse(url)
    sock = socket.create_connection((u.hostname, u.port), timeout=timeout_s)
    sock.sendall(f"GET {u.path} HTTP/1.0\r\nHost: {u.hostname}\r\n\r\n".encode("ascii"))
    buf = b""
    parts: list[tuple[dict[str, str], float]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(parts) < n and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
            while True:
                start = buf.find(b"--cropscoutframe\r\n")
                end = buf.find(b"\r\n\r\n", start) if start >= 0 else -1
                if end < 0:
                    break
                lines = buf[start:end].decode("ascii").split("\r\n")[1:]
                headers = dict(line.split(": ", 1) for line in lines)
                body_end = end + 4 + int(headers["Content-Length"])
                if len(buf) < body_end:
                    break
                parts.append((headers, time.monotonic()))
                buf = buf[body_end:]
    finally:
        sock.close()
    return parts


def _streamer(latency_s: float, fps: float = 20.0) -> tuple[MjpegServer, CameraStreamer]:
    clock = SimClock(1.0, 0.0, 600.0)
    clock.begin()
    server = MjpegServer().start()
    streamer = CameraStreamer(SimCamera(_grey), clock, server, fps, latency_s=latency_s,
                              boot_clock=lambda mono: mono + BOOT_OFFSET_S)
    return server, streamer.start()


def test_every_part_carries_its_index_and_exposure_time_in_order() -> None:
    server, streamer = _streamer(0.0)
    try:
        parts = read_parts(server.url, 8)
    finally:
        streamer.stop()
        server.stop()
    assert len(parts) == 8
    index = [int(h["X-Frame-Index"]) for h, _ in parts]
    exposure = [float(h["X-Exposure-Time"]) for h, _ in parts]
    assert all(b > a for a, b in zip(index, index[1:], strict=False)), index
    assert all(b > a for a, b in zip(exposure, exposure[1:], strict=False)), exposure
    # the exposure time is the vehicle's boot clock at the exposure, and no part arrives before it
    served = {f.index: f for f in server.served}
    for (h, read_mono), i in zip(parts, index, strict=True):
        f = served[i]
        assert float(h["X-Exposure-Time"]) == pytest.approx(f.exposure_mono + BOOT_OFFSET_S, abs=1e-5)
        assert f.exposure_mono <= f.delivered_mono <= read_mono
    # one connection, and its log lists exactly the parts the client read, in order
    assert server.connections and server.connections[0][: len(index)] == index


def test_latency_holds_each_frame_back_and_keeps_the_order() -> None:
    """0.25 s of latency at 20 fps keeps about five frames in flight; each is delivered no sooner than
    exposure + 0.25 s (the bound above is generous: a loaded machine may be late, never early)."""
    latency = 0.25
    server, streamer = _streamer(latency)
    try:
        parts = read_parts(server.url, 10)
    finally:
        streamer.stop()
        server.stop()
    assert len(parts) == 10
    served = {f.index: f for f in server.served}
    index = [int(h["X-Frame-Index"]) for h, _ in parts]
    assert all(b > a for a, b in zip(index, index[1:], strict=False)), index
    for (h, read_mono), i in zip(parts, index, strict=True):
        f = served[i]
        assert latency <= f.delivered_mono - f.exposure_mono < latency + 1.0
        assert read_mono - f.exposure_mono >= latency  # as the client sees it
        assert float(h["X-Exposure-Time"]) == pytest.approx(f.exposure_mono + BOOT_OFFSET_S, abs=1e-5)
    delays = [served[i].delivered_mono - served[i].exposure_mono for i in index]
    # without the delay line the same frames arrive well inside the latency
    server0, streamer0 = _streamer(0.0)
    try:
        parts0 = read_parts(server0.url, 10)
    finally:
        streamer0.stop()
        server0.stop()
    served0 = {f.index: f for f in server0.served}
    delays0 = [served0[int(h["X-Frame-Index"])].delivered_mono - served0[int(h["X-Frame-Index"])].exposure_mono
               for h, _ in parts0]
    assert float(np.median(delays0)) < float(np.median(delays)) - 0.5 * latency


def test_negative_latency_is_refused() -> None:
    clock = SimClock(1.0, 0.0, 10.0)
    with MjpegServer() as server, pytest.raises(ValueError, match="negative"):
        CameraStreamer(SimCamera(_grey), clock, server, 5.0, latency_s=-0.1)


def test_the_simulation_stamps_the_vehicle_boot_clock_and_delays_by_the_scenario(scenario: Scenario) -> None:
    f = scenario.field.model_copy(update={"width_m": 60.0, "height_m": 40.0})
    cam = scenario.camera.model_copy(update={"latency_s": 0.1, "width": 160, "height": 120})
    small = scenario.model_copy(update={"field": f, "patches": [scenario.patches[0]], "camera": cam})
    sim = Simulation.survey(small, f"udp:127.0.0.1:{free_udp_port()}", speed=1.0, camera_port=0, start_s=60.0)
    with sim:
        assert sim.streamer is not None and sim.streamer.latency_s == pytest.approx(0.1)
        assert sim.camera_url is not None
        with urllib.request.urlopen(sim.camera_url.replace("stream.mjpg", "frame.jpg"), timeout=10) as resp:
            resp.read()
            index = int(resp.headers["X-Frame-Index"])
            exposure = float(resp.headers["X-Exposure-Time"])
        assert sim.server is not None
        served = next(s for s in sim.server.served if s.index == index)
        assert exposure == pytest.approx(sim.vehicle.boot_s_now(served.exposure_mono), abs=1e-4)
        assert served.delivered_mono - served.exposure_mono >= 0.1


def test_the_payloads_reader_gets_every_part_of_its_connection_in_order() -> None:
    """What the mission's scoring rests on: the payload's OpenCV source reads every part of its connection,
    in order, so its frame k is the k-th part sent there. Each frame's pixels carry its true index here,
    and the stamp error the mission computes is the delivery delay the payload did not take off."""
    from itertools import count

    from payload.capture.sources import OpenCVSource
    from payload.geo.looks import LOOK_SCHEMA
    from tools.mission.frametime import camera_truth, stamp_errors

    latency = 0.1
    clock = SimClock(1.0, 0.0, 600.0)
    clock.begin()
    results = {}
    for payload_latency in (0.0, latency):
        n = count(1)  # the streamer's index of the frame being rendered

        def numbered(_t: float, n: count = n) -> np.ndarray:
            return np.full((48, 64, 3), next(n) * 8, np.uint8)

        server = MjpegServer().start()
        streamer = CameraStreamer(SimCamera(numbered), clock, server, 10.0, latency_s=latency,
                                  boot_clock=lambda mono: mono + BOOT_OFFSET_S).start()
        src = OpenCVSource(server.url)
        src.latency_s = payload_latency
        frames = []
        try:
            src.open()
            for _ in range(12):
                f = src.read()
                assert f is not None
                frames.append(f)
        finally:
            src.close()
            streamer.stop()
            server.stop()
        truth = camera_truth(server, latency)
        sent = truth["connections"][0]
        for f in frames:  # pixel value = index * 8: the part the payload holds is the one the log says
            assert int(round(float(f.pixels.mean()) / 8)) == sent[f.seq]
        looks = [{"schema": LOOK_SCHEMA, "frame": {"seq": f.seq, "t_boot_s": f.t_mono + BOOT_OFFSET_S}}
                 for f in frames]
        err, unmatched = stamp_errors(looks, truth)
        assert unmatched == 0 and err.size == 12
        results[payload_latency] = float(np.median(err))
    # not told: stamped at least the camera's latency late; told: within a few milliseconds of delivery jitter
    assert results[0.0] >= latency
    assert abs(results[latency]) < 0.05
