"""JPEG integrity: a JPEG cut short or missing data is refused, not classified as a half-grey frame.

Image folders and MJPEG network streams hand us the encoded bytes, so the check runs wherever a
frame arrives as a JPEG (payload/capture/sources.py). Pure functions over bytes, tested against real
truncations of real encodes (tests/payload/test_sources.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from payload.errors import UnreadableFrameError

__all__ = ["JpegLayout", "UnreadableFrameError", "decode_image", "decode_jpeg", "inspect_jpeg"]

# -- why ---------------------------------------------------------------------------------------------
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
    if len(data) < 4 or data[0] != 0xFF or data[1] != 0xD8:
        raise UnreadableFrameError("not a JPEG (no start-of-image marker FF D8)")
    walk = _JpegWalk(data)
    pos = 2
    while True:
        ff, at, marker, pos = walk.next_marker(pos)
        if marker == 0xD9:
            return walk.finish(ff)
        if marker == 0xD8:
            raise UnreadableFrameError("a second start-of-image marker inside the image (two frames run together)")
        if marker in (0x00, 0x01) or 0xD0 <= marker <= 0xD7:
            continue  # no length: stuffing, TEM, a stray restart marker
        end, body = walk.segment(pos, marker, at)
        if marker in _SOF_ALL:
            walk.frame_header(marker, body)
        elif marker == 0xDD and len(body) >= 2:
            walk.interval = (body[0] << 8) | body[1]
        elif marker == 0xDA:
            pos = walk.scan(body, end)  # the marker that ends the scan is read next
            continue
        pos = end


class _JpegWalk:
    """The state of `inspect_jpeg`'s walk over the markers, and what each kind of segment tells it."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.n = len(data)
        self.buf = np.frombuffer(data, np.uint8)
        self.codes: np.ndarray | None = None  # marker bytes after every FF of the image data (FF 00 excluded)
        self.offsets: np.ndarray | None = None
        self.ends: np.ndarray | None = None  # indices into `codes` of markers other than RST0-7
        self.comps: dict[int, tuple[int, int]] = {}
        self.sof = self.width = self.height = self.interval = self.scans = 0
        self.precision: dict[int, np.ndarray] = {}

    def next_marker(self, pos: int) -> tuple[int, int, int, int]:
        """(first FF, the FF right before the marker, the marker byte, the position after it)."""
        data, n = self.data, self.n
        ff = data.find(b"\xff", pos)  # like libjpeg, step over stray bytes between segments
        if ff < 0:
            raise UnreadableFrameError(_CUT_SHORT)
        pos = ff
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            raise UnreadableFrameError(_CUT_SHORT)
        return ff, pos - 1, data[pos], pos + 1

    def finish(self, eoi: int) -> JpegLayout:
        if not self.scans:
            raise UnreadableFrameError("no image data before the end-of-image marker")
        short = [c for c, p in self.precision.items() if p.max() > 0]
        if short:
            raise UnreadableFrameError(
                f"the progressive JPEG ends after scan {self.scans}: component {short[0]} never got all its "
                "coefficients at full precision (the later scans are missing)")
        return JpegLayout(eoi, self.sof, self.width, self.height)

    def segment(self, pos: int, marker: int, at: int) -> tuple[int, bytes]:
        """(where the segment ends, its body) of a segment with a length."""
        data, n = self.data, self.n
        if pos + 2 > n:
            raise UnreadableFrameError(_CUT_SHORT)
        length = (data[pos] << 8) | data[pos + 1]
        end = pos + length
        if length < 2:
            raise UnreadableFrameError(f"segment FF{marker:02X} at byte {at} has an impossible length {length}")
        if end > n:
            raise UnreadableFrameError(_CUT_SHORT)
        return end, data[pos + 2:end]

    def frame_header(self, marker: int, body: bytes) -> None:
        if len(body) < 6 or len(body) < 6 + 3 * body[5]:
            raise UnreadableFrameError(f"frame header FF{marker:02X} is too short")
        self.sof, self.height, self.width = marker, (body[1] << 8) | body[2], (body[3] << 8) | body[4]
        self.comps = {body[6 + 3 * i]: (body[7 + 3 * i] >> 4, body[7 + 3 * i] & 15) for i in range(body[5])}
        if marker in _SOF_PROGRESSIVE:  # per component, the precision each coefficient has reached so far
            self.precision = {c: np.full(64, 99, np.int16) for c in self.comps}

    def scan(self, body: bytes, end: int) -> int:
        """Check one scan (header, restart markers); returns where the marker that ends it begins."""
        if not self.sof:
            raise UnreadableFrameError("image data (a scan) before the frame header")
        if not body or len(body) < 1 + 2 * body[0]:
            raise UnreadableFrameError("scan header FFDA is too short")
        ids = [body[1 + 2 * i] for i in range(body[0])]
        self._note_precision(body, ids)
        self.scans += 1
        if self.codes is None:  # every marker of the image data, found once (vectorised, not a byte loop)
            ffs = np.flatnonzero(self.buf[end:-1] == 0xFF) + end
            nxt = self.buf[ffs + 1]
            keep = (nxt != 0x00) & (nxt != 0xFF)
            self.offsets, self.codes = ffs[keep], nxt[keep]
            self.ends = np.flatnonzero((self.codes < 0xD0) | (self.codes > 0xD7))
        assert self.offsets is not None and self.ends is not None
        first = int(np.searchsorted(self.offsets, end))
        k = int(np.searchsorted(self.ends, first))
        if k >= len(self.ends):
            raise UnreadableFrameError(_CUT_SHORT)
        stop = int(self.ends[k])
        rst = self.codes[first:stop].astype(np.int64) - 0xD0
        due = np.arange(len(rst)) % 8
        if len(rst) and not np.array_equal(rst, due):
            j = int(np.flatnonzero(rst != due)[0])
            raise UnreadableFrameError(
                f"restart marker RST{rst[j]} where RST{due[j]} was due: image data is missing from the "
                f"middle of scan {self.scans}")
        expected = _restart_markers_due(self.sof, self.comps, ids, self.width, self.height, self.interval)
        if expected is not None and len(rst) < expected:
            raise UnreadableFrameError(
                f"{len(rst)} of {expected} restart markers in scan {self.scans}: the image data stops early")
        return int(self.offsets[stop])

    def _note_precision(self, body: bytes, ids: list[int]) -> None:
        """A progressive scan's spectral band (ss..se) reaches successive-approximation bit `al`."""
        if self.precision and len(body) >= 4 + 2 * body[0]:
            ss, se, al = body[1 + 2 * body[0]], body[2 + 2 * body[0]], body[3 + 2 * body[0]] & 15
            for c in ids:
                if c in self.precision and ss <= se < 64:
                    self.precision[c][ss:se + 1] = al


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


