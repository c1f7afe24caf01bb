"""A modelled Coral Edge TPU: time per invoke from Coral's published figures, scaled for a bundle.

No machine of this project has an Edge TPU, yet missions and benches must show what the product
does at the chip's real pace. The published figures and the timing model are in
`payload/plan/chip.py` (docs/CORAL.md derives every constant and cites its source), shared with
`payload plan`, which chooses a flight's speed from them; this module adds what only the
workstation does: counting a bundle's cost, the modelled options of the tools' command lines and
the table `python -m tools.coral` prints. The wrapper that runs the payload's CPU classifier at the
modelled pace is `tools/mission/modelled_payload.py`: a drone never runs a model of its accelerator
in place of the accelerator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from payload.plan.chip import (  # noqa: F401 - re-exported: tools and tests name them as tools.coral's
    CACHE_BYTES,
    EDGETPU_MODELS,
    INCEPTION_V1_MACS,
    INCEPTION_V1_MS,
    LAYOUTS,
    RESNET50_V1_MACS,
    RESNET50_V1_MS,
    RESNET50_V1_PARAM_BYTES,
    USB2_ON_CHIP_FACTOR,
    USB2_STREAM_BYTES_PER_S,
    BundleCost,
    DeviceModel,
    EdgeTpuModel,
    Figures,
    Layout,
    batch_s,
    device_models,
    invoke_s,
    layout_figures,
    pipeline_batch_s,
    replicas_batch_s,
    resnet50_cost,
    segment_s,
)

# the published figures and the timing model live in the payload's planner (one source of truth:
# `payload plan` chooses speeds from the same numbers the modelled missions run at)
from payload.plan.cost import bundle_cost


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


MODEL_COSTS: tuple[str, ...] = ("bundle", "resnet50")
RESNET50_INPUT_PX = 224  # the default build's input (configs/build.yaml model.input_size)


def modelled_cost(model_cost: str, bundle_model: Path | None) -> BundleCost:
    """What one tile costs the modelled chip: the bundle's own model, or the default build's ResNet-50.

    A quick bundle's 96 px small CNN (25 M MACs) costs the modelled USB 3 chip 0.06 ms, the random-ResNet
    two-stage trunk it replaced a third of a millisecond (`modelled_cost("bundle", B/model_int8.tflite)`
    through `invoke_s`): neither makes a Coral the bottleneck; charging the 224 px ResNet-50 the product
    flies lets the quick bundle's scores be flown at the pace the real model would set.
    """
    if model_cost == "resnet50":
        return resnet50_cost(RESNET50_INPUT_PX, RESNET50_INPUT_PX)
    if bundle_model is None:
        raise ValueError("model cost 'bundle' needs the bundle's model file")
    return bundle_cost(bundle_model)


def add_modelled_coral_arguments(ap: Any) -> None:
    """--edgetpu-model, --tpus and --tpu-layout, the same on tools.mission, tools.missions and tools.bench."""
    ap.add_argument("--edgetpu-model", choices=EDGETPU_MODELS, default=None,
                    help="classify at a modelled Coral's pace (tools/coral.py, docs/CORAL.md) instead of the "
                    "payload's own backend choice; reports name the backend 'modelled'")
    ap.add_argument("--tpus", type=int, default=1, help="modelled Edge TPUs (default %(default)s)")
    ap.add_argument("--tpu-layout", choices=LAYOUTS, default="replicas",
                    help="the same model on each device (replicas, frigate's way) or one segment each (pipeline)")
    ap.add_argument("--model-cost", choices=MODEL_COSTS, default="bundle",
                    help="what each tile costs the modelled chip: the bundle's own model, or the default build's "
                    "224 px ResNet-50 (~49 ms a tile on USB 3) whatever bundle scores the tiles (default %(default)s)")


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
