"""The drone installs no TensorFlow: every payload module must import without it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, pkgutil, importlib, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "tensorflow" or name.startswith("tensorflow.") or name in ("keras", "tf_keras"):
                raise ImportError(f"{name} is blocked: the drone has no TensorFlow")
            return None

    sys.meta_path.insert(0, Block())
    import payload
    names = [m.name for m in pkgutil.walk_packages(payload.__path__, "payload.")
             if not m.name.endswith("__main__")]
    for name in names:
        importlib.import_module(name)
    loaded = sorted(n for n in sys.modules if n.split(".")[0] in ("tensorflow", "keras"))
    assert not loaded, loaded
    print(len(names))
    """
)


def test_every_payload_module_imports_without_tensorflow() -> None:
    out = subprocess.run(
        [sys.executable, "-c", BLOCKER], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip().splitlines()[-1]) >= 5


def test_blocker_really_blocks_tensorflow() -> None:
    code = BLOCKER.split("import payload")[0] + "import tensorflow\n"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "blocked" in out.stderr
