"""Coral's published Edge TPU figures and the timing model built on them: one source for the payload and tools.

`payload plan` must know how many tiles a second the chip classifies to choose a speed, and the
tools' modelled Coral (tools/coral.py, docs/CORAL.md) must run missions at the same pace; both take
the published figures and the model from here, so a corrected figure changes both. This module is
arithmetic only: no model of the accelerator ever stands in for the accelerator in the payload's
backends (that wrapper stays in tools/mission/modelled_payload.py).

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
from typing import Literal, get_args

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


def fit_device(ms_inception: float, ms_resnet: float) -> tuple[float, float]:
    """(MAC rate, streaming rate) that reproduce both published figures of one column exactly."""
    rate = INCEPTION_V1_MACS / (ms_inception / 1000.0)
    compute_s = RESNET50_V1_MACS / rate
    streamed = RESNET50_V1_PARAM_BYTES - CACHE_BYTES
    return rate, streamed / (ms_resnet / 1000.0 - compute_s)


def device_models() -> dict[str, DeviceModel]:
    """The four modelled attachments (docs/CORAL.md has the derivation of each)."""
    r3, b3 = fit_device(INCEPTION_V1_MS["usb3"], RESNET50_V1_MS["usb3"])
    rd, bd = fit_device(INCEPTION_V1_MS["devboard"], RESNET50_V1_MS["devboard"])
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


def batch_s(cost: BundleCost, device: DeviceModel, devices: int, layout: Layout, n_tiles: int) -> float:
    """Seconds the modelled chips take for one frame's `n_tiles`."""
    if layout == "replicas":
        return replicas_batch_s(n_tiles, invoke_s(cost, device), devices)
    return pipeline_batch_s(n_tiles, segment_s(cost, device, devices))


def resnet50_cost(input_h: int, input_w: int) -> BundleCost:
    """Full ResNet-50 V1 at another input size: MACs scale with the input's pixels, parameters do not.

    The product's model is a whole ResNet-50; a bundle cut early (the quick profile) would flatter the
    chip, so a plan can ask for this figure instead of the bundle's own count.
    """
    return BundleCost(RESNET50_V1_MACS * input_h * input_w / (299.0 * 299.0), RESNET50_V1_PARAM_BYTES)
