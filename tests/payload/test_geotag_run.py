"""`payload run` wiring end to end, `payload export` after a killed run, and the small pure pieces
(zones, alert text and rate limit, preflight block)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import geojson
import numpy as np
import pymap3d
import pytest

from payload.capture.sources import InProcessSource
from payload.cli import main as payload_main
from payload.config import GeotagSection, PayloadConfig, PreflightSection
from payload.files.jsonl import read_jsonl
from payload.geo.camera import CameraModel, pixel_to_ground
from payload.geo.diseasemap import MAPINFO_SCHEMA, is_look, map_from_info
from payload.ops.preflight import PreflightError, run_preflight
from payload.pipeline.runner import build_pipeline
from payload.sinks.alerts import AlertSender, zone_text
from payload.sinks.jsonl import iter_detections
from payload.types import Frame, Pose
from tests.mavtestvehicle import MavTestVehicle, free_udp_port
from tests.payload import tinymodel
from tests.payload.geotagdoubles import ScriptedTelemetry
from tests.payload.test_telemetry_link import HOME, straight_flight
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_payload_run_geotags_every_flagged_tile(tmp_path: Path, tiny_bundle_dir: Path) -> None:
    bundle = tinymodel.copy_bundle(tiny_bundle_dir, tmp_path / "bundle")
    tinymodel.rewrite_card(bundle, thresholds={"rust": 0.0, "powdery_mildew": 0.0})  # every tile is a sighting
    port = free_udp_port()
    with MavTestVehicle(port, straight_flight, home=HOME, rate_hz=4.0) as vehicle:
        cfg = PayloadConfig.model_validate(
            {
                "model": {"bundle": str(bundle), "backend": "cpu"},
                "tiling": {"rows": 2, "cols": 2, "stagger": False},  # every tile of every frame: 4 a frame
                "output": {"dir": str(tmp_path / "out")},
                "telemetry": {"connection": f"udp:127.0.0.1:{port}", "connect_timeout_s": 10},
                "preflight": {"wait_fix_s": 3, "min_free_disk_mb": 1},
                "alerts": {"min_interval_s": 0},
            }
        )
        rng = np.random.default_rng(0)
        n_frames = 5

        def frames():
            for i in range(n_frames):
                time.sleep(0.15)
                yield Frame(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), i, time.monotonic(), time.time(), "t")

        pipeline = build_pipeline(cfg, source=InProcessSource(frames()))
        stats = pipeline.run()
        assert stats.frames_processed == n_frames
        dets = list(iter_detections(tmp_path / "out" / "detections.jsonl"))
        assert len(dets) == n_frames * 4
        cam = CameraModel.from_hfov(640, 480, 62.2)
        worst = 0.0
        for d in dets:
            assert d["trusted"], d["flags"]
            truth = straight_flight(vehicle.boot_s(d["frame"]["t_mono"]))
            pose = Pose(truth.lat, truth.lon, truth.alt, truth.roll, truth.pitch, truth.yaw)
            t = d["tile"]
            lat, lon = pixel_to_ground(cam, t["x"] + t["w"] / 2, t["y"] + t["h"] / 2, pose, HOME[2])
            e, n, _ = pymap3d.geodetic2enu(d["lat"], d["lon"], HOME[2], lat, lon, HOME[2])
            worst = max(worst, math.hypot(e, n))
        assert worst < 0.5, worst
        # the runtime's own per-frame records are still written next to the detections
        assert len(read_jsonl(tmp_path / "out" / "classifications.jsonl").records) == n_frames
        for name in ("detections.geojson", "zones.geojson", "detections.kml", "zones.kml", "detections.csv",
                     "coverage.geojson", "looks.tif", "mosaic.tif", "mosaic.png", "mosaic.json"):
            assert (tmp_path / "out" / name).is_file()
        assert wait_for(lambda: len(vehicle.statustexts) >= 1, 3.0)


_KILLED_WRITER = r"""
import sys, time
sys.path.insert(0, {root!r})
from payload.config import PayloadConfig
from payload.pipeline.geotag import GeotagHandler
from tests.payload.geotagdoubles import LABELS, ScriptedTelemetry, frame_result
cfg = PayloadConfig.model_validate({{"model": {{"bundle": "b"}}, "output": {{"dir": {out!r}}},
                                    "sinks": {{"layers_interval_s": 3600}}}})
h = GeotagHandler(cfg, labels=LABELS, model_sha256="ee" * 32, telemetry=ScriptedTelemetry(t_end=50, north_mps=10.0))
i = 0
while True:  # bounded by the parent, which kills this process
    h.handle(frame_result(i, 1.0 + (i * 0.1) % 45, [(20 * (i % 5), 0, 64, 64)], "rust" if i % 4 else "powdery_mildew"))
    i += 1
    time.sleep(0.01)
"""


def test_export_after_a_killed_run_reproduces_the_layers(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code = _KILLED_WRITER.format(root=str(ROOT), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        ok = wait_for(
            lambda: (out / "detections.jsonl").exists() and len(read_jsonl(out / "detections.jsonl").records) >= 25, 60
        )
        assert ok, "the writer did not produce records"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    everything = read_jsonl(out / "detections.jsonl").records
    records = list(iter_detections(out / "detections.jsonl"))
    # the layers were written once (after the first record) and are stale
    assert len(geojson.loads((out / "detections.geojson").read_text())["features"]) < len(records)
    with open(out / "detections.jsonl", "a") as f:  # as if the kill had cut a record in half
        f.write('{"schema":"cropscout.detection/1","id":"x","label":"ru')
    with pytest.raises(SystemExit) as ex:
        payload_main(["export", str(out)])
    assert ex.value.code == 0
    said = capsys.readouterr().out
    assert f"exported {len(records)} detections" in said and "torn last line" in said
    assert f"wrote {out / 'report.html'}" in said and "<svg" in (out / "report.html").read_text(encoding="utf-8")
    fc = geojson.loads((out / "detections.geojson").read_text())
    assert fc.is_valid and [f["properties"]["id"] for f in fc["features"]] == [r["id"] for r in records]
    # and the zones are exactly what the flight's map gives from the same looks, in the same order
    info = next(r for r in everything if r.get("schema") == MAPINFO_SCHEMA)
    dmap = map_from_info(info)
    for r in everything:
        if is_look(r):
            dmap.add_look(r)
    dmap.finish()
    want = [(z.id, round(z.area_m2, 3)) for z in dmap.zones]
    got = [(f["properties"]["id"], f["properties"]["area_m2"])
           for f in json.loads((out / "zones.geojson").read_text())["features"]]
    assert got == want and len(got) >= 1


def test_export_cli_reports_a_missing_folder(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as ex:
        payload_main(["export", str(tmp_path / "nope")])
    assert ex.value.code == 2
    assert "detections.jsonl: not found" in capsys.readouterr().err


def test_alert_text_fits_and_rate_limit_holds() -> None:
    text = zone_text(
        {
            "id": "a_very_long_disease_name_for_testing-12",
            "label": "a_very_long_disease_name_for_testing",
            "lat": -33.123456,
            "lon": -151.987654,
            "peak_p": 0.876,
        }
    )
    assert len(text) <= 50 and text.endswith(" Z12 -33.12346 -151.98765 p0.88")
    now = [0.0]
    sent: list[tuple[int, str]] = []
    link = [True]

    def send(sev: int, t: str) -> bool:
        if link[0]:
            sent.append((sev, t))
        return link[0]

    a = AlertSender(send, "CRITICAL", min_interval_s=5.0, max_pending=2, clock=lambda: now[0])
    a.notify("one")
    a.notify("two")  # inside 5 s: queued
    assert sent == [(2, "one")] and a.pending == 1
    now[0] = 5.1
    a.tick()
    assert sent[-1] == (2, "two")
    link[0] = False
    now[0] = 11.0
    a.notify("three")  # no link: kept
    a.notify("four")
    a.notify("five")  # queue of 2: "three" dropped
    assert a.dropped == 1 and a.pending == 2
    link[0] = True
    a.tick()
    assert sent[-1] == (2, "four")


def test_preflight_block_and_strict_mode(tmp_path: Path) -> None:
    geo = GeotagSection()
    rep = run_preflight(PreflightSection(min_free_disk_mb=1), geo, tmp_path, ScriptedTelemetry(), model=(True, "tiny"))
    assert rep.ok, rep.block()
    block = rep.block()
    for name in ("telemetry link", "clock sync", "GPS fix", "home position", "model", "free disk"):
        assert name in block
    bad = ScriptedTelemetry(fix_type=1)
    rep = run_preflight(PreflightSection(min_free_disk_mb=1e12), geo, tmp_path, bad, camera=(False, "no /dev/video0"))
    assert {c.name for c in rep.failed} == {"GPS fix", "free disk", "camera"}
    assert "FAIL" in rep.block() and "-> wait for a 3D fix" in rep.block()
    with pytest.raises(PreflightError, match="GPS fix, camera, free disk|preflight failed"):
        run_preflight(PreflightSection(min_free_disk_mb=1e12, strict=True), geo, tmp_path, bad, camera=(False, "x"))
    rep = run_preflight(PreflightSection(min_free_disk_mb=1), geo, tmp_path, None)
    assert [c.name for c in rep.failed] == ["telemetry link"]
