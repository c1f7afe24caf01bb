"""The activation cache's worth, measured: one build config, the same data, cache on and off.

The frozen backbone stages give the same output every epoch; the cache computes them once per
image (compile/actcache.py). Whether that pays is a ratio of two builds taken in one run on one
machine (a shared machine's load moves absolute times, much less their ratio), so this runs
`python -m compile build` twice on a copy of the config that differs only in
`train.activation_cache`, prints each build's seconds from its model card (whole build, filling the
cache, training) and the speed-up, writes them as JSON and exits 1 when the speed-up misses the
target. Both builds must also reach the same int8 test accuracy within a tolerance: a cache that
trained a different model would be a faster wrong answer.

    python -m tools.bench_build [--per-class 300] [--weights none] [--min-speedup 2] [--out build/bench_build]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

TARGET_SPEEDUP = 2.0
ACCURACY_TOLERANCE = 0.03


def variant_config(base: dict[str, Any], per_class: int, cache: bool) -> dict[str, Any]:
    """The base build config with only the data size and the cache switch changed."""
    cfg = json.loads(json.dumps(base))  # a deep copy of plain YAML data
    cfg.setdefault("data", {})["synthetic_per_class"] = per_class
    cfg.setdefault("train", {})["activation_cache"] = cache
    return cfg


def card_figures(card: dict[str, Any]) -> dict[str, Any]:
    """The seconds and accuracies a comparison needs, from a model card."""
    tr = card.get("training", {})
    m = card.get("metrics", {})
    return {
        "build_seconds": tr.get("build_seconds"),
        "cache_seconds": tr.get("activation_cache_seconds", 0.0),
        "train_seconds": tr.get("train_seconds"),
        "int8_accuracy": m.get("int8", {}).get("accuracy"),
        "heldout_int8_accuracy": m.get("heldout", {}).get("int8", {}).get("accuracy"),
    }


def compare(on: dict[str, Any], off: dict[str, Any], min_speedup: float) -> tuple[dict[str, Any], list[str]]:
    """Speed-ups (off / on) and the misses against the targets."""
    out = {
        "speedup_build": off["build_seconds"] / on["build_seconds"],
        "speedup_train": off["train_seconds"] / (on["train_seconds"] + on["cache_seconds"]),
        "accuracy_gap": abs(on["int8_accuracy"] - off["int8_accuracy"]),
    }
    misses = []
    if out["speedup_build"] < min_speedup:
        misses.append(f"build speed-up {out['speedup_build']:.2f}x < {min_speedup:g}x")
    if out["accuracy_gap"] > ACCURACY_TOLERANCE:
        misses.append(f"int8 test accuracy differs by {out['accuracy_gap']:.3f} (> {ACCURACY_TOLERANCE})")
    return out, misses


def _build(config: Path, out: Path, weights: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "compile", "build", "--config", str(config), "--profile", "default",
           "--weights", weights, "--cpu-only", "--out", str(out)]
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)  # noqa: S603 - our own interpreter and arguments; the build prints its progress
    return json.loads((out / "model_card.json").read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", type=Path, default=Path("configs/build.yaml"))
    ap.add_argument("--per-class", type=int, default=300, help="synthetic images per class (both builds)")
    ap.add_argument("--weights", default="none", help="backbone weights for both builds (default none: offline)")
    ap.add_argument("--min-speedup", type=float, default=TARGET_SPEEDUP)
    ap.add_argument("--out", type=Path, default=Path("build/bench_build"))
    a = ap.parse_args(argv)
    base = yaml.safe_load(a.config.read_text()) or {}
    a.out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {"per_class": a.per_class, "weights": a.weights, "config": str(a.config)}
    for name, cache in (("cache_on", True), ("cache_off", False)):
        cfg_path = a.out / f"{name}.yaml"
        cfg_path.write_text(yaml.safe_dump(variant_config(base, a.per_class, cache), sort_keys=False))
        figures[name] = card_figures(_build(cfg_path, a.out / name, a.weights))
    ratios, misses = compare(figures["cache_on"], figures["cache_off"], a.min_speedup)
    figures.update(ratios, misses=misses)
    (a.out / "bench_build.json").write_text(json.dumps(figures, indent=2))
    for name in ("cache_on", "cache_off"):
        f = figures[name]
        print(f"{name:9s}: build {f['build_seconds']:.0f} s (cache {f['cache_seconds'] or 0:.0f} s, "
              f"train {f['train_seconds']:.0f} s), int8 test {f['int8_accuracy']:.3f}")
    print(f"speed-up: build {ratios['speedup_build']:.2f}x, training {ratios['speedup_train']:.2f}x "
          f"(target >= {a.min_speedup:g}x); int8 accuracy gap {ratios['accuracy_gap']:.3f}")
    for m in misses:
        print(f"MISS: {m}")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
