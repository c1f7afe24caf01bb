"""`payload compare`: two flights' evidence grids on one lattice, their zones matched; the files and the page."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import shapely

from payload.cli import main as payload_main
from payload.config import MapSection
from payload.geo.change import compare_zones
from payload.geo.diseasemap import mapinfo_record
from payload.geo.grid import EvidenceGrid
from payload.geo.sensor import default_sensor_model
from payload.geo.zones import Zone
from payload.report.compare import compare_folders
from tests.browser import screenshot
from tests.payload.test_map import LABELS, ORIGIN, _look, square

PATCH = (30.0, 20.0, 5.0)  # rust, in both flights
EXTRA = (48.0, 36.0, 4.5)  # rust, only in the second


def _flight(folder: Path, patches: list[tuple[float, float, float]], run: str) -> Path:
    """A lawnmower of three east legs (3 x 4 tiles of 8 m); a tile calls rust when a patch covers > 15 % of it."""
    folder.mkdir(parents=True)
    sub = (np.arange(16) + 0.5) / 16
    recs: list[dict] = [mapinfo_record(default_sensor_model("healthy", LABELS), MapSection())]
    for ln in (5.0, 20.0, 35.0):
        for e in np.arange(0.0, 70.0, 1.0):
            tiles = []
            for r in range(3):
                for c in range(4):
                    e0, n0 = e - 16 + c * 8, ln - 12 + r * 8
                    xs, ys = np.meshgrid(e0 + sub * 8, n0 + sub * 8)
                    hit = any(float(np.mean(np.hypot(xs - pe, ys - pn) <= pr)) > 0.15 for pe, pn, pr in patches)
                    tiles.append((square(e0, n0, 8), "rust" if hit else "healthy", hit))
            recs.append(_look(run, (float(e), ln), tiles))
    (folder / "detections.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return folder


@pytest.fixture(scope="module")
def flights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("flights")
    return _flight(root / "monday", [PATCH], "a"), _flight(root / "tuesday", [PATCH, EXTRA], "b")


def test_a_flight_compared_with_itself_has_no_change(flights: tuple[Path, Path]) -> None:
    c = compare_folders(flights[0], flights[0])
    assert len(c.old.zones) == 1 and not c.summary.changed
    assert [(g.change, g.old_ids, g.new_ids, g.added_m2, g.removed_m2) for g in c.summary.changes] == [
        ("same", ["rust-1"], ["rust-1"], 0.0, 0.0)]


def test_an_extra_patch_is_exactly_one_new_zone(flights: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    out = tmp_path / "change"
    with pytest.raises(SystemExit) as ex:
        payload_main(["compare", str(flights[0]), str(flights[1]), "--out", str(out)])
    assert ex.value.code == 0 and "1 new" in capsys.readouterr().out
    facts = json.loads((out / "changes.json").read_text())
    assert facts["changed"] and facts["counts"]["new"] == 1
    assert {k: v for k, v in facts["counts"].items() if v} == {"new": 1, "same": 1}
    (new,) = [g for g in facts["changes"] if g["change"] == "new"]
    assert new["label"] == "rust" and new["old_ids"] == "" and new["new_area_m2"] > 20
    fc = json.loads((out / "changes.geojson").read_text())
    assert sorted(f["properties"]["change"] for f in fc["features"]) == ["new", "same"]
    # the new group lies on the extra patch (the maps' origin is the first look, 5 m north of the test's)
    c = compare_folders(flights[0], flights[1])
    (g,) = [g for g in c.summary.changes if g.change == "new"]
    lat, lon, _ = ORIGIN.to_geodetic(EXTRA[0], EXTRA[1], 0.0)
    assert c.old.origin is not None
    e, n, _ = c.old.origin.to_enu(lat, lon, 0.0)
    assert g.geometry_en.distance(shapely.Point(float(e), float(n))) == 0.0
    page = (out / "compare.html").read_text(encoding="utf-8")
    assert "<script" not in page.lower() and not re.search(r'(src|href)="(?!data:|#)', page)
    assert 'class="change new"' in page and "1 new" in page


def test_compare_page_renders_in_headless_chromium(flights: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "change"
    with pytest.raises(SystemExit):
        payload_main(["compare", str(flights[0]), str(flights[1]), "--out", str(out)])
    png = tmp_path / "compare.png"
    assert screenshot(out / "compare.html", png, 1200, 1400) == []
    import cv2

    img = cv2.imread(str(png))
    red = (img[:, :, 2] > 180) & (img[:, :, 1] < 110) & (img[:, :, 0] < 110)  # the new group's #d32f2f
    assert red.sum() > 200


def _z(zid: str, geom: object) -> Zone:
    z = Zone("rust", geom, geom.area, (0.0, 0.0), 0.9, 0.8, 3, 2.0, (0.0, 0.0, 0.0), 1.0, 1)  # type: ignore
    z.id = zid
    return z


def test_groups_grown_shrunk_gone_and_not_seen() -> None:
    grid = EvidenceGrid(0.5, 2)
    grid.add_footprints(square(0, 0, 20)[None], np.zeros((1, 2)))  # the new flight saw 0-20 m only
    old = [_z("rust-1", shapely.box(0, 0, 4, 4)), _z("rust-2", shapely.box(10, 0, 12, 2)),
           _z("rust-3", shapely.box(15, 15, 18, 18)), _z("rust-4", shapely.box(40, 40, 42, 42))]
    new = [_z("rust-1", shapely.box(0, 0, 6, 6)), _z("rust-2", shapely.box(10.5, 0, 11.5, 1))]
    s = compare_zones(old, new, ["rust"], grid)
    got = {tuple(g.old_ids): g.change for g in s.changes}
    assert got == {("rust-1",): "grown", ("rust-2",): "shrunk", ("rust-3",): "gone", ("rust-4",): "not_seen"}
    grown = next(g for g in s.changes if g.change == "grown")
    assert grown.added_m2 == pytest.approx(20.0) and grown.removed_m2 == 0.0
