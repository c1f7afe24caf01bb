"""The prescription files read back by independent readers: GDAL (pyogrio) for the Shapefile and the
GeoPackage, the isoxml library and xml.etree for TASKDATA; strict-terminal limits; the flight's close
and `payload export --prescription` writing them."""

from __future__ import annotations

import json
import re
import struct
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest
import shapely

from payload.cli import main as payload_main
from payload.config import MapSection, PrescriptionSection
from payload.errors import PrescriptionError
from payload.geo.diseasemap import DiseaseMap, mapinfo_record
from payload.geo.sensor import default_sensor_model
from payload.geo.zones import Zone
from payload.grower.taskdata import schema_problems
from payload.sinks.prescription import rx_files, shapefile_zip, write_prescription
from tests.payload.test_map import LABELS, ORIGIN, survey_looks

pyogrio = pytest.importorskip("pyogrio")
isoxml_io = pytest.importorskip("isoxml.util.isoxml_io")

WITH_GPKG = ["shp", "gpkg", "isoxml"]  # gpkg is selectable, not a default (the drone extra lacks pyogrio)


def _map() -> DiseaseMap:
    dm = DiseaseMap(default_sensor_model("healthy", LABELS), MapSection(), ORIGIN)
    for rec in survey_looks((30.0, 20.0, 5.0), [5.0, 20.0, 35.0]):
        dm.add_look(rec)
    dm.finish()
    return dm


@pytest.fixture(scope="module")
def dmap() -> DiseaseMap:
    return _map()


def _with_copies(dm: DiseaseMap, n: int, step: float = 40.0) -> DiseaseMap:
    """The map with n - 1 more copies of its zone, `step` m apart eastwards (a map with n zones)."""
    z0 = dm.zones[0]
    copies = [Zone(z0.label, shapely.affinity.translate(z0.geometry_en, k * step, 0.0), z0.area_m2,
                   (z0.centroid_en[0] + k * step, z0.centroid_en[1]), z0.peak_p, z0.mean_p, z0.looks_max,
                   z0.looks_mean, z0.ellipse_m, z0.uncertainty_m, z0.cells, f"rust-{k + 1}") for k in range(1, n)]
    dm.zones = [z0, *copies]
    return dm


def _en(lon: float, lat: float) -> tuple[float, float]:
    e, n, _ = ORIGIN.to_enu(lat, lon)
    return float(e), float(n)


def test_shapefile_zip_is_what_a_strict_terminal_reads(tmp_path: Path, dmap: DiseaseMap) -> None:
    res = write_prescription(tmp_path, dmap, PrescriptionSection(rates={"rust": 2.5}))
    zpath = tmp_path / "prescription.zip"
    names = zipfile.ZipFile(zpath).namelist()
    assert sorted(names) == ["prescription.dbf", "prescription.prj", "prescription.shp", "prescription.shx"]
    info = pyogrio.read_info(zpath)
    assert info["crs"] == "EPSG:4326" and info["geometry_type"] == "Polygon" and info["driver"] == "ESRI Shapefile"
    assert list(info["fields"]) == ["ZONE", "CLASS", "RATE"]
    assert [t.startswith(("int", "float")) for t in info["dtypes"]] == [True, True, True]  # numeric only
    _meta, _fids, geoms, fields = pyogrio.raw.read(zpath)
    assert len(geoms) == len(res.plan.zones) == 1
    assert fields[2][0] == 2.5 and fields[1][0] == 1 and fields[0][0] == 1
    # the polygon GDAL reads is the treatment zone, back in the map's metres
    poly = shapely.from_wkb(geoms[0])
    back = shapely.Polygon([_en(x, y) for x, y in poly.exterior.coords])
    assert back.symmetric_difference(res.plan.zones[0].geometry_en).area < 0.01 * back.area
    assert back.covers(dmap.zones[0].geometry_en)
    # shape type 5 (polygon) in the main file header, as the strictest terminals demand
    with zipfile.ZipFile(zpath) as z:
        assert struct.unpack("<i", z.read("prescription.shp")[32:36])[0] == 5


@pytest.mark.parametrize(("rates", "znames"), [({"rust": 2.0}, ("RXZONES", "RXGRID")),
                                               ({}, ("RXNORATE", "RXGNORAT"))])  # placeholder rates: said in 8.3
def test_short_names_are_8_3(tmp_path: Path, dmap: DiseaseMap, rates: dict[str, float],
                             znames: tuple[str, str]) -> None:
    cfg = PrescriptionSection(grid_cell_m=5.0, rates=rates, terminal={"short_names": True})
    write_prescription(tmp_path, dmap, cfg)
    for stem in znames:
        names = zipfile.ZipFile(tmp_path / f"{stem}.ZIP").namelist()
        assert sorted(names) == [f"{stem}.{x}" for x in ("DBF", "PRJ", "SHP", "SHX")]
        assert all(re.fullmatch(r"[A-Z0-9_]{1,8}\.[A-Z]{3}", n) for n in names), names
        # GDAL opens a zip by its lower-case extension; /vsizip/ is how it reads any other
        assert pyogrio.read_info(f"/vsizip/{tmp_path / stem}.ZIP")["crs"] == "EPSG:4326"
    assert shapefile_zip(tmp_path) == tmp_path / f"{znames[0]}.ZIP"
    assert shapefile_zip(tmp_path, grid=True) == tmp_path / f"{znames[1]}.ZIP"
    assert not (tmp_path / "prescription.zip").exists()


def test_geopackage_layers(tmp_path: Path, dmap: DiseaseMap) -> None:
    write_prescription(tmp_path, dmap, PrescriptionSection(grid_cell_m=5.0, formats=WITH_GPKG))
    path = tmp_path / "zones.gpkg"
    layers = {name: kind for name, kind in pyogrio.list_layers(path)}
    assert layers == {"treatment_zones": "Polygon", "disease_zones": "MultiPolygon", "scout": "Point",
                      "prescription_grid": "Polygon"}
    t = pyogrio.read_info(path, layer="treatment_zones")
    assert t["crs"] == "EPSG:4326" and t["features"] == 1
    assert dict(zip(t["fields"], t["dtypes"], strict=True))["rate"] == "float64"
    g = pyogrio.read_info(path, layer="prescription_grid")
    _m, _f, _g, cols = pyogrio.raw.read(path, layer="prescription_grid")
    rx = json.loads((tmp_path / "prescription.json").read_text())
    assert g["features"] == rx["grid"]["rows"] * rx["grid"]["cols"]
    assert int((np.asarray(cols[1]) > 0).sum()) == rx["grid"]["treated_cells"] > 0
    d = pyogrio.read_info(path, layer="disease_zones")
    assert d["features"] == len(dmap.zones)
    import sqlite3

    with sqlite3.connect(path) as db:  # GeoPackage 1.2, which older GDAL, QGIS and FMIS read without a warning
        assert db.execute("PRAGMA user_version").fetchone()[0] == 10200


def test_taskdata_parsed_back_by_isoxml_with_the_zones_and_rates(tmp_path: Path, dmap: DiseaseMap) -> None:
    cfg = PrescriptionSection(rates={"rust": 1.25}, products={"rust": "Fungicide X"})
    res = write_prescription(tmp_path, dmap, cfg)
    xml = tmp_path / "TASKDATA" / "TASKDATA.XML"
    root = ET.parse(xml).getroot()
    assert root.tag == "ISO11783_TaskData" and (root.get("VersionMajor"), root.get("VersionMinor")) == ("4", "3")
    # read with xml.etree alone, by the standard's element and attribute codes (no isoxml in between):
    # TSK H/I/J = default, position-lost and out-of-field zone codes; TZN A = code; PDV A = DDI (hex), B = value,
    # C = product; PLN A = 2 (treatment zone) with an exterior ring LSG A = 1 of PNT C = lat, D = lon
    (tsk,) = root.findall("TSK")
    assert (tsk.get("G"), tsk.get("H"), tsk.get("I"), tsk.get("J")) == ("1", "0", "0", "0")
    tzn_xml = {t.get("A"): t for t in tsk.findall("TZN")}
    assert set(tzn_xml) == {"0", "1"}
    (pdv_xml,) = tzn_xml["1"].findall("PDV")
    assert (pdv_xml.get("A"), pdv_xml.get("B"), pdv_xml.get("C")) == ("0001", "12500", root.find("PDT").get("A"))
    (pln_xml,) = tzn_xml["1"].findall("PLN")
    assert pln_xml.get("A") == "2" and pln_xml.find("LSG").get("A") == "1"
    ring = shapely.Polygon([_en(float(p.get("D")), float(p.get("C"))) for p in pln_xml.find("LSG").findall("PNT")])
    assert ring.covers(dmap.zones[0].geometry_en)
    td, _bins = isoxml_io.isoxml_from_path(tmp_path / "TASKDATA")
    assert schema_problems(td) == []
    (pdt,) = td.products
    assert pdt.designator == "Fungicide X"
    (task,) = td.tasks
    assert task.default_treatment_zone_code == task.out_of_field_treatment_zone_code == 0
    tzn = {z.code: z for z in task.treatment_zones}
    assert set(tzn) == {0, 1}
    assert tzn[0].process_data_variables[0].process_data_value == 0
    pdv = tzn[1].process_data_variables[0]
    # DDI 1, setpoint volume per area, 0.01 mm3/m2 per bit: 1.25 l/ha = 125 mm3/m2 = 12500
    assert pdv.process_data_ddi == b"\x00\x01" and pdv.process_data_value == 12500 and pdv.product_id_ref == pdt.id
    from isoxml.converter.shapely_geom import ShapelyConverterV4

    (pln,) = tzn[1].polygons
    poly = ShapelyConverterV4().to_shapely_polygon(pln)
    back = shapely.Polygon([_en(float(x), float(y)) for x, y in poly.exterior.coords])
    assert back.symmetric_difference(res.plan.zones[0].geometry_en).area < 0.01 * back.area


def test_taskdata_grid_cells_match_the_grid(tmp_path: Path, dmap: DiseaseMap) -> None:
    from isoxml.converter.np_grid import to_numpy_array

    res = write_prescription(tmp_path, dmap, PrescriptionSection(grid_cell_m=4.0, taskdata="grid"))
    td, bins = isoxml_io.isoxml_from_path(tmp_path / "TASKDATA")
    assert schema_problems(td) == []
    (grd,) = td.tasks[0].grids
    codes = to_numpy_array(bins[grd.filename], grd)
    assert res.grid is not None and np.array_equal(codes, res.grid.codes)
    assert float(grd.minimum_north_position) == pytest.approx(res.grid.south, abs=1e-9)
    assert all(not z.polygons for z in td.tasks[0].treatment_zones)  # the grid, not polygons


def test_strict_terminal_overflow_merges_and_says_so(tmp_path: Path) -> None:
    dm = _with_copies(_map(), 4)
    res = write_prescription(tmp_path, dm, PrescriptionSection(terminal={"max_zones": 2}))
    assert pyogrio.read_info(shapefile_zip(tmp_path))["features"] == 2
    rx = json.loads((tmp_path / "prescription.json").read_text())
    assert rx["strict_terminal_merges"] == 2 and rx["treatment_zones"] == 2
    assert all("max_zones = 2" in n for n in rx["notes"]) and "merged" in res.text()


def test_strict_terminal_refusal_writes_nothing_and_removes_an_older_prescription(tmp_path: Path) -> None:
    dm = _with_copies(_map(), 4)
    write_prescription(tmp_path, dm, PrescriptionSection())  # a prescription from before, without a limit
    assert shapefile_zip(tmp_path) is not None and (tmp_path / "TASKDATA").is_dir()
    cfg = PrescriptionSection(terminal={"max_zones": 3, "on_too_many": "refuse"})
    with pytest.raises(PrescriptionError, match=r"4 treatment zones, more than prescription.terminal.max_zones = 3"):
        write_prescription(tmp_path, dm, cfg)
    assert [p.name for p in rx_files(tmp_path) if p.exists()] == []


def test_the_flights_close_writes_the_prescription(tmp_path: Path) -> None:
    from payload.config import PayloadConfig
    from payload.pipeline.geotag import GeotagHandler
    from tests.payload.geotagdoubles import HOME, ScriptedTelemetry, frame_result
    from tests.payload.geotagdoubles import LABELS as GLABELS

    cfg = PayloadConfig.model_validate({"model": {"bundle": "b"}, "output": {"dir": str(tmp_path)},
                                        "sinks": {"layers_interval_s": 3600}, "map": {"rasters": False}})
    h = GeotagHandler(cfg, labels=GLABELS, model_sha256="ee" * 32,
                      telemetry=ScriptedTelemetry(t_end=50, north_mps=10.0))
    for i in range(60):
        h.handle(frame_result(i, 1.0 + i * 0.1, [(0, 0, 64, 64)], "rust"))
    h.close()
    assert h.map.zones, "the scripted flight should make a zone"
    fc = json.loads((tmp_path / "treatment.geojson").read_text())
    assert len(fc["features"]) >= 1 and fc["features"][0]["properties"]["rate"] == 1.0
    # what report.html reads of a treatment zone (payload/report/data.py): WGS84 polygons with these properties
    for f in fc["features"]:
        p = f["properties"]
        assert {"id", "class", "area_ha", "rate", "unit"} <= set(p) and p["class"] in GLABELS and p["unit"] == "l/ha"
        assert f["geometry"]["type"] == "Polygon" and "crs" not in fc
        lon, lat = f["geometry"]["coordinates"][0][0]
        assert abs(lat - HOME[0]) < 0.01 and abs(lon - HOME[1]) < 0.01  # RFC 7946: lon, lat
    # default rates: the Shapefile's name says they are placeholders
    assert pyogrio.read_info(tmp_path / "prescription_placeholder_rates.zip")["geometry_type"] == "Polygon"
    assert (tmp_path / "TASKDATA" / "TASKDATA.XML").is_file() and (tmp_path / "scout.csv").is_file()


def test_payload_export_prescription(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    sensor = default_sensor_model("healthy", LABELS)
    lines = [mapinfo_record(sensor, MapSection())] + survey_looks((30.0, 20.0, 5.0), [5.0, 20.0, 35.0])
    (out / "detections.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    with pytest.raises(SystemExit) as ex:
        payload_main(["export", str(out)])
    assert ex.value.code == 0 and shapefile_zip(out) is None  # as before without the flag
    capsys.readouterr()
    with pytest.raises(SystemExit) as ex:
        payload_main(["export", str(out), "--prescription"])
    said = capsys.readouterr().out
    assert ex.value.code == 0 and "prescription: 1 treatment zones" in said
    for name in ("treatment.geojson", "scout.csv", "prescription_placeholder_rates.zip", "zones.gpkg",
                 "TASKDATA/TASKDATA.XML"):
        assert (out / name).exists(), name
    # a terminal limit that cannot be met: exit 2, the option and the fix named, nothing written
    cfg = tmp_path / "strict.yaml"
    cfg.write_text("model: {bundle: b}\nprescription:\n  rates: {mildew: 2}\n")
    with pytest.raises(SystemExit) as ex:
        payload_main(["export", str(out), "--prescription", "--config", str(cfg)])
    assert ex.value.code == 2 and "prescription.rates names 'mildew'" in capsys.readouterr().err
    assert shapefile_zip(out) is None


def test_a_grid_too_fine_for_the_field_is_refused_before_any_file(tmp_path: Path, dmap: DiseaseMap) -> None:
    from payload.grower import gridrx

    write_prescription(tmp_path, dmap, PrescriptionSection())
    old = gridrx.MAX_CELLS
    try:
        gridrx.MAX_CELLS = 100  # the survey saw about 95 x 55 m: 19 x 11 = 209 cells of 5 m
        with pytest.raises(PrescriptionError, match=r"raise prescription.grid_cell_m"):
            write_prescription(tmp_path, dmap, PrescriptionSection(grid_cell_m=5.0))
    finally:
        gridrx.MAX_CELLS = old
    assert [p.name for p in rx_files(tmp_path) if p.exists()] == []


def test_payload_export_strict_terminal_merges_or_refuses(tmp_path: Path, capsys) -> None:
    """The must-show at the command line: two rust patches 80 m apart and a terminal that takes one zone. `merge`
    writes one zone GDAL reads (the ground between them treated, said in prescription.json); `refuse` exits 2
    naming the option and the fix, and leaves no prescription file behind (not even the merged one)."""
    out = tmp_path / "run"
    out.mkdir()
    sensor = default_sensor_model("healthy", LABELS)
    looks = (survey_looks((30.0, 20.0, 5.0), [5.0, 20.0, 35.0], run="a")
             + survey_looks((30.0, 100.0, 5.0), [85.0, 100.0, 115.0], run="b"))
    (out / "detections.jsonl").write_text("".join(json.dumps(r) + "\n" for r in
                                                  [mapinfo_record(sensor, MapSection()), *looks]))
    merge, refuse = tmp_path / "merge.yaml", tmp_path / "refuse.yaml"
    merge.write_text("model: {bundle: b}\nprescription:\n  terminal: {max_zones: 1, on_too_many: merge}\n")
    refuse.write_text("model: {bundle: b}\nprescription:\n  terminal: {max_zones: 1, on_too_many: refuse}\n")

    with pytest.raises(SystemExit) as ex:
        payload_main(["export", str(out), "--prescription"])
    assert ex.value.code == 0 and pyogrio.read_info(shapefile_zip(out))["features"] == 2
    capsys.readouterr()

    with pytest.raises(SystemExit) as ex:
        payload_main(["export", str(out), "--prescription", "--config", str(merge)])
    assert ex.value.code == 0 and "merged two rust zones" in capsys.readouterr().out
    info = pyogrio.read_info(shapefile_zip(out))
    assert info["features"] == 1 and info["geometry_type"] == "Polygon"
    _m, _f, geoms, _cols = pyogrio.raw.read(shapefile_zip(out))
    hull = shapely.from_wkb(geoms[0])
    for e, n in ((30.0, 20.0), (30.0, 60.0), (30.0, 100.0)):  # both patches and the ground between
        lat, lon, _ = ORIGIN.to_geodetic(e, n, 0.0)
        assert hull.contains(shapely.Point(float(lon), float(lat))), (e, n)
    assert json.loads((out / "prescription.json").read_text())["strict_terminal_merges"] == 1

    with pytest.raises(SystemExit) as ex:
        payload_main(["export", str(out), "--prescription", "--config", str(refuse)])
    err = capsys.readouterr().err
    assert ex.value.code == 2
    assert "2 treatment zones, more than prescription.terminal.max_zones = 1; no prescription written" in err
    assert "on_too_many: merge" in err  # the fix is named
    assert [p.name for p in rx_files(out) if p.exists()] == []


def test_a_grid_with_more_cells_than_the_terminal_takes_is_left_out_or_refused(tmp_path: Path,
                                                                             dmap: DiseaseMap) -> None:
    """A strict terminal counts a grid Shapefile's cells as zones; cells cannot be merged, so `merge` leaves the
    grid Shapefile out (and says so) and `refuse` writes nothing."""
    merge = PrescriptionSection(grid_cell_m=5.0, terminal={"max_zones": 100}, formats=WITH_GPKG)
    res = write_prescription(tmp_path, dmap, merge)
    assert res.grid is not None and res.grid.shape[0] * res.grid.shape[1] > 100
    assert shapefile_zip(tmp_path) is not None and shapefile_zip(tmp_path, grid=True) is None
    rx = json.loads((tmp_path / "prescription.json").read_text())
    assert len(rx["skipped"]) == 1 and "more than prescription.terminal.max_zones = 100" in rx["skipped"][0]
    assert "prescription_grid" in {name for name, _kind in pyogrio.list_layers(tmp_path / "zones.gpkg")}
    # a grid within the limit is written as before
    write_prescription(tmp_path, dmap, PrescriptionSection(grid_cell_m=5.0, terminal={"max_zones": 10_000}))
    assert pyogrio.read_info(shapefile_zip(tmp_path, grid=True))["features"] == res.grid.codes.size
    refuse = PrescriptionSection(grid_cell_m=5.0, terminal={"max_zones": 100, "on_too_many": "refuse"})
    with pytest.raises(PrescriptionError, match=r"grid prescription has \d+ cells, more than prescription.terminal"
                       r".max_zones = 100; no prescription written. Raise prescription.grid_cell_m"):
        write_prescription(tmp_path, dmap, refuse)
    assert [p.name for p in rx_files(tmp_path) if p.exists()] == []


def test_a_drone_without_gdal_skips_only_the_geopackage(tmp_path: Path, dmap: DiseaseMap, monkeypatch) -> None:
    """pyogrio is a workstation dependency: on the drone zones.gpkg is skipped (and said), the terminal files
    are still written, and `payload export --prescription` is named as the way to get it."""
    import sys

    monkeypatch.setitem(sys.modules, "pyogrio", None)  # `import pyogrio` raises ImportError, as on the drone
    monkeypatch.setitem(sys.modules, "pyogrio.raw", None)
    res = write_prescription(tmp_path, dmap, PrescriptionSection(formats=WITH_GPKG))
    assert not (tmp_path / "zones.gpkg").exists()
    assert len(res.skipped) == 1 and "payload export" in res.skipped[0] and "--prescription" in res.skipped[0]
    for name in ("prescription_placeholder_rates.zip", "TASKDATA/TASKDATA.XML", "treatment.geojson", "scout.csv"):
        assert (tmp_path / name).is_file(), name
    assert json.loads((tmp_path / "prescription.json").read_text())["skipped"] == res.skipped


def test_default_formats_are_what_the_drone_writes_and_gpkg_without_pyogrio_warns(
        tmp_path: Path, dmap: DiseaseMap, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The defaults never take the error path on the drone; choosing gpkg there is said when the config loads."""
    import sys

    monkeypatch.setitem(sys.modules, "pyogrio", None)  # as on the drone
    monkeypatch.setitem(sys.modules, "pyogrio.raw", None)
    res = write_prescription(tmp_path, dmap, PrescriptionSection())
    assert PrescriptionSection().formats == ["shp", "isoxml"] and res.skipped == []
    assert not (tmp_path / "zones.gpkg").exists() and shapefile_zip(tmp_path) is not None
    caplog.clear()
    PrescriptionSection(formats=WITH_GPKG)
    said = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "prescription.formats has gpkg, but pyogrio is not installed" in said
    assert "Remove gpkg from prescription.formats, or install pyogrio" in said


def test_placeholder_rates_are_said_in_the_files_and_the_log(tmp_path: Path, dmap: DiseaseMap,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """rates: {} gives every zone default_rate: an on/off map. The attributes, prescription.json and the log
    say so; with a rate set they say "set" and nothing is warned."""
    caplog.set_level("WARNING", logger="payload.sinks.prescription")
    write_prescription(tmp_path, dmap, PrescriptionSection(formats=WITH_GPKG))
    feats = json.loads((tmp_path / "treatment.geojson").read_text())["features"]
    assert feats and all(f["properties"]["rates"] == "placeholder" for f in feats)
    _m, _f, _g, cols = pyogrio.raw.read(tmp_path / "zones.gpkg", layer="treatment_zones")
    names = pyogrio.read_info(tmp_path / "zones.gpkg", layer="treatment_zones")["fields"].tolist()
    assert list(cols[names.index("rates")]) == ["placeholder"] * len(feats)
    rx = json.loads((tmp_path / "prescription.json").read_text())
    assert rx["rates_placeholder"] is True and rx["placeholder_rate_classes"] == ["rust"]
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("rates not set (prescription.rates is empty)" in m and "on/off map" in m for m in warned), warned
    assert any("prescription_placeholder_rates.zip holds placeholder rates" in m for m in warned), warned

    caplog.clear()
    write_prescription(tmp_path, dmap, PrescriptionSection(rates={"rust": 2.5}))
    feats = json.loads((tmp_path / "treatment.geojson").read_text())["features"]
    assert all(f["properties"]["rates"] == "set" for f in feats)
    assert json.loads((tmp_path / "prescription.json").read_text())["rates_placeholder"] is False
    assert not [r for r in caplog.records if "rate" in r.getMessage() and r.levelname == "WARNING"]


@pytest.mark.parametrize(("rates", "flagged"), [({}, True), ({"powdery_mildew": 0.8}, True), ({"rust": 2.5}, False)])
def test_the_shapefiles_name_says_placeholder_rates(tmp_path: Path, dmap: DiseaseMap, rates: dict[str, float],
                                                    flagged: bool) -> None:
    """The Shapefile has no room for the flag (three numeric fields, what the strictest terminals take), so its
    name says it: zip, members and the layer a terminal lists. Real rates for every zone in it: the plain name.
    The map has one rust zone, so a rate for mildew alone leaves it a placeholder."""
    write_prescription(tmp_path, dmap, PrescriptionSection(rates=rates, grid_cell_m=5.0))
    stems = (("prescription_placeholder_rates", "prescription_grid_placeholder_rates") if flagged
             else ("prescription", "prescription_grid"))
    for grid, stem in zip((False, True), stems, strict=True):
        zpath = shapefile_zip(tmp_path, grid=grid)
        assert zpath == tmp_path / f"{stem}.zip"
        assert sorted(zipfile.ZipFile(zpath).namelist()) == [f"{stem}.{x}" for x in ("dbf", "prj", "shp", "shx")]
        info = pyogrio.read_info(zpath)
        assert list(info["fields"]) == ["ZONE", "CLASS", "RATE"] and info["layer_name"] == stem
        _m, _f, _g, cols = pyogrio.raw.read(zpath)
        rate = 2.5 if not flagged else 1.0  # default_rate where no rate is set for rust
        assert set(np.asarray(cols[2])[np.asarray(cols[1]) > 0].tolist()) == {rate}
    others = {p.name for p in tmp_path.iterdir()} & {"prescription.zip", "prescription_grid.zip",
                                                      "prescription_placeholder_rates.zip",
                                                      "prescription_grid_placeholder_rates.zip"}
    assert others == {f"{s}.zip" for s in stems}  # one zones file and one grid file, never both names
    rx = json.loads((tmp_path / "prescription.json").read_text())
    assert {f"{s}.zip" for s in stems} <= set(rx["files"])


def test_a_flagged_shapefile_is_replaced_when_rates_are_set(tmp_path: Path, dmap: DiseaseMap) -> None:
    """Setting the rates and writing again leaves only the plain name: no stale on/off map beside the dose."""
    write_prescription(tmp_path, dmap, PrescriptionSection())
    assert shapefile_zip(tmp_path) == tmp_path / "prescription_placeholder_rates.zip"
    write_prescription(tmp_path, dmap, PrescriptionSection(rates={"rust": 2.5}))
    assert shapefile_zip(tmp_path) == tmp_path / "prescription.zip"
    assert not (tmp_path / "prescription_placeholder_rates.zip").exists()
