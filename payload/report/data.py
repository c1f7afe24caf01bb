"""What the field report shows, gathered from an output folder's files (the same live and in `payload export`).

Everything is read back from the files the run wrote (detections.jsonl, zones and coverage GeoJSON,
the probability GeoTIFFs, the mosaic, treatment.geojson when a prescription was made), so the report
shows exactly what a grower would load elsewhere. Geometry is put in one local east/north frame
(metres; the mosaic's, else the disease map's origin), where the map is drawn.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from payload.files.jsonl import iter_jsonl
from payload.geo.diseasemap import is_look
from payload.geo.frames import LocalFrame
from payload.sinks.jsonl import DETECTION_SCHEMA_PREFIX, DETECTIONS_FILE
from payload.sinks.mosaic import MOSAIC_JSON

log = logging.getLogger(__name__)

TREATMENT_FILE = "treatment.geojson"
RX_JSON = "prescription.json"
MAX_TRACK_POINTS = 2000  # the track is decimated to this many points: enough to see the legs


@dataclass
class Feature:
    """A polygon feature in the report's frame: its attributes and polygons ([exterior, *holes] of (e, n))."""

    properties: dict[str, Any]
    geometry: shapely.geometry.base.BaseGeometry


@dataclass
class Raster:
    """An image placed on the map: RGBA pixels (north-up) and its bounds in the report's frame."""

    rgba: np.ndarray
    west: float
    south: float
    east: float
    north: float


@dataclass
class Crop:
    """One evidence crop: its file (relative to the output folder), call and where it was seen."""

    path: str
    label: str
    confidence: float
    utc: str
    en: tuple[float, float] | None


@dataclass
class ReportData:
    """Everything the report draws and lists."""

    out_dir: Path
    frame: LocalFrame | None = None
    mosaic: Raster | None = None
    mosaic_info: dict[str, Any] | None = None
    probability: Raster | None = None
    labels: list[str] = field(default_factory=list)
    zones: list[Feature] = field(default_factory=list)
    treatment: list[Feature] | None = None
    seen: dict[int, shapely.geometry.base.BaseGeometry] = field(default_factory=dict)  # min looks -> ground
    track: list[tuple[float, float]] = field(default_factory=list)
    crops: list[Crop] = field(default_factory=list)
    looks: int = 0
    looks_trusted: int = 0
    detections: int = 0
    first_utc: str | None = None
    last_utc: str | None = None
    duration_s: float | None = None
    model_sha256: str | None = None
    map_info: dict[str, Any] | None = None
    stats: dict[str, Any] | None = None
    model: dict[str, Any] | None = None
    rates_placeholder: bool = False  # the prescription's rates are default_rate for every zone: an on/off map


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        log.warning("report: %s not read (%s)", path, err)
        return None


def _origin(info: Mapping[str, Any] | None) -> LocalFrame | None:
    o = (info or {}).get("origin")
    return None if not o else LocalFrame(float(o["lat"]), float(o["lon"]), 0.0)


def _en(frame: LocalFrame, lonlat: Sequence[Sequence[float]]) -> list[tuple[float, float]]:
    a = np.asarray(lonlat, dtype=np.float64).reshape(-1, 2)
    e, n, _ = frame.to_enu(a[:, 1], a[:, 0], 0.0)
    return [(float(x), float(y)) for x, y in zip(np.atleast_1d(e), np.atleast_1d(n), strict=True)]


def geojson_geometry_en(geom: Mapping[str, Any] | None, frame: LocalFrame) -> shapely.geometry.base.BaseGeometry:
    """A GeoJSON Polygon or MultiPolygon (lon, lat) as a shapely geometry in the frame's metres."""
    if not geom:
        return shapely.Polygon()
    if geom.get("type") == "Polygon":
        polys = [geom["coordinates"]]
    elif geom.get("type") == "MultiPolygon":
        polys = geom["coordinates"]
    else:
        return shapely.Polygon()
    out = [shapely.Polygon(_en(frame, rings[0]), [_en(frame, r) for r in rings[1:]]) for rings in polys if rings]
    return shapely.union_all([p.buffer(0) for p in out]) if out else shapely.Polygon()


def read_features(path: Path, frame: LocalFrame) -> list[Feature] | None:
    """A GeoJSON FeatureCollection's polygon features in the frame (None: no such file)."""
    if not path.is_file():
        return None
    fc = _json(path) or {}
    return [Feature(dict(f.get("properties") or {}), geojson_geometry_en(f.get("geometry"), frame))
            for f in fc.get("features", [])]


def read_probability(out: Path, frame: LocalFrame, map_info: Mapping[str, Any] | None,
                     colours: Mapping[str, tuple[int, int, int]]) -> tuple[Raster | None, list[str]]:
    """The disease probability rasters as one RGBA image: each cell in its likeliest disease's colour,
    opaque in proportion to that probability; cells never seen are transparent."""
    tifs = sorted(out.glob("probability_*.tif"))
    origin = _origin(map_info)
    if not tifs or origin is None:
        return None, []
    import rasterio

    bands, labels = [], []
    for t in tifs:
        with rasterio.open(t) as src:
            bands.append(src.read(1))
            left, bottom, right, top = src.bounds
        labels.append(t.stem.removeprefix("probability_"))
    stack = np.stack(bands)
    seen = ~np.isnan(stack).all(axis=0)
    p = np.nan_to_num(stack, nan=0.0)
    best = p.argmax(axis=0)
    peak = p.max(axis=0)
    rgba = np.zeros((*peak.shape, 4), np.uint8)
    for k, lab in enumerate(labels):
        rgba[best == k, :3] = colours.get(lab, (255, 0, 255))
    # below 0.1 nothing is drawn: the prior alone is 0.12, and a map tinted everywhere hides the mosaic
    rgba[..., 3] = np.where(seen, np.clip((peak - 0.1) / 0.9, 0.0, 1.0) * 150, 0).astype(np.uint8)
    de, dn, _ = frame.to_enu(origin.lat0, origin.lon0, 0.0)
    return Raster(rgba, left + float(de), bottom + float(dn), right + float(de), top + float(dn)), labels


def read_mosaic(out: Path, frame: LocalFrame, info: Mapping[str, Any]) -> Raster | None:
    """mosaic.png placed by mosaic.json (its own origin moved into the report's frame)."""
    import cv2

    png = out / str(info.get("png", {}).get("file", "mosaic.png"))
    if not png.is_file():
        return None
    bgra = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    if bgra is None or bgra.ndim != 3 or bgra.shape[2] != 4:
        log.warning("report: %s is not an RGBA PNG; the map is drawn without the mosaic", png)
        return None
    origin = _origin(info)
    assert origin is not None
    de, dn, _ = frame.to_enu(origin.lat0, origin.lon0, 0.0)
    b = info["bounds_en"]
    return Raster(cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGBA), b["west"] + float(de), b["south"] + float(dn),
                  b["east"] + float(de), b["north"] + float(dn))


def _decimate(points: list[tuple[float, float]], n: int) -> list[tuple[float, float]]:
    if len(points) <= n:
        return points
    idx = np.linspace(0, len(points) - 1, n).round().astype(int)
    return [points[i] for i in idx]


def _scan_records(data: ReportData, records: Iterable[Mapping[str, Any]], frame: LocalFrame | None) -> None:
    """Looks (the track, the times) and detections with crops, in one pass over detections.jsonl."""
    track_ll: list[tuple[float, float]] = []
    first_t = last_t = None
    for rec in records:
        if is_look(rec):
            data.looks += 1
            fr = rec.get("frame") or {}
            t = fr.get("t_wall")
            if t is not None:
                if first_t is None:
                    first_t, data.first_utc = float(t), fr.get("utc")
                last_t, data.last_utc = float(t), fr.get("utc")
            data.model_sha256 = data.model_sha256 or rec.get("model_sha256")
            if rec.get("trusted"):
                data.looks_trusted += 1
            veh = rec.get("vehicle")
            if veh and veh.get("lat") is not None and (veh.get("height_agl_m") or 0) > 0:
                track_ll.append((float(veh["lon"]), float(veh["lat"])))
        elif str(rec.get("schema", "")).startswith(DETECTION_SCHEMA_PREFIX):
            data.detections += 1
            if rec.get("crop"):
                en = None
                if frame is not None and rec.get("trusted") and rec.get("lat") is not None:
                    en = _en(frame, [(float(rec["lon"]), float(rec["lat"]))])[0]
                data.crops.append(Crop(str(rec["crop"]), str(rec.get("label")), float(rec.get("confidence") or 0.0),
                                       str((rec.get("frame") or {}).get("utc", "")), en))
    if first_t is not None and last_t is not None:
        data.duration_s = last_t - first_t
    if frame is not None and track_ll:
        data.track = _decimate(_en(frame, track_ll), MAX_TRACK_POINTS)


def _first_vehicle(path: Path) -> LocalFrame | None:
    for rec in iter_jsonl(path):
        veh = rec.get("vehicle") if is_look(rec) else None
        if rec.get("trusted") and veh:
            return LocalFrame(float(veh["lat"]), float(veh["lon"]), 0.0)
    return None


def gather(out: Path, colours: Mapping[str, tuple[int, int, int]]) -> ReportData:
    """Read everything the report needs from an output folder; missing products are simply absent."""
    data = ReportData(out)
    mosaic_info = _json(out / MOSAIC_JSON) if (out / MOSAIC_JSON).is_file() else None
    data.map_info = _json(out / "map.json") if (out / "map.json").is_file() else None
    data.stats = _json(out / "run_stats.json") if (out / "run_stats.json").is_file() else None
    det_path = out / DETECTIONS_FILE
    data.frame = _origin(mosaic_info) or _origin(data.map_info) or (
        _first_vehicle(det_path) if det_path.is_file() else None)
    if det_path.is_file():
        _scan_records(data, iter_jsonl(det_path), data.frame)
    if data.frame is None:
        return data
    if mosaic_info is not None:
        data.mosaic_info = mosaic_info
        data.mosaic = read_mosaic(out, data.frame, mosaic_info)
    data.probability, data.labels = read_probability(out, data.frame, data.map_info, colours)
    data.zones = read_features(out / "zones.geojson", data.frame) or []
    data.treatment = read_features(out / TREATMENT_FILE, data.frame)
    data.rates_placeholder = rates_placeholder(out, data.treatment)
    for f in read_features(out / "coverage.geojson", data.frame) or []:
        n = f.properties.get("min_looks")
        if isinstance(n, int):
            data.seen[n] = f.geometry
    if not data.labels:
        data.labels = sorted({str(z.properties.get("label")) for z in data.zones})
    return data


def rates_placeholder(out: Path, treatment: Sequence[Feature] | None) -> bool:
    """Whether the prescription's rates are placeholders: prescription.json says no rate was set, or (a
    folder without it) every treatment zone carries rates "placeholder"."""
    if treatment is None:
        return False
    rx = _json(out / RX_JSON) if (out / RX_JSON).is_file() else None
    if isinstance(rx, dict) and "rates_placeholder" in rx:
        return bool(rx["rates_placeholder"])
    return bool(treatment) and all(t.properties.get("rates") == "placeholder" for t in treatment)


def crops_by_zone(data: ReportData, per_zone: int) -> dict[str, list[Crop]]:
    """Crops of each zone's class whose sighting lies in the zone (1 m of slack), `pick_crops` of them."""
    out: dict[str, list[Crop]] = {}
    for z in data.zones:
        zid = str(z.properties.get("id"))
        area = z.geometry.buffer(1.0)
        inside = [c for c in data.crops if c.en is not None and c.label == z.properties.get("label")
                  and area.contains(shapely.Point(c.en))]
        out[zid] = pick_crops(inside, per_zone)
    return out


def pick_crops(crops: Sequence[Crop], n: int) -> list[Crop]:
    """n crops spread over the flight: of the more confident half, evenly in time, so the gallery shows
    different passes over the zone rather than n near-identical consecutive frames."""
    if n <= 0 or not crops:
        return []
    ranked = sorted(crops, key=lambda c: -c.confidence)
    pool = sorted(ranked[:max(n, (len(ranked) + 1) // 2)], key=lambda c: (c.utc, c.path))
    if len(pool) <= n:
        return pool
    return [pool[i] for i in np.linspace(0, len(pool) - 1, n).round().astype(int)]


def treatment_rate(data: ReportData, zone: Feature) -> tuple[Any, str | None] | None:
    """The rate of the treatment zone covering most of a disease zone, and its unit if stated (None: no rx)."""
    if not data.treatment:
        return None
    best, share = None, 0.0
    for t in data.treatment:
        a = t.geometry.intersection(zone.geometry).area if not t.geometry.is_empty else 0.0
        if a > share:
            best, share = t, a
    if best is None:
        return None
    p = best.properties
    # the prescription's own column name is its writer's choice: "rate" first, else any *rate* column
    names: list[str] = [k for k in ("rate", "RATE", "Rate") if k in p] + [k for k in p if "rate" in k.lower()]
    key = names[0] if names else None
    if key is None:
        return None
    unit = p.get("unit") or p.get("rate_unit")
    return p[key], (str(unit) if unit else None)


def seen_share(data: ReportData) -> tuple[float | None, float | None, int | None]:
    """(area seen at least once m2, area seen at least coverage_min_looks m2, that number of looks)."""
    if not data.seen:
        return None, None, None
    once = data.seen.get(1)
    n = max(data.seen)
    return (None if once is None else float(once.area)), float(data.seen[n].area), n


def model_facts(card: Mapping[str, Any] | None, sha256: str | None) -> dict[str, Any]:
    """The card's figures a grower or agronomist should see beside the map (JSON-ready)."""
    out: dict[str, Any] = {"sha256": sha256}
    if not card:
        return out
    m = card.get("metrics") or {}
    int8 = m.get("int8") or {}
    at = int8.get("at_thresholds") or {}
    held = (m.get("heldout") or {}).get("int8") or {}
    worst = (m.get("heldout") or {}).get("headline") or {}
    inp = card.get("input") or {}
    tpu = card.get("edgetpu") or {}

    def pct(v: Any) -> float | None:
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(100.0 * float(v), 1)

    out.update({
        "profile": card.get("profile"),
        "created_utc": card.get("created_utc"),
        "classes": card.get("classes"),
        "input_px": [inp.get("width"), inp.get("height")],
        "thresholds": card.get("thresholds"),
        "test_images": m.get("test_images"),
        "int8_accuracy_pct": pct(int8.get("accuracy")),
        "disease_recall_pct": pct(at.get("disease_recall")),
        "false_alarm_pct": pct(at.get("false_alarm_rate")),
        # the worst held-out factor when the card names one (a model is as good as its worst unseen
        # condition), else the whole held-out set (older cards)
        "heldout_accuracy_pct": pct(worst.get("accuracy", held.get("accuracy"))),
        "heldout_worst_factor": worst.get("factor"),
        **_working_gsd(card),
        "heldout_what": (m.get("heldout") or {}).get("what"),
        "edgetpu_compiled": tpu.get("compiled"),
        "edgetpu_note": tpu.get("reason"),
        **training_facts(card),
    })
    return out


def _working_gsd(card: Mapping[str, Any]) -> dict[str, Any]:
    """The working resolution and its stage (`payload.bundle.stage_gsd`: a field trial first, else the ladder)."""
    from payload.bundle import stage_gsd

    gsd = card.get("working_gsd_mm")
    stage, g, source = stage_gsd(float(gsd) if isinstance(gsd, int | float) else None, card.get("gsd_recall"),
                                 card.get("field_detectability"))
    return {"working_gsd_mm": g, "working_gsd_stage": stage if g is not None else None, "working_gsd_source": source}


def training_facts(card: Mapping[str, Any]) -> dict[str, Any]:
    """What the model was made from, which its accuracy figures alone hide (JSON-ready).

    A card of a random backbone trained on synthetic images can show 99 % test accuracy; the
    grower must read on the first lines that it is a demo, not a model to fly.
    """
    t = card.get("training") or {}
    weights = t.get("weights")
    named = card.get("backbone_weights")
    if weights is None and isinstance(named, str):  # a card that names the weights only at the top
        weights = "none" if named.startswith("none") else named
    pretrained = None if weights is None else str(weights).strip().lower() != "none"
    data = t.get("data") or {}
    data_cfg = (t.get("config") or {}).get("data") or {}
    kind = data.get("source") or data_cfg.get("source")
    what: str | None
    if kind == "synthetic":
        what = f"synthetic ({data_cfg.get('generator') or 'unknown'} generator)"
    elif kind == "folder":
        what = f"folder ({data_cfg.get('folder') or 'path not recorded'})"
    else:
        what = None if kind is None else str(kind)
    return {
        "warnings": [str(w) for w in card.get("warnings") or []],
        "backbone_weights": None if weights is None else str(weights),
        "backbone_pretrained": pretrained,
        # what the network is (compile/build.py `_backbone_text`): "ResNet50...", or "small CNN (...)"
        "backbone": None if t.get("backbone") is None else str(t.get("backbone")),
        "training_data": what,
    }
