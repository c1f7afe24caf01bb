"""The default profile (224 px, 2,000 images per class) meets the issue's quality targets offline.

Slow (`make test-slow`): 4-9 min on 2 cores (`build_seconds` in the card). The targets are the leaf
family's (`data.generator: family`), which this test pins: the canopy generator's targets for the
random-backbone 224 px build are not set yet (docs/TRAINING_DATA.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(3 * 3600)
def test_default_profile_quality(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    config = tmp_path / "build.yaml"
    text = (ROOT / "configs" / "build.yaml").read_text()
    config.write_text(text.replace("  generator: canopy ", "  generator: family ", 1))
    assert "generator: family" in config.read_text()
    proc = subprocess.run(
        [sys.executable, "-m", "compile", "build", "--config", str(config),
         "--profile", "default", "--weights", "none", "--out", str(out), "--cpu-only"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=3 * 3600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    card = json.loads((out / "model_card.json").read_text())
    m = card["metrics"]
    assert card["input"]["height"] == 224
    assert card["edgetpu"]["cpu_only"] is True and "cpu-only" in card["edgetpu"]["reason"]
    assert m["int8"]["accuracy"] >= 0.99 and m["float"]["accuracy"] >= 0.99
    assert m["int8"]["at_thresholds"]["disease_recall"] >= 0.995
    assert m["agreement"] >= 0.99
    t = card["training"]  # no backbone stage trains offline: the head's own schedule (train.head_only)
    assert t["trainable_stages"] == [] and (t["epochs_max"], t["batch_size"]) == (30, 32)
    held = m["heldout"]["int8"]
    assert held["accuracy"] >= 0.95  # looks from the generator's held-out regions
    assert min(held["at_thresholds"]["recall"][d] for d in ("rust", "powdery_mildew")) >= 0.95
