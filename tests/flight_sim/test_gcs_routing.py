"""The simulated vehicle's ground-station link, routed as ArduPilot routes MAVLink between its ports.

A payload client (raw MAVLink 2 over TCP, speaking as a camera component of the vehicle) and a ground
station (tools/mission/gcs.py on UDP): the vehicle's stream and the client's packets reach the ground
station; the ground station's command to the camera reaches the client and is not answered by the
autopilot; its command to the autopilot is answered and not passed on, and the client's requests to the
autopilot stay off the ground station's link.
"""

from __future__ import annotations

import socket
import time

from pymavlink.dialects.v20 import ardupilotmega as mav2

from flight_sim.timeline import Timeline
from flight_sim.vehicle import VehicleEndpoint
from tests.flight_sim.conftest import free_tcp_port
from tests.waiting import wait_for
from tools.mission.gcs import GroundStation

MAV_CMD_REQUEST_MESSAGE = 512
MAV_CMD_REQUEST_AUTOPILOT_CAPABILITIES = 520


class _Out:
    def __init__(self) -> None:
        self.buf = bytearray()

    def write(self, data: bytes) -> None:
        self.buf += data


def test_payload_packets_reach_the_ground_station_and_its_commands_come_back(survey: Timeline) -> None:
    port = free_tcp_port()
    with GroundStation() as gcs:
        ep = VehicleEndpoint(survey, f"tcp:127.0.0.1:{port}", speed=5, start_s=60, end_s=70, at_end="hold",
                             gcs=gcs.url)
        with ep, socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            out = _Out()
            camera = mav2.MAVLink(out, srcSystem=survey.sysid, srcComponent=100)
            camera.heartbeat_send(30, 8, 0, 0, 4)  # MAV_TYPE_CAMERA, no autopilot
            camera.camera_image_captured_send(0, 0, 0, 474000000, 85000000, 500000, 30000, [1, 0, 0, 0], 0, 1,
                                              b"file:///crops/a.jpg")
            camera.param_request_list_send(survey.sysid, 1)  # the autopilot's business: not routed to the GCS
            client.sendall(bytes(out.buf))
            assert wait_for(lambda: gcs.received("CAMERA_IMAGE_CAPTURED"), 20.0)
            (cap,) = gcs.received("CAMERA_IMAGE_CAPTURED")
            assert (cap.get_srcSystem(), cap.get_srcComponent(), cap.lat) == (survey.sysid, 100, 474000000)
            assert wait_for(lambda: gcs.counts["GLOBAL_POSITION_INT"] > 0, 20.0)  # the vehicle's own stream
            # the ground station asked the camera who it is (it heard its heartbeat): the client gets the
            # command, the autopilot does not answer it
            parser = mav2.MAVLink(None)
            got: list = []
            client.settimeout(0.2)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not any(m.get_type() == "COMMAND_LONG" for m in got):
                try:
                    got += parser.parse_buffer(client.recv(65536)) or []
                except TimeoutError:
                    continue
            (cmd,) = [m for m in got if m.get_type() == "COMMAND_LONG"]
            assert (cmd.target_component, cmd.command, cmd.param1) == (100, MAV_CMD_REQUEST_MESSAGE, 259)
            assert ep.forwarded_to_payload["COMMAND_LONG"] == 1
            assert not [a for a in gcs.received("COMMAND_ACK") if a.command == MAV_CMD_REQUEST_MESSAGE]
            # a command to the autopilot itself is answered by it and stays off the payload's link
            assert gcs.command(survey.sysid, survey.compid, MAV_CMD_REQUEST_AUTOPILOT_CAPABILITIES, 1)
            assert wait_for(lambda: gcs.counts["AUTOPILOT_VERSION"] > 0, 20.0)
            assert ep.forwarded_to_payload["COMMAND_LONG"] == 1
            assert ep.forwarded_to_gcs["CAMERA_IMAGE_CAPTURED"] == 1 and ep.forwarded_to_gcs["HEARTBEAT"] == 1
            assert "PARAM_REQUEST_LIST" not in ep.forwarded_to_gcs and gcs.counts["PARAM_REQUEST_LIST"] == 0
            # what the payload sent is still recorded as before; the ground station's packets are not
            assert [r.name for r in ep.received()] == ["HEARTBEAT", "CAMERA_IMAGE_CAPTURED", "PARAM_REQUEST_LIST"]
