"""The modelled Coral (tools/coral.py) against hand-worked cases, and its wrapper around the CPU backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tools import coral
from tools.coral import BundleCost, DeviceModel
from tools.mission import modelled_payload
from tools.mission.run import MissionPlan, payload_command

RESNET50 = BundleCost(coral.RESNET50_V1_MACS, coral.RESNET50_V1_PARAM_BYTES)
INCEPTION = BundleCost(coral.INCEPTION_V1_MACS, 6.6e6)  # fits on chip
# round numbers for hand-working: 1 G MAC/s, 1 MB/s streaming, a 1 MB cache
UNIT = DeviceModel("unit", 1e9, 1e6, "test")


def test_the_fit_reproduces_the_published_figures() -> None:
    devs = coral.device_models()
    for name in ("usb3", "devboard"):
        assert coral.invoke_s(RESNET50, devs[name]) * 1000 == pytest.approx(coral.RESNET50_V1_MS[name])
        assert coral.invoke_s(INCEPTION, devs[name]) * 1000 == pytest.approx(coral.INCEPTION_V1_MS[name])


def test_invoke_time_by_hand() -> None:
    # 2 G MACs -> 2 s; 3 MB of parameters, 1 MB cached -> 2 MB streamed -> 2 s
    assert coral.invoke_s(BundleCost(2e9, 3e6), UNIT, cache_bytes=1e6) == pytest.approx(4.0)
    # fits the cache: compute only
    assert coral.invoke_s(BundleCost(2e9, 0.5e6), UNIT, cache_bytes=1e6) == pytest.approx(2.0)


def test_segments_by_hand() -> None:
    # 3 segments of 1 G MACs and 1 MB each, 0.5 MB cache: 1 s + 0.5 s per segment
    assert coral.segment_s(BundleCost(3e9, 3e6), UNIT, 3, cache_bytes=0.5e6) == pytest.approx([1.5] * 3)
    with pytest.raises(ValueError):
        coral.segment_s(RESNET50, UNIT, 0)


def test_replicas_deal_tiles_round_robin() -> None:
    assert coral.replicas_batch_s(12, 0.05, 1) == pytest.approx(0.60)
    assert coral.replicas_batch_s(12, 0.05, 3) == pytest.approx(0.20)
    assert coral.replicas_batch_s(13, 0.05, 3) == pytest.approx(0.25)  # one device takes a fifth tile
    assert coral.replicas_batch_s(0, 0.05, 3) == 0.0
    with pytest.raises(ValueError):
        coral.replicas_batch_s(1, 0.05, 0)


def test_pipeline_fills_then_runs_at_the_slowest_stage() -> None:
    # the first tile crosses 0.02 + 0.03 + 0.01; the 11 others leave 0.03 apart
    assert coral.pipeline_batch_s(12, [0.02, 0.03, 0.01]) == pytest.approx(0.06 + 11 * 0.03)
    assert coral.pipeline_batch_s(1, [0.02, 0.03]) == pytest.approx(0.05)
    f = coral.layout_figures(BundleCost(3e9, 0.0), UNIT, 3, "pipeline")
    assert (f.latency_s, f.tiles_per_s) == pytest.approx((3.0, 1.0))


def test_orders_the_model_must_keep() -> None:
    devs = coral.device_models()
    one = {k: coral.layout_figures(RESNET50, d, 1, "replicas").tiles_per_s for k, d in devs.items()}
    # USB 2 cannot stream 18 MB per invoke anywhere near USB 3's pace
    assert one["usb2"] * 3 < one["usb3"]
    # PCIe: the USB 3 column's compute with the Dev Board's streaming lies between the two published columns
    assert one["devboard"] < one["pcie"] < one["usb3"]
    # ResNet-50 does not fit one cache: three chips in a pipeline beat three replicas (Coral's advice)
    for d in devs.values():
        rep = coral.layout_figures(RESNET50, d, 3, "replicas").tiles_per_s
        pipe = coral.layout_figures(RESNET50, d, 3, "pipeline").tiles_per_s
        assert pipe > rep
    # a model that fits on chip gains nothing from segments over replicas
    small = BundleCost(1e9, 1e6)
    rep = coral.layout_figures(small, devs["usb3"], 2, "replicas").tiles_per_s
    assert coral.layout_figures(small, devs["usb3"], 2, "pipeline").tiles_per_s == pytest.approx(rep)
    # replicas multiply throughput and leave latency alone
    r1, r3 = (coral.layout_figures(RESNET50, devs["usb3"], n, "replicas") for n in (1, 3))
    assert r3.tiles_per_s == pytest.approx(3 * r1.tiles_per_s) and r3.latency_s == pytest.approx(r1.latency_s)


def test_bundle_cost_counts_the_plain_float_model(tmp_path: Path) -> None:
    from tests.payload import tinymodel

    model = tmp_path / "m.tflite"
    model.write_bytes(tinymodel.build_plain_float_tflite(size=32, n_classes=3))
    cost = coral.bundle_cost(model)
    # Conv2D 3x3, 8 filters, valid: 30x30x8 outputs of 27 MACs; Dense 7200 -> 3
    assert cost.macs == 30 * 30 * 8 * 27 + 30 * 30 * 8 * 3
    # float32 weights and biases: 8*27 + 8 + 7200*3 + 3
    assert cost.param_bytes == 4 * (8 * 27 + 8 + 7200 * 3 + 3)


class _Inner:
    name = "cpu (double)"
    input_size = (4, 4)

    def __init__(self) -> None:
        self.closed = False

    def classify_batch(self, tiles: np.ndarray) -> np.ndarray:
        return np.full((tiles.shape[0], 3), 1 / 3, np.float32)

    def close(self) -> None:
        self.closed = True


def test_the_wrapper_waits_for_the_modelled_chips(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(modelled_payload.time, "sleep", slept.append)
    inner = _Inner()
    clf = modelled_payload.ModelledEdgeTpu(inner, BundleCost(1e9, 0.0), UNIT, 3, "replicas")
    scores = clf.classify_batch(np.zeros((12, 4, 4, 3), np.uint8))
    assert scores.shape == (12, 3)
    assert clf.modelled_s(12) == pytest.approx(4.0)  # 12 tiles over 3 devices at 1 s each
    assert len(slept) == 1 and 3.9 < slept[0] <= 4.0  # the CPU's own time is taken off
    assert clf.name.startswith("modelled edgetpu unit x3 replicas")
    clf.close()
    assert inner.closed


def test_a_cpu_slower_than_the_model_sets_the_pace(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(modelled_payload.time, "sleep", slept.append)
    clf = modelled_payload.ModelledEdgeTpu(_Inner(), BundleCost(0.0, 0.0), UNIT, 1, "replicas")
    clf.classify_batch(np.zeros((2, 4, 4, 3), np.uint8))
    assert not slept and clf.overruns == 1


def test_entry_point_passes_the_rest_to_the_payload() -> None:
    a, rest = modelled_payload.parse(["--edgetpu-model", "usb2", "--tpus", "2", "--log-level", "INFO", "run",
                                      "--config", "x.yaml"])
    assert (a.edgetpu_model, a.tpus, a.layout) == ("usb2", 2, "replicas")
    assert rest == ["--log-level", "INFO", "run", "--config", "x.yaml"]


def test_the_mission_starts_the_modelled_entry_point_only_when_asked(tmp_path: Path) -> None:
    cfg = tmp_path / "payload.yaml"
    plain = payload_command(MissionPlan(Path("s.yaml"), tmp_path, tmp_path), cfg)
    flight = ["--flight-dir", str(tmp_path.resolve())]  # the mission's folder is the flight's
    assert "tools.mission.modelled_payload" not in plain and plain[-5:] == ["run", "--config", str(cfg), *flight]
    cmd = payload_command(MissionPlan(Path("s.yaml"), tmp_path, tmp_path, edgetpu_model="pcie", tpus=3), cfg)
    assert cmd[1:3] == ["-m", "tools.mission.modelled_payload"]
    assert cmd[3:9] == ["--edgetpu-model", "pcie", "--tpus", "3", "--layout", "replicas"]
    assert cmd[-5:] == ["run", "--config", str(cfg), *flight]


def test_the_model_says_where_the_runtime_would_run_the_bundle_otherwise() -> None:
    """The payload runs a segmented bundle only as a pipeline of its N devices, an unsegmented one only as
    replicas (payload/backends/pool.py); the model can do either, so it says when it departs."""
    from tools.coral import runtime_layout_notes

    assert runtime_layout_notes(1, 3, "replicas") == []
    assert runtime_layout_notes(1, 1, "pipeline") == []  # one segment on one chip is the replica
    assert runtime_layout_notes(3, 3, "pipeline") == []
    (n,) = runtime_layout_notes(1, 3, "pipeline")
    assert "runs it as 3 replicas" in n and "edgetpu.num_segments: 3" in n
    (n,) = runtime_layout_notes(3, 2, "replicas")
    assert "only as a pipeline of 3 devices" in n
    (n,) = runtime_layout_notes(2, 3, "pipeline")
    assert "leaves 1 idle" in n
    (n,) = runtime_layout_notes(3, 2, "pipeline")
    assert "refuses 2" in n


def test_the_resnet50_charge_is_the_default_build_at_the_chips_pace(tmp_path: Path) -> None:
    """--model-cost resnet50: a quick bundle's scores flown at the pace of the 224 px ResNet-50 the product
    builds; below the published 299 px figure (fewer MACs, the same streamed parameters), far above the quick
    bundle's fraction of a millisecond."""
    from tools.coral import device_models, invoke_s, modelled_cost
    from tools.mission.run import MissionPlan, payload_command

    ms = 1000.0 * invoke_s(modelled_cost("resnet50", tmp_path / "unused.tflite"), device_models()["usb3"])
    assert 25.0 < ms < 49.0
    cmd = payload_command(MissionPlan(Path("s.yaml"), tmp_path, tmp_path, edgetpu_model="usb3",
                                      model_cost="resnet50"), tmp_path / "c.yaml")
    assert cmd[cmd.index("--model-cost") + 1] == "resnet50"
