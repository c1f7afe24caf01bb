"""Where frames come from: OpenCV cameras and streams, image folders, and in-process producers.

Every frame is stamped the moment it is read (time.monotonic for ordering and matching telemetry,
time.time for people) and converted to RGB uint8 here, so nothing downstream knows about BGR, grey,
BGRA or 16-bit sensors. A live camera that drops out is reopened with exponential backoff (counted
and logged) instead of ending the flight; a frame that cannot be decoded is skipped and counted.

Two failures OpenCV does not report are caught here as well:
- a camera read that never returns (a USB camera wedged in the kernel driver, a network stream that
  stops sending without closing): every call on a live capture runs on a thread of its own, and a
  read that does not return within `stall_timeout_s` is a stall: counted, logged, the capture left
  behind on its thread (a blocked read cannot be killed) and the camera reopened;
- a JPEG cut short or with image data missing, which OpenCV decodes into a frame whose missing part
  is mid-grey (or, through FFmpeg, left over from the previous frame): refused by `decode_jpeg`
  wherever the encoded bytes are at hand (image folders, MJPEG network streams).
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import queue
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
    """What a source did: frames delivered, frames skipped as unreadable, reconnections, stalled reads."""

    captured: int = 0
    unreadable: int = 0
    reconnects: int = 0
    stalls: int = 0  # camera calls that did not return within the stall timeout (the capture was abandoned)


# -- JPEG integrity ------------------------------------------------------------------------------------
# libjpeg (inside OpenCV) decodes a JPEG whose image data stops early without an error: the blocks it
# never received come out mid-grey and only a warning goes to stderr. OpenCV 5 refuses data that ends
# before the end-of-image marker when decoding from memory, but cv2.imread still returns such a file, and a
# JPEG cut short and then closed with an end-of-image marker (by the camera, or by the next frame's bytes)
# decodes either way. A classifier would see a healthy grey field; these frames are refused here.

_SOF_SEQUENTIAL = frozenset({0xC0, 0xC1})  # Huffman baseline / extended sequential
_SOF_PROGRESSIVE = frozenset({0xC2})
_SOF_DCT = frozenset({0xC0, 0xC1, 0xC2, 0xC9, 0xCA})  # restart intervals count blocks/MCUs
_SOF_ALL = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # not DHT, JPG, DAC
_CUT_SHORT = "the data ends before the end-of-image marker (FF D9): the JPEG was cut short"
# bytes put before the end-of-image marker to see whether the decoder still wanted image data: a complete
# image ignores them (libjpeg skips extraneous bytes before a marker), an incomplete one decodes them
_PROBE_FILL = b"\xa5\x5a\x3c\xc3" * 4


@dataclass(frozen=True)
class JpegLayout:
    """What `inspect_jpeg` found: where the image ends and how it is coded."""

    eoi: int  # where the end-of-image marker begins (with the fill FF bytes before it, if any)
    sof: int  # frame marker: 0xC0 baseline, 0xC2 progressive, ...
    width: int
    height: int


def _restart_markers_due(sof: int, comps: dict[int, tuple[int, int]], ids: list[int], width: int, height: int,
                         interval: int) -> int | None:
    """How many restart markers a complete scan has (None when that cannot be known from the headers)."""
    if not interval or not width or not height or sof not in _SOF_DCT or not comps:
        return None
    hmax = max(h for h, _ in comps.values())
    vmax = max(v for _, v in comps.values())
    if not hmax or not vmax:
        return None
    if len(ids) == 1:  # non-interleaved: one unit per 8x8 block of that component
        h, v = comps.get(ids[0], (0, 0))
        if not h or not v:
            return None
        units = math.ceil(math.ceil(width * h / hmax) / 8) * math.ceil(math.ceil(height * v / vmax) / 8)
    else:
        units = math.ceil(width / (8 * hmax)) * math.ceil(height / (8 * vmax))
    return math.ceil(units / interval) - 1


def inspect_jpeg(data: bytes) -> JpegLayout:
    """Walk a JPEG's markers; raise UnreadableFrameError saying why when it is cut short or has data missing.

    Checks what can be checked without decoding: the start-of-image marker, every segment lying inside
    the data, a frame header and at least one scan before the end-of-image marker (FF D9; whatever
    follows it, padding or a maker's trailer, is ignored), and, when the encoder used restart
    intervals, that every restart marker is there and in sequence (a gap in the middle of the data
    shows up as a missing one), and, for a progressive JPEG, that its scans took every coefficient of
    every component to full precision (cut between two scans it is otherwise a valid, blurrier image).
    A thumbnail's markers inside an APP segment are skipped, not mistaken for the image's.
    """
    n = len(data)
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8:
        raise UnreadableFrameError("not a JPEG (no start-of-image marker FF D8)")
    buf = np.frombuffer(data, np.uint8)
    codes: np.ndarray | None = None  # marker bytes after every FF of the image data (stuffed FF 00 excluded)
    offsets: np.ndarray | None = None
    ends: np.ndarray | None = None  # indices into `codes` of markers other than RST0-7
    comps: dict[int, tuple[int, int]] = {}
    sof = width = height = interval = scans = 0
    precision: dict[int, np.ndarray] = {}
    pos = 2
    while True:
        ff = data.find(b"\xff", pos)  # like libjpeg, step over stray bytes between segments
        if ff < 0:
            raise UnreadableFrameError(_CUT_SHORT)
        pos = ff
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            raise UnreadableFrameError(_CUT_SHORT)
        at, marker = pos - 1, data[pos]
        pos += 1
        if marker == 0xD9:
            if not scans:
                raise UnreadableFrameError("no image data before the end-of-image marker")
            short = [c for c, p in precision.items() if p.max() > 0]
            if short:
                raise UnreadableFrameError(
                    f"the progressive JPEG ends after scan {scans}: component {short[0]} never got all its "
                    "coefficients at full precision (the later scans are missing)")
            return JpegLayout(ff, sof, width, height)
        if marker == 0xD8:
            raise UnreadableFrameError("a second start-of-image marker inside the image (two frames run together)")
        if marker in (0x00, 0x01) or 0xD0 <= marker <= 0xD7:
            continue  # no length: stuffing, TEM, a stray restart marker
        if pos + 2 > n:
            raise UnreadableFrameError(_CUT_SHORT)
        length = (data[pos] << 8) | data[pos + 1]
        end = pos + length
        if length < 2:
            raise UnreadableFrameError(f"segment FF{marker:02X} at byte {at} has an impossible length {length}")
        if end > n:
            raise UnreadableFrameError(_CUT_SHORT)
        body = data[pos + 2:end]
        if marker in _SOF_ALL:
            if len(body) < 6 or len(body) < 6 + 3 * body[5]:
                raise UnreadableFrameError(f"frame header FF{marker:02X} is too short")
            sof, height, width = marker, (body[1] << 8) | body[2], (body[3] << 8) | body[4]
            comps = {body[6 + 3 * i]: (body[7 + 3 * i] >> 4, body[7 + 3 * i] & 15) for i in range(body[5])}
            if marker in _SOF_PROGRESSIVE:  # per component, the precision each coefficient has reached so far
                precision = {c: np.full(64, 99, np.int16) for c in comps}
        elif marker == 0xDD and len(body) >= 2:
            interval = (body[0] << 8) | body[1]
        elif marker == 0xDA:
            if not sof:
                raise UnreadableFrameError("image data (a scan) before the frame header")
            if not body or len(body) < 1 + 2 * body[0]:
                raise UnreadableFrameError("scan header FFDA is too short")
            ids = [body[1 + 2 * i] for i in range(body[0])]
            if precision and len(body) >= 4 + 2 * body[0]:
                ss, se, al = body[1 + 2 * body[0]], body[2 + 2 * body[0]], body[3 + 2 * body[0]] & 15
                for c in ids:
                    if c in precision and ss <= se < 64:
                        precision[c][ss:se + 1] = al
            scans += 1
            if codes is None:  # every marker of the image data, found once (vectorised, not a byte loop)
                ffs = np.flatnonzero(buf[end:-1] == 0xFF) + end
                nxt = buf[ffs + 1]
                keep = (nxt != 0x00) & (nxt != 0xFF)
                offsets, codes = ffs[keep], nxt[keep]
                ends = np.flatnonzero((codes < 0xD0) | (codes > 0xD7))
            assert offsets is not None and ends is not None
            first = int(np.searchsorted(offsets, end))
            k = int(np.searchsorted(ends, first))
            if k >= len(ends):
                raise UnreadableFrameError(_CUT_SHORT)
            stop = int(ends[k])
            rst = codes[first:stop].astype(np.int64) - 0xD0
            due = np.arange(len(rst)) % 8
            if len(rst) and not np.array_equal(rst, due):
                j = int(np.flatnonzero(rst != due)[0])
                raise UnreadableFrameError(
                    f"restart marker RST{rst[j]} where RST{due[j]} was due: image data is missing from the "
                    f"middle of scan {scans}")
            expected = _restart_markers_due(sof, comps, ids, width, height, interval)
            if expected is not None and len(rst) < expected:
                raise UnreadableFrameError(
                    f"{len(rst)} of {expected} restart markers in scan {scans}: the image data stops early")
            pos = int(offsets[stop])  # the marker that ends the scan is read next
            continue
        pos = end


def _maybe_partial(img: np.ndarray, layout: JpegLayout) -> bool:
    """Worth a second decode? A sequential JPEG that ran out of data ends in exactly mid-grey blocks
    (zero coefficients); a progressive one cut inside its last scan leaves blurred blocks, not grey ones."""
    if layout.sof in _SOF_PROGRESSIVE:
        return True
    if layout.sof in _SOF_SEQUENTIAL and img.dtype == np.uint8:
        return bool((img[-8:, -8:] == 128).all())
    return False


def decode_jpeg(data: bytes, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    """Decode a JPEG only if it is whole; UnreadableFrameError says what is wrong with one that is not.

    Refused: no end-of-image marker (cut short; padding after the marker is fine), restart markers
    missing or out of sequence (data lost in the middle), data OpenCV cannot decode at all, and data
    that OpenCV decodes only in part: when a sequential JPEG's last block came out exactly mid-grey (or
    the JPEG is progressive) it is decoded again with filler bytes before its end-of-image marker; a
    complete image ignores them, an incomplete one decodes them as more image data and changes.
    (flags must not rotate the image: the check looks at the last block the decoder wrote.)
    """
    layout = inspect_jpeg(data)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if img is None:
        raise UnreadableFrameError("OpenCV cannot decode the JPEG data")
    if _maybe_partial(img, layout):
        # (a bare FF just before the marker is half of a stuffed FF 00: the fill must not make it a marker)
        head = data[:layout.eoi].rstrip(b"\xff")
        probe = cv2.imdecode(np.frombuffer(head + _PROBE_FILL + data[layout.eoi:], np.uint8), flags)
        if probe is None or probe.shape != img.shape or not np.array_equal(probe, img):
            raise UnreadableFrameError("the image data stops early: OpenCV decoded only part of the frame "
                                       "(the rest would have come out grey)")
    return img


def decode_image(data: bytes, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    """Decode an image file's bytes (any format OpenCV reads); JPEGs go through `decode_jpeg`'s checks."""
    if data[:2] == b"\xff\xd8":
        return decode_jpeg(data, flags)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if img is None:
        raise UnreadableFrameError("OpenCV cannot decode it (not an image, or damaged)")
    return img


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


# -- capture threads and the stall watchdog -------------------------------------------------------------
_POLL_S = 0.1  # how often a caller waiting for the camera looks at stop()
_BACKEND_GRACE_S = 2.0  # backend timeouts are this much longer than ours, so a left-behind thread comes back
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


class _StoppedError(Exception):
    """stop() was called while waiting for the camera."""


class _StallError(Exception):
    """A call on the camera did not return in time."""

    def __init__(self, what: str, waited_s: float) -> None:
        super().__init__(f"{what} did not return within {waited_s:.1f} s")
        self.what = what
        self.waited_s = waited_s


class _Call:
    """One call on a capture, run by its capture thread; `done` is set when it returned or raised."""

    __slots__ = ("fn", "done", "result", "error")

    def __init__(self, fn: Callable[[_CaptureThread], Any]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self, owner: _CaptureThread) -> None:
        owner.busy_since = time.monotonic()
        try:
            self.result = self.fn(owner)
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            self.error = err
        finally:
            owner.busy_since = None
            self.done.set()


class _CaptureThread:
    """The only thread that touches one cv2.VideoCapture, so that a call stuck in the driver can be left behind.

    A blocked cap.read() can be neither interrupted nor killed from Python. With every call on the
    capture running here, the source can stop waiting after a deadline, leave this thread (a daemon)
    to return whenever the driver lets go (it then releases its capture and ends) and open the camera
    again on a new thread. `threaded=False` runs calls inline: video files, which have nothing to watch.
    """

    _numbers = itertools.count(1)

    def __init__(self, threaded: bool, on_exit: Callable[[_CaptureThread], None] | None = None) -> None:
        self.cap: Any = None
        self.name = f"camera-{next(self._numbers)}"
        self.busy_since: float | None = None
        self.exited = False
        self._on_exit = on_exit
        self._calls: queue.SimpleQueue[_Call | None] | None = None
        self.thread: threading.Thread | None = None
        if threaded:
            self._calls = queue.SimpleQueue()
            self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self.thread.start()

    def submit(self, fn: Callable[[_CaptureThread], Any]) -> _Call:
        call = _Call(fn)
        if self._calls is None:
            call.run(self)
        else:
            self._calls.put(call)
        return call

    def release(self) -> None:
        """Release the capture (on this thread, or inline)."""
        cap, self.cap = self.cap, None
        if cap is not None:
            try:
                cap.release()
            except Exception:  # noqa: BLE001 - a capture that cannot release is dropped anyway
                log.debug("%s: releasing the capture raised", self.name, exc_info=True)

    def retire(self) -> None:
        """No more calls: release the capture and end as soon as the call in progress (if any) returns."""
        if self._calls is None:
            self.release()
            self.exited = True
        else:
            self._calls.put(None)

    def _run(self) -> None:
        assert self._calls is not None
        try:
            while (call := self._calls.get()) is not None:
                call.run(self)
        finally:
            self.release()
            if self._on_exit is not None:
                self._on_exit(self)
            else:
                self.exited = True


def _read_frame(w: _CaptureThread) -> tuple[bool, Any]:
    return w.cap.read()


class OpenCVSource(FrameSource):
    """cv2.VideoCapture over a V4L2 index or device path, an RTSP/HTTP URL or a video file.

    A video file ending is the end of the stream; a live device or stream that stops delivering is
    reconnected with exponential backoff between `reconnect_min_s` and `reconnect_max_s`.

    A live camera is also watched: its capture runs on a thread of its own (`_CaptureThread`) and a
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
        self._worker: _CaptureThread | None = None
        self._stuck: set[_CaptureThread] = set()
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

    def _thread_ended(self, w: _CaptureThread) -> None:
        with self._stuck_cond:
            w.exited = True
            was_stuck = w in self._stuck
            self._stuck.discard(w)
            left = len(self._stuck)
            self._stuck_cond.notify_all()
        if was_stuck:
            log.info("%s: a capture thread left stuck in the camera (%s) returned and ended; %d still stuck",
                     self.name, w.name, left)

    def _leave_behind(self, w: _CaptureThread) -> None:
        """Abandon a capture thread whose call has not returned: it ends by itself when the call does."""
        with self._stuck_cond:
            if not w.exited:
                self._stuck.add(w)
        w.retire()

    def _ensure_worker(self) -> _CaptureThread | None:
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
        self._worker = _CaptureThread(self.stall_timeout_s is not None, self._thread_ended)
        return self._worker

    def _call(self, fn: Callable[[_CaptureThread], Any], timeout_s: float | None, what: str) -> Any:
        """Run `fn` on the capture thread; _StallError after `timeout_s`, _StoppedError as soon as stop() is called."""
        w = self._worker
        assert w is not None
        call = w.submit(fn)
        t0 = time.monotonic()
        while not call.done.wait(_POLL_S):
            if self._stop.is_set():
                raise _StoppedError
            waited = time.monotonic() - t0
            if timeout_s is not None and waited >= timeout_s:
                raise _StallError(what, waited)
        if call.error is not None:
            raise call.error
        return call.result

    def _stalled(self, stall: _StallError) -> None:
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

    def _open_on(self, w: _CaptureThread) -> tuple[bool, bool]:
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
        except _StoppedError:
            return False
        except _StallError as stall:
            self._stalled(stall)
            return False
        return bool(opened)

    def open(self) -> None:
        """Open the camera; CameraError (with what to check) when it does not open or does not answer."""
        self._ensure_worker()
        try:
            opened, self._raw = self._call(self._open_on, self.open_timeout_s, "open")
        except _StoppedError:
            return  # stopped while opening: read() ends the stream
        except _StallError as stall:
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
                ok, img = self._call(_read_frame, self.stall_timeout_s, "read")
            except _StoppedError:
                return None
            except _StallError as stall:
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


def make_source(section: Any) -> FrameSource:
    """Build the source the config's `source` section describes (not yet opened)."""
    if section.kind == "folder":
        return FolderSource(section.uri, section.time_from, section.rate_hz, section.realtime)
    if section.kind == "opencv":
        return OpenCVSource(section.uri, section.reconnect_min_s, section.reconnect_max_s, realtime=section.realtime,
                            stall_timeout_s=section.stall_timeout_s)
    raise CameraError(f"source.kind {section.kind!r} cannot be built from a config; use opencv or folder")
