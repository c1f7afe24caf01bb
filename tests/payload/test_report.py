"""report.html from an output folder: self-contained, the zones and their crops listed, treatment zones when present."""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from payload.config import MapSection, ReportSection
from payload.geo.camera import CameraModel, box_corners, pixels_to_latlon
from payload.geo.diseasemap import DiseaseMap
from payload.geo.frames import LocalFrame
from payload.geo.looks import LOOK_SCHEMA
from payload.geo.mosaic import MosaicCanvas
from payload.geo.sensor import default_sensor_model
from payload.pipeline.tiling import grid
from payload.report.data import Crop, gather, pick_crops
from payload.report.html import REPORT_HTML, write_report
from payload.sinks.maplayers import write_map_products
from payload.sinks.mosaic import write_mosaic
from payload.types import Pose

ORIGIN = LocalFrame(-35.363261, 149.165230, 0.0)
CAM = CameraModel.from_hfov(640, 480, 60.0)
BOXES = grid(640, 480, 3, 4)
CORNERS = np.concatenate([box_corners(b.x, b.y, b.w, b.h) for b in BOXES])
PATCH = (20.0, 40.0)  # a rust patch, metres east/north of the origin


def flight_folder(out: Path) -> None:
    """Two legs north over a rust patch through the real map and mosaic code, with crops of the rust tiles."""
    dmap = DiseaseMap(default_sensor_model("healthy", ["rust"]), MapSection())
    canvas = MosaicCanvas(ORIGIN, 0.2)
    (out / "crops").mkdir(parents=True)
    lines = []
    seq = 0
    for east in (10.0, 30.0):
        for k in range(60):
            seq += 1
            n = k * 1.0
            lat, lon, _ = ORIGIN.to_geodetic(east, n, 0.0)
            pose = Pose(float(lat), float(lon), 30.0)
            ll = pixels_to_latlon(CAM, CORNERS, pose, 0.0).reshape(len(BOXES), 4, 2)
            tiles = []
            img = np.full((480, 640, 3), (60, 140, 50), np.uint8)
            for b, q in zip(BOXES, ll, strict=True):
                ce, cn, _ = ORIGIN.to_enu(float(q[:, 0].mean()), float(q[:, 1].mean()), 0.0)
                hit = math.hypot(float(ce) - PATCH[0], float(cn) - PATCH[1]) < 6.0
                if hit:
                    img[b.y:b.y + b.h, b.x:b.x + b.w] = (190, 90, 30)
                tiles.append({"row": b.row, "col": b.col, "label": "rust" if hit else "healthy", "flagged": hit,
                              "scores": [0.1, 0.9] if hit else [0.9, 0.1],
                              "footprint": [[float(a), float(c)] for a, c in q]})
                if hit:
                    crop = f"crops/f{seq:07d}_r{b.row}c{b.col}_rust.jpg"
                    cv2.imwrite(str(out / crop), np.full((160, 160, 3), (30, 90, 190), np.uint8))
                    lines.append({"schema": "cropscout.detection/1", "label": "rust", "confidence": 0.9,
                                  "trusted": True, "lat": float(np.mean(q[:, 0])), "lon": float(np.mean(q[:, 1])),
                                  "crop": crop, "frame": {"seq": seq, "utc": f"2026-01-01T10:00:{seq % 60:02d}Z"}})
            look = {"schema": LOOK_SCHEMA, "run_id": "t", "trusted": True, "flags": [], "model_sha256": "ab" * 32,
                    "frame": {"seq": seq, "t_wall": 1.7e9 + seq / 5, "utc": f"2026-01-01T10:00:{seq % 60:02d}Z"},
                    "vehicle": {"lat": float(lat), "lon": float(lon), "alt_m": 30.0, "height_agl_m": 30.0},
                    "tiles": tiles}
            lines.insert(len(lines) - sum(t["flagged"] for t in tiles), look)
            dmap.add_look(look)
            src = CORNERS
            en = np.stack(ORIGIN.to_enu(ll.reshape(-1, 2)[:, 0], ll.reshape(-1, 2)[:, 1], 0.0)[:2], axis=1)
            canvas.add_frame(img, src, en, (east, n), 30.0)
    dmap.finish()
    (out / "detections.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    write_map_products(out, dmap, ["geojson"], rasters=True)
    write_mosaic(out, canvas, canvas.store.get, 2048)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("flight")
    flight_folder(out)
    return out


def test_report_is_one_self_contained_file_with_the_zones_and_their_crops(folder: Path) -> None:
    card = {"profile": "quick", "classes": ["healthy", "rust"], "input": {"width": 96, "height": 96},
            "thresholds": {"rust": 0.4}, "metrics": {"test_images": 450, "int8": {
                "accuracy": 0.991, "at_thresholds": {"disease_recall": 0.99, "false_alarm_rate": 0.007}}},
            "edgetpu": {"compiled": False, "reason": "built with --cpu-only"}}
    path = write_report(folder, ReportSection(crops_per_zone=3), card, {"backend": "cpu (test)"})
    page = path.read_text(encoding="utf-8")
    # nothing outside the file: no script, no stylesheet or image by URL; every image is a data URI
    assert "<script" not in page.lower()
    assert not re.search(r'(src|href)="(?!data:|#)', page), re.findall(r'(?:src|href)="([^"]{0,60})', page)[:5]
    assert not re.search(r"url\((?!#)", page)
    uris = re.findall(r'(?:src|href)="data:image/(png|jpeg);base64,([^"]+)"', page)
    kinds = [k for k, _ in uris]
    assert kinds.count("jpeg") >= 1 + 3 and "png" in kinds  # the mosaic, 3 crops; the probability tint
    for _kind, b64 in uris:
        img = cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_UNCHANGED)
        assert img is not None and img.size > 0
    zones = json.loads((folder / "zones.geojson").read_text())["features"]
    assert len(zones) == 1 and zones[0]["properties"]["label"] == "rust"
    zid = zones[0]["properties"]["id"]
    assert f"<h3>{zid}</h3>" in page and page.count(f"<td>{zid}</td>") == 0  # the table cell carries a swatch
    assert re.search(rf"{zid}</td><td>rust</td>", page)
    # the card's figures and the backend are shown; no treatment layer without a prescription
    for text in ("99.1 %", "99.0 % / 0.7 %", "cpu (test)", "not compiled: built with --cpu-only", "450 images"):
        assert text in page, text
    assert "treatment zone" not in page and "<th>rate</th>" not in page
    facts = json.loads((folder / "report_facts.json").read_text())
    assert facts["zones"] == 1 and facts["mosaic"] is True and facts["model"]["int8_accuracy_pct"] == 99.1


def test_the_map_places_the_mosaic_and_the_zone_in_one_frame(folder: Path) -> None:
    d = gather(folder, {"rust": (200, 90, 30)})
    assert d.mosaic is not None and d.probability is not None and len(d.zones) == 1
    # the zone lies where the patch is, and the mosaic under it shows the patch's colour there
    c = d.zones[0].geometry.centroid
    assert math.hypot(c.x - PATCH[0], c.y - PATCH[1]) < 3.0
    m = d.mosaic
    h, w = m.rgba.shape[:2]
    col = int((PATCH[0] - m.west) / (m.east - m.west) * w)
    row = int((m.north - PATCH[1]) / (m.north - m.south) * h)
    assert tuple(m.rgba[row, col, :3]) == (190, 90, 30)
    assert len(d.track) == 120 and d.looks == 120 and d.detections > 0


def test_treatment_zones_are_drawn_and_give_the_rate_when_present(folder: Path, tmp_path: Path) -> None:
    import shutil

    out = tmp_path / "rx"
    shutil.copytree(folder, out)
    lat, lon, _ = ORIGIN.to_geodetic(PATCH[0], PATCH[1], 0.0)
    d = 15.0 / 111_000.0
    ring = [[lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d], [lon - d, lat + d], [lon - d, lat - d]]
    fc = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {
        "id": "T1", "label": "rust", "rate": 2.5, "unit": "l/ha"}, "geometry": {"type": "Polygon",
                                                                                "coordinates": [ring]}}]}
    (out / "treatment.geojson").write_text(json.dumps(fc))
    page = (write_report(out)).read_text(encoding="utf-8")
    assert "treatment zone: id T1" in page and "<th>rate</th>" in page and "2.50 l/ha" in page


def test_pick_crops_spreads_over_time_among_the_confident() -> None:
    crops = [Crop(f"c{i}.jpg", "rust", 0.5 + (i % 2) * 0.4, f"2026-01-01T10:00:{i:02d}Z", (0.0, 0.0))
             for i in range(20)]
    got = pick_crops(crops, 3)
    assert len(got) == 3 and all(c.confidence == 0.9 for c in got)
    assert [c.path for c in got] == ["c1.jpg", "c9.jpg", "c19.jpg"]
    assert pick_crops(crops, 0) == [] and len(pick_crops(crops[:2], 5)) == 2


def test_an_empty_folder_still_gives_a_page(tmp_path: Path) -> None:
    path = write_report(tmp_path)
    page = path.read_text(encoding="utf-8")
    assert path.name == REPORT_HTML and "Nothing was placed on the ground" in page and "No disease zone" in page


def test_the_first_lines_say_what_the_model_is_and_that_rates_are_placeholders(folder: Path, tmp_path: Path) -> None:
    """A demo bundle (random backbone, synthetic canopy images, no working resolution) and a prescription whose
    rates nobody set: all of it is said before the map, and kept for `payload export`, which has no card."""
    import shutil

    out = tmp_path / "demo"
    shutil.copytree(folder, out)
    lat, lon, _ = ORIGIN.to_geodetic(PATCH[0], PATCH[1], 0.0)
    d = 15.0 / 111_000.0
    ring = [[lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d], [lon - d, lat + d], [lon - d, lat - d]]
    fc = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {
        "id": "T1", "class": "rust", "rate": 1.0, "unit": "l/ha", "rates": "placeholder"},
        "geometry": {"type": "Polygon", "coordinates": [ring]}}]}
    (out / "treatment.geojson").write_text(json.dumps(fc))
    card = {"profile": "quick", "classes": ["healthy", "rust"], "input": {"width": 96, "height": 96},
            "backbone_weights": "none (random init)", "warnings": ["backbone weights: none (random init): demo"],
            "working_gsd_mm": None,
            "training": {"weights": "none", "data": {"source": "synthetic"},
                         "config": {"data": {"source": "synthetic", "generator": "canopy"}}}}
    page = write_report(out, ReportSection(crops_per_zone=0), card).read_text(encoding="utf-8")
    head = page[:page.index("<h2>Map</h2>")]
    for text in ("model warning:</strong> backbone weights: none (random init): demo",
                 "backbone pretrained: <strong>no</strong>: random init", "training data: synthetic (canopy generator)",
                 "working ground resolution: not stated", "rates not set: on/off map"):
        assert text in head, text
    facts = json.loads((out / "report_facts.json").read_text())
    assert facts["rates_placeholder"] is True and facts["model"]["backbone_pretrained"] is False
    # `payload export` rewrites the page without the card: the facts recorded with the flight are reused
    head = write_report(out).read_text(encoding="utf-8").split("<h2>Map</h2>")[0]
    assert "random init" in head and "synthetic (canopy generator)" in head

    # a flying model: pretrained, a folder of real images, a stated resolution; rates set
    fc["features"][0]["properties"]["rates"] = "set"
    (out / "treatment.geojson").write_text(json.dumps(fc))
    card = {**card, "warnings": [], "working_gsd_mm": 4.0, "backbone_weights": "imagenet",
            "training": {"weights": "imagenet", "data": {"source": "folder"},
                         "config": {"data": {"source": "folder", "folder": "/data/plantvillage"}}}}
    head = write_report(out, ReportSection(crops_per_zone=0), card).read_text(encoding="utf-8").split(
        "<h2>Map</h2>")[0]
    for text in ("backbone pretrained: yes (imagenet)", "training data: folder (/data/plantvillage)",
                 "working ground resolution: 4.00 mm per model-input pixel"):
        assert text in head, text
    assert "model warning" not in head and "rates not set" not in head
    # a field trial on the card: its stage's resolution, named with the stage, wins over the build's ladder
    card = {**card, "field_detectability": {"seed": 7, "working_gsd_mm_by_stage": {"early": None, "late": 32.0}}}
    head = write_report(out, ReportSection(crops_per_zone=0), card).read_text(encoding="utf-8").split(
        "<h2>Map</h2>")[0]
    assert "working ground resolution: 4.00 mm per model-input pixel, for moderate disease" in head
    card = {**card, "working_gsd_mm": None}
    head = write_report(out, ReportSection(crops_per_zone=0), card).read_text(encoding="utf-8").split(
        "<h2>Map</h2>")[0]
    assert "working ground resolution: 32.00 mm per model-input pixel, for late disease" in head

    # the offline quick bundle's small CNN: not pretrained, and not called a random ResNet either
    card = {**card, "warnings": ["backbone: small CNN, not ResNet-50: demo"], "working_gsd_mm": None,
            "backbone_weights": "none (small CNN, every weight learnt from the training data)",
            "training": {"weights": "none", "backbone": "small CNN (3 convolutions, every weight learned from "
                         "synthetic data)", "data": {"source": "synthetic"},
                         "config": {"data": {"source": "synthetic", "generator": "canopy"}}}}
    head = write_report(out, ReportSection(crops_per_zone=0), card).read_text(encoding="utf-8").split(
        "<h2>Map</h2>")[0]
    assert "backbone pretrained: <strong>no</strong>: a small CNN trained from scratch" in head
    assert "random init" not in head and "model warning:</strong> backbone: small CNN" in head
