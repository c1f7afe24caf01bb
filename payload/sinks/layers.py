"""GIS layers built from detection records: GeoJSON (RFC 7946), KML (Google Earth) and CSV.

Every layer is rebuilt whole from the records (detections.jsonl is the source of truth) and
replaced atomically (write a temporary file, then rename), so a crash mid-write leaves the
previous complete layer, never a torn one. The records are STREAMED (read, written, forgotten):
a companion computer over a badly diseased field must not hold every sighting of a long flight
in memory, so the detection layers are written feature by feature: GeoJSON by json, KML by the
standard library's streaming XML writer, which escapes text (a KML library that builds the whole
document in memory would grow with the flight). Files in the output folder:
- detections.geojson / .kml / .csv: one point per sighting (GeoJSON: null geometry when the
  sighting could not be placed; KML skips those; CSV keeps them with empty lat/lon);
- footprints.geojson: each placed sighting's tile outline on the ground (KML: a folder);
- zones.geojson / .kml / .csv: the disease zones, polygons (payload/sinks/maplayers.py).
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import geojson

from payload.files.atomic import atomic_open
from payload.files.kml import LABEL_COLOURS, UNTRUSTED_COLOUR, Kml
from payload.files.vector import VECTOR_FORMATS, FeatureStream
from payload.settings.sinks import SinksSection
from payload.sinks.base import SinkBase, SinkContext, register_sink
from payload.sinks.jsonl import DetectionsJsonl, iter_detections
from payload.sinks.maplayers import write_zone_layers
from payload.types import FrameResult

log = logging.getLogger(__name__)

FORMATS = VECTOR_FORMATS
# 1e-7 degree is ~1 cm: enough for the geometry, well short of float noise
COORD_DECIMALS = 7



# A sequence is read as it is; a callable is called once per pass for a fresh iterator (a file)
RecordSource = Sequence[Mapping[str, Any]] | Callable[[], Iterable[Mapping[str, Any]]]


def flat_properties(det: Mapping[str, Any]) -> dict[str, Any]:
    """A detection as flat scalar columns (GIS tools and CSV want no nesting)."""
    pose = det.get("pose") or {}
    fix = det.get("fix") or {}
    tile = det.get("tile") or {}
    frame = det.get("frame") or {}
    props: dict[str, Any] = {
        "id": det.get("id"),
        "label": det.get("label"),
        "confidence": det.get("confidence"),
        "trusted": bool(det.get("trusted")),
        "flags": ";".join(det.get("flags") or []),
        "lat": det.get("lat"),
        "lon": det.get("lon"),
        "ground_alt_m": det.get("ground_alt_m"),
        "height_agl_m": det.get("height_agl_m"),
        "gsd_m": det.get("gsd_m"),
        "utc": frame.get("utc"),
        "frame_seq": frame.get("seq"),
        "t_mono": frame.get("t_mono"),
        "tile_row": tile.get("row"),
        "tile_col": tile.get("col"),
        "tile_x": tile.get("x"),
        "tile_y": tile.get("y"),
        "tile_w": tile.get("w"),
        "tile_h": tile.get("h"),
        "vehicle_lat": pose.get("lat"),
        "vehicle_lon": pose.get("lon"),
        "vehicle_alt_m": pose.get("alt_m"),
        "roll_deg": pose.get("roll_deg"),
        "pitch_deg": pose.get("pitch_deg"),
        "yaw_deg": pose.get("yaw_deg"),
        "pose_age_s": pose.get("age_s"),
        "fix_type": fix.get("type"),
        "fix": fix.get("name"),
        "hdop": fix.get("hdop"),
        "satellites": fix.get("satellites"),
        "model_sha256": det.get("model_sha256"),
        "crop": det.get("crop"),
    }
    local, site = det.get("local"), det.get("site")
    if local is not None or site is not None:  # a local-frame record: its metres and its site address
        local = local or {}
        site = site or {}
        props.update({"frame": det.get("frame_of_reference"), "east_m": local.get("east_m"),
                      "north_m": local.get("north_m"), "up_m": local.get("up_m"), "rack": site.get("rack"),
                      "face": site.get("face"), "bay": site.get("bay"), "shelf": site.get("shelf"),
                      "plant": site.get("plant"), "along_m": site.get("along_m"), "face_up_m": site.get("up_m"),
                      "site": site.get("text")})
    for name, score in (det.get("scores") or {}).items():
        props[f"score_{name}"] = score
    return props


def _ccw_ring(lonlat: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Close the ring and orient it counter-clockwise (RFC 7946 right-hand rule for exteriors)."""
    area2 = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(lonlat, lonlat[1:] + lonlat[:1], strict=True))
    ring = lonlat if area2 > 0 else lonlat[::-1]
    return ring + [ring[0]]


def _colour_for(label: str, labels: list[str]) -> str:
    return LABEL_COLOURS[labels.index(label) % len(LABEL_COLOURS)]


# Columns a KML balloon shows (the full set is in the GeoJSON/CSV): a long flight has thousands of
# placemarks and Google Earth keeps every one in memory.
_KML_FIELDS = (
    "id",
    "label",
    "confidence",
    "trusted",
    "flags",
    "utc",
    "frame_seq",
    "gsd_m",
    "pose_age_s",
    "fix",
    "hdop",
    "satellites",
    "crop",
)


@dataclass
class RecordScan:
    """What one cheap pass over the records tells the writers before they start (O(labels) memory)."""

    count: int = 0
    untrusted: int = 0
    per_label: dict[str, int] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return sorted(self.per_label)


def _passes(records: RecordSource) -> Callable[[], Iterable[Mapping[str, Any]]]:
    if callable(records):
        return records
    return lambda: records


def scan_records(records: RecordSource) -> RecordScan:
    """Counts per label and the CSV columns (their union, in first-seen order)."""
    scan = RecordScan()
    seen: set[str] = set()
    for d in _passes(records)():
        scan.count += 1
        if not d.get("trusted"):
            scan.untrusted += 1
        label = str(d.get("label"))
        scan.per_label[label] = scan.per_label.get(label, 0) + 1
        for k in flat_properties(d):
            if k not in seen:
                seen.add(k)
                scan.columns.append(k)
    return scan


def _kml_styles(k: Kml, colours: Iterable[str]) -> None:
    for colour in colours:
        k.start("Style", id=f"pt-{colour}")
        k.start("IconStyle")
        k.leaf("color", colour)
        k.leaf("scale", "0.8")
        k.end("IconStyle")
        k.end("Style")
        k.polygon_style(f"fp-{colour}", colour, "33")


def _kml_point(k: Kml, d: Mapping[str, Any], props: Mapping[str, Any], colour: str) -> None:
    label = str(d.get("label"))
    k.start("Placemark")
    k.leaf("name", f"{label} {float(d.get('confidence', 0)):.2f}")
    frame = d.get("frame") or {}
    if frame.get("utc"):
        k.start("TimeStamp")
        k.leaf("when", str(frame["utc"]))
        k.end("TimeStamp")
    k.leaf("styleUrl", f"#pt-{colour}")
    k.extended_data((name, props.get(name)) for name in _KML_FIELDS)
    k.point(d["lon"], d["lat"])
    k.end("Placemark")


def _kml_footprint(k: Kml, d: Mapping[str, Any], ring: list[tuple[float, float]], colour: str) -> None:
    k.start("Placemark")
    k.leaf("name", str(d.get("id")))
    k.leaf("styleUrl", f"#fp-{colour}")
    k.polygon([ring])
    k.end("Placemark")


def _footprint_ring(d: Mapping[str, Any]) -> list[tuple[float, float]] | None:
    fp = d.get("footprint")
    if not fp:
        return None
    return _ccw_ring([(float(lon), float(lat)) for lat, lon in fp])


def _geojson_features(gj: FeatureStream, fpj: FeatureStream, d: Mapping[str, Any], props: dict[str, Any],
                      ring: list[tuple[float, float]] | None, placed: bool) -> None:
    """A sighting's point (null geometry when it could not be placed) and, when it has one, its footprint."""
    geom = geojson.Point((d["lon"], d["lat"]), precision=COORD_DECIMALS) if placed else None
    gj.add(geojson.Feature(geometry=geom, properties=props, id=d.get("id")))
    if ring is not None:
        fp_props = {k: props[k] for k in ("id", "label", "confidence", "trusted")}
        poly = geojson.Polygon([ring], precision=COORD_DECIMALS)
        fpj.add(geojson.Feature(geometry=poly, properties=fp_props, id=d.get("id")))


def _kml_document(path: Path, parts: dict[str, IO[str]], labels: list[str]) -> None:
    """detections.kml: the styles, then a folder per label (and the footprints) copied from its part file."""
    with atomic_open(path) as f:
        k = Kml(f)
        k.begin_document("cropscout detections")
        _kml_styles(k, [*(_colour_for(lab, labels) for lab in labels), UNTRUSTED_COLOUR])
        for name, part in parts.items():
            is_fp = name == "\0footprints"
            k.start("Folder")
            k.leaf("name", "footprints" if is_fp else name)
            if is_fp:
                k.leaf("visibility", "0")
            part.flush()
            part.seek(0)
            shutil.copyfileobj(part, f)
            k.end("Folder")
        k.end_document()
        f.write("\n")


def _write_detection_layers(out: Path, records: RecordSource, scan: RecordScan, formats: Sequence[str]) -> list[Path]:
    """One pass over the records writing every detection layer, feature by feature.

    KML wants a folder per label but the records come in flight order, so each folder's placemarks
    go to an anonymous temporary file in the output folder (gone even after a crash) and are
    copied into the document at the end.
    """
    labels = scan.labels
    want_geojson, want_kml, want_csv = ("geojson" in formats), ("kml" in formats), ("csv" in formats)
    written: list[Path] = []
    with contextlib.ExitStack() as stack:
        gj = fpj = None
        csv_f = None
        if want_geojson:
            gj = FeatureStream(stack.enter_context(atomic_open(out / "detections.geojson")))
            fpj = FeatureStream(stack.enter_context(atomic_open(out / "footprints.geojson")))
        if want_csv:
            csv_f = stack.enter_context(atomic_open(out / "detections.csv"))
            csv_w = csv.DictWriter(csv_f, fieldnames=scan.columns, restval="", lineterminator="\n")
            csv_w.writeheader()
        parts: dict[str, IO[str]] = {}
        kml_parts: dict[str, Kml] = {}
        if want_kml:
            for name in [*labels, "\0footprints"]:
                parts[name] = stack.enter_context(
                    tempfile.TemporaryFile("w+", encoding="utf-8", newline="", dir=out, prefix=".kml-part-")
                )
                kml_parts[name] = Kml(parts[name])
        for d in _passes(records)():
            props = flat_properties(d)  # once per record: every layer shows the same columns
            ring = _footprint_ring(d)
            placed = d.get("lat") is not None and d.get("lon") is not None
            if gj is not None and fpj is not None:
                _geojson_features(gj, fpj, d, props, ring, placed)
            if csv_f is not None:
                csv_w.writerow({k: ("" if v is None else v) for k, v in props.items()})
            if want_kml and placed:
                label = str(d.get("label"))
                colour = _colour_for(label, labels) if d.get("trusted") else UNTRUSTED_COLOUR
                _kml_point(kml_parts[label], d, props, colour)
                if ring is not None:
                    _kml_footprint(kml_parts["\0footprints"], d, ring, colour)
        if gj is not None and fpj is not None:
            gj.close()
            fpj.close()
        if want_kml:
            _kml_document(out / "detections.kml", parts, labels)
            written.append(out / "detections.kml")
    if want_geojson:
        written[:0] = [out / "detections.geojson", out / "footprints.geojson"]
    if want_csv:
        written.append(out / "detections.csv")
    return written


def write_layers(
    out_dir: str | Path,
    records: RecordSource,
    zones: Sequence[Mapping[str, Any]],
    formats: Sequence[str] = FORMATS,
    scan: RecordScan | None = None,
) -> list[Path]:
    """Write every requested layer; returns the paths written.

    `records` is a list, or a callable giving a fresh iterator per pass (e.g. over detections.jsonl):
    it is read twice (a scan for the labels and CSV columns, then the writing pass).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if scan is None:
        scan = scan_records(records)
    written = _write_detection_layers(out, records, scan, formats)
    written += write_zone_layers(out, zones, formats)
    return written


def summary_json(scan: RecordScan, zones: Sequence[Mapping[str, Any]]) -> str:
    """A small JSON summary (counts per label, untrusted counts) for people and scripts."""
    return json.dumps(
        {
            "detections": scan.count,
            "untrusted": scan.untrusted,
            "per_label": scan.per_label,
            "zones": len(zones),
        },
        indent=2,
    )


@register_sink(30, key="sinks", settings=SinksSection)
class LayersSink(SinkBase):
    """Keeps the GIS layers current: rewritten from detections.jsonl at most every `interval_s` and at close.

    Rebuilding every layer is O(records); on a long flight that takes long enough on a Pi to hold
    up the writer thread, so it runs beside it in a thread (one at a time), and never takes more
    than ~20 % of the time (the rebuild holds the GIL). The records are streamed from the file up
    to the bytes the JSONL writer reported committed, so no record is held in memory and none is
    read half-written.
    """

    name = "layers"

    def __init__(
        self,
        out_dir: str | Path,
        detections: DetectionsJsonl,
        zones: Callable[[], Sequence[dict[str, Any]]],
        formats: Sequence[str] = FORMATS,
        interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.detections = detections
        self.zones = zones
        self.formats = list(formats)
        self.interval_s = interval_s
        self._clock = clock
        self._last = -1e18
        self._dirty = False
        self._thread: threading.Thread | None = None
        self._cost_s = 0.0

    @classmethod
    def from_context(cls, ctx: SinkContext) -> LayersSink | None:
        jsonl = ctx.built.get("jsonl")
        if not isinstance(jsonl, DetectionsJsonl):
            return None  # the layers are built from detections.jsonl; without it there is nothing to map
        s = ctx.settings(SinksSection)
        formats = list(s.formats)
        if ctx.map is not None and not ctx.map.georeferenced and not set(formats) <= {"csv"}:
            # GeoJSON and KML coordinates are WGS84: a local metre must never pass for a longitude (RFC 7946)
            log.info("the map has no origin on Earth: GeoJSON/KML layers are off, CSV and site products only")
            formats = [f for f in formats if f == "csv"]
        return cls(ctx.out_dir, jsonl, ctx.zones, formats, s.layers_interval_s, ctx.clock)

    def on_record(self, det: dict[str, Any], result: FrameResult) -> None:
        self._dirty = True

    def on_zone(self, zone: dict[str, Any]) -> None:
        self._dirty = True

    def on_snapshot(self) -> None:
        self.maybe_write()

    def on_close(self) -> None:
        self.write_now()

    def write_now(self) -> None:
        """Wait for a rewrite in progress, then rewrite in the caller's thread (at close, in tests)."""
        if self._thread is not None:
            self._thread.join()
        self._write(self.detections.writer.committed_bytes, self.zones())
        self._dirty = False
        self._last = self._clock()

    def maybe_write(self) -> None:
        """Start a background rewrite when something changed and the interval has passed."""
        now = self._clock()
        busy = self._thread is not None and self._thread.is_alive()
        interval = max(self.interval_s, 4.0 * self._cost_s)
        if busy or not self._dirty or now - self._last < interval:
            return
        self._dirty = False
        self._last = now
        self._thread = threading.Thread(
            target=self._write,
            args=(self.detections.writer.committed_bytes, self.zones()),
            name="geotag-layers",
            daemon=True,
        )
        self._thread.start()

    def _write(self, committed_bytes: int, zones: Sequence[dict[str, Any]]) -> None:
        """Rebuild the layers from detections.jsonl up to `committed_bytes` (whole records only)."""
        t0 = time.perf_counter()
        path = self.detections.path
        try:
            write_layers(self.out_dir, lambda: iter_detections(path, end=committed_bytes), zones, self.formats)
            self._cost_s = time.perf_counter() - t0
        except (OSError, ValueError) as err:
            # detections.jsonl is safe; `payload export` can rebuild the layers later
            self._dirty = True
            log.error("could not write GIS layers (%s); run `payload export %s` after the flight", err, self.out_dir)
