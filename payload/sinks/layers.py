"""GIS layers built from detection records: GeoJSON (RFC 7946), KML (Google Earth) and CSV.

Every layer is rebuilt whole from the list of records (the JSONL is the source of truth) and
replaced atomically (write a temporary file, then rename), so a crash mid-write leaves the
previous complete layer, never a torn one. Files in the output folder:
- detections.geojson / .kml / .csv: one point per sighting (GeoJSON: null geometry when the
  sighting could not be placed; KML skips those; CSV keeps them with empty lat/lon);
- footprints.geojson: each placed sighting's tile outline on the ground (KML: a folder);
- hotspots.geojson / .kml / .csv: one point per hotspot.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import geojson
import simplekml

from payload.hotspots import Hotspot

FORMATS = ("geojson", "kml", "csv")
# 1e-7 degree is ~1 cm: enough for the geometry, well short of float noise
COORD_DECIMALS = 7

# KML colours are aabbggrr
_LABEL_COLOURS = ["ff0000ff", "ff00a5ff", "ffff00ff", "ff00ffff", "ffff0000", "ff00ff00"]
_UNTRUSTED_COLOUR = "ff888888"


def atomic_write_text(path: Path, text: str) -> None:
    """Replace `path` with `text` so readers see the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
    for name, score in (det.get("scores") or {}).items():
        props[f"score_{name}"] = score
    return props


def _ccw_ring(lonlat: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Close the ring and orient it counter-clockwise (RFC 7946 right-hand rule for exteriors)."""
    area2 = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(lonlat, lonlat[1:] + lonlat[:1], strict=True))
    ring = lonlat if area2 > 0 else lonlat[::-1]
    return ring + [ring[0]]


def detections_geojson(dets: Sequence[Mapping[str, Any]]) -> geojson.FeatureCollection:
    feats = []
    for d in dets:
        geom = geojson.Point((d["lon"], d["lat"]), precision=COORD_DECIMALS) if d.get("lat") is not None else None
        feats.append(geojson.Feature(geometry=geom, properties=flat_properties(d), id=d.get("id")))
    return geojson.FeatureCollection(feats)


def footprints_geojson(dets: Sequence[Mapping[str, Any]]) -> geojson.FeatureCollection:
    feats = []
    for d in dets:
        fp = d.get("footprint")
        if not fp:
            continue
        ring = _ccw_ring([(float(lon), float(lat)) for lat, lon in fp])
        props = {"id": d.get("id"), "label": d.get("label"), "confidence": d.get("confidence")}
        props["trusted"] = bool(d.get("trusted"))
        feats.append(
            geojson.Feature(
                geometry=geojson.Polygon([ring], precision=COORD_DECIMALS), properties=props, id=d.get("id")
            )
        )
    return geojson.FeatureCollection(feats)


def hotspot_rows(hotspots: Sequence[Hotspot]) -> list[dict[str, Any]]:
    rows = []
    for h in hotspots:
        r = h.as_dict()
        r.pop("first_seen_t", None)
        r.pop("last_seen_t", None)
        rows.append(r)
    return rows


def hotspots_geojson(hotspots: Sequence[Hotspot]) -> geojson.FeatureCollection:
    feats = [
        geojson.Feature(
            geometry=geojson.Point((r["lon"], r["lat"]), precision=COORD_DECIMALS), properties=r, id=r["id"]
        )
        for r in hotspot_rows(hotspots)
    ]
    return geojson.FeatureCollection(feats)


def _dump_geojson(fc: geojson.FeatureCollection) -> str:
    if not fc.is_valid:
        raise ValueError(f"invalid GeoJSON built: {fc.errors()}")
    return geojson.dumps(fc, indent=None, allow_nan=False) + "\n"


def _colour_for(label: str, labels: list[str]) -> str:
    return _LABEL_COLOURS[labels.index(label) % len(_LABEL_COLOURS)]


# Columns a KML balloon shows (the full set is in the GeoJSON/CSV); each ExtendedData entry costs
# simplekml time, and a long flight has thousands of placemarks.
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


def _point_style(colour: str, scale: float) -> simplekml.Style:
    style = simplekml.Style()
    style.iconstyle.color = colour
    style.iconstyle.scale = scale
    return style


def detections_kml(dets: Sequence[Mapping[str, Any]]) -> str:
    """Points per label folder (grey when the pose was not trusted) and a hidden footprints folder.

    Styles are shared (one per colour) and the XML is not pretty-printed: simplekml's pretty
    printer goes through minidom and took seconds per thousand placemarks.
    """
    kml = simplekml.Kml(name="cropscout detections")
    labels = sorted({str(d.get("label")) for d in dets})
    folders = {lab: kml.newfolder(name=lab) for lab in labels}
    fp_folder = kml.newfolder(name="footprints", visibility=0)
    styles: dict[str, simplekml.Style] = {}
    poly_styles: dict[str, simplekml.Style] = {}
    for d in dets:
        if d.get("lat") is None:
            continue
        label = str(d.get("label"))
        colour = _colour_for(label, labels) if d.get("trusted") else _UNTRUSTED_COLOUR
        if colour not in styles:
            styles[colour] = _point_style(colour, 0.8)
            ps = simplekml.Style()
            ps.polystyle.color = "33" + colour[2:]
            ps.linestyle.color = colour
            poly_styles[colour] = ps
        p = folders[label].newpoint(name=f"{label} {float(d.get('confidence', 0)):.2f}", coords=[(d["lon"], d["lat"])])
        p.style = styles[colour]
        frame = d.get("frame") or {}
        if frame.get("utc"):
            p.timestamp.when = frame["utc"]
        props = flat_properties(d)
        for k in _KML_FIELDS:
            v = props.get(k)
            p.extendeddata.newdata(k, "" if v is None else str(v))
        fp = d.get("footprint")
        if fp:
            ring = _ccw_ring([(float(lon), float(lat)) for lat, lon in fp])
            poly = fp_folder.newpolygon(name=str(d.get("id")), outerboundaryis=ring)
            poly.style = poly_styles[colour]
    return kml.kml(format=False)


def hotspots_kml(hotspots: Sequence[Hotspot]) -> str:
    kml = simplekml.Kml(name="cropscout hotspots")
    rows = hotspot_rows(hotspots)
    labels = sorted({r["label"] for r in rows})
    folders = {lab: kml.newfolder(name=lab) for lab in labels}
    styles = {lab: _point_style(_colour_for(lab, labels), 1.2) for lab in labels}
    for r in rows:
        p = folders[r["label"]].newpoint(name=f"{r['id']} ({r['count']})", coords=[(r["lon"], r["lat"])])
        p.style = styles[r["label"]]
        p.description = (
            f"{r['count']} sightings, max confidence {r['max_confidence']:.2f}, "
            f"mean {r['mean_confidence']:.2f}, first {r['first_seen']}, last {r['last_seen']}"
        )
        for k, v in r.items():
            p.extendeddata.newdata(k, "" if v is None else str(v))
    return kml.kml(format=False)


def _csv(rows: Sequence[Mapping[str, Any]]) -> str:
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return buf.getvalue()


def write_layers(
    out_dir: str | Path,
    dets: Sequence[Mapping[str, Any]],
    hotspots: Sequence[Hotspot],
    formats: Sequence[str] = FORMATS,
) -> list[Path]:
    """Write every requested layer for these records; returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def put(name: str, text: str) -> None:
        atomic_write_text(out / name, text)
        written.append(out / name)

    if "geojson" in formats:
        put("detections.geojson", _dump_geojson(detections_geojson(dets)))
        put("footprints.geojson", _dump_geojson(footprints_geojson(dets)))
        put("hotspots.geojson", _dump_geojson(hotspots_geojson(hotspots)))
    if "kml" in formats:
        put("detections.kml", detections_kml(dets))
        put("hotspots.kml", hotspots_kml(hotspots))
    if "csv" in formats:
        put("detections.csv", _csv([flat_properties(d) for d in dets]))
        put("hotspots.csv", _csv(hotspot_rows(hotspots)))
    return written


def summary_json(dets: Sequence[Mapping[str, Any]], hotspots: Sequence[Hotspot]) -> str:
    """A small JSON summary (counts per label, untrusted counts) for people and scripts."""
    per_label: dict[str, int] = {}
    for d in dets:
        per_label[str(d.get("label"))] = per_label.get(str(d.get("label")), 0) + 1
    return json.dumps(
        {
            "detections": len(dets),
            "untrusted": sum(1 for d in dets if not d.get("trusted")),
            "per_label": per_label,
            "hotspots": len(hotspots),
        },
        indent=2,
    )
