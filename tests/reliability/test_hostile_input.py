"""Hostile input: fuzzed config files (payload, build, scenario), corrupt/truncated/wrong-shape models.

Each loader must either return a valid config or raise ConfigError (a UserError the CLIs turn into
a message and exit 2); a model bundle whose files are damaged must raise BundleError before any
inference. Anything else (KeyError, RecursionError, ZeroDivisionError, OverflowError, a segfault in
the TFLite runtime) is a crash in the field and fails these tests.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compile.config import load_build_config
from flight_sim.scenario import load_scenario
from payload.backends.cpu import CpuClassifier
from payload.bundle import load_bundle
from payload.config import load_payload_config
from payload.errors import BundleError, ConfigError
from tests.payload import tinymodel

ROOT = Path(__file__).resolve().parents[2]
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

LOADERS: dict[str, tuple[Callable[[Path], Any], Path]] = {
    "payload": (load_payload_config, ROOT / "configs" / "payload.yaml"),
    "build": (lambda p: load_build_config(p, "default"), ROOT / "configs" / "build.yaml"),
    "scenario": (load_scenario, ROOT / "configs" / "scenarios" / "wheat_30m.yaml"),
}

leaf = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["", "-1", "1e999", "nan", "/dev/null", "../../etc/passwd", "\x00", "~", "yes", "0x10"]),
)
value = st.recursive(leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                   st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                     max_leaves=8)


def _paths(d: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(d, dict):
        for k, v in d.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out += _paths(v, (*prefix, i))
    return out


def _load_or_config_error(loader: Callable[[Path], Any], path: Path) -> None:
    try:
        loader(path)
    except ConfigError as err:
        assert str(err)  # a message for the operator
    # anything else propagates and fails the test (with hypothesis' minimal example)


@pytest.mark.parametrize("kind", sorted(LOADERS))
@FUZZ
@given(data=st.data())
def test_mutated_config_loads_or_raises_config_error(kind: str, data: st.DataObject, tmp_path_factory) -> None:
    loader, example = LOADERS[kind]
    doc = yaml.safe_load(example.read_text())
    doc = {} if doc is None else doc
    mutated = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 4))):
        paths = _paths(mutated)
        op = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if not paths or op == "add":
            key = data.draw(st.text(min_size=1, max_size=10))
            target = mutated
            if paths and data.draw(st.booleans()):
                p = data.draw(st.sampled_from(paths))
                node = mutated
                for k in p:
                    node = node[k]
                target = node if isinstance(node, dict) else mutated
            target[key] = data.draw(value)
            continue
        p = data.draw(st.sampled_from(paths))
        parent = mutated
        for k in p[:-1]:
            parent = parent[k]
        if op == "delete":
            del parent[p[-1]]
        else:
            parent[p[-1]] = data.draw(value)
    path = tmp_path_factory.mktemp("cfg") / f"{kind}.yaml"
    try:
        text = yaml.safe_dump(mutated, allow_unicode=True)
    except yaml.YAMLError:
        return
    path.write_text(text, encoding="utf-8")
    _load_or_config_error(loader, path)


@pytest.mark.parametrize("kind", sorted(LOADERS))
@FUZZ
@given(raw=st.one_of(st.binary(max_size=400), st.text(max_size=400).map(str.encode)))
def test_random_bytes_as_config(kind: str, raw: bytes, tmp_path_factory) -> None:
    loader, _ = LOADERS[kind]
    path = tmp_path_factory.mktemp("cfg") / f"{kind}.yaml"
    path.write_bytes(raw)
    _load_or_config_error(loader, path)


@FUZZ
@given(key_bytes=st.binary(max_size=120), fields=st.dictionaries(
    st.sampled_from(["key_format", "link_id", "allow_unsigned", "key_file", "extra"]), value, max_size=3),
    use_file=st.booleans())
def test_signing_block_with_any_key_file_content(key_bytes: bytes, fields: dict, use_file: bool,
                                                 tmp_path_factory) -> None:
    """telemetry.signing with hostile key files and values: a config with a 32-byte key, or a ConfigError."""
    doc = yaml.safe_load(LOADERS["payload"][1].read_text())
    key_file = tmp_path_factory.mktemp("key") / "signing.key"
    key_file.write_bytes(key_bytes)
    block = dict(fields)
    if use_file or "key_file" not in block:
        block["key_file"] = str(key_file)
    doc["telemetry"]["signing"] = block
    path = tmp_path_factory.mktemp("cfg") / "payload.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    try:
        cfg = load_payload_config(path)
    except ConfigError as err:
        assert str(err) and (len(key_bytes) < 16 or key_bytes.decode("latin-1") not in str(err))
        return
    from payload.keyfile import read_signing_key

    signing = cfg.telemetry.signing
    assert signing is not None and len(read_signing_key(signing.key_file, signing.key_format)) == 32


@pytest.mark.parametrize("kind", sorted(LOADERS))
@pytest.mark.parametrize("text", [
    "[" * 5000 + "]" * 5000,  # deep nesting: RecursionError inside the YAML parser
    "a: &a [*a]",  # a recursive alias
    "a: " + "&x " * 3,  # broken anchors
    "\ufeffmodel: {bundle: x}",
    "model:\n  bundle: x\n" * 3,  # duplicate keys
    "!!python/object/apply:os.system ['true']",  # must never execute
    "lol: &l [" + ",".join(["*l"] * 0) + "]\n" + "\n".join(f"l{i}: &l{i} [*l{i - 1 if i else 0}]" for i in range(1)),
    "x: 1e999\ny: .nan",
    "",
    "\x00\x01\x02",
], ids=range(10))
def test_nasty_yaml(kind: str, text: str, tmp_path: Path) -> None:
    loader, _ = LOADERS[kind]
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _load_or_config_error(loader, path)


def test_missing_directory_and_binary_path_configs(tmp_path: Path) -> None:
    for loader, _ in LOADERS.values():
        for p in (tmp_path / "nope.yaml", tmp_path):
            with pytest.raises(ConfigError):
                loader(p)


# -- model files -------------------------------------------------------------------------------------


def _rehash(bundle: Path, name: str = "model_int8.tflite") -> None:
    """Make the card's sha256 match the damaged file (a bad build, not tampering: the model is checked)."""
    card = json.loads((bundle / "model_card.json").read_text())
    card["files"][name]["sha256"] = tinymodel.sha256_file(bundle / name)
    (bundle / "model_card.json").write_text(json.dumps(card))


def _open(bundle: Path) -> None:
    b = load_bundle(bundle)
    clf = CpuClassifier(b, 1)
    try:
        clf.classify_batch(np.zeros((1, b.input_height, b.input_width, 3), np.uint8))
    finally:
        clf.close()


@pytest.mark.parametrize("cut", [0, 1, 7, 64, 500, 0.5, 0.9, -1])
def test_truncated_model_is_a_bundle_error(cut: float, bundle_copy: Path) -> None:
    model = bundle_copy / "model_int8.tflite"
    raw = model.read_bytes()
    n = int(len(raw) * cut) if isinstance(cut, float) else (len(raw) + cut if cut < 0 else cut)
    model.write_bytes(raw[:n])
    with pytest.raises(BundleError, match="sha256 mismatch"):
        load_bundle(bundle_copy)  # tampered or damaged in transit: caught by the hash
    _rehash(bundle_copy)
    with pytest.raises(BundleError):
        _open(bundle_copy)  # damaged at build time: caught by the runtime check


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_bit_flipped_model_never_crashes(data: st.DataObject, tiny_bundle_dir: Path, tmp_path_factory) -> None:
    """Random byte damage in the flatbuffer: a BundleError, or a model that still runs with valid scores.

    Flatbuffer damage can give a model that loads (weights changed): then scores must still be finite
    and the right shape. What must never happen is another exception type or a native crash.
    """
    bundle = Path(shutil.copytree(tiny_bundle_dir, tmp_path_factory.mktemp("b") / "b"))
    model = bundle / "model_int8.tflite"
    raw = bytearray(model.read_bytes())
    # the header/table region first (where structure lives), then anywhere
    region = data.draw(st.sampled_from([min(len(raw), 256), len(raw)]))
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, region - 1))
        raw[i] = data.draw(st.integers(0, 255))
    model.write_bytes(bytes(raw))
    _rehash(bundle)
    try:
        b = load_bundle(bundle)
        clf = CpuClassifier(b, 1)
    except BundleError:
        return
    # it loaded, so its load-time probe ran and gave valid scores: it must now run like any model
    try:
        out = clf.classify_batch(np.zeros((2, b.input_height, b.input_width, 3), np.uint8))
    finally:
        clf.close()
    assert out.shape == (2, len(b.labels)) and np.all(np.isfinite(out))
    assert out.min() >= 0.0 and out.max() <= 1.0 + 1e-3


def test_model_that_invokes_to_nan_is_refused_at_load(bundle_copy: Path) -> None:
    """Hashes, shapes and dtypes all pass; only running it shows the garbage: refused before any flight."""
    (bundle_copy / "model_int8.tflite").write_bytes(tinymodel.build_nan_tflite())
    _rehash(bundle_copy)
    b = load_bundle(bundle_copy)  # the file checks pass
    with pytest.raises(BundleError, match="probe inference on a mid-grey tile returned non-finite scores"):
        CpuClassifier(b, 1)
    image = bundle_copy.parent / "leaf.png"
    import cv2

    cv2.imwrite(str(image), np.full((64, 64, 3), 90, np.uint8))
    done = subprocess.run([sys.executable, "-m", "payload", "classify", "--bundle", str(bundle_copy),
                           "--backend", "cpu", str(image)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    assert "non-finite scores" in done.stderr and "Traceback" not in done.stderr


def test_not_a_model_at_all(bundle_copy: Path) -> None:
    for junk in (b"", b"\x00" * 4096, b"TFL3" + bytes(range(256)) * 8, json.dumps({"a": 1}).encode()):
        (bundle_copy / "model_int8.tflite").write_bytes(junk)
        _rehash(bundle_copy)
        with pytest.raises(BundleError):
            _open(bundle_copy)


@pytest.mark.parametrize("kw,match", [
    ({"size": 48}, "model input is"),  # the card says 32x32
    ({"n_classes": 5}, "model output has shape"),  # labels.txt has 3
    ({"float_input": True}, "model input is"),
])
def test_wrong_shape_models(kw: dict, match: str, bundle_copy: Path) -> None:
    (bundle_copy / "model_int8.tflite").write_bytes(tinymodel.build_tflite(**kw))
    _rehash(bundle_copy)
    with pytest.raises(BundleError, match=match):
        _open(bundle_copy)


def test_card_fuzz_is_a_bundle_error(bundle_copy: Path) -> None:
    card_path = bundle_copy / "model_card.json"
    good = json.loads(card_path.read_text())
    bad_cards: list[Any] = [
        None, [], "x", {}, {**good, "classes": []}, {**good, "classes": [1, 2, 3]},
        {**good, "thresholds": {"rust": math.inf}}, {**good, "thresholds": "x"},
        {**good, "input": {"height": -1, "width": 0}}, {**good, "input": "224"},
        {**good, "files": {"../../etc/passwd": {"sha256": "0" * 64}}}, {**good, "files": []},
        {**good, "disease_classes": ["nope"]}, {**good, "healthy_class": None},
    ]
    for card in bad_cards:
        card_path.write_text(json.dumps(card))
        with pytest.raises(BundleError):
            load_bundle(bundle_copy)
    card_path.write_bytes(b"\xff\xfe{not json")
    with pytest.raises(BundleError):
        load_bundle(bundle_copy)
