"""House rules of docs/ARCHITECTURE.md that an import can break, checked on the source (AST, no imports).

- payload imports nothing from compile, flight_sim or tools (the drone installs none of them);
- inside payload, imports between rooms run one way, down the ROOMS order below;
- compile and flight_sim import only payload's public contract modules (CONTRACT_MODULES);
- no two payload modules import each other, directly or round a circle;
- no module imports another module's private (underscored) names.
Every `import` and `from ... import` counts, including ones inside functions.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lowest first: a room may import from itself and from rooms listed before it, never after.
# "core" is payload's top-level modules that every room may use; "entry" is the command line.
ROOMS = ("core", "files", "backends", "settings", "geo", "grower", "vehicle", "capture", "sinks", "config", "report",
         "ops", "pipeline", "plan", "entry")
CORE = {"errors", "types", "configio", "bundle", "keyfile", "logsetup", "cliutil", "sitefile", "demfile"}
ENTRY = {"cli", "__main__", "__init__"}

# What compile and flight_sim may import from payload (docs/ARCHITECTURE.md "Contract modules").
CONTRACT_MODULES = {
    "payload.bundle",  # the model bundle: file names, ModelCard, classes, decide(), dequantize()
    "payload.types",  # Pose, Frame, TileBox...
    "payload.errors",
    "payload.configio",  # StrictModel and YAML loading, shared by every config file
    "payload.cliutil",
    "payload.logsetup",
    "payload.geo.camera",  # the simulator renders with the camera model the payload inverts
    "payload.geo.camerapresets",  # documented cameras by intrinsics: the scenario and the payload share them
    "payload.geo.surface",  # what rays meet (flat ground, a DEM height field, planes): the simulator renders with it
    "payload.geo.frames",
    "payload.geo.sensor",  # the evidence grid's sensor model: the build calibrates it into the card
    "payload.pipeline.tiling",  # the one tile grid
    "payload.sitefile",  # the indoor site file: the simulator builds its farm from the payload's site
    "payload.geo.site",  # rack faces and rays cut with them: the simulator renders with what the payload inverts
}


def imports_of(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file (relative ones resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from payload.geo import camera` imports the module payload.geo.camera
            out += [(node.lineno, f"{mod}.{a.name}" if _is_module(f"{mod}.{a.name}") else mod) for a in node.names]
    return out


def _is_module(name: str) -> bool:
    p = ROOT / Path(*name.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def module_files(top: str) -> list[tuple[str, Path]]:
    out = []
    for p in sorted((ROOT / top).rglob("*.py")):
        rel = p.relative_to(ROOT).with_suffix("")
        name = ".".join(rel.parts)
        out.append((name, p))
    return out


def room_of(module: str) -> str:
    parts = module.split(".")
    assert parts[0] == "payload"
    if len(parts) == 1:
        return "entry"
    if len(parts) == 2 and not (ROOT / "payload" / parts[1]).is_dir():
        if parts[1] in CORE:
            return "core"
        if parts[1] == "config":
            return "config"
        if parts[1] in ENTRY:
            return "entry"
        raise AssertionError(f"top-level module {module} belongs to no room: add it to CORE or move it into one")
    return parts[1]


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rsplit(".", 1)[0]


def test_payload_imports_nothing_from_the_other_packages() -> None:
    bad = [f"{p.relative_to(ROOT)}:{line} imports {mod}"
           for name, p in module_files("payload")
           for line, mod in imports_of(p, _package_of(name, p))
           if mod.split(".")[0] in ("compile", "flight_sim", "tools", "tests")]
    assert not bad, "\n".join(bad)


def test_every_payload_module_is_in_a_room() -> None:
    rooms = {room_of(name.removesuffix(".__init__")) for name, _ in module_files("payload")}
    assert rooms <= set(ROOMS), rooms - set(ROOMS)


def test_imports_between_rooms_run_one_way() -> None:
    bad = []
    for name, p in module_files("payload"):
        mine = room_of(name.removesuffix(".__init__"))
        for line, mod in imports_of(p, _package_of(name, p)):
            if mod.split(".")[0] != "payload" or mod == "payload":
                continue
            theirs = room_of(mod)
            if ROOMS.index(theirs) > ROOMS.index(mine):
                bad.append(f"{p.relative_to(ROOT)}:{line} ({mine}) imports {mod} ({theirs})")
    assert not bad, "imports running up the rooms:\n" + "\n".join(bad)


@pytest.mark.parametrize("package", ["compile", "flight_sim"])
def test_build_and_simulator_import_only_contract_modules(package: str) -> None:
    bad = [f"{p.relative_to(ROOT)}:{line} imports {mod}"
           for name, p in module_files(package)
           for line, mod in imports_of(p, _package_of(name, p))
           if mod.split(".")[0] == "payload" and mod not in CONTRACT_MODULES]
    assert not bad, "\n".join(bad)


def test_the_checks_see_imports() -> None:
    """The walker finds plain, relative, late and `from package import module` imports (or it proves nothing)."""
    found = dict((mod, line) for line, mod in imports_of(ROOT / "payload" / "pipeline" / "runner.py",
                                                         "payload.pipeline"))
    assert "payload.bundle" in found and "payload.config" in found
    assert {m for _, m in imports_of(ROOT / "compile" / "metrics.py", "compile")} >= {"payload.bundle",
                                                                                       "compile.synthetic"}
    assert room_of("payload.sinks.jsonl") == "sinks" and room_of("payload.bundle") == "core"
    assert ROOMS.index(room_of("payload.pipeline.runner")) > ROOMS.index(room_of("payload.geo.camera"))


# The rule of honesty (issue 28): the simulator's world never borrows from what the classifier is trained on.
INDEPENDENT = (("flight_sim", "compile"), ("compile", "flight_sim"))


@pytest.mark.parametrize(("package", "forbidden"), INDEPENDENT)
def test_simulator_and_build_import_nothing_of_each_other(package: str, forbidden: str) -> None:
    """Static: every module of one package, every import (late ones too), none from the other."""
    files = module_files(package)
    assert len(files) > 5, f"found only {len(files)} modules of {package}: the scan proves nothing"
    bad = [f"{p.relative_to(ROOT)}:{line} imports {mod}"
           for name, p in files
           for line, mod in imports_of(p, _package_of(name, p))
           if mod.split(".")[0] == forbidden]
    assert not bad, "\n".join(bad)


def test_importing_the_simulator_loads_nothing_of_compile() -> None:
    """Dynamic: a fresh interpreter that imports the simulator (its renderer, world, CLI) has no compile module."""
    import subprocess
    import sys

    code = ("import sys, flight_sim.sim, flight_sim.cli, flight_sim.render, flight_sim.indoor, flight_sim.world\n"
            "print(sorted(m for m in sys.modules if m == 'compile' or m.startswith('compile.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def _payload_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for name, p in module_files("payload"):
        me = name.removesuffix(".__init__")
        for _line, mod in imports_of(p, _package_of(name, p)):
            if mod.split(".")[0] == "payload" and mod != me and _is_module(mod):
                graph[me].add(mod)
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_payload_has_no_import_cycle() -> None:
    """Every import counts, late ones inside functions too: a circle is a design knot, wherever it is tied."""
    cycles = import_cycles(_payload_graph())
    assert not cycles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_check_sees_a_cycle() -> None:
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_another_modules_private_names() -> None:
    bad = []
    for _name, p in module_files("payload"):
        tree = ast.parse(p.read_text(encoding="utf-8"), str(p))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("payload"):
                bad += [f"{p.relative_to(ROOT)}:{node.lineno} imports {node.module}.{a.name}"
                        for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    assert not bad, "\n".join(bad)


def test_the_config_and_the_geotag_handler_stay_small() -> None:
    """Issue 24's limits: plugins carry their settings, so config.py only assembles; the handler only hands on."""
    import ast

    config_lines = len((ROOT / "payload" / "config.py").read_text(encoding="utf-8").splitlines())
    assert config_lines < 300, f"payload/config.py has {config_lines} lines: move a section beside its plugin"
    tree = ast.parse((ROOT / "payload" / "pipeline" / "geotag.py").read_text(encoding="utf-8"))
    (handler,) = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "GeotagHandler"]
    size = (handler.end_lineno or handler.lineno) - handler.lineno + 1
    assert size < 120, f"GeotagHandler has {size} lines: it should turn results into looks and records, no more"


MAP_KINDS = {"DiseaseMap", "FaceMap", "MapKind", "GroundView", "FloorView", "FaceView", "NoPoseView"}


def _isinstance_on_map_kinds(tree: ast.AST) -> list[int]:
    """Lines where isinstance(...) names a map kind or a frame view class."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance" \
                and len(node.args) == 2:
            names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
            names |= {n.attr for n in ast.walk(node.args[1]) if isinstance(n, ast.Attribute)}
            if names & MAP_KINDS:
                out.append(node.lineno)
    return out


def test_nothing_outside_geo_asks_which_map_kind_it_holds() -> None:
    """Ground and rack-face maps are two implementations of one MapKind: the pipeline, the sinks and the
    report never branch on which (issue 24); geo/ is the one place that picks."""
    found = []
    for path in sorted((ROOT / "payload").rglob("*.py")):
        if (ROOT / "payload" / "geo") in path.parents:
            continue
        found += [f"{path.relative_to(ROOT)}:{line}" for line in _isinstance_on_map_kinds(ast.parse(path.read_text()))]
    assert not found, found
    probe = "isinstance(m, FaceMap)\nisinstance(v, (geo.GroundView, int))\nisinstance(x, int)\n"
    assert _isinstance_on_map_kinds(ast.parse(probe)) == [1, 2]
