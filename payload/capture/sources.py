"""Where frames come from: OpenCV cameras and streams, image folders, and in-process producers.

Every frame is stamped the moment it is read (time.monotonic for ordering and matching telemetry,
time.time for people) and converted to RGB uint8 here, so nothing downstream knows about BGR, grey,
BGRA or 16-bit sensors. A live camera that drops out is reopened with exponential backoff (counted
and logged) instead of ending the flight; a frame that cannot be decoded is skipped and counted.

Two failures OpenCV does not report are caught here as well:
- a camera read that never returns (a USB camera wedged in the kernel driver, a network stream that
  stops sending without closing): every call on a live capture runs on a thread of its own, and a
  read that does not return within `stall_timeout_s` is a stall: counted, logged, the capture left
  behind on its thread (a blocked read cannot be killed) and the camera reopened
  (payload/capture/capturethread.py);
- a JPEG cut short or with image data missing, which OpenCV decodes into a frame whose missing part
  is mid-grey (or, through FFmpeg, left over from the previous frame): refused by `decode_jpeg`
  (payload/capture/jpeg.py) wherever the encoded bytes are at hand (image folders, MJPEG network streams).
"""

from __future__ import annotations

import logging
import math
import os
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

from payload.capture.capturethread import CaptureThread, StallError, StoppedError, read_frame
from payload.capture.jpeg import decode_image, decode_jpeg, inspect_jpeg
from payload.errors import CameraError, UnreadableFrameError
from payload.types import Frame

# re-exported: what callers and tests import from here
__all__ = ["FolderSource", "FrameSource", "InProcessSource", "OpenCVSource", "SourceCounters", "UnreadableFrameError",
           "decode_image", "decode_jpeg", "inspect_jpeg", "make_source", "parse_capture_target", "time_from_exif",
           "time_from_filename", "to_rgb"]

log = logging.getLogger("payload.source")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


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
    """What a source did: frames delivered, frames skipped as unreadable, reconnections, stalled reads."""

    captured: int = 0
    unreadable: int = 0
    reconnects: int = 0
    stalls: int = 0  # camera calls that did not return within the stall timeout (the capture was abandoned)


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
        # the camera's delay from exposure to delivery (camera.latency_s): a frame read now was exposed this
        # long ago, and the pose that saw its ground is the one then
        self.latency_s = 0.0

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
        """The frame stamped at its exposure: read now, less the camera's latency. A `t_wall` given by the
        camera itself (a photo's EXIF time) is its capture time already and stays as it is."""
        lat = self.latency_s
        t_mono = time.monotonic() - lat
        t_wall = time.time() - lat if t_wall is None else t_wall
        frame = Frame(pixels, self._seq, t_mono, t_wall, self.name, lat)
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


# -- capture threads and the stall watchdog -------------------------------------------------------------
_POLL_S = 0.1  # how often a caller waiting for the camera looks at stop()
_BACKEND_GRACE_S = 2.0  # backend timeouts are this much longer than ours, so a left-behind thread comes back
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


class OpenCVSource(FrameSource):
    """cv2.VideoCapture over a V4L2 index or device path, an RTSP/HTTP URL or a video file.

    A video file ending is the end of the stream; a live device or stream that stops delivering is
    reconnected with exponential backoff between `reconnect_min_s` and `reconnect_max_s`.

    A live camera is also watched: its capture runs on a thread of its own (`CaptureThread`) and a
    read that does not return within `stall_timeout_s` (opening: `open_timeout_s`) is a stall:
    counted in `counters.stalls`, logged with what to check, the capture left behind on its thread
    and the camera reopened with the same backoff. At most `max_stuck_threads` threads may be stuck in
    the driver at once; past that the camera is reopened only when one of them returns, so a wedged
    driver cannot use up threads. Where the backend has its own timeouts they are set a little longer
    than ours, so that a left-behind read comes back and its thread ends: FFmpeg (network streams)
    takes CAP_PROP_OPEN_TIMEOUT_MSEC / CAP_PROP_READ_TIMEOUT_MSEC (without them it waits 30 s); the V4L2
    backend takes neither (and OpenCV does not open a capture with parameters its backend cannot use),
    only the per-process environment variable OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT (10 s by default; read
    at the first V4L2 capture of the process), set here unless set already. A driver wedged inside an
    ioctl honours no timeout at all: that is what the watchdog is for.

    An MJPEG network stream is read in FFmpeg's raw mode (each JPEG's bytes) and decoded here with
    `decode_jpeg`: FFmpeg's decoder passes a truncated JPEG as a frame whose missing part is left over
    from the previous frame, and OpenCV gives no way to make it strict (its capture options reach the
    demuxer, not the decoder).
    """

    MAX_BAD_IN_A_ROW = 50
    MAX_FAILED_READS = 3  # failed reads in a row of a live stream before it counts as lost
    RAW_PROBE_FRAMES = 10  # JPEGs that must fail to decode, with none ever decoded, before FFmpeg decodes again
    CLOSE_WAIT_S = 1.0  # close() waits this long for a capture that is not stuck to release

    def __init__(
        self,
        uri: str,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 10.0,
        capture_factory: Callable[[int | str], Any] | None = None,
        realtime: bool = False,
        stall_timeout_s: float | None = 5.0,
        open_timeout_s: float | None = None,
        max_stuck_threads: int = 3,
    ) -> None:
        super().__init__()
        self.uri = uri
        self.target = parse_capture_target(uri)
        self.name = f"opencv:{uri}"
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = max(reconnect_max_s, reconnect_min_s)
        self._factory = capture_factory  # None: cv2.VideoCapture with the timeouts the backend takes
        self.is_file = isinstance(self.target, str) and Path(self.target).is_file()
        self.is_network = isinstance(self.target, str) and bool(_URL.match(self.target))
        # a video file is replayed at its own frame rate when `realtime` (a live camera paces itself)
        self.realtime = realtime and self.is_file
        self.lossless = self.is_file and not realtime
        # a file is not watched: reopening it would replay it from the start
        self.stall_timeout_s = None if self.is_file or not stall_timeout_s else float(stall_timeout_s)
        if self.stall_timeout_s is None:
            self.open_timeout_s: float | None = None
        else:
            # opening an RTSP camera waits for a key frame; give it at least 10 s
            self.open_timeout_s = float(open_timeout_s or max(2.0 * self.stall_timeout_s, 10.0))
        self.max_stuck_threads = max(1, int(max_stuck_threads))
        self._worker: CaptureThread | None = None
        self._stuck: set[CaptureThread] = set()
        self._stuck_cond = threading.Condition()
        self._raw = False  # the open capture hands over encoded JPEGs (FFmpeg raw mode)
        self._raw_allowed = True
        self._raw_decoded = False
        self._period = 0.0
        self._next_due = 0.0
        if self.stall_timeout_s is not None and self._is_v4l2():
            os.environ.setdefault("OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT",
                                  str(math.ceil(self.stall_timeout_s + _BACKEND_GRACE_S)))

    # -- hints ---------------------------------------------------------------------------------------
    def _is_v4l2(self) -> bool:
        return isinstance(self.target, int) or self.target.startswith("/dev/")

    def _hint(self) -> str:
        t = self.target
        if isinstance(t, int):
            return (f"check that the camera is plugged in and /dev/video{t} exists (`v4l2-ctl --list-devices`), "
                    "that no other program holds it, and that this user is in the 'video' group")
        if self.is_network:
            return "check the URL, the network link and any credentials in it"
        if t.startswith("/dev/"):
            return "check that the device exists and this user may read it ('video' group)"
        if not Path(t).exists():
            return "no such file; set source.uri to a video file, a device, a URL or a V4L2 index"
        return "OpenCV cannot decode it; check the file and that opencv has the codec"

    def _stall_hint(self) -> str:
        if self.is_network:
            return ("The camera accepted the connection but stopped sending: check the network link (radio "
                    "range, cable) and the camera itself (power, overheating, firmware hang).")
        return ("A USB camera wedged in the kernel driver: check the cable and the hub's power, and `dmesg` for "
                "uvcvideo/xhci errors; replugging or power-cycling the camera frees the driver.")

    # -- capture threads -----------------------------------------------------------------------------
    @property
    def stuck_threads(self) -> int:
        """Capture threads left behind in a call that has not returned yet."""
        with self._stuck_cond:
            return len(self._stuck)

    def _thread_ended(self, w: CaptureThread) -> None:
        with self._stuck_cond:
            w.exited = True
            was_stuck = w in self._stuck
            self._stuck.discard(w)
            left = len(self._stuck)
            self._stuck_cond.notify_all()
        if was_stuck:
            log.info("%s: a capture thread left stuck in the camera (%s) returned and ended; %d still stuck",
                     self.name, w.name, left)

    def _leave_behind(self, w: CaptureThread) -> None:
        """Abandon a capture thread whose call has not returned: it ends by itself when the call does."""
        with self._stuck_cond:
            if not w.exited:
                self._stuck.add(w)
        w.retire()

    def _ensure_worker(self) -> CaptureThread | None:
        """The current capture thread, started if needed; None if stop() came while waiting for a free one."""
        if self._worker is not None:
            return self._worker
        if self.stall_timeout_s is not None:
            with self._stuck_cond:
                full = len(self._stuck) >= self.max_stuck_threads
            if full:
                log.error("%s: %d capture threads are stuck in the camera driver and cannot be killed; the camera "
                          "is opened again only when one of them returns. %s", self.name, self.max_stuck_threads,
                          self._stall_hint())
                with self._stuck_cond:
                    while len(self._stuck) >= self.max_stuck_threads:
                        if self._stop.is_set():
                            return None
                        self._stuck_cond.wait(_POLL_S)
                log.info("%s: a stuck capture thread returned; opening the camera again", self.name)
        self._worker = CaptureThread(self.stall_timeout_s is not None, self._thread_ended)
        return self._worker

    def _call(self, fn: Callable[[CaptureThread], Any], timeout_s: float | None, what: str) -> Any:
        """Run `fn` on the capture thread; StallError after `timeout_s`, StoppedError as soon as stop() is called."""
        w = self._worker
        assert w is not None
        call = w.submit(fn)
        t0 = time.monotonic()
        while not call.done.wait(_POLL_S):
            if self._stop.is_set():
                raise StoppedError
            waited = time.monotonic() - t0
            if timeout_s is not None and waited >= timeout_s:
                raise StallError(what, waited)
        if call.error is not None:
            raise call.error
        return call.result

    def _stalled(self, stall: StallError) -> None:
        w, self._worker = self._worker, None
        self.counters.stalls += 1
        if w is not None:
            self._leave_behind(w)
        log.warning("%s: the camera's %s has not returned for %.1f s (source.stall_timeout_s %s): the camera is "
                    "stuck. Its capture is left behind on thread %s (%d stuck now; a blocked read cannot be "
                    "killed, it ends when the driver lets go) and the camera is reopened; %d stalls so far. %s",
                    self.name, stall.what, stall.waited_s, self.stall_timeout_s, w.name if w else "-",
                    self.stuck_threads, self.counters.stalls, self._stall_hint())

    # -- opening -------------------------------------------------------------------------------------
    def _new_capture(self) -> Any:
        if self._factory is not None:
            return self._factory(self.target)
        if self.is_network and self.stall_timeout_s is not None and self.open_timeout_s is not None \
                and cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG):
            return cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int((self.open_timeout_s + _BACKEND_GRACE_S) * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, int((self.stall_timeout_s + _BACKEND_GRACE_S) * 1000),
            ])
        return cv2.VideoCapture(self.target)

    def _open_on(self, w: CaptureThread) -> tuple[bool, bool]:
        """(Re)open the capture on its thread: (opened, raw JPEG mode). Touches `w` only, never the source."""
        w.release()
        w.cap = self._new_capture()
        if not w.cap.isOpened():
            return False, False
        raw = False
        if self._factory is None and self.is_network and self._raw_allowed:
            fourcc = int(w.cap.get(cv2.CAP_PROP_FOURCC) or 0).to_bytes(4, "little")
            raw = fourcc == b"MJPG" and bool(w.cap.set(cv2.CAP_PROP_FORMAT, -1))
        return True, raw

    def _try_open(self) -> bool:
        w = self._ensure_worker()
        if w is None:
            return False
        try:
            opened, self._raw = self._call(self._open_on, self.open_timeout_s, "open")
        except StoppedError:
            return False
        except StallError as stall:
            self._stalled(stall)
            return False
        return bool(opened)

    def open(self) -> None:
        """Open the camera; CameraError (with what to check) when it does not open or does not answer."""
        self._ensure_worker()
        try:
            opened, self._raw = self._call(self._open_on, self.open_timeout_s, "open")
        except StoppedError:
            return  # stopped while opening: read() ends the stream
        except StallError as stall:
            self._stalled(stall)
            self.close()
            raise CameraError(f"camera {self.uri!r} did not answer within {stall.waited_s:.0f} s while opening; "
                              f"{self._hint()}") from None
        except BaseException:
            self.close()
            raise
        if not opened:
            self.close()
            raise CameraError(f"camera {self.uri!r} did not open; {self._hint()}")
        if self.realtime:
            fps = float(self._call(lambda w: w.cap.get(cv2.CAP_PROP_FPS), None, "get") or 0.0)
            self._period = 1.0 / fps if fps > 0 else 0.0
            self._next_due = time.monotonic()
        log.info("%s opened%s", self.name, " (MJPEG: each JPEG checked and decoded here)" if self._raw else "")

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

    # -- reading -------------------------------------------------------------------------------------
    def _pixels(self, img: Any) -> np.ndarray:
        if not self._raw:
            return img
        try:
            return decode_jpeg(np.asarray(img).tobytes(), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        except UnreadableFrameError as err:
            raise UnreadableFrameError(f"corrupt JPEG from the camera: {err}") from None

    def read(self) -> Frame | None:
        bad = 0
        failed = 0  # failed reads of a live stream since the last good frame
        while not self._stop.is_set():
            if self._worker is None and not self._reconnect():  # after a stall, or an open cut short by stop
                return None
            try:
                ok, img = self._call(read_frame, self.stall_timeout_s, "read")
            except StoppedError:
                return None
            except StallError as stall:
                self._stalled(stall)
                bad = failed = 0
                continue
            if ok:
                try:
                    rgb = to_rgb(self._pixels(img), "bgr")
                    if not self._pace():
                        return None
                    if failed:
                        # the stream went on: those reads were corrupt frames the decoder refused
                        for _ in range(failed):
                            self._skip("the camera sent a frame OpenCV could not decode")
                    self._raw_decoded = self._raw_decoded or self._raw
                    return self._stamp(rgb)
                except UnreadableFrameError as err:
                    self._skip(str(err))
                    bad += 1
                    if self._raw and not self._raw_decoded and bad >= self.RAW_PROBE_FRAMES:
                        log.warning("%s: none of the first %d JPEGs of the stream decoded here; FFmpeg decodes them "
                                    "from now on (a truncated JPEG can then pass as a half frame)", self.name, bad)
                        self._raw_allowed = False
                    elif bad < self.MAX_BAD_IN_A_ROW:
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
        """Release the camera. A capture stuck in the driver is left behind rather than waited for."""
        w, self._worker = self._worker, None
        if w is None:
            return
        busy = w.busy_since
        w.retire()
        if w.thread is None:
            return
        if busy is None or time.monotonic() - busy < self.CLOSE_WAIT_S:
            w.thread.join(self.CLOSE_WAIT_S)
        if w.thread.is_alive():
            self._leave_behind(w)
            log.warning("%s: the camera did not let go within %.1f s (its capture thread %s is stuck in the driver); "
                        "leaving it behind", self.name, self.CLOSE_WAIT_S, w.name)


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
    fast as the classifier goes. An image that cannot be decoded whole (a JPEG cut short, see
    `decode_jpeg`) is skipped and counted, with its file name in the log.
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
            try:
                # decoded from the bytes, not cv2.imread: imread returns a truncated JPEG half grey
                img = decode_image(path.read_bytes(), cv2.IMREAD_UNCHANGED)
            except OSError as err:
                self._skip(f"{path.name} cannot be read ({err.strerror or err})")
                continue
            except UnreadableFrameError as err:
                self._skip(f"{path.name} cannot be decoded: {err}")
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


def make_source(section: Any, latency_s: float = 0.0) -> FrameSource:
    """Build the source the config's `source` section describes (not yet opened); `latency_s` is the camera's
    delay from exposure to delivery (`camera.latency_s`), taken off every stamp it makes."""
    src: FrameSource
    if section.kind == "folder":
        src = FolderSource(section.uri, section.time_from, section.rate_hz, section.realtime)
    elif section.kind == "opencv":
        src = OpenCVSource(section.uri, section.reconnect_min_s, section.reconnect_max_s, realtime=section.realtime,
                           stall_timeout_s=section.stall_timeout_s)
    else:
        raise CameraError(f"source.kind {section.kind!r} cannot be built from a config; use opencv or folder")
    src.latency_s = latency_s
    return src

