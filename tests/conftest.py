"""Shared fixtures. Packages add theirs here by small appends."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class QuickBundle:
    """One real quick-profile bundle built once per test session, through the CLI."""

    path: Path
    float_model: Path
    proc: subprocess.CompletedProcess
    seconds: float


@pytest.fixture(scope="session")
def quick_bundle(tmp_path_factory: pytest.TempPathFactory) -> QuickBundle:
    """`python -m compile build --profile quick` with a compiler path that does not exist.

    One build (~2 minutes on 2 shared cores: the quick profile's small CNN) serves every test that
    needs a real model: the end-to-end build, the int8 model, hashes, the pre-check, and the
    missing-compiler path (exit 2 with the install hint, after the complete int8 bundle is written).
    """
    import time

    tmp = tmp_path_factory.mktemp("quick_bundle")
    out = tmp / "bundle"
    float_model = tmp / "float.keras"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [sys.executable, "-m", "compile", "build", "--profile", "quick", "--weights", "none", "--out", str(out),
           "--config", str(ROOT / "configs" / "build.yaml"), "--compiler", str(tmp / "missing" / "edgetpu_compiler"),
           "--save-float", str(float_model)]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=ROOT, env=env)
    seconds = time.monotonic() - t0
    if not (out / "model_card.json").is_file():
        pytest.fail(f"quick build wrote no bundle (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return QuickBundle(out, float_model, proc, seconds)


@pytest.fixture(scope="session")
def leaf_family_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A quick bundle trained on the leaf family (`data.generator: family`), for the chain test only.

    The chain test flies tests/trainingtexture_world.py, a field painted with the leaf textures this
    bundle learnt: it measures geometry, the map and the products, never perception (the physical
    world is flight_sim/world, and the quick profile trains on canopy views for it).
    """
    import yaml

    tmp = tmp_path_factory.mktemp("leaf_family_bundle")
    cfg = yaml.safe_load((ROOT / "configs" / "build.yaml").read_text(encoding="utf-8"))
    # the recall-first floor of the file (0.1), not the quick profile's even odds: this bundle flies over its own
    # training look, where its validation split speaks for the field
    cfg["profiles"] = {"quick": {"data": {"generator": "family", "synthetic_per_class": 600},
                                 "evaluate": {"min_threshold": 0.1}}}
    cfg_path = tmp / "build.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    out = tmp / "bundle"
    cmd = [sys.executable, "-m", "compile", "build", "--profile", "quick", "--weights", "none", "--cpu-only",
           "--out", str(out), "--config", str(cfg_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=ROOT,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    if not (out / "model_card.json").is_file():
        pytest.fail(f"leaf-family build wrote no bundle (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return out
