"""GeotagHandler end to end without a link: positions, trust flags, layers, crops, looks and the map, export."""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import geojson
import numpy as np
import piexif
import pymap3d
import pytest

from payload.config import PayloadConfig
from payload.files.jsonl import read_jsonl
from payload.geo.looks import LOOK_SCHEMA
from payload.pipeline.geotag import GeotagHandler
from payload.sinks.export import ExportError, export_layers
from payload.sinks.jsonl import iter_detections
from tests.payload.geotagdoubles import HOME, LABELS, ScriptedTelemetry, frame_result

KML = "{http://www.opengis.net/kml/2.2}"


def _cfg(tmp_path: Path, **sections) -> PayloadConfig:
    data = {"model": {"bundle": str(tmp_path / "bundle")}, "output": {"dir": str(tmp_path / "out")}}
    data["sinks"] = {"layers_interval_s": 0}
    data.update(sections)
    return PayloadConfig.model_validate(data)


def _handler(tmp_path: Path, telemetry, **sections) -> GeotagHandler:
    return GeotagHandler(
        _cfg(tmp_path, **sections), labels=LABELS, model_sha256="ab" * 32, telemetry=telemetry, run_id="run1"
    )


def _records(out: Path) -> list[dict]:
    return list(iter_detections(out / "detections.jsonl"))


def test_tile_centre_lands_where_the_camera_geometry_says(tmp_path: Path) -> None:
    tel = ScriptedTelemetry(yaw_deg=90.0)  # nose east: image top looks east, image right looks south
    h = _handler(tmp_path, tel)
    h.handle(frame_result(1, 5.05, [(448, 64, 64, 64)]))  # centre (480, 96)
    h.close()
    (det,) = _records(tmp_path / "out")
    f = (640 / 2) / math.tan(math.radians(62.2) / 2)
    right_m, fwd_m = (480 - 320) / f * 30.0, (240 - 96) / f * 30.0
    lat, lon, _ = pymap3d.enu2geodetic(fwd_m, -right_m, 0, HOME[0], HOME[1], HOME[2])  # east = fwd, north = -right
    e, n, _ = pymap3d.geodetic2enu(det["lat"], det["lon"], HOME[2], lat, lon, HOME[2])
    assert math.hypot(e, n) < 0.01
    assert det["trusted"] and det["flags"] == []
    assert det["label"] == "rust" and det["scores"] == {"healthy": 0.1, "rust": 0.9, "powdery_mildew": 0.0}
    assert det["height_agl_m"] == pytest.approx(30.0)
    assert det["gsd_m"] == pytest.approx(30.0 / f, rel=1e-3)
    assert det["model_sha256"] == "ab" * 32 and det["frame"]["seq"] == 1
    assert det["pose"]["age_s"] == pytest.approx(0.05, abs=1e-6)
    assert det["fix"] == {"type": 3, "name": "3d", "hdop": 0.8, "satellites": 11}
    assert len(det["footprint"]) == 4
    # only flagged tiles became records
    assert len(_records(tmp_path / "out")) == 1


@pytest.mark.parametrize(
    ("kwargs", "t", "flag", "placed"),
    [
        ({"fix_type": 1}, 5.0, "no_fix", True),
        ({"hdop": 9.0}, 5.0, "hdop_high", True),
        ({"lat": 0.0, "lon": 0.0}, 5.0, "latlon_zero", True),
        ({"attitude": (math.nan, 0.0, 0.0)}, 5.0, "attitude_nan", False),
        ({"t_end": 3.0}, 5.0, "pose_stale", True),
        ({"alt": HOME[2] - 1.0}, 5.0, "not_above_ground", False),
        ({"alt": HOME[2] + 3.0}, 5.0, "below_min_height", True),  # taking off: placed, but kept out of the map
        ({"attitude": (0.0, math.radians(89), 0.0)}, 5.0, "ray_misses_ground", False),
    ],
)
def test_untrustworthy_pose_is_recorded_and_flagged(tmp_path: Path, kwargs, t, flag, placed) -> None:
    h = _handler(tmp_path, ScriptedTelemetry(**kwargs))
    h.handle(frame_result(7, t, [(0, 0, 64, 64)]))
    h.close()
    (det,) = _records(tmp_path / "out")
    assert flag in det["flags"] and det["trusted"] is False
    assert (det["lat"] is not None) == placed
    # an untrusted look does not touch the map: no zone, no coverage (and so no alert)
    assert json.loads((tmp_path / "out" / "zones.geojson").read_text())["features"] == []
    assert h.map.grid.chunks == {} and h.map.counts.untrusted == 1


def test_no_telemetry_still_records(tmp_path: Path) -> None:
    h = _handler(tmp_path, None)
    h.handle(frame_result(1, 1.0, [(0, 0, 64, 64), (64, 0, 64, 64)]))
    h.close()
    dets = _records(tmp_path / "out")
    assert len(dets) == 2 and all(d["flags"] == ["no_telemetry"] and d["lat"] is None for d in dets)
    fc = geojson.loads((tmp_path / "out" / "detections.geojson").read_text())
    assert fc.is_valid and all(f["geometry"] is None for f in fc["features"])


def _run_flight(tmp_path: Path, **sections) -> tuple[GeotagHandler, ScriptedTelemetry]:
    tel = ScriptedTelemetry()
    h = _handler(tmp_path, tel, **sections)
    # two patches: rust near the centre (seen in 3 frames), mildew at the top-left (1 frame)
    for i in range(3):
        h.handle(frame_result(i, 1.0 + i, [(300 + 4 * i, 220, 40, 40)], "rust", 0.8 + 0.05 * i))
    h.handle(frame_result(10, 4.0, [(0, 0, 64, 64)], "powdery_mildew", 0.7))
    return h, tel


def test_layers_load_with_real_readers(tmp_path: Path) -> None:
    h, _ = _run_flight(tmp_path)
    h.close()
    out = tmp_path / "out"
    dets = _records(out)
    fc = geojson.loads((out / "detections.geojson").read_text())
    assert fc.is_valid and fc["type"] == "FeatureCollection" and "crs" not in fc
    assert len(fc["features"]) == 4
    raw = json.loads((out / "detections.geojson").read_text())  # geojson.loads re-rounds to 6 decimals
    for f, d in zip(raw["features"], dets, strict=True):
        assert f["geometry"]["coordinates"] == pytest.approx([d["lon"], d["lat"]], abs=1e-7)  # lon, lat order
        assert f["properties"]["score_rust"] == d["scores"]["rust"]
    fp = geojson.loads((out / "footprints.geojson").read_text())
    assert fp.is_valid
    ring = np.array(fp["features"][0]["geometry"]["coordinates"][0])
    assert (ring[0] == ring[-1]).all()
    x, y = ring[:, 0], ring[:, 1]
    assert np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]) > 0  # counter-clockwise exterior (RFC 7946)

    root = ET.parse(out / "detections.kml").getroot()
    assert root.tag == KML + "kml"
    by_id = {}
    for pm in root.iter(KML + "Placemark"):
        coords = pm.find(f"{KML}Point/{KML}coordinates")
        if coords is None:
            continue  # footprint polygons
        data = {d.get("name"): d.findtext(KML + "value") for d in pm.iter(KML + "Data")}
        lon, lat, _ = (float(v) for v in coords.text.strip().split(","))
        by_id[data["id"]] = (lat, lon, pm.findtext(f"{KML}TimeStamp/{KML}when"))
    assert len(by_id) == 4
    for d in dets:
        lat, lon, when = by_id[d["id"]]
        assert (lat, lon) == pytest.approx((d["lat"], d["lon"]), abs=1e-8)
        assert when == d["frame"]["utc"]
    assert len(root.findall(f".//{KML}Placemark/{KML}Polygon")) == 4

    zs = geojson.loads((out / "zones.geojson").read_text())
    assert zs.is_valid and zs["type"] == "FeatureCollection"
    cov = geojson.loads((out / "coverage.geojson").read_text())
    assert cov.is_valid and cov["features"][0]["properties"]["min_looks"] == 1
    assert cov["features"][0]["geometry"]["type"] in ("Polygon", "MultiPolygon")

    with open(out / "detections.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and float(rows[0]["lat"]) == pytest.approx(dets[0]["lat"])


def test_gdal_reads_the_layers(tmp_path: Path) -> None:
    """GDAL (pyogrio's pinned wheel, dev extra) reads every layer QGIS would open, with the right points."""
    import struct

    import pyogrio
    from pyogrio.raw import read

    h, _ = _run_flight(tmp_path)
    h.close()
    out = tmp_path / "out"
    # KML: GDAL makes one layer per folder (a folder per label, plus the footprints): 4 points + 4 polygons
    expected = {
        "detections.geojson": 4,
        "footprints.geojson": 4,
        "detections.kml": 8,
        "detections.csv": 4,
    }
    for name, n in expected.items():
        layers = [str(row[0]) for row in pyogrio.list_layers(out / name)]
        counts = [pyogrio.read_info(out / name, layer=layer)["features"] for layer in layers]
        assert sum(counts) == n, (name, layers, counts)
    dets = _records(out)
    _meta, _fids, geoms, _fields = read(out / "detections.geojson")
    for det, wkb in zip(dets, geoms, strict=True):
        kind = struct.unpack_from("<I", wkb, 1)[0] & 0xFF  # ISO WKB, little-endian: 1 = Point (+1000s for Z)
        lon, lat = struct.unpack_from("<2d", wkb, 5)
        # the layers keep 7 decimals (~1 cm)
        assert kind == 1 and (lat, lon) == pytest.approx((det["lat"], det["lon"]), abs=1.01e-7)
    info = pyogrio.read_info(out / "detections.kml", layer=[str(r[0]) for r in pyogrio.list_layers(
        out / "detections.kml")][0])
    assert info["crs"] == "EPSG:4326" and info["driver"] in ("LIBKML", "KML"), info


def test_crops_carry_exif_gps_only_when_trusted(tmp_path: Path) -> None:
    h, _ = _run_flight(tmp_path, sinks={"crops": True, "layers_interval_s": 0})
    h.close()
    det = _records(tmp_path / "out")[0]
    exif = piexif.load(str(tmp_path / "out" / det["crop"]))
    gps = exif["GPS"]

    def deg(v):
        return sum(n / d / 60**i for i, (n, d) in enumerate(v))

    assert deg(gps[piexif.GPSIFD.GPSLatitude]) == pytest.approx(det["lat"], abs=1e-6)
    assert gps[piexif.GPSIFD.GPSLongitudeRef] == b"E"
    assert deg(gps[piexif.GPSIFD.GPSLongitude]) == pytest.approx(det["lon"], abs=1e-6)
    # no fix: the crop is saved, without GPS tags
    h2 = _handler(tmp_path / "b", ScriptedTelemetry(fix_type=0), sinks={"crops": True})
    h2.handle(frame_result(3, 2.0, [(0, 0, 64, 64)]))
    h2.close()
    det2 = _records(tmp_path / "b" / "out")[0]
    assert piexif.load(str(tmp_path / "b" / "out" / det2["crop"]))["GPS"] == {}


def test_export_rebuilds_layers_and_skips_a_torn_line(tmp_path: Path) -> None:
    h, _ = _run_flight(tmp_path, sinks={"layers_interval_s": 3600})  # layers written once, then stale
    h.sink("jsonl").on_close()  # the process "dies": no close(), so the layers miss the later records
    out = tmp_path / "out"
    with open(out / "detections.jsonl", "a") as f:
        f.write('{"schema":"cropscout.detection/1","id":"torn","lab')
    assert len(geojson.loads((out / "detections.geojson").read_text())["features"]) == 1
    rep = export_layers(out)
    looks = sum(1 for r in read_jsonl(out / "detections.jsonl").records if r.get("schema") == LOOK_SCHEMA)
    assert rep.records == 4 and rep.torn_last_line and rep.looks == looks > 0
    assert "torn last line" in rep.text()
    assert len(geojson.loads((out / "detections.geojson").read_text())["features"]) == 4
    # a new run appends after the torn line without gluing onto it
    h2 = _handler(tmp_path, ScriptedTelemetry())
    h2.handle(frame_result(20, 2.0, [(0, 0, 64, 64)]))
    h2.close()
    res = read_jsonl(out / "detections.jsonl")
    assert len(_records(out)) == 5 and len(res.bad_lines) == 1 and not res.torn_last_line


def test_export_of_a_folder_without_records_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="detections.jsonl: not found"):
        export_layers(tmp_path)


def test_exiftool_reads_the_crop_position(tmp_path: Path) -> None:
    """A second, independent EXIF reader (Debian's exiftool, installed by `make ci-tools`) agrees with piexif."""
    if shutil.which("exiftool") is None:
        pytest.fail("exiftool is not installed: run `make ci-tools` (Debian package libimage-exiftool-perl)")
    h, _ = _run_flight(tmp_path, sinks={"crops": True, "layers_interval_s": 0})
    h.close()
    det = _records(tmp_path / "out")[0]
    res = subprocess.run(
        ["exiftool", "-j", "-n", "-GPSLatitude", "-GPSLongitude", "-GPSAltitude", str(tmp_path / "out" / det["crop"])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    (tags,) = json.loads(res.stdout)
    assert tags["GPSLatitude"] == pytest.approx(det["lat"], abs=1e-6)
    assert tags["GPSLongitude"] == pytest.approx(det["lon"], abs=1e-6)
    assert tags["GPSAltitude"] == pytest.approx(det["ground_alt_m"], abs=1e-3)


def test_export_of_a_flight_from_before_the_map_keeps_its_detections(tmp_path: Path) -> None:
    """A detections.jsonl without looks or map info (an older payload) still gives every detection layer."""
    h, _ = _run_flight(tmp_path)
    h.close()
    out = tmp_path / "out"
    dets = _records(out)
    old = tmp_path / "old"
    old.mkdir()
    (old / "detections.jsonl").write_text("".join(json.dumps(d) + "\n" for d in dets))
    rep = export_layers(old)
    assert rep.records == len(dets) and rep.looks == 0 and rep.zones == 0
    assert len(geojson.loads((old / "detections.geojson").read_text())["features"]) == len(dets)
    assert json.loads((old / "zones.geojson").read_text())["features"] == []
    assert not (old / "map.json").exists()


def _looks(out: Path) -> list[dict]:
    return [r for r in read_jsonl(out / "detections.jsonl").records if r.get("schema") == LOOK_SCHEMA]


def test_looks_carry_each_tiles_place_error(tmp_path: Path) -> None:
    h = _handler(tmp_path, ScriptedTelemetry())  # a level hover on 10 Hz streams
    h.handle(frame_result(1, 5.05, [(0, 0, 64, 64), (288, 208, 64, 64)]))
    h.close()
    (look,) = _looks(tmp_path / "out")
    assert look["trusted"] and look["place"]["tilt_deg"] == 0.0 and look["place"]["rate_dps"] == 0.0
    sig = [t["sigma_m"] for t in look["tiles"]]
    assert all(s is not None and 0.0 <= s < 0.01 for s in sig)  # still and level: the clock's millimetres
    assert look["place"]["sigma_m"] == max(sig)


@pytest.mark.parametrize(("rate_hz", "trusted"), [(3.0, False), (25.0, True)])
def test_a_look_too_uncertain_to_place_is_flagged_and_kept_out_of_the_map(tmp_path: Path, rate_hz, trusted) -> None:
    # rolling at 50 deg/s (under the 60 deg/s limit) 30 m up; on 3 Hz streams the frame halfway between two
    # attitude samples misses by 50 deg/s * sqrt(1/6 * 1/6) s = 8.3 deg: 4.4 m under the camera, above the 4 m limit
    h = _handler(tmp_path, ScriptedTelemetry(roll_rate_dps=50.0, rate_hz=rate_hz, north_mps=5.0))
    t = 5.0 + 1 / 6 if rate_hz == 3.0 else 5.02
    h.handle(frame_result(1, t, [(0, 0, 64, 64), (288, 208, 64, 64)]))
    h.close()
    (look,) = _looks(tmp_path / "out")
    centre, corner = look["tiles"][1]["sigma_m"], look["tiles"][0]["sigma_m"]
    assert corner > centre  # further off nadir
    dets = _records(tmp_path / "out")
    if trusted:
        assert look["trusted"] and 0.3 < look["place"]["sigma_m"] < 1.0 and 0.3 < centre < 1.0
        assert h.map.counts.applied == 1 and h.map.grid.chunks
        assert all(d["trusted"] for d in dets)
    else:
        assert look["flags"] == ["place_uncertain"] and not look["trusted"]
        assert look["place"]["sigma_m"] == pytest.approx(30 * math.radians(50) / 6, rel=0.05)  # the axis: 4.4 m
        assert centre == pytest.approx(look["place"]["sigma_m"], rel=0.02)
        assert h.map.grid.chunks == {} and h.map.counts.untrusted == 1
        assert [d["flags"] for d in dets] == [["place_uncertain"]] * 2  # its sightings too


def test_a_sighting_in_a_far_tile_of_a_placed_look_is_flagged_on_its_own(tmp_path: Path) -> None:
    # banked 30 deg rolling 40 deg/s on 4 Hz streams: the axis is placed (~3.3 m), the far corner is not
    h = _handler(tmp_path, ScriptedTelemetry(attitude=(math.radians(30), 0.0, 0.0), roll_rate_dps=40.0,
                                             rate_hz=4.0, north_mps=5.0))
    h.handle(frame_result(1, 5.0 + 0.125, [(0, 0, 64, 64), (576, 0, 64, 64)]))  # right wing down: left is far
    h.close()
    (look,) = _looks(tmp_path / "out")
    assert look["trusted"] and look["place"]["sigma_m"] < 4.0
    far, near = look["tiles"][0]["sigma_m"], look["tiles"][1]["sigma_m"]
    assert far > 4.0 > near
    assert [d["flags"] for d in _records(tmp_path / "out")] == [["place_uncertain"], []]
    assert h.map.counts.applied == 1  # the map weighs the far tile by its own sigma


@pytest.mark.parametrize(("kwargs", "flag"), [({"attitude": (math.radians(40), 0.0, 0.0)}, "tilt_high"),
                                              ({"roll_rate_dps": 90.0, "rate_hz": 25.0}, "rate_high")])
def test_tilt_and_rate_limits_flag_the_frame(tmp_path: Path, kwargs, flag) -> None:
    h = _handler(tmp_path, ScriptedTelemetry(**kwargs))
    h.handle(frame_result(1, 5.02, [(288, 208, 64, 64)]))
    h.close()
    (look,) = _looks(tmp_path / "out")
    assert flag in look["flags"] and not look["trusted"] and h.map.grid.chunks == {}
    (det,) = _records(tmp_path / "out")
    assert flag in det["flags"] and det["lat"] is not None  # placed, but not trusted


def test_export_rebuilds_the_live_map_from_looks_that_carry_place_errors(tmp_path: Path) -> None:
    h = _handler(tmp_path, ScriptedTelemetry(roll_rate_dps=20.0, rate_hz=10.0, north_mps=10.0))
    for i in range(8):
        h.handle(frame_result(i, 4.615 + 0.11 * i, [(288, 150 + 19 * i, 64, 64)], "rust", 0.9))  # between samples
    h.close()
    out = tmp_path / "out"
    sig = [t["sigma_m"] for lk in _looks(out) for t in lk["tiles"] if t["sigma_m"] is not None]
    assert min(sig) > 0.05  # the roll between samples shows
    live = (out / "zones.geojson").read_text()
    zones = json.loads(live)["features"]
    assert zones and all(z["properties"]["place_sigma_m"] > 0.05 for z in zones)
    export_layers(out)
    assert (out / "zones.geojson").read_text() == live
