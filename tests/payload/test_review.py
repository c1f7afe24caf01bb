"""The review: tiles kept in flight (payload/sinks/review.py) and `payload review` (payload/report/review.py).

The flight is a real run of the payload (tests/payload/reviewflight.py: the tiny bundle on the CPU, the
scheduler, the geotagging handler, the map and every sink) over a red disc on green ground. The page is
driven in headless Chromium with real key presses through the DevTools protocol (tests/browser.py).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import shapely

from payload.files.jsonl import iter_jsonl
from payload.sinks.review import Kept, Pool, read_review, tile_margin
from tests.browser import DevTools
from tests.payload import reviewflight

ROOT = Path(__file__).resolve().parents[2]
LIMITS = {"margin": 8, "edge": 8, "flagged": 6, "healthy": 6}  # reviewflight.fly's review section


def test_margin_is_the_nearer_of_the_threshold_and_the_runner_up() -> None:
    classes = ["healthy", "rust", "powdery_mildew"]
    thr = {"rust": 0.5, "powdery_mildew": 0.4}
    # top disease (rust 0.55) is 0.05 above its threshold; the runner-up is 0.2 behind: 0.05
    assert tile_margin([0.1, 0.55, 0.35], classes, thr) == pytest.approx(0.05)
    # a sure healthy tile: the top disease is 0.38 below its threshold, the runner-up 0.8 behind: 0.38
    assert tile_margin([0.9, 0.02, 0.08], classes, {"rust": 0.4}) == pytest.approx(0.38)
    # two classes tied: a coin toss, whatever the thresholds
    assert tile_margin([0.45, 0.45, 0.1], classes, thr) == 0.0
    # no thresholds known: the top two alone
    assert tile_margin([0.2, 0.7, 0.1], classes, {}) == pytest.approx(0.5)


def test_pool_keeps_the_most_informative_and_a_uniform_reservoir() -> None:
    rng = np.random.default_rng(3)
    infos = rng.random(200)
    pool = Pool(5, False, rng)
    admitted, dropped = [], []
    for i, v in enumerate(infos):
        ok, slot = pool.admit(float(v))
        if ok:
            admitted.append(f"t{i}")
            out = pool.put(Kept(float(v), f"t{i}"), slot)
            if out is not None:
                dropped.append(out.tile_id)
    assert sorted(k.info for k in pool.items()) == sorted(infos)[-5:]
    # every tile pushed out was handed back (its JPEG is deleted by the sink), none twice, none still kept
    assert sorted(dropped + [k.tile_id for k in pool.items()]) == sorted(admitted)
    assert len(admitted) < len(infos)  # a less informative tile than the five kept is not even encoded
    # Algorithm R: each of 50 items ends in a 5-slot sample with probability 0.1
    hits = Counter()
    trials = 4000
    for t in range(trials):
        res = Pool(5, True, np.random.default_rng(t))
        for i in range(50):
            ok, slot = res.admit(0.0)
            if ok:
                res.put(Kept(0.0, str(i)), slot)
        hits.update(k.tile_id for k in res.items())
    shares = np.array([hits[str(i)] / trials for i in range(50)])
    assert np.all(np.abs(shares - 0.1) < 0.03), shares  # ~6 sigma of a binomial share at n=4000


@pytest.fixture(scope="module")
def flight(tmp_path_factory: pytest.TempPathFactory, tiny_bundle_dir: Path) -> Path:
    """The short real flight with the review sink on (shared: tests that label copy it first)."""
    return reviewflight.fly(tiny_bundle_dir, tmp_path_factory.mktemp("review") / "out")


def _zone_geoms(folder: Path) -> dict[str, shapely.Geometry]:
    fc = json.loads((folder / "zones.geojson").read_text())
    return {f["properties"]["id"]: shapely.geometry.shape(f["geometry"]) for f in fc["features"]}


def test_flight_keeps_every_kind_bounded_with_its_facts(flight: Path) -> None:
    kept = read_review(flight)
    raw = list(iter_jsonl(flight / "review" / "review.jsonl"))
    assert [r["id"] for r in raw] == [r["id"] for r in kept]  # rewritten at close: survivors only, in order
    kinds = Counter(r["kind"] for r in kept)
    assert set(kinds) == set(LIMITS) and all(kinds[k] <= LIMITS[k] for k in LIMITS), kinds
    # most informative first
    assert [r["informativeness"] for r in kept] == sorted((r["informativeness"] for r in kept), reverse=True)
    # disk is bounded too: the JPEGs on disk are exactly the kept tiles (the replaced ones were deleted)
    on_disk = sorted(p.name for p in (flight / "review" / "tiles").iterdir())
    assert on_disk == sorted(Path(r["image"]).name for r in kept)
    # the flight offered more tiles than the limits: replacement did happen
    frames = list(iter_jsonl(flight / "classifications.jsonl"))
    card = json.loads((Path(str(flight) + "-bundle") / "model_card.json").read_text())
    flagged = sum(t["flagged"] for f in frames for t in f["tiles"])
    assert flagged > LIMITS["edge"] + LIMITS["flagged"] + LIMITS["margin"]
    by_tile = {(f["seq"], t["row"], t["col"]): t for f in frames for t in f["tiles"]}
    zones = _zone_geoms(flight)
    sha = card["files"]["model_int8.tflite"]["sha256"]
    for r in kept:
        # the scores and call are the run's own (classifications.jsonl), the margin is computed from them
        t = by_tile[(r["frame"]["seq"], r["tile"]["row"], r["tile"]["col"])]
        assert r["scores"] == pytest.approx(t["scores"], abs=1e-4) and r["label"] == t["label"]
        assert r["margin"] == pytest.approx(tile_margin(list(t["scores"].values()), list(t["scores"]),
                                                        card["thresholds"]), abs=2e-4)
        assert r["model_sha256"] == sha and r["pose"]["lat"] and r["trusted"]
        assert len(r["footprint"]) == 4
        img = cv2.imread(str(flight / "review" / r["image"]))
        assert img.shape[:2] == (r["tile"]["h"], r["tile"]["w"]) == (160, 160)
        quad = shapely.Polygon([(lon, lat) for lat, lon in r["footprint"]])
        if r["kind"] == "edge":  # it crossed a zone the map had then; the zone only grew since
            assert r["zones_crossed"] and all(quad.intersects(zones[z]) for z in r["zones_crossed"])
        elif r["kind"] == "margin":
            assert r["margin"] < 0.2  # review.margin_below's default
    # the healthy sample is drawn from the whole flight (a reservoir), not the first healthy tiles seen
    kept_ids = {r["id"] for r in kept}
    assert len(kept_ids) == len(kept)
    margin_below = 0.2
    plain = [key for key, t in by_tile.items() if not t["flagged"]
             and tile_margin(list(t["scores"].values()), list(t["scores"]), card["thresholds"]) >= margin_below]
    healthy_seqs = sorted(r["frame"]["seq"] for r in kept if r["kind"] == "healthy")
    assert len(plain) > 10 * LIMITS["healthy"] and healthy_seqs[-1] > sorted(plain)[LIMITS["healthy"]][0]
    # the margin pool holds the smallest margins of the tiles it was offered (those not on an edge)
    margins = sorted(r["margin"] for r in kept if r["kind"] == "margin")
    assert margins and max(margins) <= min(r["margin"] for r in kept if r["kind"] in ("flagged", "healthy"))


def test_a_restart_into_the_same_folder_keeps_the_bound(tmp_path: Path, tiny_bundle_dir: Path) -> None:
    out = reviewflight.fly(tiny_bundle_dir, tmp_path / "out", n_frames=40)
    first = {r["id"] for r in read_review(out)}
    reviewflight.fly(tiny_bundle_dir, out, n_frames=40)  # the payload restarted after a crash: a new run id
    kept = read_review(out)
    runs = {r["run_id"] for r in kept}
    kinds = Counter(r["kind"] for r in kept)
    assert all(kinds[k] <= LIMITS[k] for k in LIMITS), kinds  # both runs together, still bounded
    assert len(runs) == 2 and first & {r["id"] for r in kept}  # the earlier run's tiles competed, some stayed
    on_disk = sorted(p.name for p in (out / "review" / "tiles").iterdir())
    assert on_disk == sorted(Path(r["image"]).name for r in kept)


def payload_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "payload", *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env=env)


def test_the_disk_guard_stops_review_tiles(tmp_path: Path, tiny_bundle_dir: Path) -> None:
    out = reviewflight.fly(tiny_bundle_dir, tmp_path / "out", n_frames=12, floor_mb=1e12)
    assert not list((out / "review" / "tiles").iterdir())
    assert (out / "review" / "review.jsonl").read_text() == ""
    assert len(list(iter_jsonl(out / "classifications.jsonl"))) == 12  # the records went on
    done = payload_cli("review", str(out), "--port", "0")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "has no kept review tiles" in done.stderr and "review: {enabled: true}" in done.stderr


def test_review_refuses_a_port_in_use(flight: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        done = payload_cli("review", str(flight), "--port", str(s.getsockname()[1]))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "cannot serve the review on 127.0.0.1" in done.stderr and "--port 0" in done.stderr


class Server:
    """`payload review FOLDER --port 0` as a grower starts it; its address from its first line."""

    def __init__(self, folder: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen([sys.executable, "-m", "payload", "review", str(folder), "--port", "0"],
                                     cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("review: http://127.0.0.1:"), (line, self.proc.stderr.read() if not line else "")
        self.url = line.split()[1]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


KEYS = ["h", "r", "m", "u", "1", "2", "3", "4", "h", "r"]
NAMES = {"h": "healthy", "r": "rust", "m": "powdery_mildew", "u": "unsure",
         "1": "healthy", "2": "rust", "3": "powdery_mildew", "4": "unsure"}


def test_label_ten_tiles_with_keys_kill_restart_and_find_them(flight: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(flight, tmp_path / "flight"))
    tiles = read_review(folder)
    assert len(tiles) > len(KEYS) + 1
    server = Server(folder)
    page = DevTools(server.url, tmp_path / "chromium")
    try:
        page.wait_for("document.body.dataset.ready === '1'")
        assert page.evaluate("document.getElementById('img').dataset.tile") == tiles[0]["id"]
        assert page.evaluate("document.querySelectorAll('#map polygon.zone').length") >= 1
        n = 0
        for key in [*KEYS, "m"]:  # an eleventh answer, undone below with z
            page.press(key)
            n += 1
            if n > 1:  # the first two keys come faster than the disk: they must label two tiles, in order
                page.wait_for(f"document.getElementById('progress').dataset.labelled === '{n}'")
        page.press("z")
        page.wait_for(f"document.getElementById('progress').dataset.labelled === '{len(KEYS)}'")
        page.press("1")  # again, and undone with Backspace
        page.wait_for(f"document.getElementById('progress').dataset.labelled === '{len(KEYS) + 1}'")
        page.press("Backspace")
        page.wait_for(f"document.getElementById('progress').dataset.labelled === '{len(KEYS)}'")
        assert page.evaluate("document.getElementById('img').dataset.tile") == tiles[len(KEYS)]["id"]
        server.kill()  # no goodbye: every answer must already be on disk

        want = {t["id"]: NAMES[k] for t, k in zip(tiles, KEYS, strict=False)}
        with (folder / "labels" / "labels.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        assert {r["tile_id"]: r["label"] for r in rows} == want
        by_id = {t["id"]: t for t in tiles}
        for r in rows:
            assert r["model_label"] == by_id[r["tile_id"]]["label"] and r["labelled_utc"].endswith("Z")
            assert r["model_sha256"] == by_id[r["tile_id"]]["model_sha256"]
        copies = {p.stem: p.parent.name for p in (folder / "labels").glob("*/*.jpg")}
        assert copies == want
        for tid, label in want.items():
            assert (folder / "labels" / label / f"{tid}.jpg").read_bytes() == \
                (folder / "review" / by_id[tid]["image"]).read_bytes()

        server = Server(folder)  # restarted: the page shows the saved answers, at the first unlabelled tile
        page.navigate(server.url)
        page.wait_for("document.body.dataset.ready === '1'")
        assert page.evaluate("document.getElementById('progress').dataset.labelled") == str(len(KEYS))
        assert page.evaluate("document.getElementById('img').dataset.tile") == tiles[len(KEYS)]["id"]
        shown = page.evaluate("[...document.querySelectorAll('#strip div')].map((d) => d.dataset.answer)")
        assert shown[:len(KEYS)] == [want[t["id"]] for t in tiles[:len(KEYS)]]
        assert not any(shown[len(KEYS):])
        page.press("ArrowLeft")  # back to the last labelled tile: its answer is shown
        page.wait_for(f"document.querySelector('#facts [data-answer]')?.dataset.answer === '{NAMES[KEYS[-1]]}'")
    finally:
        page.close()
        server.kill()


def test_the_label_folder_is_what_compile_reads(flight: Path, tmp_path: Path) -> None:
    """Answers given through the server's own HTTP interface land in class folders compile's scan_folder maps
    with no class map (unsure is left out); an unknown tile or label, or a POST that is not JSON (what another
    web page could send without asking), changes nothing."""
    import urllib.request

    from compile.config import DataConfig
    from compile.data import scan_folder

    folder = Path(shutil.copytree(flight, tmp_path / "flight"))
    tiles = read_review(folder)
    server = Server(folder)
    try:
        labels = ["healthy", "rust", "powdery_mildew", "unsure"] * 3
        for t, label in zip(tiles, labels, strict=False):
            req = urllib.request.Request(server.url + "api/label", method="POST",
                                         data=json.dumps({"id": t["id"], "label": label}).encode(),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as r:
                assert json.load(r)["saved"]["label"] == label
        for body, ctype, code in ((b'{"id": "x", "label": "rust"}', "application/json", 400),
                                  (json.dumps({"id": tiles[0]["id"], "label": "blight"}).encode(), "application/json",
                                   400),
                                  (json.dumps({"id": tiles[0]["id"], "label": "rust"}).encode(), "text/plain", 415)):
            bad = urllib.request.Request(server.url + "api/label", method="POST", data=body,
                                         headers={"Content-Type": ctype})
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(bad, timeout=10)
            assert err.value.code == code
    finally:
        server.kill()
    splits = scan_folder(DataConfig(source="folder", folder=str(folder / "labels"), val_fraction=0.3,
                                    test_fraction=0.3))
    n = sum(len(s) for s in (splits.train, splits.val, splits.test))
    assert n == 9  # three of each class; the unsure tiles are not a class
    assert len((folder / "labels" / "labels.csv").read_text().splitlines()) == 1 + 12
