"""The camera as the payload meets it: an MJPEG stream OpenCV opens like an IP camera; files on disk."""

from __future__ import annotations

import socket
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from flight_sim.errors import EndpointError
from flight_sim.scenario import Scenario
from flight_sim.sim import CameraRig, Simulation
from flight_sim.stream import MjpegServer, write_image_folder, write_video
from flight_sim.timeline import Timeline
from payload.capture.sources import time_from_exif, time_from_filename
from tests.flight_sim.conftest import free_tcp_port, free_udp_port


@pytest.fixture(scope="module")
def small(scenario: Scenario) -> Scenario:
    """The example scenario on a smaller field (quicker to paint)."""
    f = scenario.field.model_copy(update={"width_m": 60.0, "height_m": 40.0})
    patches = [scenario.patches[0]]
    return scenario.model_copy(update={"field": f, "patches": patches})


def test_opencv_reads_the_survey_camera_stream(small: Scenario) -> None:
    sim = Simulation.survey(small, f"tcp:127.0.0.1:{free_tcp_port()}", speed=10, camera_port=0)
    with sim:
        assert sim.camera_url is not None and sim.camera_url.startswith("http://127.0.0.1:")
        assert sim.camera_url.endswith("/stream.mjpg")
        time.sleep(0.6)
        assert sim.streamer is not None and sim.streamer.frames <= 2  # nobody watching: ~1 frame/s, not 30
        cap = cv2.VideoCapture(sim.camera_url)
        try:
            assert cap.isOpened(), f"OpenCV could not open {sim.camera_url}"
            frames = []
            deadline = time.monotonic() + 10
            while len(frames) < 5 and time.monotonic() < deadline:
                ok, frame = cap.read()
                if ok:
                    frames.append(frame)
        finally:
            cap.release()
        assert len(frames) == 5
        assert all(f.shape == (480, 640, 3) for f in frames)
        # the stream follows the flight: the vehicle moves at 10x, so frames differ
        assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 1.0
        with urllib.request.urlopen(sim.camera_url.replace("stream.mjpg", "frame.jpg"), timeout=5) as resp:
            still = cv2.imdecode(np.frombuffer(resp.read(), np.uint8), cv2.IMREAD_COLOR)
            assert float(resp.headers["X-Sim-Time"]) >= 0
        assert still.shape == (480, 640, 3)
        assert sim.streamer is not None and sim.streamer.error is None and sim.streamer.frames >= 5


def test_stream_frame_is_the_render_at_the_clock_time(small: Scenario) -> None:
    """What arrives over HTTP is the frame rendered at the sim time it is stamped with (JPEG aside)."""
    sim = Simulation.survey(small, f"udp:127.0.0.1:{free_udp_port()}", speed=5, camera_port=0, start_s=60.0)
    with sim:
        time.sleep(0.5)
        with urllib.request.urlopen(sim.camera_url.replace("stream.mjpg", "frame.jpg"), timeout=5) as resp:
            got = cv2.cvtColor(cv2.imdecode(np.frombuffer(resp.read(), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            t = float(resp.headers["X-Sim-Time"])
        assert sim.rig is not None
        clean = sim.rig.renderer.render(sim.timeline.pose_at(t))
        assert np.abs(got.astype(int) - clean.astype(int)).mean() < 6.0  # JPEG + sensor noise only


def test_camera_port_in_use_is_a_clear_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(EndpointError, match=f"port {port} is already in use"):
            MjpegServer("127.0.0.1", port)


def test_image_folder_and_video(small: Scenario, survey: Timeline, tmp_path: Path) -> None:
    rig = CameraRig.build(small, survey)
    times = [60.0, 60.2, 60.4, 61.0]
    frames = list(rig.camera.frames(times))
    paths = write_image_folder(iter(frames), tmp_path / "frames", survey.t0_unix)
    assert len(paths) == 4
    for p, t in zip(paths, times, strict=True):
        assert time_from_filename(p.name) == pytest.approx(survey.t0_unix + t, abs=1e-3)
        assert time_from_exif(p) == pytest.approx(survey.t0_unix + t, abs=1e-3)
        img = cv2.imread(str(p))
        assert img.shape == (480, 640, 3)
    video = write_video(iter(frames), tmp_path / "flight.avi", fps=5)
    cap = cv2.VideoCapture(str(video))
    n = 0
    while n < 10:
        ok, _ = cap.read()
        if not ok:
            break
        n += 1
    cap.release()
    assert n == 4


def test_in_process_frames_for_the_payload(small: Scenario, survey: Timeline) -> None:
    rig = CameraRig.build(small, survey)
    f1 = rig.camera.frame_at(60.0)
    f2 = rig.camera.frame_at(60.2)
    assert (f1.seq, f2.seq) == (1, 2) and f1.pixels.shape == (480, 640, 3) and f1.pixels.dtype == np.uint8
    assert f2.t_mono >= f1.t_mono and f1.source == "flight_sim"


def test_live_in_process_frames_follow_the_clock(small: Scenario, survey: Timeline) -> None:
    from flight_sim.clock import SimClock
    from payload.capture.sources import InProcessSource

    rig = CameraRig.build(small, survey)
    clock = SimClock(10.0, 60.0, 66.0)
    clock.begin()
    src = InProcessSource(rig.camera.live(clock, fps=20))
    t0 = time.monotonic()
    frames = []
    while time.monotonic() - t0 < 10:
        f = src.read()
        if f is None:
            break
        frames.append(f)
    # 6 s of flight at 10x = 0.6 s wall at 20 frames/s: about 12 frames when a render takes under 50 ms,
    # fewer on a loaded machine (a live camera skips what it could not render in time), then the source
    # ends with the clock, not after every frame of the window was drawn
    assert 2 <= len(frames) <= 14 and time.monotonic() - t0 < 5
    assert [f.seq for f in frames] == list(range(1, len(frames) + 1))
