"""JPEG crops of flagged tiles with EXIF GPS tags (readable by exiftool, QGIS's photo import).

A crop whose position cannot be trusted is still saved (the image is evidence) but without GPS
tags: a photo tagged at 0,0 or from a stale pose would be misplaced by every tool that reads it
(the same rule as Rpanion-server's photovideo.py). Crops cannot be rebuilt from detections.jsonl,
so `payload export` leaves them as they are.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import piexif

from payload.settings.sinks import SinksSection
from payload.sinks.base import SinkBase, SinkContext, register_sink
from payload.types import FrameResult

log = logging.getLogger(__name__)

CROPS_DIR = "crops"


def _rational(x: float, max_den: int = 1_000_000) -> tuple[int, int]:
    f = Fraction(abs(x)).limit_denominator(max_den)
    return f.numerator, f.denominator


def _dms(deg: float) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    a = abs(deg)
    d = int(a)
    m_full = (a - d) * 60.0
    m = int(m_full)
    s = (m_full - m) * 60.0
    return (d, 1), (m, 1), (int(round(s * 10000)), 10000)


def exif_bytes(det: Mapping[str, Any]) -> bytes:
    """EXIF with capture time always, GPS position and altitude only for a trusted placement."""
    frame = det.get("frame") or {}
    t = datetime.fromtimestamp(float(frame.get("t_wall", 0.0)), tz=UTC)
    zeroth = {piexif.ImageIFD.Software: b"cropscout payload"}
    exif = {piexif.ExifIFD.DateTimeOriginal: t.strftime("%Y:%m:%d %H:%M:%S").encode()}
    exif[piexif.ExifIFD.UserComment] = b"ASCII\x00\x00\x00" + f"{det.get('label')} {det.get('confidence')}".encode()
    gps: dict[int, Any] = {}
    if det.get("trusted") and det.get("lat") is not None and det.get("lon") is not None:
        lat, lon = float(det["lat"]), float(det["lon"])
        gps = {
            piexif.GPSIFD.GPSVersionID: (2, 3, 0, 0),
            piexif.GPSIFD.GPSLatitudeRef: b"N" if lat >= 0 else b"S",
            piexif.GPSIFD.GPSLatitude: _dms(lat),
            piexif.GPSIFD.GPSLongitudeRef: b"E" if lon >= 0 else b"W",
            piexif.GPSIFD.GPSLongitude: _dms(lon),
            piexif.GPSIFD.GPSDateStamp: t.strftime("%Y:%m:%d").encode(),
            piexif.GPSIFD.GPSTimeStamp: ((t.hour, 1), (t.minute, 1), _rational(t.second + t.microsecond / 1e6)),
            piexif.GPSIFD.GPSMapDatum: b"WGS-84",
        }
        alt = det.get("ground_alt_m")
        if alt is not None:
            gps[piexif.GPSIFD.GPSAltitudeRef] = 0 if alt >= 0 else 1
            gps[piexif.GPSIFD.GPSAltitude] = _rational(float(alt), 1000)
    return piexif.dump({"0th": zeroth, "Exif": exif, "GPS": gps, "1st": {}, "thumbnail": None})


def write_crop(out_dir: str | Path, det: Mapping[str, Any], pixels: np.ndarray, quality: int = 90) -> str:
    """Save the tile of `pixels` (RGB) named by the record as a geotagged JPEG; returns its relative path."""
    tile = det["tile"]
    crop = pixels[tile["y"] : tile["y"] + tile["h"], tile["x"] : tile["x"] + tile["w"]]
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise OSError("JPEG encoding failed")
    out = io.BytesIO()
    piexif.insert(exif_bytes(det), buf.tobytes(), out)
    jpeg = out.getvalue()
    frame = det.get("frame") or {}
    rel = f"{CROPS_DIR}/f{int(frame.get('seq', 0)):07d}_r{tile['row']}c{tile['col']}_{det.get('label')}.jpg"
    path = Path(out_dir) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(jpeg)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return rel


@register_sink(10, key="sinks", settings=SinksSection)
class CropsSink(SinkBase):
    """A geotagged JPEG of each flagged tile, while the free-disk guard allows it; adds `crop` to the record."""

    name = "crops"

    def __init__(self, out_dir: str | Path, quality: int, allowed: Callable[[], bool]) -> None:
        self.out_dir = Path(out_dir)
        self.quality = quality
        self._allowed = allowed

    @classmethod
    def from_context(cls, ctx: SinkContext) -> CropsSink | None:
        s = ctx.settings(SinksSection)
        if not s.crops:
            return None
        return cls(ctx.out_dir, s.crop_quality, ctx.crops_allowed)

    def on_record(self, det: dict[str, Any], result: FrameResult) -> None:
        if not self._allowed():
            return
        try:
            det["crop"] = write_crop(self.out_dir, det, result.frame.pixels, self.quality)
        except (OSError, ValueError) as err:
            log.warning("crop not saved for %s: %s", det["id"], err)
