"""Edge TPU backend: pycoral when it imports, else the runtime's own `load_delegate`.

pycoral has no wheels for Python >= 3.10 on Coral's index (community builds exist), and its
`make_interpreter` is only `Interpreter(model, experimental_delegates=[load_delegate(lib, {'device': d})])`,
so the direct path is the same thing without the dependency. Loading fails as OSError when
libedgetpu is not installed and as ValueError ("Failed to load delegate") when it is installed but no
accelerator answers; both become EdgeTpuUnavailable with the fix in the message.

`model.device` may name several devices (payload/backends/devices.py reads it): an ordinary bundle then
runs as the same model on each (a `ReplicaPool`), a bundle compiled into N segments as a pipeline of N
devices (a `SegmentPipeline`, whose children run `EdgeTpuSegment`); payload/backends/pool.py runs both.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from payload.backends.base import PROBE_TOLERANCE, Classifier, TFLiteClassifier, register_backend
from payload.backends.devices import (
    DeviceStringError,
    EdgeTpuUnavailable,
    check_device,
    delegate_library,
    parse_devices,
    resolve_devices,
)
from payload.backends.isolated import IoSpec, IsolatedBackendError, IsolatedClassifier
from payload.backends.pool import ReplicaPool, SegmentPipeline
from payload.backends.runtime import RuntimeMissingError, import_runtime
from payload.bundle import EDGETPU_MODEL, Bundle, dequantize
from payload.configio import StrictModel
from payload.errors import BundleError

log = logging.getLogger("payload.backend")


class EdgeTpuSettings(StrictModel):
    """What the Edge TPU backend reads from the config's `model` section (checked when the config loads)."""

    device: str | None = Field(
        default=None, description="Edge TPU(s) to use: usb, usb:N, pci, pci:N, :N; several as usb:0,usb:1,pci:0 "
        "(one watched child each); all = every device found; empty = first found"
    )

    @field_validator("device")
    @classmethod
    def _device_strings(cls, value: str | None) -> str | None:
        # a typo here must stop the config on the ground, not send `auto` to the CPU for "no Edge TPU"
        try:
            parse_devices(value)
        except DeviceStringError as err:
            raise ValueError(str(err).removeprefix("model.device ")) from None
        return value


def _pycoral_edgetpu() -> Any | None:
    try:
        return importlib.import_module("pycoral.utils.edgetpu")
    except ImportError:
        return None


@contextlib.contextmanager
def _quiet_delegate_cleanup() -> Iterator[None]:
    """Hide the runtime's own noise when a delegate fails to load.

    ai-edge-litert's Delegate.__del__ raises AttributeError on the half-built object after an
    OSError, which Python prints as "Exception ignored in ... Delegate.__del__" at every start of a
    drone without an Edge TPU; the real reason is logged by the selection instead.
    """
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        obj = getattr(unraisable, "object", None)
        if isinstance(unraisable.exc_value, AttributeError) and "Delegate" in repr(obj):
            return
        previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
        gc.collect()
    finally:
        sys.unraisablehook = previous


def _explain(err: Exception, lib: str, device: str | None) -> str:
    where = f"device {device!r}" if device else "the first Edge TPU"
    text = " ".join(str(err).split())
    if isinstance(err, OSError):
        return (
            f"{lib} could not be loaded ({type(err).__name__}: {text}); install the Edge TPU runtime "
            "(libedgetpu1-std from Coral's apt repository, or a feranick/libedgetpu build)"
        )
    return (
        f"the Edge TPU delegate did not load for {where} ({type(err).__name__}: {text}); check that the "
        "accelerator is plugged in (`payload devices` lists what is found) and that model.device is right"
    )


def _edgetpu_interpreter(model: Path, device: str | None) -> tuple[Any, str]:
    """An interpreter for `model` with the Edge TPU delegate on `device`, and how it was made."""
    lib = delegate_library()
    pycoral = _pycoral_edgetpu()
    if pycoral is not None:
        try:
            return pycoral.make_interpreter(str(model), device=device), "pycoral make_interpreter"
        except (OSError, ValueError, RuntimeError) as err:
            raise EdgeTpuUnavailable(_explain(err, lib, device)) from None
    try:
        runtime_name, rt = import_runtime()
    except RuntimeMissingError as err:
        raise EdgeTpuUnavailable(str(err)) from None
    options = {"device": device} if device else {}
    failure = None
    with _quiet_delegate_cleanup():
        try:
            delegate = rt.load_delegate(lib, options)
            interp = rt.Interpreter(model_path=str(model), experimental_delegates=[delegate])
        except (OSError, ValueError, RuntimeError) as err:
            failure = _explain(err, lib, device)
    if failure is not None:
        raise EdgeTpuUnavailable(failure)
    return interp, f"{runtime_name} load_delegate({lib})"


class EdgeTpuClassifier(TFLiteClassifier):
    """The bundle's model_int8_edgetpu.tflite on a Coral Edge TPU."""

    def __init__(self, bundle: Bundle, device: str | None = None) -> None:
        device = check_device(device)
        model = bundle.edgetpu_model
        if model is None:
            raise EdgeTpuUnavailable(f"the bundle has no {EDGETPU_MODEL} ({_why_no_model(bundle)})")
        interp, how = _edgetpu_interpreter(model, device)
        super().__init__(interp, bundle, model, name=f"edgetpu ({how}, device {device or 'first found'})")
        self.device = device
        self.how = how


def _why_no_model(bundle: Bundle) -> str:
    if bundle.edgetpu_segments:
        return (f"it is compiled into {len(bundle.edgetpu_segments)} segments, one per device: name that many in "
                "model.device, or rebuild with edgetpu.num_segments: 1")
    return bundle.edgetpu_note


class EdgeTpuSegment:
    """Segment k of a model compiled with `--num_segments`, on one Edge TPU (the body of a pipeline child).

    Segment 0 takes the tiles (uint8, the model's input); the last one gives the scores (dequantized here,
    as `TFLiteClassifier` does); the others take and give the raw tensor that crosses their cut, which
    the parent hands on unchanged (the same tensor, so the same quantization, on both sides of the cut).
    """

    def __init__(self, bundle: Bundle, k: int, device: str | None) -> None:
        segments = bundle.edgetpu_segments
        if not 0 <= k < len(segments):
            raise EdgeTpuUnavailable(f"the bundle has no Edge TPU segment {k} (it has {len(segments)})")
        path = segments[k]
        interp, how = _edgetpu_interpreter(path, check_device(device))
        try:
            interp.allocate_tensors()
        except (RuntimeError, ValueError) as err:
            raise BundleError(f"{path}: the runtime cannot allocate this segment ({err}); rebuild the bundle") from None
        ins, outs = interp.get_input_details(), interp.get_output_details()
        if len(ins) != 1 or len(outs) != 1:
            raise BundleError(
                f"{path}: this segment takes {len(ins)} and gives {len(outs)} tensors; the payload's pipeline hands "
                "one tensor from segment to segment; rebuild with another edgetpu.num_segments (or 1)")
        inp, out = ins[0], outs[0]
        self._interp, self._in, self._out = interp, int(inp["index"]), int(out["index"])
        self.first, self.last = k == 0, k == len(segments) - 1
        in_shape = tuple(int(v) for v in inp["shape"])[1:]
        out_shape = tuple(int(v) for v in out["shape"])[1:]
        self.input_size = (bundle.input_height, bundle.input_width)
        if self.first and (np.dtype(inp["dtype"]) != np.uint8 or in_shape != (*self.input_size, 3)):
            raise BundleError(f"{path}: segment 0 takes {np.dtype(inp['dtype']).name} {list(in_shape)}, the payload "
                              f"gives uint8 {[*self.input_size, 3]}; rebuild the bundle")
        n_classes = len(bundle.labels)
        if self.last and int(np.prod(out_shape)) != n_classes:
            raise BundleError(f"{path}: the last segment gives {list(out_shape)}, labels.txt has {n_classes} "
                              "classes; rebuild the bundle")
        q = out.get("quantization") or (0.0, 0)
        self._out_scale, self._out_zero = float(q[0]), int(q[1])
        self.io_spec = IoSpec(in_shape, np.dtype(inp["dtype"]).str,
                              (n_classes,) if self.last else out_shape,
                              np.dtype(np.float32).str if self.last else np.dtype(out["dtype"]).str)
        self.name = f"edgetpu segment {k + 1} of {len(segments)} ({how}, device {device or 'first found'})"

    def classify_batch(self, x: np.ndarray) -> np.ndarray:
        """Run the segment on each item: its output tensor, or the scores for the last segment."""
        rows = []
        for i in range(x.shape[0]):
            self._interp.set_tensor(self._in, x[i : i + 1])
            self._interp.invoke()
            shape = (-1,) if self.last else self.io_spec.out_shape
            rows.append(np.array(self._interp.get_tensor(self._out)).reshape(shape))
        raw = np.stack(rows)
        return dequantize(raw, self._out_scale, self._out_zero) if self.last else raw

    def close(self) -> None:
        """Drop the interpreter so its delegate (and the device) is released."""
        self._interp = None


def segment_in_child(bundle: Any, k: int, device: str | None) -> EdgeTpuSegment:
    """Child-side factory of a pipeline stage: segment k on `device`, built inside the child."""
    return EdgeTpuSegment(bundle, k, device)


def _edgetpu_in_child(bundle: Any, device: str | None) -> Classifier:
    """Child-side factory: the real Edge TPU backend, built inside the child."""
    return EdgeTpuClassifier(bundle, device)


def open_edgetpu_isolated(bundle: Any, device: str | None, *, tile_deadline_s: float = 0.8,
                          restarts: int = 1) -> IsolatedClassifier:
    """The bundle's Edge TPU model in a watched child (payload/backends/isolated.py); raises EdgeTpuUnavailable
    like the direct way.

    The cheap checks (no Edge TPU model in the bundle, bad device string, no runtime for this OS)
    run here first, so a drone without an accelerator does not pay for starting a child to learn it.
    `restarts` is the child's own restart budget (0 in a pool, which moves the tile to another device).
    """
    device = check_device(device)
    if bundle.edgetpu_model is None:
        raise EdgeTpuUnavailable(f"the bundle has no {EDGETPU_MODEL} ({_why_no_model(bundle)})")
    delegate_library()
    return IsolatedClassifier(_edgetpu_in_child, (bundle, device), len(bundle.labels),
                              tile_deadline_s=tile_deadline_s, restarts=restarts)


def open_replica_pool(bundle: Bundle, devices: list[str], isolate: bool) -> ReplicaPool:
    """The whole model on every device in `devices`, one watched child each when `isolate`."""
    if bundle.edgetpu_model is None:
        raise EdgeTpuUnavailable(f"the bundle has no {EDGETPU_MODEL} ({_why_no_model(bundle)})")
    delegate_library()
    openers: list[Callable[[], Classifier]]
    if isolate:
        openers = [functools.partial(open_edgetpu_isolated, bundle, d, restarts=0) for d in devices]
    else:
        openers = [functools.partial(EdgeTpuClassifier, bundle, d) for d in devices]
    return ReplicaPool(devices, openers, len(bundle.labels))


def open_segment_pipeline(bundle: Bundle, devices: list[str | None], isolate: bool, *,
                          child: Callable[..., Any] = segment_in_child,
                          tile_deadline_s: float = 0.8) -> SegmentPipeline:
    """Segment k of the bundle on devices[k]; more devices than segments leave the rest idle (logged).

    Each stage is a watched child with its own one restart when `isolate`; `child` is the child-side
    factory (a test hands in one that installs its runtime double first). A grey tile goes through the
    whole pipeline before the flight, as the single model's probe does.
    """
    n = len(bundle.edgetpu_segments)
    if len(devices) < n:
        raise EdgeTpuUnavailable(
            f"the bundle's Edge TPU model is compiled into {n} segments, one per device, but model.device names "
            f"{len(devices)} ({', '.join(d or 'first found' for d in devices)}); name {n} devices (usb:0,usb:1,...) "
            "or `all`, or rebuild with edgetpu.num_segments: 1")
    if len(devices) > n:
        log.warning("the bundle has %d segments: devices %s stay idle", n, ", ".join(str(d) for d in devices[n:]))
    used = [d for d in devices[:n]]
    delegate_library()
    stages: list[Any] = []
    try:
        for k, d in enumerate(used):
            if isolate:
                stages.append(IsolatedClassifier(child, (bundle, k, d), len(bundle.labels),
                                                 tile_deadline_s=tile_deadline_s))
            else:
                stages.append(child(bundle, k, d))
        pipe = SegmentPipeline(stages, len(bundle.labels), (bundle.input_height, bundle.input_width),
                               [str(d) for d in used])
        _probe_pipeline(pipe, bundle)
    except BaseException:
        for s in stages:
            s.close()
        raise
    return pipe


def _probe_pipeline(pipe: SegmentPipeline, bundle: Bundle) -> None:
    """A mid-grey tile through every segment before any flight: refuse segments that do not join up."""
    tile = np.full((1, bundle.input_height, bundle.input_width, 3), 128, np.uint8)
    try:
        scores = pipe.classify_batch(tile)
    except (IsolatedBackendError, ValueError, RuntimeError) as err:
        raise BundleError(f"{bundle.path}: the probe tile did not pass the {len(pipe.stages)} Edge TPU segments "
                          f"({err}); rebuild the bundle") from None
    if not np.all(np.isfinite(scores)) or scores.min() < -PROBE_TOLERANCE or scores.max() > 1 + PROBE_TOLERANCE:
        raise BundleError(f"{bundle.path}: the Edge TPU segments give {scores[0].tolist()} on a grey tile, not "
                          "scores in 0-1; rebuild the bundle")


def open_edgetpu(bundle: Bundle, device: str | None, isolate: bool) -> Classifier:
    """The Edge TPU backend for `model.device`: one device (in a watched child when `isolate`), a pool of
    several (the same model on each), or a pipeline (a bundle compiled into segments)."""
    devices = resolve_devices(device)
    if bundle.edgetpu_segments:
        return open_segment_pipeline(bundle, devices, isolate)
    if len(devices) > 1:
        return open_replica_pool(bundle, [str(d) for d in devices], isolate)
    if not isolate:
        return EdgeTpuClassifier(bundle, devices[0])
    return open_edgetpu_isolated(bundle, devices[0])


def tpu_model_name(bundle: Bundle) -> str:
    """The Edge TPU model file(s) a log line names."""
    if bundle.edgetpu_segments:
        return f"{len(bundle.edgetpu_segments)} segments {bundle.edgetpu_segments[0].name}..."
    return bundle.edgetpu_model.name if bundle.edgetpu_model else "?"


def _open_edgetpu_required(bundle: Bundle, s: EdgeTpuSettings, isolate: bool) -> Classifier:
    try:
        clf = open_edgetpu(bundle, s.device, isolate)
    except EdgeTpuUnavailable as err:
        raise EdgeTpuUnavailable(
            f"Edge TPU required (model.backend: edgetpu) but not usable: {err}; "
            "or set model.backend: auto to fall back to the CPU"
        ) from None
    log.info("backend edgetpu (requested by model.backend: edgetpu): %s running %s", clf.name,
             tpu_model_name(bundle))
    return clf


# edgetpu only means "do not take off without it": in flight the CPU takes over when it fails
register_backend("edgetpu", settings=(EdgeTpuSettings,), opener=_open_edgetpu_required, falls_back_to_cpu=True,
                 rank=1)
