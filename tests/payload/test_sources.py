"""Frame sources: colour conversion, folder replay and capture times, camera loss and reconnection."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import piexif
import pytest

from payload.errors import CameraError
from payload.sources import (
    FolderSource,
    InProcessSource,
    OpenCVSource,
    UnreadableFrameError,
    time_from_exif,
    time_from_filename,
    to_rgb,
)
from payload.types import Frame
from tests.payload.doubles import FakeCapture

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


def drain(src) -> list[Frame]:  # noqa: ANN001
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
