"""Find Coral Edge TPUs without opening them (`payload devices`), and read `model.device`.

pycoral's `list_edge_tpus` asks libedgetpu; without pycoral the kernel still tells: PCIe/M.2
accelerators appear as /dev/apex_N (gasket driver), USB ones as vendor:product 1a6e:089a before
their firmware is loaded and 18d1:9302 after.

`model.device` names one device (libedgetpu's strings: usb, usb:N, pci, pci:N, :N; empty = the first
found), several (`usb:0,usb:1,pci:0`: one watched child each) or `all` (every device enumerated here).
The strings are read here, not in the backend, because `all` needs the enumeration and the backend needs
the strings: this module imports nothing of the backend's.
"""

from __future__ import annotations

import ctypes
import importlib
import platform
import re
from dataclasses import dataclass
from pathlib import Path

from payload.errors import UserError

EDGETPU_LIBRARIES = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}
DEVICE_PATTERN = re.compile(r"^(usb|pci)?(:\d+)?$")
ALL_DEVICES = "all"
DEVICE_FIX = ("use usb, usb:N, pci, pci:N or :N, several of them separated by commas (usb:0,usb:1,pci:0), "
              "`all` for every Edge TPU found (`payload devices` lists them), or leave it empty for the first found")


class EdgeTpuUnavailable(UserError):  # noqa: N818 - reads as a state, raised and caught by selection
    """The Edge TPU cannot be used (no model for it, no library, no device); the message says which."""


class DeviceStringError(EdgeTpuUnavailable):
    """`model.device` (or --device) is not a device string: a mistake to fix, never a reason to fly on the CPU."""


def delegate_library(system: str | None = None) -> str:
    """File name of libedgetpu for this operating system."""
    system = system or platform.system()
    try:
        return EDGETPU_LIBRARIES[system]
    except KeyError:
        raise EdgeTpuUnavailable(f"no Edge TPU runtime exists for {system}; use model.backend: cpu") from None


def check_device(device: str | None) -> str | None:
    """Validate one device string (usb, usb:N, pci, pci:N, :N; None or '' = first found)."""
    if device is None or device == "":
        return None
    if not DEVICE_PATTERN.match(device) or device in (":",):
        raise DeviceStringError(f"model.device {device!r} is not a valid Edge TPU device; {DEVICE_FIX}")
    return device


def parse_devices(spec: str | None) -> list[str | None] | None:
    """The devices `model.device` names, in order; None for `all` (resolved by `resolve_devices`).

    Raises DeviceStringError naming the field, the bad part and the fix: an empty part (`usb:0,,usb:1`), a
    part that is no device string, the same device twice, `all` beside others, or a bare `usb`/`pci`/empty
    among several (they mean "the first found", which several children would all open).
    """
    if spec is None or spec.strip() == "":
        return [None]
    text = spec.strip()
    if text.lower() == ALL_DEVICES:
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) == 1:
        return [check_device(parts[0])]
    out: list[str | None] = []
    for part in parts:
        if part.lower() == ALL_DEVICES:
            raise DeviceStringError(f"model.device {spec!r}: `all` stands alone; {DEVICE_FIX}")
        if part == "":
            raise DeviceStringError(f"model.device {spec!r} has an empty entry; {DEVICE_FIX}")
        check_device(part)
        if ":" not in part or part.endswith(":"):
            raise DeviceStringError(
                f"model.device {spec!r}: {part!r} means the first device found, which every child of a list would "
                f"open; number each device (usb:0,usb:1,pci:0); {DEVICE_FIX}")
        if part in out:
            raise DeviceStringError(f"model.device {spec!r} names {part!r} twice; {DEVICE_FIX}")
        out.append(part)
    return out

USB_IDS = {("1a6e", "089a"): "Global Unichip (firmware not yet loaded)", ("18d1", "9302"): "Google (firmware loaded)"}


@dataclass(frozen=True)
class EdgeTpuDevice:
    """One accelerator: its type (usb/pci), where it is, and how it was found."""

    type: str
    path: str
    detail: str = ""


def _scan(dev_root: Path, usb_root: Path) -> list[EdgeTpuDevice]:
    found = [EdgeTpuDevice("pci", str(p), "apex driver") for p in sorted(dev_root.glob("apex_*"))]
    if usb_root.is_dir():
        for d in sorted(usb_root.iterdir()):
            try:
                vid = (d / "idVendor").read_text().strip().lower()
                pid = (d / "idProduct").read_text().strip().lower()
            except OSError:
                continue
            if (vid, pid) in USB_IDS:
                found.append(EdgeTpuDevice("usb", d.name, f"{vid}:{pid} {USB_IDS[(vid, pid)]}"))
    return found


def runtime_library_status() -> str:
    """Whether libedgetpu loads on this machine, in words."""
    try:
        lib = delegate_library()
    except EdgeTpuUnavailable as err:
        return str(err)
    try:
        ctypes.CDLL(lib)
    except OSError as err:
        return f"{lib} not loadable ({err}): install libedgetpu1-std from Coral's apt repository"
    return f"{lib} loads"


def list_edge_tpus(
    dev_root: Path = Path("/dev"), usb_root: Path = Path("/sys/bus/usb/devices")
) -> tuple[list[EdgeTpuDevice], str]:
    """Return (devices, how they were looked for)."""
    try:
        pycoral = importlib.import_module("pycoral.utils.edgetpu")
    except ImportError:
        pycoral = None
    if pycoral is not None:
        entries = pycoral.list_edge_tpus()
        return [EdgeTpuDevice(str(e.get("type", "?")), str(e.get("path", "?")), "pycoral") for e in entries], (
            "asked pycoral.utils.edgetpu.list_edge_tpus()"
        )
    how = f"pycoral not installed; scanned {dev_root}/apex_* and USB ids 1a6e:089a, 18d1:9302 under {usb_root}"
    return _scan(dev_root, usb_root), how


def device_strings(found: list[EdgeTpuDevice]) -> list[str]:
    """libedgetpu's device string for each enumerated device: the Nth of its type is `type:N`."""
    seen: dict[str, int] = {}
    out = []
    for d in found:
        k = seen.get(d.type, 0)
        seen[d.type] = k + 1
        out.append(f"{d.type}:{k}")
    return out


def resolve_devices(spec: str | None) -> list[str | None]:
    """The device strings the backend opens for `model.device`: `all` becomes every device enumerated now.

    `all` with nothing found raises EdgeTpuUnavailable (under `auto` the CPU takes over, as for one missing
    accelerator); a malformed string raises DeviceStringError.
    """
    wanted = parse_devices(spec)
    if wanted is not None:
        return wanted
    found, how = list_edge_tpus()
    if not found:
        raise EdgeTpuUnavailable(f"model.device `all` found no Edge TPU ({how}); plug one in or name the devices")
    return list(device_strings(found))
