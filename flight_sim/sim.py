"""One call to start a simulated flight: the MAVLink vehicle and (with a scenario) its camera stream.

A mission runner does:

    from flight_sim.sim import Simulation
    sim = Simulation.survey("configs/scenarios/default.yaml", out="tcp:127.0.0.1:5760", speed=5).start()
    # payload: dronekit.connect("tcp:127.0.0.1:5760", wait_ready=True); cv2.VideoCapture(sim.camera_url)
    sim.wait_done(timeout=...)   # or poll sim.sim_time / sim.finished
    sim.stop()

Vehicle and camera share one SimClock, so the frame exposed at any moment is rendered at the pose
the vehicle is reporting at that moment; each part of the stream carries its exposure time on the
vehicle's boot clock, and is delivered `camera.latency_s` after it (the camera uses the TRUE pose; the telemetry carries
the GPS/EKF error the payload has to live with).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flight_sim.clock import AtEnd
from flight_sim.indoor import IndoorScenario, SiteRenderer, indoor_timeline
from flight_sim.render import WorldRenderer, build_world
from flight_sim.scenario import Scenario, load_scenario
from flight_sim.stream import CameraStreamer, MjpegServer, SimCamera
from flight_sim.survey import survey_timeline
from flight_sim.timeline import Timeline
from flight_sim.tlog import read_tlog
from flight_sim.vehicle import RateRequests, VehicleEndpoint
from flight_sim.world.world import World

log = logging.getLogger(__name__)


@dataclass
class CameraRig:
    """The world, its renderer (with the camera's effects) and the in-process camera for one scenario."""

    scenario: Scenario
    world: World | Any  # World, or an object with its interface (shade, orthophoto, radiance_scale)
    renderer: WorldRenderer
    camera: SimCamera

    @classmethod
    def build(cls, scenario: Scenario, timeline: Timeline, world: World | Any | None = None) -> CameraRig:
        """The rig over `world` (default: the scenario's physical World; a test double may stand in for it)."""
        world = world if world is not None else build_world(scenario)
        renderer = WorldRenderer.for_scenario(scenario, world)
        return cls(scenario, world, renderer, SimCamera(lambda t: renderer.render_at(timeline.pose_at, t)))


class Simulation:
    """A running vehicle endpoint, plus an MJPEG camera when a scenario gives the world."""

    def __init__(
        self,
        timeline: Timeline,
        out: str,
        speed: float = 1.0,
        scenario: Scenario | IndoorScenario | None = None,
        start_s: float | None = None,
        end_s: float | None = None,
        at_end: AtEnd = "stop",
        wait_for_client: bool = False,
        camera_host: str = "127.0.0.1",
        camera_port: int = 0,
        max_camera_fps: float = 30.0,
        restamp_time: bool = False,
        world: World | Any | None = None,
        gcs: str | None = None,
        rate_requests: RateRequests = "ardupilot",
    ) -> None:
        """gcs: a ground-station-side link (udp:HOST:PORT sends there), routed as an autopilot routes its ports."""
        self.timeline = timeline
        self.scenario = scenario
        self.vehicle = VehicleEndpoint(
            timeline,
            out,
            speed=speed,
            start_s=start_s,
            end_s=end_s,
            at_end=at_end,
            wait_for_client=wait_for_client,
            restamp_time=restamp_time,
            gcs=gcs,
            rate_requests=rate_requests,
        )
        self.clock = self.vehicle.clock
        self.rig: CameraRig | None = None
        self.site_renderer: SiteRenderer | None = None
        self.server: MjpegServer | None = None
        self.streamer: CameraStreamer | None = None
        if scenario is not None:
            if isinstance(scenario, IndoorScenario):
                site = self.site_renderer = SiteRenderer(scenario)
                camera = SimCamera(lambda t: site.render_at(timeline.pose_at, t))
            else:
                self.rig = CameraRig.build(scenario, timeline, world)
                camera = self.rig.camera
            self.server = MjpegServer(camera_host, camera_port)
            self.streamer = CameraStreamer(
                camera,
                self.clock,
                self.server,
                scenario.camera.fps,
                scenario.camera.jpeg_quality,
                max_camera_fps,
                latency_s=scenario.camera.latency_s,
                boot_clock=self.vehicle.boot_s_now,
            )

    @classmethod
    def survey(cls, scenario: Scenario | str | Path, out: str, speed: float = 1.0, world: World | Any | None = None,
               **kw: object) -> Simulation:
        """A scripted survey of a scenario (object or YAML path) with its camera stream.

        `world` replaces the scenario's physical World under the camera (an object with its interface).

        Away from 1x its autopilot clock fields are restamped to tick with the wall clock (unless
        restamp_time=False), so the payload's clock sync maps frames to poses correctly.
        """
        s = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        kw.setdefault("restamp_time", speed != 1.0)
        return cls(survey_timeline(s), out, speed, scenario=s, world=world, **kw)  # type: ignore[arg-type]

    @classmethod
    def indoor(cls, scenario: IndoorScenario, out: str, speed: float = 1.0, **kw: object) -> Simulation:
        """A vertical-farm flight (flight_sim/indoor.py): aisle passes, GPS-denied telemetry, a sideways camera."""
        kw.setdefault("restamp_time", speed != 1.0)
        return cls(indoor_timeline(scenario), out, speed, scenario=scenario, **kw)  # type: ignore[arg-type]

    @classmethod
    def replay(
        cls, tlog: str | Path, out: str, speed: float = 1.0, sysid: int | None = None, **kw: object
    ) -> Simulation:
        """A recorded flight; pass scenario=... to also render its field under the recorded track."""
        return cls(read_tlog(tlog, sysid=sysid), out, speed, **kw)  # type: ignore[arg-type]

    @property
    def camera_url(self) -> str | None:
        """The MJPEG URL for cv2.VideoCapture / the payload's source.uri (None without a scenario)."""
        return self.server.url if self.server is not None else None

    @property
    def vehicle_url(self) -> str:
        return self.vehicle.url

    @property
    def sim_time(self) -> float:
        return self.clock.now()

    def start(self) -> Simulation:
        """Open the camera server first (so its URL is valid), then the vehicle; EndpointError if a port is taken."""
        if self.server is not None:
            self.server.start()
        try:
            self.vehicle.start()
        except BaseException:
            if self.server is not None:
                self.server.stop()
            raise
        if self.streamer is not None:
            self.streamer.start()
        return self

    def wait_done(self, timeout: float | None = None) -> bool:
        return self.vehicle.wait_done(timeout)

    def stop(self) -> None:
        if self.streamer is not None:
            self.streamer.stop()
        self.vehicle.stop()
        if self.server is not None:
            self.server.stop()

    def __enter__(self) -> Simulation:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
