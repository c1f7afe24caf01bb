"""The whole chain on one small field: simulator, the real `payload run` process, the map, scoring, report.

The flight here is over a TEST DOUBLE world, tests/trainingtexture_world.py: the field painted with
the classifier's own training textures (compile/synthetic.py) at the scale where a tile looks like a
training image, as the simulator's field was before it became a physical world (flight_sim/world).
This test measures the chain after the classifier (geometry and geotags, the map's fusion, zones,
mosaic, rasters, prescription, report), and it needs a classifier that sees the patch to do so; the
quick bundle (`generator: family`, configs/build.yaml and compile/config.py's quick profile) does
not yet see disease in the physical world, and what the classifier sees there is measured elsewhere,
never here.

The model here is the session's quick bundle (barely trained) on one plain rust patch: the zone
must be found where the patch is, with no false zone, the field covered, the GeoTIFFs georeferenced,
trusted sightings on the patch, and the live alert sent once for the zone. The same flight's mosaic
must cover the field and show the patch within 1 m of its true place, and its report.html must
render in a real browser (headless Chromium) without a console message, and the prescription it wrote
at close must be read by GDAL and isoxml with every patch inside a treatment zone. `make demo` and the
closing notes carry the quality figures of harder fields.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
import shapely
import yaml
from rasterio.warp import transform

from flight_sim.scenario import load_scenario
from payload.geo.frames import enu_to_geodetic
from payload.sinks.jsonl import iter_detections
from tests.browser import screenshot
from tests.trainingtexture_world import TrainingTextureWorld
from tools.mission.run import MissionPlan, _enu, run_mission
from tools.remap import main as remap_main

ROOT = Path(__file__).resolve().parents[2]


def small_scenario(tmp_path: Path) -> Path:
    s = yaml.safe_load((ROOT / "configs" / "scenarios" / "wheat_30m.yaml").read_text())
    s["field"].update(width_m=40, height_m=20)
    # off the field's centre, so a mirrored or swapped axis could not still land on the patch
    s["patches"] = [{"class": "rust", "east_m": 13, "north_m": 8, "radius_m": 6}]
    s["flight"].update(altitude_m=20, line_spacing_m=15, margin_m=5)
    p = tmp_path / "small.yaml"
    p.write_text(yaml.safe_dump(s))
    return p


@pytest.fixture(scope="module")
def flown(tmp_path_factory: pytest.TempPathFactory, leaf_family_bundle: Path) -> tuple[Path, Path, dict]:
    """One mission for this module's tests over the training-texture double: (its folder, the payload's output
    folder, report.json)."""
    tmp_path = tmp_path_factory.mktemp("e2e")
    out = tmp_path / "mission"
    plan = MissionPlan(small_scenario(tmp_path), out, leaf_family_bundle, world_factory=TrainingTextureWorld)
    return tmp_path, out, run_mission(plan)


def test_mission_flies_the_real_payload_and_reports(flown: tuple[Path, Path, dict], leaf_family_bundle: Path) -> None:
    tmp_path, out, report = flown
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    for key in ("patches_total", "patches_found", "false_zones", "centroid_error_m_median", "iou_mean",
                "coverage_fraction", "coverage_gaps", "per_class", "frames_processed", "frames_dropped", "backend"):
        assert key in report
    assert report["patches_total"] == 1
    # the map: the patch is found by one zone near its centre, nothing else is called, the field was seen
    assert report["patches_found"] == 1 and report["false_zones"] == 0, report["patches"]
    (patch,) = report["patches"]
    assert patch["status"] == "found" and patch["centroid_error_m"] < 3.0 and patch["iou"] > 0.2, patch
    assert report["coverage_fraction"] > 0.95 and report["patches_not_inspected"] == 0
    # one live alert per zone, and the zone the alert named is the one in the layer
    zone_alerts = [t for t in report["alerts_received_by_gcs"] if " Z" in t]
    assert len(zone_alerts) == report["zones_total"] >= 1 and zone_alerts[0].startswith("rust Z1 ")
    # trusted rust sightings lie where they should: most tile footprints overlap the true patch (a
    # quick model also calls rust on healthy ground now and then, which is what the map absorbs: no
    # false zone above; a placement error of a tile or a mirrored axis would put most of them off it)
    s = load_scenario(out / ".." / "small.yaml")
    disk = shapely.Point(13.0, 8.0).buffer(6.0)
    trusted = [d for d in iter_detections(out / "detections.jsonl") if d["trusted"] and d["label"] == "rust"]
    assert trusted
    on_patch = sum(
        shapely.Polygon([_enu(lat, lon, s) for lat, lon in d["footprint"]]).intersects(disk) for d in trusted
    )
    assert on_patch / len(trusted) > 0.5, (on_patch, len(trusted))
    # the rasters are georeferenced: the patch centre reads high on the rust probability GeoTIFF
    info = json.loads((out / "map.json").read_text())
    lat0, lon0 = s.origin.lat, s.origin.lon
    lat, lon, _ = enu_to_geodetic(13.0, 8.0, 0.0, lat0, lon0, 0.0)
    with rasterio.open(out / "probability_rust.tif") as src:
        assert src.crs.to_proj4().startswith("+proj=ortho") and info["cell_m"] == src.res[0]
        xs, ys = transform("EPSG:4326", src.crs, [float(lon)], [float(lat)])
        r, c = src.index(xs[0], ys[0])
        assert src.read(1)[r, c] > 0.5
    assert math.isfinite(report["iou_mean"])
    assert report["backend"].startswith("cpu")
    assert report["frames_processed"] > 20
    # the payload wrote the product's layers, and the map picture exists
    for name in ("detections.jsonl", "payload.yaml", "run_stats.json", "map.png", "payload.log"):
        assert (out / name).is_file(), name
    log = (out / "payload.log").read_text()
    assert "Edge TPU" in log or "edgetpu" in log  # says why it fell back to the CPU
    assert (out / "map.png").read_bytes()[:4] == b"\x89PNG"
    # tools.remap replays the recorded looks with a table recomputed from the card's counts: at the
    # card's own shares it rebuilds the flight's zones exactly; with one share for hits and misses
    # (the old model) the zone grows past the patch
    card = json.loads((leaf_family_bundle / "model_card.json").read_text())["sensor_model"]
    assert remap_main([str(tmp_path), "--bundle", str(leaf_family_bundle), "--out", str(tmp_path / "same"),
                       "--hit-share", str(card["hit_share"]), "--miss-share", str(card["miss_share"]),
                       "--cap", str(card["llr_cap"])]) == 0
    def zone_areas(d: Path) -> list[float]:
        return sorted(f["properties"]["area_m2"] for f in json.loads((d / "zones.geojson").read_text())["features"])
    assert zone_areas(tmp_path / "same" / "mission") == zone_areas(out)
    remap_main([str(tmp_path), "--bundle", str(leaf_family_bundle), "--out", str(tmp_path / "wide"),
                "--hit-share", "0.25", "--miss-share", "0.25", "--cap", "2"])
    assert sum(zone_areas(tmp_path / "wide" / "mission")) > sum(zone_areas(out))


def test_mosaic_covers_the_field_georeferenced_and_registered_within_a_metre(flown: tuple[Path, Path, dict]) -> None:
    tmp_path, out, report = flown
    s = load_scenario(tmp_path / "small.yaml")
    with rasterio.open(out / "mosaic.tif") as src:
        assert src.crs.to_proj4().startswith("+proj=ortho") and src.res == (0.15, 0.15) and src.count == 4
        alpha = src.read(4)
        # every corner of the field (and its centre) is painted: the mosaic covers the flown area
        for e, n in [(0.5, 0.5), (39.5, 0.5), (39.5, 19.5), (0.5, 19.5), (20.0, 10.0)]:
            lat, lon, _ = enu_to_geodetic(e, n, 0.0, s.origin.lat, s.origin.lon, 0.0)
            xs, ys = transform("EPSG:4326", src.crs, [float(lon)], [float(lat)])
            r, c = src.index(xs[0], ys[0])
            assert 0 <= r < src.height and 0 <= c < src.width and alpha[r, c] == 255, (e, n)
    # the simulator's true patch is drawn within 1 m of where the mosaic shows it (phase correlation)
    reg = report["mosaic_registration"]
    assert reg["measured"] == 1 and report["mosaic_registration_m"] < 1.0, reg
    assert (out / "mosaic_truth.png").is_file() and (out / "mosaic.png").read_bytes()[:4] == b"\x89PNG"


def test_report_html_renders_in_headless_chromium(flown: tuple[Path, Path, dict], tmp_path: Path) -> None:
    _, out, report = flown
    page = out / "report.html"
    assert page.is_file() and report["zones_total"] >= 1
    png = tmp_path / "report.png"
    console = screenshot(page, png)
    assert console == [], "the page logged to the console:\n" + "\n".join(console)
    img = cv2.imread(str(png), cv2.IMREAD_COLOR)
    assert img is not None and img.shape[:2] == (1800, 1280)
    # not blank: the pixels vary, and the map shows the mosaic's crop green and the zone's outline colour
    assert float(img.std()) > 20.0
    b, g, r = (img[..., i].astype(int) for i in range(3))
    assert ((g > r + 30) & (g > b + 30)).mean() > 0.02, "no crop green: the mosaic is not on the page"
    assert ((abs(r - 214) < 25) & (abs(g - 96) < 25) & (abs(b - 36) < 25)).sum() > 200, "no rust zone outline"


def test_the_browser_check_sees_a_script_error(tmp_path: Path) -> None:
    """The console check can fail: a page with a JavaScript error is caught (so an empty console means something)."""
    page = tmp_path / "bad.html"
    page.write_text("<html><body><p>x</p><script>console.log('hello'); notAFunction();</script></body></html>")
    console = screenshot(page, tmp_path / "bad.png", 400, 300)
    assert any("Uncaught" in line and "notAFunction" in line for line in console), console
    assert np.asarray(cv2.imread(str(tmp_path / "bad.png"))).size > 0


def test_the_flight_writes_a_prescription_terminals_read(flown: tuple[Path, Path, dict]) -> None:
    """Issue 15's must-show: written by the flight itself at close, read back by GDAL and by isoxml; every true
    patch inside a treatment zone and the treated area at most 3x the true patches grown by the margin."""
    import pyogrio
    from isoxml.util.isoxml_io import isoxml_from_path

    from payload.grower.taskdata import schema_problems
    from payload.sinks.prescription import shapefile_zip

    _tmp, out, report = flown
    # the mission sets no rates: the Shapefile's name says they are placeholders (docs/PRESCRIPTIONS.md)
    assert shapefile_zip(out) == out / "prescription_placeholder_rates.zip"
    shp = pyogrio.read_info(out / "prescription_placeholder_rates.zip")
    assert shp["geometry_type"] == "Polygon" and shp["crs"] == "EPSG:4326" and shp["features"] >= 1
    assert dict(zip(shp["fields"], shp["dtypes"], strict=True))["RATE"] == "float64"
    assert {name for name, _kind in pyogrio.list_layers(out / "zones.gpkg")} >= {
        "treatment_zones", "disease_zones", "scout", "prescription_grid"}
    td, _bins = isoxml_from_path(out / "TASKDATA")
    assert schema_problems(td) == []
    rates = {z.code: z.process_data_variables[0].process_data_value for z in td.tasks[0].treatment_zones}
    assert rates[0] == 0 and rates[1] == 10000  # rust at the default 1 l/ha (DDI 1: 0.01 mm3/m2 per bit)
    t = report["treatment"]
    assert t is not None and t["patches_treated"] == report["patches_total"], t
    assert t["treated_ratio"] is not None and t["treated_ratio"] <= 3.0, t


def test_the_ground_station_gets_a_map_point_per_zone(flown: tuple[Path, Path, dict]) -> None:
    """A pymavlink ground station on the simulator's second link (tools/mission/gcs.py) saw the payload as a
    camera, was told who it is, and got a CAMERA_IMAGE_CAPTURED for every zone, beside the vehicle's stream."""
    _tmp, _out, report = flown
    g = report["gcs_messages"]
    counts = g["counts"]
    assert counts.get("CAMERA_IMAGE_CAPTURED", 0) >= report["zones_total"] >= 1, g
    assert g["captured_ok"] == counts["CAMERA_IMAGE_CAPTURED"]
    indices = g["captured_image_indices"]
    assert indices == sorted(set(indices))  # each image_index once, counting up
    assert g["cameras"] == [[1, 100]] and g["camera_model_name"].startswith("CropScout ")
    assert counts["CAMERA_INFORMATION"] >= 1 and counts["GLOBAL_POSITION_INT"] > 0
    assert counts.get("STATUSTEXT", 0) >= report["zones_total"]  # the text alerts still reach it
