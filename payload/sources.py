"""Where frames come from: OpenCV cameras and streams, image folders, and in-process producers.

Every frame is stamped the moment it is read (time.monotonic for ordering and matching telemetry,
time.time for people) and converted to RGB uint8 here, so nothing downstream knows about BGR, grey,
BGRA or 16-bit sensors. A live camera that drops out is reopened with exponential backoff (counted
and logged) instead of ending the flight; a frame that cannot be decoded is skipped and counted.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from payload.errors import CameraError
from payload.types import Frame

log = logging.getLogger("payload.source")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class UnreadableFrameError(ValueError):
    """A frame whose pixels cannot be turned into RGB uint8 (skipped and counted)."""


def to_rgb(img: Any, order: str = "bgr") -> np.ndarray:
    """Convert a decoded image to contiguous RGB uint8 (H, W, 3).

    `order` is the channel order of 3/4-channel input: "bgr" for OpenCV, "rgb" for producers that
    already speak RGB. Grey (H, W) or (H, W, 1) is replicated; alpha is dropped; 16-bit is scaled
    down to 8-bit. Anything else raises UnreadableFrameError with the reason.
    """
    if not isinstance(img, np.ndarray) or img.size == 0:
        raise UnreadableFrameError("empty or missing image")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise UnreadableFrameError(f"unsupported pixel type {img.dtype} (need 8 or 16-bit integers)")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_GRAY2RGB)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise UnreadableFrameError(f"unsupported image shape {img.shape} (need grey, 3 or 4 channels)")
    img = np.ascontiguousarray(img)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if order == "bgr" else cv2.COLOR_RGBA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if order == "bgr" else img


@dataclass
class SourceCounters:
    """What a source did: frames delivered, frames skipped as unreadable, reconnections."""

    captured: int = 0
    unreadable: int = 0
    reconnects: int = 0


class FrameSource(ABC):
    """A source of stamped RGB frames, read by the capture thread one at a time.

    `read()` returns the next frame, or None at the end of the stream (file or folder finished, or
    `stop()` called). `stop()` may be called from another thread: it interrupts backoff and pacing
    waits so shutdown never waits for a camera that is not there.
    """

    name: str = "source"
    # True for a recording replayed as fast as it can be classified: the scheduler then waits for the
    # mailbox instead of dropping frames (nothing is "stale" in a replay that is not paced)
    lossless: bool = False

    def __init__(self) -> None:
        self.counters = SourceCounters()
        self._seq = 0
        self._stop = threading.Event()

    def open(self) -> None:  # noqa: B027 - most sources need no opening
        """Open the device; raise CameraError when it cannot be opened."""

    @abstractmethod
    def read(self) -> Frame | None:
        """Next frame, or None at the end of the stream."""

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:  # noqa: B027 - most sources hold nothing to release
        """Release the device."""

    def _stamp(self, pixels: np.ndarray, t_wall: float | None = None) -> Frame:
        t_mono = time.monotonic()
        frame = Frame(pixels, self._seq, t_mono, time.time() if t_wall is None else t_wall, self.name)
        self._seq += 1
        self.counters.captured += 1
        return frame

    def _skip(self, why: str) -> None:
        self.counters.unreadable += 1
        log.warning("%s: skipped an unreadable frame (%s); %d skipped so far", self.name, why,
                    self.counters.unreadable)


def parse_capture_target(uri: str) -> int | str:
    """A V4L2 index ("0") becomes an int; paths and URLs stay strings."""
    return int(uri) if uri.strip().isdigit() else uri


class OpenCVSource(FrameSource):
    """cv2.VideoCapture over a V4L2 index or device path, an RTSP/HTTP URL or a video file.

    A video file ending is the end of the stream; a live device or stream that stops delivering is
    reconnected with exponential backoff between `reconnect_min_s` and `reconnect_max_s`.
    """

    MAX_BAD_IN_A_ROW = 50
    MAX_FAILED_READS = 3  # failed reads in a row of a live stream before it counts as lost

    def __init__(
        self,
        uri: str,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 10.0,
        capture_factory: Callable[[int | str], Any] = cv2.VideoCapture,
        realtime: bool = False,
    ) -> None:
        super().__init__()
        self.uri = uri
        self.target = parse_capture_target(uri)
        self.name = f"opencv:{uri}"
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = max(reconnect_max_s, reconnect_min_s)
        self._factory = capture_factory
        self._cap: Any = None
        self.is_file = isinstance(self.target, str) and Path(self.target).is_file()
        # a video file is replayed at its own frame rate when `realtime` (a live camera paces itself)
        self.realtime = realtime and self.is_file
        self.lossless = self.is_file and not realtime
        self._period = 0.0
        self._next_due = 0.0

    def _hint(self) -> str:
        t = self.target
        if isinstance(t, int):
            return (f"check that the camera is plugged in and /dev/video{t} exists (`v4l2-ctl --list-devices`), "
                    "that no other program holds it, and that this user is in the 'video' group")
        if re.match(r"^[a-z]+://", t):
            return "check the URL, the network link and any credentials in it"
        if t.startswith("/dev/"):
            return "check that the device exists and this user may read it ('video' group)"
        if not Path(t).exists():
            return "no such file; set source.uri to a video file, a device, a URL or a V4L2 index"
        return "OpenCV cannot decode it; check the file and that opencv has the codec"

    def _try_open(self) -> bool:
        if self._cap is not None:
            self._cap.release()
        self._cap = self._factory(self.target)
        return bool(self._cap.isOpened())

    def open(self) -> None:
        if not self._try_open():
            raise CameraError(f"camera {self.uri!r} did not open; {self._hint()}")
        if self.realtime:
            fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
            self._period = 1.0 / fps if fps > 0 else 0.0
            self._next_due = time.monotonic()
        log.info("%s opened", self.name)

    def _pace(self) -> bool:
        if self._period:
            wait = self._next_due - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                return False
            self._next_due = max(self._next_due + self._period, time.monotonic() - self._period)
        return True

    def _reconnect(self) -> bool:
        delay = self.reconnect_min_s
        attempt = 0
        while not self._stop.is_set():
            attempt += 1
            self.counters.reconnects += 1
            log.warning("%s: camera lost; reconnect attempt %d in %.1f s (%d reconnects so far)", self.name, attempt,
                        delay, self.counters.reconnects)
            if self._stop.wait(delay):
                return False
            if self._try_open():
                log.info("%s: camera back after %d attempt(s)", self.name, attempt)
                return True
            delay = min(delay * 2.0, self.reconnect_max_s)
        return False

    def read(self) -> Frame | None:
        bad = 0
        failed = 0  # failed reads of a live stream since the last good frame
        while not self._stop.is_set():
            ok, img = self._cap.read()
            if ok:
                try:
                    rgb = to_rgb(img, "bgr")
                    if not self._pace():
                        return None
                    if failed:
                        # the stream went on: those reads were corrupt frames the decoder refused
                        for _ in range(failed):
                            self._skip("the camera sent a frame OpenCV could not decode")
                    return self._stamp(rgb)
                except UnreadableFrameError as err:
                    self._skip(str(err))
                    bad += 1
                    if bad < self.MAX_BAD_IN_A_ROW:
                        continue
            if self.is_file:
                log.info("%s: end of video file", self.name)
                return None
            if not ok and failed < self.MAX_FAILED_READS:
                # one corrupt JPEG in an MJPEG/RTSP stream fails one read; reconnecting for it would
                # throw away a second of frames. A lost camera keeps failing and is reconnected below.
                failed += 1
                continue
            bad = failed = 0
            if not self._reconnect():
                return None
        return None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


_NAME_TIME = re.compile(
    r"(?<!\d)(\d{4})-?(\d{2})-?(\d{2})[T_ -]?(\d{2})[-:_.h]?(\d{2})[-:_.m]?(\d{2})(?:[._,](\d{1,6}))?(?!\d)"
)
_NAME_EPOCH = re.compile(r"(?<!\d)(1\d{9})(?:[._](\d{1,6}))?(?!\d)")


def time_from_filename(name: str) -> float | None:
    """Capture time (UTC epoch seconds) from names like IMG_20261125_101500_250.jpg or 1764065700.25.png."""
    m = _NAME_TIME.search(name)
    if m:
        y, mo, d, h, mi, s, frac = m.groups()
        try:
            t = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=UTC)
        except ValueError:
            return None
        return t.timestamp() + (float("0." + frac) if frac else 0.0)
    m = _NAME_EPOCH.search(name)
    if m:
        return float(m.group(1)) + (float("0." + m.group(2)) if m.group(2) else 0.0)
    return None


def time_from_exif(path: Path) -> float | None:
    """Capture time from EXIF DateTimeOriginal (+ SubSecTimeOriginal, OffsetTimeOriginal; UTC if no offset)."""
    import piexif

    try:
        exif = piexif.load(str(path)).get("Exif", {})
    except Exception:  # noqa: BLE001 - piexif raises several types for files without EXIF
        return None
    raw = exif.get(piexif.ExifIFD.DateTimeOriginal)
    if not raw:
        return None
    try:
        t = datetime.strptime(raw.decode("ascii").strip("\x00 "), "%Y:%m:%d %H:%M:%S")
    except (ValueError, UnicodeDecodeError):
        return None
    tz = UTC
    offset = exif.get(getattr(piexif.ExifIFD, "OffsetTimeOriginal", 36881))
    if offset:
        m = re.match(r"([+-])(\d{2}):(\d{2})", offset.decode("ascii", "ignore"))
        if m:
            sign = 1 if m.group(1) == "+" else -1
            tz = timezone(sign * timedelta(hours=int(m.group(2)), minutes=int(m.group(3))))
    value = t.replace(tzinfo=tz).timestamp()
    sub = exif.get(piexif.ExifIFD.SubSecTimeOriginal)
    if sub:
        digits = sub.decode("ascii", "ignore").strip("\x00 ")
        if digits.isdigit():
            value += float("0." + digits)
    return value


class FolderSource(FrameSource):
    """The images of a folder in sorted name order, as if a camera had taken them.

    Capture time comes from EXIF, the file name or a fixed rate (`time_from` says which to try
    first; the others follow in that order). With `realtime`, frames are released at their
    recorded pace (and may go stale like a live camera's); otherwise every image is classified, as
    fast as the classifier goes.
    """

    def __init__(self, folder: str | Path, time_from: str = "exif", rate_hz: float | None = None,
                 realtime: bool = False) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.name = f"folder:{self.folder}"
        order = ["exif", "filename", "rate"]
        self.time_order = [time_from] + [t for t in order if t != time_from]
        self.rate_hz = rate_hz
        self.realtime = realtime
        self.lossless = not realtime
        self._files: list[Path] = []
        self._index = 0
        self._t0_wall: float | None = None
        self._t0_mono = 0.0
        self._first_recorded: float | None = None
        self._warned_no_time = False

    def open(self) -> None:
        if not self.folder.is_dir():
            raise CameraError(f"image folder {self.folder} not found; set source.uri to a folder of images")
        self._files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self._files:
            raise CameraError(f"image folder {self.folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        self._t0_wall = time.time()
        self._t0_mono = time.monotonic()
        log.info("%s: %d images, capture time from %s", self.name, len(self._files), " > ".join(self.time_order))

    def capture_time(self, path: Path, index: int) -> float | None:
        for how in self.time_order:
            if how == "exif":
                t = time_from_exif(path)
            elif how == "filename":
                t = time_from_filename(path.name)
            else:
                t = None if self.rate_hz is None else (self._t0_wall or 0.0) + index / self.rate_hz
            if t is not None:
                return t
        if not self._warned_no_time:
            log.warning("%s: no capture time in EXIF or file name and no source.rate_hz; using the read time",
                        self.name)
            self._warned_no_time = True
        return None

    def _pace(self, recorded: float | None) -> bool:
        if not self.realtime or recorded is None:
            return not self._stop.is_set()
        if self._first_recorded is None:
            self._first_recorded = recorded
            self._t0_mono = time.monotonic()
        due = self._t0_mono + (recorded - self._first_recorded)
        wait = due - time.monotonic()
        return not (wait > 0 and self._stop.wait(wait))

    def read(self) -> Frame | None:
        while self._index < len(self._files) and not self._stop.is_set():
            path = self._files[self._index]
            index = self._index
            self._index += 1
            img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if img is None:
                self._skip(f"{path.name} cannot be decoded")
                continue
            try:
                rgb = to_rgb(img, "bgr")
            except UnreadableFrameError as err:
                self._skip(f"{path.name}: {err}")
                continue
            recorded = self.capture_time(path, index)
            if not self._pace(recorded):
                return None
            return self._stamp(rgb, recorded)
        return None


class InProcessSource(FrameSource):
    """Frames from a producer in the same process (the simulator's rendered camera).

    `producer` is an iterable or a zero-argument callable yielding RGB (or `order`) arrays, or
    ready-made `Frame`s (kept as they are, e.g. stamped with simulated time); None or exhaustion
    ends the stream.
    """

    def __init__(self, producer: Iterable[Any] | Callable[[], Any], name: str = "inprocess",
                 order: str = "rgb") -> None:
        super().__init__()
        self.name = name
        self.order = order
        if callable(producer) and not isinstance(producer, Iterable):
            self._next: Callable[[], Any] = producer
        else:
            it: Iterator[Any] = iter(producer)
            self._next = lambda: next(it, None)

    def read(self) -> Frame | None:
        while not self._stop.is_set():
            item = self._next()
            if item is None:
                return None
            if isinstance(item, Frame):
                self.counters.captured += 1
                return item
            try:
                return self._stamp(to_rgb(item, self.order))
            except UnreadableFrameError as err:
                self._skip(str(err))
        return None


def make_source(section: Any) -> FrameSource:
    """Build the source the config's `source` section describes (not yet opened)."""
    if section.kind == "folder":
        return FolderSource(section.uri, section.time_from, section.rate_hz, section.realtime)
    if section.kind == "opencv":
        return OpenCVSource(section.uri, section.reconnect_min_s, section.reconnect_max_s, realtime=section.realtime)
    raise CameraError(f"source.kind {section.kind!r} cannot be built from a config; use opencv or folder")
