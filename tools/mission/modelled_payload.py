"""`python -m tools.mission.modelled_payload --edgetpu-model M --tpus N [--layout L] PAYLOAD-ARGS`: the
real payload process, whose classifier takes a modelled Coral's time.

A mission flies the payload as its own process, as on a drone. To fly it at an Edge TPU's pace on a
machine without one, this entry point opens the payload's own CPU classifier, wraps it so every
`classify_batch` returns no sooner than the modelled chips would have (tools/coral.py), and then
runs the payload's own CLI `main` with the remaining arguments. The payload package never holds the
timing model: a drone runs only its real backends. The wrapper's name starts with "modelled", and
the payload writes that name into run_stats.json, so every report of such a run says so.

When this machine's CPU is slower than the modelled chips, a batch cannot be sped up: it takes the
CPU's time, and the count of such batches is logged at close (`overruns`).
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from tools.coral import (
    EDGETPU_MODELS,
    LAYOUTS,
    MODEL_COSTS,
    BundleCost,
    DeviceModel,
    Layout,
    batch_s,
    device_models,
    modelled_cost,
    runtime_layout_notes,
)

log = logging.getLogger("payload.backend")


class ModelledEdgeTpu:
    """A `Classifier` that scores with `inner` and paces each batch to the modelled Coral's time."""

    def __init__(self, inner: Any, cost: BundleCost, device: DeviceModel, tpus: int, layout: Layout) -> None:
        self.inner = inner
        self.cost, self.device, self.tpus, self.layout = cost, device, tpus, layout
        self.input_size = inner.input_size
        self.name = f"modelled edgetpu {device.name} x{tpus} {layout} (tools/coral.py timing over {inner.name})"
        self.batches = 0
        self.overruns = 0

    def modelled_s(self, n_tiles: int) -> float:
        """Seconds the modelled chips take for `n_tiles` (one frame's batch)."""
        return batch_s(self.cost, self.device, self.tpus, self.layout, n_tiles)

    def classify_batch(self, tiles: np.ndarray) -> np.ndarray:
        """The CPU's scores, returned once the modelled chips would have finished the batch."""
        t0 = time.perf_counter()
        scores = self.inner.classify_batch(tiles)
        remaining = self.modelled_s(int(tiles.shape[0])) - (time.perf_counter() - t0)
        self.batches += 1
        if remaining > 0:
            time.sleep(remaining)
        else:
            self.overruns += 1
        return scores

    def close(self) -> None:
        """Close the CPU classifier; say how often the CPU was slower than the model (it then set the pace)."""
        if self.batches:
            log.info("%s: %d batches, %d took the CPU's time because the CPU was slower than the model",
                     self.name, self.batches, self.overruns)
        self.inner.close()


def modelled_opener(model: str, tpus: int, layout: Layout, model_cost: str = "bundle") -> Any:
    """An `open_classifier` replacement for the payload's runner: the CPU backend inside the timing model."""
    from payload.backends.cpu import CpuClassifier

    device = device_models()[model]

    def open_modelled(bundle: Any, backend: str = "auto", device_name: str | None = None, num_threads: int = 2,
                      **_kw: Any) -> ModelledEdgeTpu:
        clf = ModelledEdgeTpu(CpuClassifier(bundle, num_threads), modelled_cost(model_cost, bundle.cpu_model),
                              device, tpus, layout)
        log.info("backend %s (model.backend %s and device %s ignored: the mission asked for a modelled Coral)",
                 clf.name, backend, device_name)
        for note in runtime_layout_notes(len(getattr(bundle, "edgetpu_segments", ())), tpus, layout):
            log.warning("modelled Coral differs from the payload's runtime here: %s", note)
        return clf

    return open_modelled


def parse(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """This entry point's options, and the rest for the payload's CLI."""
    ap = argparse.ArgumentParser(prog="python -m tools.mission.modelled_payload", description=__doc__.split("\n\n")[0])
    ap.add_argument("--edgetpu-model", choices=EDGETPU_MODELS, required=True)
    ap.add_argument("--tpus", type=int, default=1)
    ap.add_argument("--layout", choices=LAYOUTS, default="replicas",
                    help="the same model on each device (replicas) or one segment each (pipeline)")
    ap.add_argument("--model-cost", choices=MODEL_COSTS, default="bundle",
                    help="charge the bundle's own model or the default build's 224 px ResNet-50 per tile")
    a, rest = ap.parse_known_args(argv)
    if a.tpus < 1:
        ap.error(f"--tpus must be 1 or more, got {a.tpus}")
    return a, rest


def main(argv: Sequence[str] | None = None) -> None:
    """Put the modelled opener in the runner's hands, then run the payload's own CLI."""
    import payload.pipeline.runner as runner
    from payload.cli import main as payload_main

    a, rest = parse(argv)
    runner.open_classifier = modelled_opener(a.edgetpu_model, a.tpus, a.layout, a.model_cost)  # type: ignore[assignment]
    payload_main(rest)


if __name__ == "__main__":
    main()
