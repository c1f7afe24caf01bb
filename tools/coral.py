"""A modelled Coral Edge TPU: time per invoke from Coral's published figures, scaled for a bundle.

No machine of this project has an Edge TPU, yet missions and benches must show what the product
does at the chip's real pace. This module is the timing model (docs/CORAL.md derives every
constant and cites its source); it lives in tools/ because a drone must never run a model of its
accelerator in place of the accelerator. `tools/mission/modelled_payload.py` puts it around the
payload's own CPU classifier.

The model per invoke on one device, for a model with M multiply-accumulates and P bytes of
parameters (int8 weights and int32 biases, as the compiler sees them):

    t = M / R + max(0, P - C) / B

R is the device's effective MAC rate (from Inception v1, whose parameters fit on chip), C the
on-chip parameter cache, and B the effective rate at which uncached parameters stream on every
invoke (from ResNet-50 V1, whose parameters do not fit). Several devices run either the same
model on each (frigate's way: throughput x N) or one segment each in a pipeline (latency is the
sum of the segments, throughput that of the slowest).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

EdgeTpuModel = Literal["usb3", "usb2", "pcie", "devboard"]
EDGETPU_MODELS: tuple[str, ...] = get_args(EdgeTpuModel)
Layout = Literal["replicas", "pipeline"]
LAYOUTS: tuple[str, ...] = get_args(Layout)

# on-chip memory the compiler can give parameters: a real compile of a model that fills it reports
# 6.02 MiB used + 1.02 MiB remaining (google-coral/edgetpu#557); the chip's SRAM is ~8 MB in total
CACHE_BYTES = 7.04 * 2**20

# Coral's benchmarks page (coral.ai/docs/edgetpu/benchmarks), ms per inference
INCEPTION_V1_MS = {"usb3": 3.4, "devboard": 4.1}  # 224x224, parameters fit on chip
RESNET50_V1_MS = {"usb3": 49.0, "devboard": 56.0}  # 299x299, parameters stream
# what the two reference models cost (docs/CORAL.md: Inception v1 from its paper, ResNet-50 V1 counted
# by `bundle_cost` on Keras' ResNet50 at 299x299 converted to TFLite: 7.21 G MACs, 25.51 M parameters,
# as int8 weights and int32 biases)
INCEPTION_V1_MACS = 1.5e9
RESNET50_V1_MACS = 7.21e9
RESNET50_V1_PARAM_BYTES = 25.59e6
# USB 2: an on-chip model runs about 3.2x slower than on USB 3 on the same host (MobileNet v2, 58.1 vs
# 18.2 ms, aallan/benchmarking-ml-on-the-edge); streamed parameters cross USB 2's ~37.5 MB/s of bulk
# payload (480 Mb/s signalling; PINTO0309/TPU-MobilenetSSD#1)
USB2_ON_CHIP_FACTOR = 3.2
USB2_STREAM_BYTES_PER_S = 37.5e6


@dataclass(frozen=True)
class DeviceModel:
    """One kind of Edge TPU attachment: its effective MAC rate and its streaming rate."""

    name: str
    macs_per_s: float
    stream_bytes_per_s: float
    source: str


def _fit(ms_inception: float, ms_resnet: float) -> tuple[float, float]:
    """(MAC rate, streaming rate) that reproduce both published figures of one column exactly."""
    rate = INCEPTION_V1_MACS / (ms_inception / 1000.0)
    compute_s = RESNET50_V1_MACS / rate
    streamed = RESNET50_V1_PARAM_BYTES - CACHE_BYTES
    return rate, streamed / (ms_resnet / 1000.0 - compute_s)


def device_models() -> dict[str, DeviceModel]:
    """The four modelled attachments (docs/CORAL.md has the derivation of each)."""
    r3, b3 = _fit(INCEPTION_V1_MS["usb3"], RESNET50_V1_MS["usb3"])
    rd, bd = _fit(INCEPTION_V1_MS["devboard"], RESNET50_V1_MS["devboard"])
    return {
        "usb3": DeviceModel("usb3", r3, b3, "Coral benchmarks, desktop CPU + USB Accelerator (USB 3.0)"),
        "usb2": DeviceModel("usb2", r3 / USB2_ON_CHIP_FACTOR, USB2_STREAM_BYTES_PER_S,
                            "USB 3 rate / 3.2 on chip (aallan), 37.5 MB/s streaming (USB 2 bulk)"),
        # no published M.2/Mini PCIe figure: the desktop host's MAC rate, the Dev Board's PCIe streaming
        "pcie": DeviceModel("pcie", r3, bd, "assumed: USB 3 column's MAC rate, Dev Board's streaming rate"),
        "devboard": DeviceModel("devboard", rd, bd, "Coral benchmarks, Dev Board"),
    }


@dataclass(frozen=True)
class BundleCost:
    """What one invoke of a model costs the chip: multiply-accumulates and parameter bytes."""

    macs: float
    param_bytes: float


def invoke_s(cost: BundleCost, device: DeviceModel, cache_bytes: float = CACHE_BYTES) -> float:
    """Seconds per invoke on one device: compute plus the parameters that stream because they do not fit."""
    streamed = max(0.0, cost.param_bytes - cache_bytes)
    return cost.macs / device.macs_per_s + streamed / device.stream_bytes_per_s


def segment_s(cost: BundleCost, device: DeviceModel, segments: int, cache_bytes: float = CACHE_BYTES) -> list[float]:
    """Seconds per invoke of each segment when the model is cut into `segments` of equal MACs and parameters.

    The compiler balances segments by parameter size (`--num_segments`); equal shares are its ideal.
    Each segment streams only what exceeds its own chip's cache, which is why a pipeline of chips
    beats one chip for a model that does not fit one cache.
    """
    if segments < 1:
        raise ValueError(f"segments must be 1 or more, got {segments}")
    share = BundleCost(cost.macs / segments, cost.param_bytes / segments)
    return [invoke_s(share, device, cache_bytes)] * segments


def replicas_batch_s(n_tiles: int, invoke: float, devices: int) -> float:
    """Seconds to classify `n_tiles` with the same model on each of `devices` (tiles dealt round-robin)."""
    if devices < 1:
        raise ValueError(f"devices must be 1 or more, got {devices}")
    return math.ceil(n_tiles / devices) * invoke if n_tiles > 0 else 0.0


def pipeline_batch_s(n_tiles: int, stages: list[float]) -> float:
    """Seconds to push `n_tiles` through a pipeline: the first tile crosses every stage, each next one
    leaves one slowest stage later."""
    if not stages:
        raise ValueError("a pipeline needs at least one stage")
    return sum(stages) + (n_tiles - 1) * max(stages) if n_tiles > 0 else 0.0


@dataclass(frozen=True)
class Figures:
    """Latency of one tile and tiles per second of a layout of `devices` chips."""

    latency_s: float
    tiles_per_s: float


def layout_figures(cost: BundleCost, device: DeviceModel, devices: int, layout: Layout) -> Figures:
    """Per-tile latency and throughput: replicas multiply throughput, a pipeline shortens every stage."""
    if layout == "replicas":
        t = invoke_s(cost, device)
        return Figures(t, devices / t)
    stages = segment_s(cost, device, devices)
    return Figures(sum(stages), 1.0 / max(stages))


def runtime_layout_notes(segments: int, tpus: int, layout: Layout) -> list[str]:
    """Where the real payload would run this bundle on `tpus` devices differently from the modelled layout.

    The payload (payload/backends/pool.py) runs a bundle compiled into N segments only as a pipeline of
    N devices (more are left idle, fewer refuse to open), and an unsegmented bundle only as replicas
    (model.device listing several devices); the model cuts any bundle into ideal equal segments. Empty
    when the two agree.
    """
    notes = []
    if segments > 1 and layout == "replicas":
        notes.append(f"the bundle is compiled into {segments} segments: the payload runs it only as a pipeline of "
                     f"{segments} devices, not as {tpus} replica(s)")
    elif segments > 1 and tpus != segments:
        notes.append(f"the bundle is compiled into {segments} segments: the payload uses {segments} devices "
                     + (f"and leaves {tpus - segments} idle" if tpus > segments else f"and refuses {tpus}"))
    elif segments <= 1 and layout == "pipeline" and tpus > 1:
        notes.append(f"the bundle is not compiled into segments: the payload runs it as {tpus} replicas; the modelled "
                     f"pipeline is what a build with edgetpu.num_segments: {tpus} would fly, cut into equal shares")
    return notes


def batch_s(cost: BundleCost, device: DeviceModel, devices: int, layout: Layout, n_tiles: int) -> float:
    """Seconds the modelled chips take for one frame's `n_tiles`."""
    if layout == "replicas":
        return replicas_batch_s(n_tiles, invoke_s(cost, device), devices)
    return pipeline_batch_s(n_tiles, segment_s(cost, device, devices))


# -- counting a model's cost -----------------------------------------------------------------------

def _macs_of(op: dict, shapes: dict[int, list[int]]) -> float:
    """Multiply-accumulates of one conv or fully connected op (batch 1); 0 for everything else."""
    name = op["op_name"]
    ins, outs = [int(i) for i in op["inputs"]], [int(o) for o in op["outputs"]]
    if len(ins) < 2 or not outs or ins[1] < 0:
        return 0.0
    w, out = shapes[ins[1]], shapes[outs[0]]
    n_out = float(np.prod(out)) if out else 0.0
    if name == "CONV_2D":  # weights [O, kh, kw, I]
        return n_out * w[1] * w[2] * w[3]
    if name == "DEPTHWISE_CONV_2D":  # weights [1, kh, kw, C]
        return n_out * w[1] * w[2]
    if name == "FULLY_CONNECTED":  # weights [O, I]
        return n_out * w[1]
    if name == "TRANSPOSE_CONV":  # weights [O, kh, kw, I]; every input pixel scatters a kernel
        x = shapes[ins[2]] if len(ins) > 2 else []
        return float(np.prod(x)) * w[0] * w[1] * w[2] if x else 0.0
    return 0.0


def bundle_cost(model: Path) -> BundleCost:
    """Count a .tflite's MACs (conv, depthwise, fully connected) and constant parameter bytes.

    Read with the TFLite runtime the payload already has (no TensorFlow): constant tensors are the
    op inputs no op produces and the graph does not take; their bytes are what the compiler places
    on chip or streams.
    """
    from payload.backends.runtime import import_runtime

    _name, rt = import_runtime()
    interp = rt.Interpreter(model_path=str(model))
    details = {int(t["index"]): t for t in interp.get_tensor_details()}
    shapes = {i: [int(d) for d in t["shape"]] for i, t in details.items()}
    ops = [op for op in interp._get_ops_details() if op["op_name"] != "DELEGATE"]  # the runtime's only op list
    produced = {int(o) for op in ops for o in op["outputs"]}
    graph_in = {int(t["index"]) for t in interp.get_input_details()}
    constants = {int(i) for op in ops for i in op["inputs"]} - produced - graph_in - {-1}
    param_bytes = sum(float(np.prod(shapes[i])) * np.dtype(details[i]["dtype"]).itemsize for i in constants)
    macs = sum(_macs_of(op, shapes) for op in ops)
    return BundleCost(macs, param_bytes)


def add_modelled_coral_arguments(ap: Any) -> None:
    """--edgetpu-model, --tpus and --tpu-layout, the same on tools.mission, tools.missions and tools.bench."""
    ap.add_argument("--edgetpu-model", choices=EDGETPU_MODELS, default=None,
                    help="classify at a modelled Coral's pace (tools/coral.py, docs/CORAL.md) instead of the "
                    "payload's own backend choice; reports name the backend 'modelled'")
    ap.add_argument("--tpus", type=int, default=1, help="modelled Edge TPUs (default %(default)s)")
    ap.add_argument("--tpu-layout", choices=LAYOUTS, default="replicas",
                    help="the same model on each device (replicas, frigate's way) or one segment each (pipeline)")


# -- the table a bench prints ----------------------------------------------------------------------

def cpu_ms_per_tile(bundle_dir: Path, threads: int = 2, invokes: int = 30) -> float:
    """This machine's median CPU wall time per tile for the bundle's int8 model (the payload's own backend)."""
    import time

    from payload.backends.cpu import CpuClassifier
    from payload.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    clf = CpuClassifier(bundle, threads)
    tile = np.random.default_rng(0).integers(0, 256, (1, bundle.input_height, bundle.input_width, 3), dtype=np.uint8)
    times = []
    for _ in range(invokes):
        t0 = time.perf_counter()
        clf.classify_batch(tile)
        times.append((time.perf_counter() - t0) * 1000.0)
    clf.close()
    return float(np.median(times))


def modelled_table(cost: BundleCost, max_tpus: int = 3) -> list[dict]:
    """One row per attachment, layout and device count: per-tile latency (ms) and tiles per second."""
    rows = []
    for name, dev in device_models().items():
        for layout in LAYOUTS:
            for n in range(1, max_tpus + 1):
                if layout == "pipeline" and n == 1:
                    continue  # one segment on one chip is the replica row
                f = layout_figures(cost, dev, n, layout)  # type: ignore[arg-type]
                rows.append({"model": name, "layout": layout, "tpus": n, "latency_ms": 1000.0 * f.latency_s,
                             "tiles_per_s": f.tiles_per_s})
    return rows


def main(argv: list[str] | None = None) -> int:
    """`python -m tools.coral --bundle B`: the modelled Coral figures for B beside its CPU time per tile."""
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m tools.coral", description=main.__doc__)
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--tpus", type=int, default=3, help="largest device count in the table (default %(default)s)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for the CPU figure")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    a = ap.parse_args(argv)
    cost = bundle_cost(a.bundle / "model_int8.tflite")
    cpu = cpu_ms_per_tile(a.bundle, a.threads)
    rows = modelled_table(cost, a.tpus)
    if a.json:
        print(json.dumps({"macs": cost.macs, "param_bytes": cost.param_bytes, "cpu_ms_per_tile": cpu, "rows": rows},
                         indent=2))
        return 0
    over = cost.param_bytes - CACHE_BYTES
    fits = "fits on chip" if over <= 0 else f"streams {over / 1e6:.2f} MB"
    print(f"bundle {a.bundle}: {cost.macs / 1e9:.3f} G MACs, {cost.param_bytes / 1e6:.2f} MB of parameters ({fits})")
    print(f"CPU (this machine, {a.threads} threads): {cpu:.2f} ms per tile, {1000.0 / cpu:.0f} tiles/s")
    print(f"{'modelled':<9} {'layout':<9} {'tpus':>4} {'ms/tile':>9} {'tiles/s':>9} {'vs CPU':>7}")
    for r in rows:
        print(f"{r['model']:<9} {r['layout']:<9} {r['tpus']:>4} {r['latency_ms']:>9.3f} {r['tiles_per_s']:>9.0f} "
              f"{r['tiles_per_s'] * cpu / 1000.0:>6.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
