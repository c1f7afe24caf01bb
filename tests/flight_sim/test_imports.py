"""No simulator module drags TensorFlow in (the sim runs on small boxes too)."""

from __future__ import annotations

import subprocess
import sys

from tests.test_no_tensorflow import BLOCKER, ROOT


def test_every_flight_sim_module_imports_without_tensorflow() -> None:
    code = BLOCKER.replace("import payload\n", "import flight_sim as payload\n").replace('"payload."', '"flight_sim."')
    assert "import flight_sim as payload" in code and '"flight_sim."' in code
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    # walk_packages names every module and subpackage (flight_sim.world and its modules)
    modules = [p for p in (ROOT / "flight_sim").rglob("*.py")
               if p.name != "__main__.py" and p != ROOT / "flight_sim" / "__init__.py"]
    assert int(out.stdout.strip().splitlines()[-1]) == len(modules)
