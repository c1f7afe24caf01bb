"""The `payload` CLI end to end: run (with SIGTERM), classify, devices, and exit 2 on operator errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from payload.backends.devices import list_edge_tpus
from tests.payload import doubles
from tests.payload.doubles import Calls

ROOT = Path(__file__).resolve().parents[2]


def payload(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "payload", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def image_folder(path: Path, n: int) -> Path:
    path.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(path / f"IMG_20261125_10{i // 60:02d}{i % 60:02d}.jpg"),
                    rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))
    return path


def config(tmp_path: Path, bundle: Path, source: dict, **sections: dict) -> Path:
    """A payload YAML for these tests: no flight controller, on purpose (telemetry.allow_none) unless overridden."""
    cfg = {"model": {"bundle": str(bundle), "backend": "cpu", "num_threads": 1}, "source": source,
           "tiling": {"rows": 2, "cols": 2}, "scheduler": {"stats_interval_s": 0.5},
           "output": {"dir": str(tmp_path / "out")}, "telemetry": {"allow_none": True}, **sections}
    p = tmp_path / "payload.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def flight_folders(root: Path) -> list[Path]:
    """The flight folders `payload run` made under an output.dir root, oldest first."""
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def only_flight(root: Path, wait_s: float = 0.0) -> Path:
    """The one flight folder under `root` (waited for up to wait_s while a run starts)."""
    deadline = time.monotonic() + wait_s
    while not flight_folders(root) and time.monotonic() < deadline:
        time.sleep(0.1)
    found = flight_folders(root)
    assert len(found) == 1, found
    return found[0]


def test_sigterm_stops_cleanly_and_loses_nothing(tmp_path: Path, tiny_bundle_dir: Path) -> None:
    # 200 images replayed at their recorded pace (one per second of file-name time) would take minutes
    folder = image_folder(tmp_path / "imgs", 200)
    cfg = config(tmp_path, tiny_bundle_dir, {"kind": "folder", "uri": str(folder), "time_from": "filename",
                                             "realtime": True})
    proc = subprocess.Popen([sys.executable, "-m", "payload", "run", "--config", str(cfg)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        flight = only_flight(tmp_path / "out", wait_s=60)
        records = flight / "classifications.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not records.exists() or records.read_text().count("\n") < 2):
            time.sleep(0.1)
        assert records.exists(), "no record within 60 s"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "SIGTERM received" in err and "final stats:" in err and "Traceback" not in err
    lines = records.read_text().splitlines()
    parsed = [json.loads(line) for line in lines]  # every line complete
    stats = json.loads((flight / "run_stats.json").read_text())
    assert len(parsed) == stats["frames_processed"] >= 2
    assert stats["frames_captured"] == stats["frames_processed"] + stats["frames_dropped"]
    assert stats["frames_captured"] < 200  # it really stopped early
    assert [r["seq"] for r in parsed] == sorted(r["seq"] for r in parsed)
    # a 2 x 2 grid, and with tiling.stagger every second frame 2 x 1 columns on the seams
    assert [len(r["tiles"]) for r in parsed] == [4 if i % 2 == 0 else 2 for i in range(len(parsed))]


def test_run_to_the_end_of_a_folder_with_unreadable_files(tmp_path: Path, tiny_bundle_dir: Path) -> None:
    folder = image_folder(tmp_path / "imgs", 3)
    (folder / "IMG_20261125_109999.jpg").write_bytes(b"garbage")
    cfg = config(tmp_path, tiny_bundle_dir, {"kind": "folder", "uri": str(folder), "time_from": "rate",
                                             "rate_hz": 1.0})
    out = payload("run", "--config", str(cfg))
    assert out.returncode == 0, out.stderr
    flight = only_flight(tmp_path / "out")
    stats = json.loads((flight / "run_stats.json").read_text())
    assert stats["frames_unreadable"] == 1 and stats["frames_captured"] == 3
    assert stats["frames_processed"] == 3 and stats["frames_dropped"] == 0  # an unpaced replay loses nothing
    assert len((flight / "classifications.jsonl").read_text().splitlines()) == 3
    # the run ends with the field report, even with no telemetry (nothing placed on the ground)
    page = (flight / "report.html").read_text(encoding="utf-8")
    assert "Nothing was placed on the ground" in page and "3 frames" in page
    assert "skipped an unreadable frame (IMG_20261125_109999.jpg cannot be decoded" in out.stderr


def test_run_without_telemetry_refuses_unless_said_on_purpose(tmp_path: Path, tiny_bundle_dir: Path) -> None:
    folder = image_folder(tmp_path / "imgs", 2)
    cfg = config(tmp_path, tiny_bundle_dir, {"kind": "folder", "uri": str(folder), "time_from": "rate",
                                             "rate_hz": 1.0}, telemetry={"connection": None})
    out = payload("run", "--config", str(cfg))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    # the reason and both fixes are in the message; nothing was started
    for text in ("telemetry.connection is not set", "no position", "--no-telemetry", "telemetry.allow_none: true"):
        assert text in out.stderr, text
    assert flight_folders(tmp_path / "out") == []
    out = payload("run", "--config", str(cfg), "--no-telemetry")
    assert out.returncode == 0, out.stderr
    assert len((only_flight(tmp_path / "out") / "classifications.jsonl").read_text().splitlines()) == 2


def test_two_runs_into_one_root_give_two_flight_folders(tmp_path: Path, tiny_bundle_dir: Path) -> None:
    folder = image_folder(tmp_path / "imgs", 2)
    cfg = config(tmp_path, tiny_bundle_dir, {"kind": "folder", "uri": str(folder), "time_from": "rate",
                                             "rate_hz": 1.0})
    root = tmp_path / "out"
    for _ in range(2):
        out = payload("run", "--config", str(cfg))
        assert out.returncode == 0, out.stderr
    first, second = flight_folders(root)
    for flight in (first, second):  # each flight whole in its own folder, marked finished; none appended to
        assert len((flight / "classifications.jsonl").read_text().splitlines()) == 2
        marker = json.loads((flight / "flight.json").read_text())
        assert marker["state"] == "finished" and marker["resumes"] == 0
        assert flight.name.startswith(marker["started"])
    listed = payload("flights", str(root), "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["folder"] for r in rows] == [first.name, second.name]
    assert [r["state"] for r in rows] == ["finished", "finished"]
    assert all(r["duration_s"] is not None and r["duration_s"] >= 0 for r in rows)
    table = payload("flights", str(root))
    assert table.returncode == 0 and first.name in table.stdout and "finished" in table.stdout
    # a finished flight is never appended to, even when named exactly
    again = payload("run", "--config", str(cfg), "--flight-dir", str(first))
    assert again.returncode == 2 and "never appended to" in again.stderr and "Traceback" not in again.stderr
    assert len((first / "classifications.jsonl").read_text().splitlines()) == 2
    assert payload("flights", str(tmp_path / "nope")).returncode == 2
    # --flight-dir: exactly that folder, beside a tool's own files; the output.dir root is left alone
    exact = tmp_path / "mission"
    exact.mkdir()
    (exact / "payload.yaml").write_text("a tool's own file\n")
    named = payload("run", "--config", str(cfg), "--flight-dir", str(exact))
    assert named.returncode == 0, named.stderr
    assert len((exact / "classifications.jsonl").read_text().splitlines()) == 2
    assert json.loads((exact / "flight.json").read_text())["state"] == "finished"
    assert flight_folders(root) == [first, second] and not (exact / "mission").exists()


def test_run_with_a_camera_that_will_not_open(tmp_path: Path, tiny_bundle_dir: Path) -> None:
    cfg = config(tmp_path, tiny_bundle_dir, {"kind": "opencv", "uri": "/dev/video97"})
    out = payload("run", "--config", str(cfg))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "error: camera '/dev/video97' did not open" in out.stderr


def test_run_with_a_bad_bundle(tmp_path: Path, bundle_copy: Path) -> None:
    with (bundle_copy / "labels.txt").open("a") as f:
        f.write("extra\n")
    cfg = config(tmp_path, bundle_copy, {"kind": "folder", "uri": str(tmp_path)})
    out = payload("run", "--config", str(cfg))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "sha256 mismatch for labels.txt" in out.stderr


def test_classify_prints_class_confidence_and_scores(tmp_path: Path, tiny_bundle_dir: Path) -> None:
    img = tmp_path / "leaf.png"
    cv2.imwrite(str(img), np.full((50, 70, 3), 90, np.uint8))
    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), np.full((33, 31), 200, np.uint8))
    out = payload("classify", "--bundle", str(tiny_bundle_dir), "--backend", "cpu", "--json", str(img), str(grey))
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["image"] for r in rows] == [str(img), str(grey)]
    for r in rows:
        assert set(r["scores"]) == {"healthy", "rust", "powdery_mildew"}
        assert r["label"] in r["scores"] and 0 <= r["confidence"] <= 1
    text = payload("classify", "--bundle", str(tiny_bundle_dir), "--backend", "cpu", str(img))
    assert text.returncode == 0 and "healthy " in text.stdout and "powdery_mildew " in text.stdout


def test_classify_errors(tmp_path: Path, tiny_bundle_dir: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    out = payload("classify", "--bundle", str(tiny_bundle_dir), str(bad))
    assert out.returncode == 2 and "1 of 1 image(s) could not be read" in out.stderr
    out = payload("classify", "--bundle", str(tmp_path / "nothing"), str(bad))
    assert out.returncode == 2 and "folder not found" in out.stderr and "Traceback" not in out.stderr
    out = payload("classify", "--bundle", str(tiny_bundle_dir), "--backend", "edgetpu", str(bad))
    assert out.returncode == 2 and "Edge TPU required" in out.stderr


def test_devices_says_none_and_why() -> None:
    out = payload("devices")
    assert out.returncode == 0
    if "no Edge TPU found" in out.stdout:  # this machine: nothing plugged in
        assert "pycoral not installed" in out.stdout and "libedgetpu" in out.stdout


def test_device_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doubles.no_pycoral(monkeypatch)
    dev, usb = tmp_path / "dev", tmp_path / "usb"
    dev.mkdir()
    (dev / "apex_0").touch()
    for name, ids in {"2-1": ("18d1", "9302"), "1-1": ("1a6e", "089a"), "1-2": ("046d", "c52b")}.items():
        (usb / name).mkdir(parents=True)
        (usb / name / "idVendor").write_text(ids[0] + "\n")
        (usb / name / "idProduct").write_text(ids[1] + "\n")
    found, how = list_edge_tpus(dev, usb)
    assert [(d.type, d.path) for d in found] == [("pci", str(dev / "apex_0")), ("usb", "1-1"), ("usb", "2-1")]
    assert "firmware not yet loaded" in found[1].detail and "pycoral not installed" in how
    assert list_edge_tpus(tmp_path / "none", tmp_path / "none")[0] == []
    doubles.install_pycoral(monkeypatch, Calls(), tpus=[{"type": "usb", "path": "/sys/bus/usb/devices/2-1"}])
    found, how = list_edge_tpus(dev, usb)
    assert [(d.type, d.path) for d in found] == [("usb", "/sys/bus/usb/devices/2-1")] and "pycoral" in how


def test_cli_help_lists_the_commands() -> None:
    out = payload("--help")
    assert out.returncode == 0 and all(c in out.stdout for c in ("run", "classify", "devices"))
    assert os.path.exists(ROOT / "deploy" / "payload.service")
