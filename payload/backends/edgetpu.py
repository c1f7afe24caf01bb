"""Edge TPU backend: pycoral when it imports, else the runtime's own `load_delegate`.

pycoral has no wheels for Python >= 3.10 on Coral's index (community builds exist), and its
`make_interpreter` is only `Interpreter(model, experimental_delegates=[load_delegate(lib, {'device': d})])`,
so the direct path is the same thing without the dependency. Loading fails as OSError when
libedgetpu is not installed and as ValueError ("Failed to load delegate") when it is installed but no
accelerator answers; both become EdgeTpuUnavailable with the fix in the message.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import platform
import re
import sys
from collections.abc import Iterator
from typing import Any

from pydantic import Field

from payload.backends.base import Classifier, TFLiteClassifier, register_backend
from payload.backends.isolated import IsolatedClassifier
from payload.backends.runtime import RuntimeMissingError, import_runtime
from payload.bundle import EDGETPU_MODEL, Bundle
from payload.configio import StrictModel
from payload.errors import UserError

log = logging.getLogger("payload.backend")

EDGETPU_LIBRARIES = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}
DEVICE_PATTERN = re.compile(r"^(usb|pci)?(:\d+)?$")


class EdgeTpuSettings(StrictModel):
    """What the Edge TPU backend reads from the config's `model` section (checked by `check_device` at open)."""

    device: str | None = Field(
        default=None, description="Edge TPU to use: usb, usb:N, pci, pci:N, :N; empty = first found"
    )


class EdgeTpuUnavailable(UserError):  # noqa: N818 - reads as a state, raised and caught by selection
    """The Edge TPU cannot be used (no model for it, no library, no device); the message says which."""


def delegate_library(system: str | None = None) -> str:
    """File name of libedgetpu for this operating system."""
    system = system or platform.system()
    try:
        return EDGETPU_LIBRARIES[system]
    except KeyError:
        raise EdgeTpuUnavailable(f"no Edge TPU runtime exists for {system}; use model.backend: cpu") from None


def check_device(device: str | None) -> str | None:
    """Validate a device string (usb, usb:N, pci, pci:N, :N; None or '' = first found)."""
    if device is None or device == "":
        return None
    if not DEVICE_PATTERN.match(device) or device in (":",):
        raise EdgeTpuUnavailable(
            f"model.device {device!r} is not a valid Edge TPU device; use usb, usb:N, pci, pci:N, :N or leave it empty"
        )
    return device


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


class EdgeTpuClassifier(TFLiteClassifier):
    """The bundle's model_int8_edgetpu.tflite on a Coral Edge TPU."""

    def __init__(self, bundle: Bundle, device: str | None = None) -> None:
        device = check_device(device)
        model = bundle.edgetpu_model
        if model is None:
            raise EdgeTpuUnavailable(f"the bundle has no {EDGETPU_MODEL} ({bundle.edgetpu_note})")
        lib = delegate_library()
        pycoral = _pycoral_edgetpu()
        if pycoral is not None:
            how = "pycoral make_interpreter"
            try:
                interp = pycoral.make_interpreter(str(model), device=device)
            except (OSError, ValueError, RuntimeError) as err:
                raise EdgeTpuUnavailable(_explain(err, lib, device)) from None
        else:
            try:
                runtime_name, rt = import_runtime()
            except RuntimeMissingError as err:
                raise EdgeTpuUnavailable(str(err)) from None
            how = f"{runtime_name} load_delegate({lib})"
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
        super().__init__(interp, bundle, model, name=f"edgetpu ({how}, device {device or 'first found'})")
        self.device = device
        self.how = how


def _edgetpu_in_child(bundle: Any, device: str | None) -> Classifier:
    """Child-side factory: the real Edge TPU backend, built inside the child."""
    return EdgeTpuClassifier(bundle, device)


def open_edgetpu_isolated(bundle: Any, device: str | None, *, tile_deadline_s: float = 0.8) -> IsolatedClassifier:
    """The bundle's Edge TPU model in a watched child (payload/backends/isolated.py); raises EdgeTpuUnavailable
    like the direct way.

    The cheap checks (no Edge TPU model in the bundle, bad device string, no runtime for this OS)
    run here first, so a drone without an accelerator does not pay for starting a child to learn it.
    """
    device = check_device(device)
    if bundle.edgetpu_model is None:
        raise EdgeTpuUnavailable(f"the bundle has no {EDGETPU_MODEL} ({bundle.edgetpu_note})")
    delegate_library()
    return IsolatedClassifier(_edgetpu_in_child, (bundle, device), len(bundle.labels),
                              tile_deadline_s=tile_deadline_s)


def open_edgetpu(bundle: Bundle, device: str | None, isolate: bool) -> Classifier:
    """The Edge TPU classifier, in a watched child process when `isolate`."""
    if not isolate:
        return EdgeTpuClassifier(bundle, device)
    return open_edgetpu_isolated(bundle, device)


def tpu_model_name(bundle: Bundle) -> str:
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
