"""MAVSDK, an independent client, sees the payload's camera and its captured points.

MAVSDK (`mavsdk<4`, its mavsdk_server from the wheel) listens where a ground station would, on the
vehicle's second link (LiveVehicle routes as ArduPilot does). Its server opens the gRPC port only after it
has seen a system, so the vehicle starts first. MAVSDK finds the camera from its heartbeat and
CAMERA_INFORMATION, and its camera plugin's `capture_info()` stream yields what the payload sent.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from mavsdk import System

from tests.mavtestvehicle import MavTestVehicle, free_udp_port
from tests.payload.test_camproto import _camera_link, _det
from tests.payload.test_telemetry_link import HOME, straight_flight

pytestmark = pytest.mark.timeout(240)


def _free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _first_capture(drone, sink, timeout_s: float) -> list:
    """Subscribe to capture_info, then send points until MAVSDK reports two (a subscription may start late)."""
    got: list = []

    async def collect() -> None:
        async for info in drone.camera.capture_info():
            got.append(info)
            if len(got) >= 2:
                return

    task = asyncio.ensure_future(collect())
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not task.done() and loop.time() < deadline:
            sink.on_record(_det(), None)  # a detection at a time: 0 s rate limit in this test
            await asyncio.sleep(1.0)
        return got
    finally:
        task.cancel()


async def _camera_list(drone, timeout_s: float) -> list:
    async def first() -> list:
        async for cams in drone.camera.camera_list():
            if cams.cameras:
                return list(cams.cameras)
        return []

    return await asyncio.wait_for(first(), timeout_s)


def test_mavsdk_receives_the_cameras_capture_info(tmp_path: Path) -> None:
    gcs_port, port = free_udp_port(), free_udp_port()
    with MavTestVehicle(port, straight_flight, home=HOME, rate_hz=4.0, gcs_port=gcs_port):
        tel, sink = _camera_link(tmp_path, port)
        sink.s = sink.s.model_copy(update={"detection_min_interval_s": 0.0})
        drone = System(port=_free_tcp_port())

        async def run() -> tuple[list, list]:
            await drone.connect(system_address=f"udpin://127.0.0.1:{gcs_port}")
            async def connected() -> None:
                async for state in drone.core.connection_state():
                    if state.is_connected:
                        return
            await asyncio.wait_for(connected(), 60.0)
            cams = await _camera_list(drone, 60.0)
            infos = await _first_capture(drone, sink, 60.0)
            return cams, infos

        try:
            cams, infos = asyncio.run(run())
        finally:
            drone._stop_mavsdk_server()
            sink.on_close()
            tel.close()
    assert [c.component_id for c in cams] == [100], cams
    assert "CropScout ab12cd34" in cams[0].model_name, cams[0]
    assert len(infos) >= 2, infos
    first = infos[0]
    assert first.component_id == 100 and first.is_success
    assert first.position.latitude_deg == pytest.approx(47.4, abs=1e-6)
    assert first.position.longitude_deg == pytest.approx(8.5, abs=1e-6)
    assert first.file_url.endswith("crops/a.jpg")
    assert infos[1].index == first.index + 1
