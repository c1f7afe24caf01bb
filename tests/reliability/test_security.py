"""Security: no listening port unless configured, no shell, bundle hashes checked before loading,
paths from the config resolved and checked."""

from __future__ import annotations

import ast
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest
import yaml

from payload.config import PayloadConfig
from payload.errors import BundleError, ConfigError
from payload.ops.paths import check_output_dir, resolve_config_paths
from tests.asuser import give_to_nobody, run_unprivileged, shared_dir
from tests.payload import tinymodel

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("payload", "compile", "flight_sim", "tools")

pytestmark = pytest.mark.timeout(120)


def _sockets(pid: int) -> list:
    procs = [psutil.Process(pid)]
    procs += procs[0].children(recursive=True)
    out = []
    for p in procs:
        try:
            out += [(p.pid, c) for c in p.net_connections(kind="inet")]
        except psutil.NoSuchProcess:
            pass
    return out


def test_payload_run_opens_no_listening_port(tmp_path: Path, tiny_tpu_bundle_dir: Path) -> None:
    """A real `payload run` (backend auto: the isolated Edge TPU child is tried) with no telemetry
    link configured: no inet socket at all, in the payload or any child, while it runs."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(400):
        cv2.imwrite(str(frames / f"{1764065700 + i}.png"), np.full((48, 64, 3), i % 255, np.uint8))
    cfg = {"model": {"bundle": str(tiny_tpu_bundle_dir), "backend": "auto", "num_threads": 1},
           "source": {"kind": "folder", "uri": str(frames), "time_from": "filename", "realtime": True,
                      "rate_hz": 50},
           "tiling": {"rows": 1, "cols": 2}, "output": {"dir": str(tmp_path / "out")},
           "telemetry": {"allow_none": True}, "preflight": {"min_free_disk_mb": 1}}
    cfg_path = tmp_path / "p.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "payload", "run", "--config", str(cfg_path)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    seen: list = []
    try:
        deadline = time.monotonic() + 60
        # output.dir is the root: the run writes to its own flight folder under it
        while not any(r.stat().st_size > 0 for r in (tmp_path / "out").glob("*/classifications.jsonl")):
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        for _ in range(20):  # while it classifies
            seen += _sockets(proc.pid)
            time.sleep(0.05)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert not [c for _, c in seen if c.status == psutil.CONN_LISTEN], seen
    assert not seen, f"unexpected inet sockets: {seen}"


def test_configured_telemetry_listens_on_loopback_only_as_told(tmp_path: Path) -> None:
    """With `udp:127.0.0.1:PORT` the link binds exactly that (UDP, not a TCP listener)."""
    from payload.config import TelemetrySection
    from payload.vehicle.telemetry import Telemetry
    from tests.mavtestvehicle import MavTestVehicle, free_udp_port
    from tests.payload.test_telemetry_link import HOME, straight_flight

    port = free_udp_port()
    with MavTestVehicle(port, straight_flight, home=HOME, rate_hz=4.0):
        tel = Telemetry(TelemetrySection(connection=f"udp:127.0.0.1:{port}", connect_timeout_s=10))
        tel.start()
        try:
            mine = [c for c in psutil.Process().net_connections(kind="inet") if c.laddr and c.laddr.port == port]
            assert mine and all(c.laddr.ip == "127.0.0.1" and c.status != psutil.CONN_LISTEN for c in mine), mine
        finally:
            tel.close()


def _shell_uses(tree: ast.AST) -> list[str]:
    bad = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = ast.unparse(f)
        if name in ("os.system", "os.popen", "os.execl", "os.execlp", "os.spawnl", "os.spawnlp", "commands.getoutput",
                    "subprocess.getoutput", "subprocess.getstatusoutput", "pty.spawn"):
            bad.append(f"{name}() at line {node.lineno}")
        for kw in node.keywords:
            if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                bad.append(f"{name}(shell=...) at line {node.lineno}")
        if name.startswith("subprocess.") and node.args and isinstance(node.args[0], (ast.Constant, ast.JoinedStr)):
            bad.append(f"{name}(a command string) at line {node.lineno}")
    return bad


def test_no_external_tool_runs_through_a_shell() -> None:
    found = []
    for top in SHIPPED:
        for path in sorted((ROOT / top).rglob("*.py")):
            for b in _shell_uses(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                found.append(f"{path.relative_to(ROOT)}: {b}")
    assert not found, found
    # the checker itself catches what it must
    assert _shell_uses(ast.parse("import os, subprocess\nos.system('x')\nsubprocess.run('ls', shell=True)\n"
                                 "subprocess.run(f'ls {x}')\n"))


def test_bundle_hash_is_checked_before_the_model_is_loaded(monkeypatch: pytest.MonkeyPatch,
                                                           bundle_copy: Path, tmp_path: Path) -> None:
    import payload.backends.runtime as runtime_mod
    import payload.bundle as bundle_mod
    from payload.capture.sources import InProcessSource
    from payload.pipeline.runner import build_pipeline
    from tests.payload.doubles import RecordingHandler

    events: list[str] = []
    real_sha = bundle_mod.sha256_file
    monkeypatch.setattr(bundle_mod, "sha256_file", lambda p: (events.append(f"sha256 {Path(p).name}"),
                                                              real_sha(p))[1])
    real_import = runtime_mod.import_runtime

    def spy_import():
        name, rt = real_import()

        class Interp(rt.Interpreter):
            def __init__(self, *a, **kw) -> None:
                events.append(f"load {Path(kw.get('model_path', a[0] if a else '?')).name}")
                super().__init__(*a, **kw)

        class Rt:
            Interpreter = Interp
            load_delegate = getattr(rt, "load_delegate", None)

        return name, Rt

    monkeypatch.setattr(runtime_mod, "import_runtime", spy_import)
    import payload.backends.cpu as cpu_mod

    monkeypatch.setattr(cpu_mod, "import_runtime", spy_import)
    cfg = PayloadConfig.model_validate({"model": {"bundle": str(bundle_copy), "backend": "cpu"},
                                        "output": {"dir": str(tmp_path / "out")}})
    pipe = build_pipeline(cfg, source=InProcessSource([]), handler_factory=lambda c, b: RecordingHandler())
    pipe.classifier.close()
    assert "load model_int8.tflite" in events
    assert events.index("sha256 model_int8.tflite") < events.index("load model_int8.tflite"), events
    # a tampered model (same size, one byte changed) never reaches the runtime
    events.clear()
    model = bundle_copy / "model_int8.tflite"
    raw = bytearray(model.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    model.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="sha256 mismatch"):
        build_pipeline(cfg, source=InProcessSource([]), handler_factory=lambda c, b: RecordingHandler())
    assert not [e for e in events if e.startswith("load")], events


def test_config_paths_are_resolved_and_checked(tmp_path: Path, tiny_bundle_dir: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cfg = PayloadConfig.model_validate({"model": {"bundle": str(tiny_bundle_dir)}, "output": {"dir": "~/flight"}})
    r = resolve_config_paths(cfg)
    assert r.output.dir == (tmp_path / "home" / "flight").resolve() and r.output.dir.is_dir()
    assert not (tmp_path / "~").exists()
    rel = resolve_config_paths(cfg.model_copy(update={"output": cfg.output.model_copy(update={"dir": Path("o")})}))
    assert rel.output.dir == (tmp_path / "o").resolve()
    assert resolve_config_paths(r) == r  # idempotent
    a_file = tmp_path / "f"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        check_output_dir(a_file)
    with pytest.raises(ConfigError, match="a parent of it is a file"):
        check_output_dir(a_file / "sub")


def test_read_only_output_dir_is_refused() -> None:
    """As the service user would see it: root writes anywhere, so under root the case runs as nobody."""
    base = shared_dir()
    ro = base / "ro"
    ro.mkdir()
    give_to_nobody(ro)
    ro.chmod(0o500)
    try:
        check_output_dir(base / "warm-up")  # imports done here: the unprivileged child cannot read the venv

        def case() -> None:
            assert not os.access(ro, os.W_OK)  # really unprivileged: the mode bits hold
            with pytest.raises(ConfigError, match="not writable"):
                check_output_dir(ro)

        run_unprivileged(case)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_bundle_path_that_is_a_file_is_a_bundle_error(tmp_path: Path) -> None:
    f = tmp_path / "bundle.zip"
    f.write_bytes(b"PK")
    cfg = PayloadConfig.model_validate({"model": {"bundle": str(f)}, "output": {"dir": str(tmp_path / "o")}})
    with pytest.raises(BundleError, match="is a file, not a bundle folder"):
        resolve_config_paths(cfg)


def test_payload_run_with_a_bad_output_dir_exits_2(tmp_path: Path, tiny_bundle_dir: Path) -> None:
    bundle = tinymodel.copy_bundle(tiny_bundle_dir, tmp_path / "b")
    blocker = tmp_path / "out"
    blocker.write_text("not a folder")
    cfg_path = tmp_path / "p.yaml"
    cfg_path.write_text(yaml.safe_dump({"model": {"bundle": str(bundle), "backend": "cpu"},
                                        "source": {"kind": "folder", "uri": str(tmp_path)},
                                        "output": {"dir": str(blocker)}, "telemetry": {"allow_none": True}}))
    proc = subprocess.run([sys.executable, "-m", "payload", "run", "--config", str(cfg_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "output.dir" in proc.stderr and "Traceback" not in proc.stderr
