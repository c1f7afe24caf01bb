"""Several Edge TPUs: `model.device` lists and `all`, and a pool of devices opened through the runtime doubles.

The isolated children (one per device) and their faults are tested in tests/reliability/test_multitpu.py;
here everything runs in-process, so the runtime doubles (tests/payload/doubles.py) record each device.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from payload.backends import open_classifier
from payload.backends.cpu import CpuClassifier
from payload.backends.devices import DeviceStringError, EdgeTpuUnavailable, parse_devices, resolve_devices
from payload.backends.edgetpu import delegate_library
from payload.backends.pool import ReplicaPool
from payload.bundle import load_bundle
from payload.config import PayloadConfig
from payload.configio import validate_config
from payload.errors import ConfigError, UserError
from tests.payload import doubles
from tests.payload.doubles import Calls


def test_device_lists_are_read_in_order() -> None:
    assert parse_devices(None) == [None] and parse_devices("") == [None]
    assert parse_devices("usb") == ["usb"] and parse_devices(":1") == [":1"]
    assert parse_devices("usb:0,usb:1,pci:0") == ["usb:0", "usb:1", "pci:0"]
    assert parse_devices(" usb:1 , pci:0 ") == ["usb:1", "pci:0"]
    assert parse_devices("all") is None and parse_devices("ALL") is None


@pytest.mark.parametrize("bad,why", [
    ("usb0", "not a valid Edge TPU device"),
    ("usb:0,,usb:1", "has an empty entry"),
    ("usb:0,usb:0", "names 'usb:0' twice"),
    ("usb:0,all", "`all` stands alone"),
    ("usb,pci", "means the first device found"),
    ("usb:0,firewire:1", "'firewire:1' is not a valid Edge TPU device"),
])
def test_a_bad_device_string_names_the_field_and_the_fix(bad: str, why: str) -> None:
    with pytest.raises(DeviceStringError) as info:
        parse_devices(bad)
    text = str(info.value)
    assert isinstance(info.value, UserError) and text.startswith("model.device") and why in text
    assert "usb:0,usb:1,pci:0" in text and "`all`" in text  # the fix: how to write it
    # the config stops on the ground with the same words, naming the key
    with pytest.raises(ConfigError) as cfg_err:
        validate_config({"model": {"bundle": "b", "device": bad}}, PayloadConfig, "payload.yaml")
    assert "model.device" in str(cfg_err.value) and why in str(cfg_err.value)


def test_all_enumerates_every_device(monkeypatch: pytest.MonkeyPatch) -> None:
    tpus = [{"type": "usb", "path": "/sys/bus/usb/devices/2-1"}, {"type": "pci", "path": "/dev/apex_0"},
            {"type": "usb", "path": "/sys/bus/usb/devices/2-2"}]
    doubles.install_pycoral(monkeypatch, Calls(), tpus=tpus)
    assert resolve_devices("all") == ["usb:0", "pci:0", "usb:1"]
    assert resolve_devices("usb:1,pci:0") == ["usb:1", "pci:0"]  # a list is taken as written, not enumerated
    doubles.install_pycoral(monkeypatch, Calls(), tpus=[])
    with pytest.raises(EdgeTpuUnavailable, match="`all` found no Edge TPU"):
        resolve_devices("all")


def test_all_without_pycoral_scans_the_kernel(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import payload.backends.devices as devices

    dev, usb = tmp_path / "dev", tmp_path / "usb"
    (dev / "apex_0").mkdir(parents=True)
    for name, ids in {"1-1": ("18d1", "9302"), "1-2": ("046d", "c52b"), "1-3": ("1a6e", "089a")}.items():
        (usb / name).mkdir(parents=True)
        (usb / name / "idVendor").write_text(ids[0])
        (usb / name / "idProduct").write_text(ids[1])
    doubles.no_pycoral(monkeypatch)
    real = devices.list_edge_tpus
    monkeypatch.setattr(devices, "list_edge_tpus", lambda: real(dev, usb))
    assert resolve_devices("all") == ["pci:0", "usb:0", "usb:1"]  # the mouse (046d) is not an Edge TPU


def test_auto_does_not_fly_around_a_typo(monkeypatch: pytest.MonkeyPatch, tiny_tpu_bundle_dir: Path) -> None:
    """`auto` takes the CPU when no Edge TPU answers, never because model.device is mistyped."""
    doubles.no_pycoral(monkeypatch)
    doubles.install_runtime(monkeypatch, "ai_edge_litert", doubles.fake_runtime("ai_edge_litert", Calls()))
    with pytest.raises(DeviceStringError, match="model.device 'usb:0,usb:0' names 'usb:0' twice"):
        open_classifier(load_bundle(tiny_tpu_bundle_dir), "auto", "usb:0,usb:0")


def test_a_device_list_opens_a_pool_with_the_scores_of_one_model(monkeypatch: pytest.MonkeyPatch,
                                                                  tiny_tpu_bundle_dir: Path) -> None:
    calls = Calls()
    doubles.no_pycoral(monkeypatch)
    doubles.install_runtime(monkeypatch, "ai_edge_litert", doubles.fake_runtime("ai_edge_litert", calls))
    bundle = load_bundle(tiny_tpu_bundle_dir)
    clf = open_classifier(bundle, "edgetpu", "usb:0,usb:1,pci:0")
    try:
        assert isinstance(clf, ReplicaPool) and clf.alive == 3
        assert sorted(o["device"] for _, o in calls.load_delegate) == ["pci:0", "usb:0", "usb:1"]
        assert {lib for lib, _ in calls.load_delegate} == {delegate_library()}
        assert all(i["model_path"].endswith("model_int8_edgetpu.tflite") for i in calls.interpreters)
        batch = np.random.default_rng(4).integers(0, 256, (13, 32, 32, 3), dtype=np.uint8)
        want = CpuClassifier(bundle, 1).classify_batch(batch)
        np.testing.assert_array_equal(clf.classify_batch(batch), want)  # in the tiles' order
        assert sum(m.tiles for m in clf.members) == 13
        assert "3 of 3 devices [usb:0, usb:1, pci:0]" in clf.name
    finally:
        clf.close()


def test_a_pool_flies_with_the_devices_that_open(monkeypatch: pytest.MonkeyPatch, tiny_tpu_bundle_dir: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """One named device missing at take-off: the others fly (logged); none at all: auto takes the CPU."""
    import payload.backends.edgetpu as tpu

    bundle = load_bundle(tiny_tpu_bundle_dir)
    cpu = CpuClassifier(bundle, 1)

    def opener(b, device):
        if device == "usb:1":
            raise EdgeTpuUnavailable("the Edge TPU delegate did not load for device 'usb:1' (test)")
        return CpuClassifier(b, 1)

    monkeypatch.setattr(tpu, "EdgeTpuClassifier", opener)
    pool = tpu.open_edgetpu(bundle, "usb:0,usb:1,pci:0", isolate=False)
    try:
        assert isinstance(pool, ReplicaPool) and pool.alive == 2 and "usb:1 (down)" in pool.name
        assert "Edge TPU usb:1 did not open" in caplog.text and "flying with 2 of 3 devices" in caplog.text
        batch = np.random.default_rng(5).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
        np.testing.assert_array_equal(pool.classify_batch(batch), cpu.classify_batch(batch))
    finally:
        pool.close()

    def none_opens(b, device):
        raise EdgeTpuUnavailable(f"the Edge TPU delegate did not load for device {device!r} (test)")

    monkeypatch.setattr(tpu, "EdgeTpuClassifier", none_opens)
    clf = open_classifier(bundle, "auto", "usb:0,usb:1")
    assert isinstance(clf, CpuClassifier)
    assert "did not load for device 'usb:0'" in caplog.text


def test_a_segmented_bundle_needs_a_device_per_segment(tmp_path: Path, tiny_model_bytes: bytes) -> None:
    from payload.backends.edgetpu import open_edgetpu
    from tests.payload import tinymodel

    root = tmp_path / "seg"
    root.mkdir()
    for k in range(2):  # write_bundle lists (and hashes) every file of the folder
        (root / f"model_int8_segment_{k}_of_2_edgetpu.tflite").write_bytes(tiny_model_bytes)
    tinymodel.write_bundle(root, tiny_model_bytes)
    bundle = load_bundle(root)
    assert len(bundle.edgetpu_segments) == 2 and bundle.edgetpu_model is None
    with pytest.raises(EdgeTpuUnavailable, match="compiled into 2 segments, one per device, but model.device names 1"):
        open_edgetpu(bundle, "usb:0", isolate=False)
