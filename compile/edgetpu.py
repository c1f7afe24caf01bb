"""Run edgetpu_compiler and turn its stdout and log into a structured summary.

The compiler is an external, closed-source x86 binary; it is run without a shell, with a timeout,
and what it prints (see docs: ops mapped per type, on-chip/off-chip memory, subgraphs) is parsed
so the model card can say how much of the model really runs on the TPU.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from .errors import CompilerError, CompilerNotFoundError

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "install it from Coral's apt repository on an x86-64 Linux machine "
    "(echo 'deb https://packages.cloud.google.com/apt coral-edgetpu-stable main' | "
    "sudo tee /etc/apt/sources.list.d/coral-edgetpu.list; curl https://packages.cloud.google.com/apt/doc/apt-key.gpg "
    "| sudo apt-key add -; sudo apt-get update; sudo apt-get install edgetpu-compiler), or set edgetpu.compiler "
    "to its path, or upload the bundle's model_int8.tflite to Coral's web compiler "
    "(https://coral.ai/docs/edgetpu/compiler/), or build with --cpu-only"
)

_KV = {
    "version": re.compile(r"Edge TPU Compiler version\s+(\S+)"),
    "compile_ms": re.compile(r"Model compiled successfully in\s+(\d+)\s*ms"),
    "on_chip_memory": re.compile(r"On-chip memory used for caching model parameters:\s*(.+)$"),
    "on_chip_remaining": re.compile(r"On-chip memory remaining for caching model parameters:\s*(.+)$"),
    "off_chip_memory": re.compile(r"Off-chip memory used for streaming uncached model parameters:\s*(.+)$"),
    "subgraphs": re.compile(r"Number of Edge TPU subgraphs:\s*(\d+)"),
    "total_ops": re.compile(r"Total number of operations:\s*(\d+)"),
    "ops_on_tpu": re.compile(r"Number of operations that will run on Edge TPU:\s*(\d+)"),
    "ops_on_cpu": re.compile(r"Number of operations that will run on CPU:\s*(\d+)"),
}
_INT_KEYS = {"compile_ms", "subgraphs", "total_ops", "ops_on_tpu", "ops_on_cpu"}
_ROW = re.compile(r"^\s*([A-Z][A-Z0-9_]*)\s+(\d+)\s+(\S.*?)\s*$")
_MEM = re.compile(r"([\d.]+)\s*([KMG]?i?B)")
_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "KB": 1000, "MB": 1000**2, "GB": 1000**3}
MAPPED = "Mapped to Edge TPU"


def memory_bytes(text: str | None) -> int | None:
    """'6.91MiB' -> bytes."""
    if not text:
        return None
    m = _MEM.search(text)
    return int(float(m.group(1)) * _UNITS.get(m.group(2), 1)) if m else None


def parse_output(stdout: str, log_text: str = "") -> dict[str, Any]:
    """Summary of the compiler's stdout and log: counts, memory, subgraphs, op table."""
    summary: dict[str, Any] = {k: None for k in _KV}
    for line in (stdout + "\n" + log_text).splitlines():
        for key, rx in _KV.items():
            m = rx.search(line)
            if m and summary[key] is None:
                summary[key] = int(m.group(1)) if key in _INT_KEYS else m.group(1).strip()
    summary["on_chip_bytes"] = memory_bytes(summary["on_chip_memory"])
    summary["off_chip_bytes"] = memory_bytes(summary["off_chip_memory"])
    # the op table: prefer the log (always written), fall back to stdout (-s)
    ops: dict[str, dict[str, int]] = {}
    source = log_text if "Operator" in log_text else stdout
    in_table = False
    for line in source.splitlines():
        if re.match(r"^\s*Operator\s+Count\s+Status", line):
            in_table, ops = True, {}
            continue
        if not in_table:
            continue
        m = _ROW.match(line)
        if m:
            name, count, status = m.group(1), int(m.group(2)), m.group(3)
            row = ops.setdefault(name, {"tpu": 0, "cpu": 0, "cpu_reasons": {}})
            if status == MAPPED:
                row["tpu"] += count
            else:
                row["cpu"] += count
                row["cpu_reasons"][status] = row["cpu_reasons"].get(status, 0) + count
        elif line.strip() and not line.startswith(" "):
            in_table = False
    summary["ops"] = ops
    if summary["ops_on_tpu"] is None and ops:
        summary["ops_on_tpu"] = sum(r["tpu"] for r in ops.values())
        summary["ops_on_cpu"] = sum(r["cpu"] for r in ops.values())
    if summary["ops_on_cpu"] is None and summary["total_ops"] is not None and summary["ops_on_tpu"] is None:
        summary["ops_on_tpu"], summary["ops_on_cpu"] = summary["total_ops"], 0
    summary["fully_mapped"] = summary["ops_on_cpu"] == 0 if summary["ops_on_cpu"] is not None else None
    return summary


def find_compiler(name_or_path: str) -> str:
    """Absolute path of the compiler, or CompilerNotFoundError naming the install step."""
    p = Path(name_or_path)
    if p.parent != Path("."):  # a path was configured
        if p.is_file():
            return str(p.resolve())
        raise CompilerNotFoundError(f"edgetpu_compiler not found at {p} (edgetpu.compiler); {INSTALL_HINT}")
    found = shutil.which(name_or_path)
    if not found:
        raise CompilerNotFoundError(f"edgetpu_compiler ('{name_or_path}') is not on PATH; {INSTALL_HINT}")
    return found


_FAILURE_HINTS = {
    "Model not quantized": "the model has float tensors; run `python -m compile check` on it and quantize fully",
    "Internal compiler error": "run `python -m compile check` on the model; try -m 13, a smaller input, or "
    "Coral's web compiler; the compiler gives no more detail",
    "Didn't find op for builtin opcode": "an op version is newer than the compiler knows; run "
    "`python -m compile check` to see which op",
    "Model could not be parsed": "the .tflite file is corrupt or from an unsupported converter",
}


def segment_stem(stem: str, k: int, n: int) -> str:
    """The compiler's name for segment k of n of a model named `stem` (google-coral/edgetpu#557)."""
    return f"{stem}_segment_{k}_of_{n}"


def split_segments(stdout: str) -> list[str]:
    """The compiler's stdout cut into one block per compiled model: each starts at its timeout timer line."""
    marker = "Started a compilation timeout timer"
    starts = [i for i, line in enumerate(stdout.splitlines()) if line.startswith(marker)]
    lines = stdout.splitlines()
    if not starts:
        return [stdout]
    return ["\n".join(lines[a:b]) for a, b in zip(starts, [*starts[1:], len(lines)], strict=True)]


def combine_segments(parts: list[dict[str, Any]], version: str | None) -> dict[str, Any]:
    """One summary of N segments: op counts and streamed bytes added up, subgraphs counted, each kept."""
    def total(key: str) -> int | None:
        vals = [p[key] for p in parts]
        return None if any(v is None for v in vals) else int(sum(vals))

    ops: dict[str, dict[str, Any]] = {}
    for p in parts:
        for name, row in p["ops"].items():
            acc = ops.setdefault(name, {"tpu": 0, "cpu": 0, "cpu_reasons": {}})
            acc["tpu"] += row["tpu"]
            acc["cpu"] += row["cpu"]
            for reason, c in row["cpu_reasons"].items():
                acc["cpu_reasons"][reason] = acc["cpu_reasons"].get(reason, 0) + c
    out: dict[str, Any] = {
        "version": version, "compile_ms": total("compile_ms"),
        "subgraphs": total("subgraphs"), "total_ops": total("total_ops"), "ops_on_tpu": total("ops_on_tpu"),
        "ops_on_cpu": total("ops_on_cpu"), "on_chip_bytes": total("on_chip_bytes"),
        "off_chip_bytes": total("off_chip_bytes"), "ops": ops,
        # a segment that maps nothing is a CPU model in the pipeline: the whole is then not compiled
        "fully_mapped": all(p["fully_mapped"] for p in parts),
        "segments": parts,
    }
    if any(p["subgraphs"] == 0 for p in parts):
        out["subgraphs"] = 0
    return out


def run_compiler(
    model: Path, out_dir: Path, compiler: str = "edgetpu_compiler", min_runtime: int = 14, timeout_s: float = 600,
    num_segments: int = 1,
) -> dict[str, Any]:
    """Compile `model` into `out_dir`; return the parsed summary plus the file paths written.

    With `num_segments` > 1 the compiler writes one model and one log per segment,
    NAME_segment_K_of_N_edgetpu.tflite/.log, and reports each in its own block of stdout; the summary
    then adds them up and keeps each under `segments`, and `model_files` lists them in order.
    """
    exe = find_compiler(compiler)
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [exe, "-s", "-m", str(min_runtime), "-o", str(out_dir), str(model)]
    if num_segments > 1:
        cmd[1:1] = ["-n", str(num_segments)]
    log.info("running %s", " ".join(cmd))
    try:
        proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
            cmd, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        raise CompilerError(
            f"edgetpu_compiler did not finish within {timeout_s:.0f} s; raise edgetpu.timeout_s or compile a "
            "smaller model"
        ) from None
    except OSError as err:
        raise CompilerError(f"edgetpu_compiler at {exe} could not be started ({err}); reinstall it") from None
    stem = model.stem
    stems = [stem] if num_segments <= 1 else [segment_stem(stem, k, num_segments) for k in range(num_segments)]
    out_models = [out_dir / f"{s}_edgetpu.tflite" for s in stems]
    out_logs = [out_dir / f"{s}_edgetpu.log" for s in stems]
    log_texts = [p.read_text(encoding="utf-8", errors="replace") if p.is_file() else "" for p in out_logs]
    text = proc.stdout + "\n" + proc.stderr
    succeeded = proc.stdout.count("Compilation succeeded") >= len(stems)
    if proc.returncode != 0 or not succeeded or not all(p.is_file() for p in out_models):
        markers = ("rror", "Invalid", "not quantized", "Didn't find", "could not be parsed", "Aborting")
        lines = [ln.strip() for ln in text.splitlines() if any(m in ln for m in markers)]
        detail = " / ".join(dict.fromkeys(lines)) or (text.strip().splitlines() or ["no output"])[-1]
        hint = next((h for k, h in _FAILURE_HINTS.items() if k in text), "see the compiler output above")
        raise CompilerError(f"edgetpu_compiler failed (exit {proc.returncode}): {detail}; {hint}")
    if num_segments <= 1:
        summary = parse_output(proc.stdout, log_texts[0])
    else:
        blocks = split_segments(proc.stdout)
        if len(blocks) != num_segments:
            raise CompilerError(f"edgetpu_compiler -n {num_segments} reported {len(blocks)} compiled models; see its "
                                "output above")
        parts = [parse_output(b, lt) for b, lt in zip(blocks, log_texts, strict=True)]
        for p, m, lg in zip(parts, out_models, out_logs, strict=True):
            p["model_file"], p["log_file"] = m.name, lg.name if lg.is_file() else None
        summary = combine_segments(parts, parse_output(proc.stdout)["version"])
    summary["command"] = [Path(exe).name, *cmd[1:-3], "-o", "<bundle>", model.name]
    summary["model_file"] = out_models[0].name if num_segments <= 1 else None
    summary["model_files"] = [p.name for p in out_models]
    summary["log_file"] = out_logs[0].name if out_logs[0].is_file() else None
    summary["num_segments"] = max(num_segments, 1)
    return summary
