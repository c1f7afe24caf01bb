"""Frame sources: colour conversion, folder replay and capture times, camera loss and reconnection,
camera reads that never return (the stall watchdog), and JPEGs cut short (skipped, never half-decoded)."""

from __future__ import annotations

import io
import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import piexif
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payload.capture.sources import (
    FolderSource,
    InProcessSource,
    OpenCVSource,
    UnreadableFrameError,
    decode_jpeg,
    inspect_jpeg,
    make_source,
    time_from_exif,
    time_from_filename,
    to_rgb,
)
from payload.config import load_payload_config
from payload.errors import CameraError
from payload.types import Frame
from tests.configtests import expect_config_error, set_path, write_yaml
from tests.payload.doubles import FakeCapture
from tests.waiting import wait_for

BGR = np.zeros((3, 5, 3), np.uint8)
BGR[..., 0] = 10  # blue
BGR[..., 2] = 200  # red


def test_to_rgb_conversions() -> None:
    rgb = to_rgb(BGR)
    assert rgb.shape == (3, 5, 3) and tuple(rgb[0, 0]) == (200, 0, 10)
    assert tuple(to_rgb(BGR, "rgb")[0, 0]) == (10, 0, 200)
    grey = np.full((7, 9), 42, np.uint8)
    assert to_rgb(grey).shape == (7, 9, 3) and (to_rgb(grey) == 42).all()
    assert (to_rgb(grey[..., None]) == 42).all()
    bgra = np.dstack([BGR, np.full((3, 5), 255, np.uint8)])
    assert to_rgb(bgra).shape == (3, 5, 3) and tuple(to_rgb(bgra)[0, 0]) == (200, 0, 10)
    deep = np.full((2, 2, 3), 0xABCD, np.uint16)
    assert to_rgb(deep).dtype == np.uint8 and (to_rgb(deep) == 0xAB).all()
    odd = np.ascontiguousarray(np.random.default_rng(0).integers(0, 256, (11, 13, 3), dtype=np.uint8)[:, ::-1])
    assert to_rgb(odd).flags.c_contiguous and to_rgb(odd).shape == (11, 13, 3)


@pytest.mark.parametrize("bad", [None, np.zeros((0, 4, 3), np.uint8), np.zeros((4, 4, 2), np.uint8),
                                 np.zeros((4, 4, 3), np.float32), np.zeros((2, 2, 2, 3), np.uint8)])
def test_to_rgb_refuses_unusable_frames(bad: object) -> None:
    with pytest.raises(UnreadableFrameError):
        to_rgb(bad)


def test_time_from_filename() -> None:
    t = datetime(2026, 11, 25, 10, 15, 0, tzinfo=UTC).timestamp()
    assert time_from_filename("IMG_20261125_101500.jpg") == t
    assert time_from_filename("frame_2026-11-25T10-15-00.250.png") == pytest.approx(t + 0.25)
    assert time_from_filename("1795600800.5.jpg") == pytest.approx(1795600800.5)
    assert time_from_filename("DSC0001.JPG") is None
    assert time_from_filename("IMG_20261399_101500.jpg") is None  # no such date


def write_jpeg(path: Path, img: np.ndarray, exif: dict | None = None) -> Path:
    assert cv2.imwrite(str(path), img)
    if exif is not None:
        piexif.insert(piexif.dump({"Exif": exif}), str(path))
    return path


def test_time_from_exif(tmp_path: Path) -> None:
    img = np.zeros((8, 8, 3), np.uint8)
    p = write_jpeg(tmp_path / "a.jpg", img, {piexif.ExifIFD.DateTimeOriginal: b"2026:11:25 10:15:00",
                                             piexif.ExifIFD.SubSecTimeOriginal: b"5"})
    assert time_from_exif(p) == pytest.approx(datetime(2026, 11, 25, 10, 15, 0, tzinfo=UTC).timestamp() + 0.5)
    assert time_from_exif(write_jpeg(tmp_path / "b.jpg", img)) is None
    cv2.imwrite(str(tmp_path / "c.png"), img)
    assert time_from_exif(tmp_path / "c.png") is None


def drain(src) -> list[Frame]:
    out = []
    while (f := src.read()) is not None:
        out.append(f)
    return out


def test_folder_is_sorted_skips_unreadable_and_converts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cv2.imwrite(str(tmp_path / "b_grey.png"), np.full((6, 9), 50, np.uint8))
    cv2.imwrite(str(tmp_path / "c_bgra.png"), np.dstack([BGR, np.full((3, 5), 128, np.uint8)]))
    (tmp_path / "a_broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    cv2.imwrite(str(tmp_path / "d_odd.png"), np.full((7, 13, 3), 9, np.uint8))
    (tmp_path / "notes.txt").write_text("ignored")
    src = FolderSource(tmp_path, time_from="rate", rate_hz=2.0)
    src.open()
    t0 = time.time()
    with caplog.at_level(logging.WARNING, logger="payload.source"):
        frames = drain(src)
    assert [f.pixels.shape for f in frames] == [(6, 9, 3), (3, 5, 3), (7, 13, 3)]
    assert all(f.pixels.dtype == np.uint8 for f in frames)
    assert tuple(frames[1].pixels[0, 0]) == (200, 0, 10)
    assert [f.seq for f in frames] == [0, 1, 2]
    assert src.counters.unreadable == 1 and src.counters.captured == 3
    assert "a_broken.jpg cannot be decoded" in caplog.text
    # rate: file index / rate after the start (the broken first file still takes its slot)
    assert [round(f.t_wall - frames[0].t_wall, 3) for f in frames] == [0.0, 0.5, 1.0]
    assert abs(frames[0].t_wall - 0.5 - t0) < 5
    assert all(b.t_mono >= a.t_mono for a, b in zip(frames, frames[1:], strict=False))


def test_folder_capture_time_order(tmp_path: Path) -> None:
    img = np.zeros((4, 4, 3), np.uint8)
    write_jpeg(tmp_path / "IMG_20261125_101500.jpg", img, {piexif.ExifIFD.DateTimeOriginal: b"2026:11:25 11:00:00"})
    write_jpeg(tmp_path / "IMG_20261125_101501.jpg", img)
    t_exif = datetime(2026, 11, 25, 11, 0, 0, tzinfo=UTC).timestamp()
    t_name = datetime(2026, 11, 25, 10, 15, 1, tzinfo=UTC).timestamp()
    src = FolderSource(tmp_path, time_from="exif")
    src.open()
    assert [f.t_wall for f in drain(src)] == [t_exif, t_name]  # exif, else the file name
    src = FolderSource(tmp_path, time_from="filename")
    src.open()
    assert [f.t_wall for f in drain(src)] == [t_exif - 2700, t_name]


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="not found"):
        FolderSource(tmp_path / "missing").open()
    with pytest.raises(CameraError, match="holds no images"):
        FolderSource(tmp_path).open()


def test_camera_that_never_opens(caplog: pytest.LogCaptureFixture) -> None:
    cap = FakeCapture(opens=[False], reads=[])
    with pytest.raises(CameraError, match=r"camera '2' did not open.*/dev/video2.*'video' group"):
        OpenCVSource("2", capture_factory=cap).open()
    assert cap.targets == [2]
    with pytest.raises(CameraError, match="rtsp://cam/stream' did not open; check the URL"):
        OpenCVSource("rtsp://cam/stream", capture_factory=FakeCapture([False], [])).open()


def test_real_opencv_on_a_missing_device_and_file(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="no such file"):
        OpenCVSource(str(tmp_path / "missing.mp4")).open()
    with pytest.raises(CameraError, match="did not open"):
        OpenCVSource("/dev/video97").open()


def test_camera_loss_reconnects_with_backoff(caplog: pytest.LogCaptureFixture) -> None:
    frame = np.zeros((4, 6, 3), np.uint8)
    # opens: initial, then two failed reopen attempts, then success
    cap = FakeCapture(opens=[True, False, False, True], reads=[frame, False, None, frame])
    src = OpenCVSource("0", reconnect_min_s=0.01, reconnect_max_s=0.02, capture_factory=cap)
    src.open()
    waits: list[float] = []
    real_wait = src._stop.wait
    src._stop.wait = lambda t: (waits.append(t), real_wait(0))[1]  # type: ignore[method-assign]
    with caplog.at_level(logging.INFO, logger="payload.source"):
        a = src.read()
        b = src.read()
    assert a is not None and b is not None and (a.seq, b.seq) == (0, 1)
    assert src.counters.reconnects == 3 and waits == [0.01, 0.02, 0.02]
    assert src.counters.unreadable == 1  # the (True, None) read after reconnecting
    assert "camera lost; reconnect attempt 1" in caplog.text and "camera back after 3 attempt(s)" in caplog.text


def test_stop_interrupts_reconnection() -> None:
    cap = FakeCapture(opens=[True], reads=[False])
    src = OpenCVSource("0", reconnect_min_s=30, capture_factory=cap)
    src.open()
    src.stop()
    t0 = time.monotonic()
    assert src.read() is None
    assert time.monotonic() - t0 < 5


def video(path: Path, n: int = 5, fps: float = 10) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    assert writer.isOpened()
    for i in range(n):
        writer.write(np.full((48, 64, 3), i * 40, np.uint8))
    writer.release()
    return path


def test_video_file_ends_instead_of_reconnecting(tmp_path: Path) -> None:
    src = OpenCVSource(str(video(tmp_path / "clip.avi")))
    src.open()
    frames = drain(src)
    src.close()
    assert len(frames) == 5 and frames[0].pixels.shape == (48, 64, 3) and src.counters.reconnects == 0


def test_video_file_realtime_replays_at_its_frame_rate(tmp_path: Path) -> None:
    src = OpenCVSource(str(video(tmp_path / "clip.avi", n=5, fps=10)), realtime=True)
    src.open()
    frames = drain(src)
    assert len(frames) == 5
    assert frames[-1].t_mono - frames[0].t_mono >= 0.35  # 4 periods of 0.1 s (a lower bound)


def test_in_process_source() -> None:
    pixels = [np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8), np.zeros((4, 4, 2), np.uint8)]
    src = InProcessSource(pixels)
    frames = drain(src)
    assert [f.seq for f in frames] == [0, 1] and src.counters.unreadable == 1
    premade = Frame(np.zeros((2, 2, 3), np.uint8), seq=41, t_mono=1.0, t_wall=2.0, source="sim")
    items = iter([premade, None, premade])
    src = InProcessSource(lambda: next(items))
    assert src.read() is premade and src.read() is None


# -- a camera read that never returns: the stall watchdog ---------------------------------------------------


class WedgingCameras:
    """cv2.VideoCapture factory double: each open gives a new capture that delivers numbered frames and then
    wedges, its read() blocking on an Event like a read stuck in the kernel driver of a USB camera.

    `frames_per_open[i]` is how many frames the i-th capture delivers before it wedges (None: never; the
    last entry repeats). Frame numbers count every frame the camera produced, across reopenings; each
    capture keeps the numbers it produced, so a test can check that every frame produced after a reopen
    was delivered. `release()` lets every stuck read return (as when the driver finally lets go).
    """

    def __init__(self, frames_per_open: list[int | None], period_s: float = 0.0) -> None:
        self.frames_per_open = frames_per_open
        self.period_s = period_s
        self.caps: list[WedgingCapture] = []
        self.next_number = 0
        self.unblock = threading.Event()

    def __call__(self, target: Any) -> WedgingCapture:
        i = len(self.caps)
        n = self.frames_per_open[min(i, len(self.frames_per_open) - 1)]
        cap = WedgingCapture(self, n)
        self.caps.append(cap)
        return cap

    def release(self) -> None:
        self.unblock.set()


class WedgingCapture:
    def __init__(self, owner: WedgingCameras, frames: int | None) -> None:
        self.owner = owner
        self.frames = frames
        self.produced: list[int] = []
        self.opened_at = time.monotonic()
        self.wedged_at: float | None = None
        self.released = False
        self.unblock = threading.Event()  # this capture's own driver letting go

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return True

    def read(self) -> tuple[bool, Any]:
        if self.frames is not None and len(self.produced) >= self.frames:
            self.wedged_at = time.monotonic()
            while not (self.unblock.wait(0.05) or self.owner.unblock.is_set()):
                pass
            return False, None
        if self.owner.period_s:
            time.sleep(self.owner.period_s)
        k = self.owner.next_number
        self.owner.next_number += 1
        self.produced.append(k)
        img = np.zeros((4, 6, 3), np.uint8)
        img[0, 0], img[0, 1] = k % 256, k // 256
        return True, img

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        self.released = True


def number(f: Frame) -> int:
    return int(f.pixels[0, 0, 0]) + 256 * int(f.pixels[0, 1, 0])


_OLD_THREADS: set[threading.Thread] = set()


@pytest.fixture()
def old_camera_threads() -> None:
    """Camera threads of sources other tests left open are not this test's."""
    _OLD_THREADS.clear()
    _OLD_THREADS.update(t for t in threading.enumerate() if t.name.startswith("camera-"))


def camera_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("camera-") and t not in _OLD_THREADS]


def test_stalled_read_is_detected_counted_and_the_camera_reopened(caplog: pytest.LogCaptureFixture,
                                                                   old_camera_threads: None) -> None:
    cams = WedgingCameras([3, None])
    stall_s = 0.5
    src = OpenCVSource("0", reconnect_min_s=0.05, reconnect_max_s=0.1, capture_factory=cams, stall_timeout_s=stall_s)
    try:
        caplog.set_level(logging.INFO, logger="payload.source")
        src.open()
        before = [src.read() for _ in range(3)]
        t0 = time.monotonic()
        after = [src.read() for _ in range(10)]
        t_first = time.monotonic() - t0
        assert all(f is not None for f in before + after)
        first_cap, second_cap = cams.caps
        assert first_cap.wedged_at is not None
        detected_s = second_cap.opened_at - first_cap.wedged_at  # stall detection + one backoff of 0.05 s
        assert detected_s >= stall_s * 0.9
        assert detected_s < stall_s + 5.0  # generous: a loaded machine is slow, never fast
        assert src.counters.stalls == 1 and src.counters.reconnects == 1
        assert [number(f) for f in before] == first_cap.produced == [0, 1, 2]
        # nothing the camera produced after reopening was lost, and it is all in order
        assert [number(f) for f in after] == second_cap.produced == list(range(3, 13))
        assert [f.seq for f in before + after] == list(range(13))
        text = caplog.text
        assert "has not returned for" in text and "opencv:0" in text and "stall_timeout_s 0.5" in text
        assert "dmesg" in text and "camera back after 1 attempt(s)" in text
        # the stuck read is still stuck: its thread is left behind, then ends when the driver lets go
        assert src.stuck_threads == 1 and not first_cap.released
        cams.release()
        assert wait_for(lambda: src.stuck_threads == 0)
        assert first_cap.released  # the left-behind thread released its capture on the way out
        assert "returned and ended; 0 still stuck" in caplog.text
    finally:
        cams.release()
        src.close()
    assert wait_for(lambda: not camera_threads(), 10)
    print(f"STALL: detected and reopened {detected_s:.2f} s after the read blocked (stall_timeout_s {stall_s}, "
          f"backoff 0.05 s); first frame {t_first:.2f} s after the stuck read() began")


def test_stop_does_not_wait_for_a_stalled_read(old_camera_threads: None) -> None:
    cams = WedgingCameras([1])
    src = OpenCVSource("/dev/video0", capture_factory=cams, stall_timeout_s=60)  # the watchdog will not fire
    try:
        src.open()
        assert src.read() is not None
        result: list[Frame | None] = []
        reader = threading.Thread(target=lambda: result.append(src.read()))
        reader.start()
        assert wait_for(lambda: cams.caps[0].wedged_at is not None)
        t0 = time.monotonic()
        src.stop()
        reader.join(10)
        stop_s = time.monotonic() - t0
        assert not reader.is_alive() and result == [None]
        assert stop_s < 5.0
        t0 = time.monotonic()
        src.close()  # the read is still stuck in the "driver": close leaves it behind
        close_s = time.monotonic() - t0
        assert close_s < 5.0 and src.stuck_threads == 1
    finally:
        cams.release()
    assert wait_for(lambda: src.stuck_threads == 0 and not camera_threads(), 10)
    print(f"STOP DURING A STUCK READ: read() returned {stop_s * 1000:.0f} ms after stop(), close() took "
          f"{close_s * 1000:.0f} ms")


def test_stuck_capture_threads_are_bounded(caplog: pytest.LogCaptureFixture, old_camera_threads: None) -> None:
    """A driver that wedges on every open must not leak threads: at most 3 stuck at once, then wait for one."""
    cams = WedgingCameras([1], period_s=0.001)
    src = OpenCVSource("0", reconnect_min_s=0.01, reconnect_max_s=0.02, capture_factory=cams, stall_timeout_s=0.2,
                       max_stuck_threads=3)
    frames: list[Frame] = []
    most = {"threads": 0, "stuck": 0}
    watching = threading.Event()

    def watch() -> None:
        while not watching.is_set():
            most["threads"] = max(most["threads"], len(camera_threads()))
            most["stuck"] = max(most["stuck"], src.stuck_threads)
            time.sleep(0.005)

    def read_all() -> None:
        while (f := src.read()) is not None:
            frames.append(f)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with caplog.at_level(logging.INFO, logger="payload.source"):
            src.open()
            reader = threading.Thread(target=read_all, daemon=True)
            reader.start()
            assert wait_for(lambda: "3 capture threads are stuck in the camera driver" in caplog.text)
            assert src.stuck_threads == 3 and len(cams.caps) == 3 and len(frames) == 3
            time.sleep(0.5)  # waiting for a stuck thread to return: no new capture, no new thread meanwhile
            assert len(cams.caps) == 3 and len(camera_threads()) == 3
            cams.caps[0].unblock.set()  # the driver lets go of one stuck read
            assert wait_for(lambda: len(cams.caps) == 4 and len(frames) == 4)  # reopened, frames flow again
            assert wait_for(lambda: src.stuck_threads == 3)  # ... until it wedges again
            stalls = src.counters.stalls
            src.stop()
            reader.join(10)
            assert not reader.is_alive()
    finally:
        cams.release()
        src.close()
        watching.set()
    watcher.join(5)
    assert stalls == 4
    assert [number(f) for f in frames] == [0, 1, 2, 3]
    assert most["stuck"] <= 3
    assert most["threads"] <= 4  # 3 stuck + 1 (a returning thread is briefly alive next to its successor)
    assert wait_for(lambda: not camera_threads(), 10)
    print(f"BOUNDED THREADS: {stalls} stalls, at most {most['stuck']} stuck and {most['threads']} camera threads "
          f"alive at once; all ended once the driver let go")


def test_network_streams_get_ffmpeg_timeouts_and_v4l2_the_select_timeout(monkeypatch: pytest.MonkeyPatch,
                                                                         old_camera_threads: None) -> None:
    calls: list[tuple] = []

    class Recorder:
        def __init__(self, *args: Any) -> None:
            calls.append(args)

        def isOpened(self) -> bool:  # noqa: N802
            return False

        def release(self) -> None:
            pass

    monkeypatch.setattr(cv2, "VideoCapture", Recorder)
    monkeypatch.delenv("OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT", raising=False)
    with pytest.raises(CameraError, match="did not open; check the URL"):
        OpenCVSource("rtsp://cam/stream", stall_timeout_s=5).open()
    assert calls[-1] == ("rtsp://cam/stream", cv2.CAP_FFMPEG,
                         [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 12000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 7000])
    with pytest.raises(CameraError):
        OpenCVSource("0", stall_timeout_s=5).open()
    assert calls[-1] == (0,)  # V4L2 refuses the timeout parameters (the capture would not open)
    import os

    assert os.environ["OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT"] == "7"
    assert not camera_threads() or wait_for(lambda: not camera_threads(), 10)  # a failed open leaves no thread


class MjpegNetCapture:
    """cv2.VideoCapture double of an FFmpeg MJPEG network stream: raw mode hands over `raw` bytes per read."""

    def __init__(self, raw: bytes) -> None:
        self.raw_bytes = raw
        self.raw = False
        self.reads = 0

    def isOpened(self) -> bool:  # noqa: N802
        return True

    def get(self, prop: int) -> float:
        return float(int.from_bytes(b"MJPG", "little")) if prop == cv2.CAP_PROP_FOURCC else 0.0

    def set(self, prop: int, value: float) -> bool:
        self.raw = prop == cv2.CAP_PROP_FORMAT and value == -1
        return self.raw

    def read(self) -> tuple[bool, Any]:
        self.reads += 1
        if self.raw:
            return True, np.frombuffer(self.raw_bytes, np.uint8)[None, :]
        return True, np.full((4, 6, 3), 50, np.uint8)

    def release(self) -> None:
        pass


def test_mjpeg_stream_is_decoded_here_and_falls_back_to_ffmpeg_if_it_cannot(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, old_camera_threads: None) -> None:
    img = field(48, 64)
    caps: list[MjpegNetCapture] = []
    payload = {"raw": jpeg(img)}

    def open_stream(*args: Any) -> MjpegNetCapture:
        caps.append(MjpegNetCapture(payload["raw"]))
        return caps[-1]

    monkeypatch.setattr(cv2, "VideoCapture", open_stream)
    src = OpenCVSource("http://cam/stream.mjpg", reconnect_min_s=0.01, stall_timeout_s=5)
    try:
        src.open()
        f = src.read()
        decoded = cv2.imdecode(np.frombuffer(payload["raw"], np.uint8), cv2.IMREAD_COLOR)
        assert f is not None and caps[0].raw and np.array_equal(f.pixels, cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB))
        # three JPEGs cut short, then a whole one: skipped and counted, the stream goes on without a reconnect
        parts = iter([payload["raw"][:300]] * 3 + [payload["raw"]])
        caps[0].read = lambda: (True, np.frombuffer(next(parts), np.uint8)[None, :])  # type: ignore[method-assign]
        assert src.read() is not None and src.counters.unreadable == 3 and src.counters.reconnects == 0
        src.close()
        # a camera whose JPEGs OpenCV never decodes (none ever did): after 10, FFmpeg decodes again
        src = OpenCVSource("http://cam/stream.mjpg", reconnect_min_s=0.01, stall_timeout_s=5)
        payload["raw"] = b"\xff\xd8\xff\xda\x00\x02" + b"\x11" * 50 + b"\xff\xd9"
        src.open()
        with caplog.at_level(logging.WARNING, logger="payload.source"):
            f = src.read()
        assert f is not None and f.pixels.shape == (4, 6, 3)
        assert src.counters.unreadable == OpenCVSource.RAW_PROBE_FRAMES and src.counters.reconnects == 1
        assert not caps[-1].raw and "FFmpeg decodes them from now on" in caplog.text
    finally:
        src.close()


def test_stall_timeout_in_the_config(tmp_path: Path) -> None:
    example = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / "payload.yaml").read_text())
    cfg = load_payload_config(write_yaml(tmp_path, set_path(example, "source.stall_timeout_s", 2.5)))
    src = make_source(cfg.source)
    assert isinstance(src, OpenCVSource) and src.stall_timeout_s == 2.5 and src.open_timeout_s == 10.0
    expect_config_error(load_payload_config, write_yaml(tmp_path, set_path(example, "source.stall_timeout_s", 0)),
                        "source.stall_timeout_s", "greater than 0")


# -- JPEGs cut short --------------------------------------------------------------------------------------


def field(h: int = 240, w: int = 320, seed: int = 3) -> np.ndarray:
    """A leafy-looking frame (noise blurred), whose bottom-right corner is smooth (its last blocks are small)."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (7, 7), 2)
    img[-24:, -24:] = (40, 120, 60)
    return img


def jpeg(img: np.ndarray, *params: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, list(params))
    assert ok
    return buf.tobytes()


EOI = b"\xff\xd9"


def test_complete_jpegs_decode_with_padding_trailers_and_thumbnails() -> None:
    img = field()
    for data in (jpeg(img), jpeg(img, cv2.IMWRITE_JPEG_PROGRESSIVE, 1), jpeg(img, cv2.IMWRITE_JPEG_RST_INTERVAL, 3),
                 jpeg(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)), jpeg(np.full((64, 80, 3), 128, np.uint8))):
        ref = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        for tail in (b"", b"\x00" * 300, b"\xff" * 16, b"maker trailer \xff\xd8 junk"):
            assert np.array_equal(decode_jpeg(data + tail), ref)
    # an EXIF thumbnail (its own FF D8 .. FF D9 inside APP1) is not mistaken for the image's end
    out = io.BytesIO()
    piexif.insert(piexif.dump({"thumbnail": jpeg(img[:40, :40]), "1st": {}}), jpeg(img), out)
    with_thumb = out.getvalue()
    assert with_thumb.count(EOI) >= 2
    assert decode_jpeg(with_thumb).shape == img.shape
    assert inspect_jpeg(with_thumb).eoi == len(with_thumb) - 2


@pytest.mark.parametrize("coding", ["baseline", "progressive", "restart"])
@pytest.mark.parametrize("frac", [0.2, 0.5, 0.8, 0.95])
@pytest.mark.parametrize("ending", ["cut", "eoi", "zeros", "ff"])
def test_truncated_jpegs_are_refused(coding: str, frac: float, ending: str) -> None:
    params = {"baseline": (), "progressive": (cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
              "restart": (cv2.IMWRITE_JPEG_RST_INTERVAL, 2)}[coding]
    data = jpeg(field(), *params)
    cut = data[: int(len(data) * frac)]
    cut += {"cut": b"", "eoi": EOI, "zeros": b"\x00" * 500, "ff": b"\xff" * 64}[ending]
    with pytest.raises(UnreadableFrameError):
        decode_jpeg(cut)


def test_a_gap_in_the_middle_is_found_by_the_restart_markers() -> None:
    data = jpeg(field(), cv2.IMWRITE_JPEG_RST_INTERVAL, 1)
    rst = [i for i in range(len(data) - 1) if data[i] == 0xFF and 0xD0 <= data[i + 1] <= 0xD7]
    gap = data[: rst[10]] + data[rst[12]:]  # two restart intervals lost (a dropped USB packet)
    with pytest.raises(UnreadableFrameError, match="restart marker RST4 where RST2 was due"):
        decode_jpeg(gap)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["baseline", "progressive", "restart"]), st.floats(0.0, 1.0),
       st.sampled_from([b"", EOI, b"\0" * 64, b"\0" * 64 + EOI, b"\xff" * 8]))
def test_any_cut_before_the_last_blocks_is_refused(coding: str, where: float, ending: bytes) -> None:
    """Property: wherever the image data is cut, short of its last 64 bytes (the final blocks of the bottom-right
    corner: losing only those damages only that corner and can pass), and however the rest is closed (nothing,
    an end marker, zero padding), the frame is refused, never half-decoded."""
    data = DATA[coding]
    start = SCAN_START[coding]
    cut_at = start + int(where * (len(data) - 2 - 64 - start))
    with pytest.raises(UnreadableFrameError):
        decode_jpeg(data[:cut_at] + ending)


DATA = {"baseline": jpeg(field(seed=7)), "progressive": jpeg(field(seed=7), cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
        "restart": jpeg(field(seed=7), cv2.IMWRITE_JPEG_RST_INTERVAL, 4)}
SCAN_START = {k: v.index(b"\xff\xda") for k, v in DATA.items()}


def test_folder_skips_truncated_jpegs_and_names_them(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    img = field()
    good, prog = jpeg(img), jpeg(img, cv2.IMWRITE_JPEG_PROGRESSIVE, 1)
    files = {
        "a_good.jpg": good,
        "b_cut.jpg": good[: len(good) // 2],  # the card was pulled while writing
        "c_cut_padded.jpg": good[: len(good) // 2] + b"\x00" * 4096,  # preallocated file, never filled
        "d_cut_closed.jpg": good[: len(good) * 2 // 3] + EOI,  # cut, then closed with an end marker
        "e_prog_cut_closed.jpg": prog[: len(prog) * 3 // 4] + EOI,
        "f_good_padded.jpg": good + b"\x00" * 512,
        "g_grey.jpg": jpeg(np.full((48, 64, 3), 128, np.uint8)),  # mid-grey for real: kept
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    src = FolderSource(tmp_path, time_from="rate", rate_hz=1.0)
    src.open()
    with caplog.at_level(logging.WARNING, logger="payload.source"):
        frames = drain(src)
    assert [f.pixels.shape for f in frames] == [(240, 320, 3), (240, 320, 3), (48, 64, 3)]
    assert src.counters.unreadable == 4 and src.counters.captured == 3
    for name in ("b_cut.jpg", "c_cut_padded.jpg", "d_cut_closed.jpg", "e_prog_cut_closed.jpg"):
        assert f"{name} cannot be decoded" in caplog.text
    assert "before the end-of-image marker" in caplog.text and "decoded only part of the frame" in caplog.text
    print(f"TRUNCATED JPEGS: {src.counters.unreadable} of {len(files)} files skipped and counted, "
          f"{src.counters.captured} whole ones classified")
