"""Find Coral Edge TPUs without opening them (`payload devices`).

pycoral's `list_edge_tpus` asks libedgetpu; without pycoral the kernel still tells: PCIe/M.2
accelerators appear as /dev/apex_N (gasket driver), USB ones as vendor:product 1a6e:089a before
their firmware is loaded and 18d1:9302 after.
"""

from __future__ import annotations

import ctypes
import importlib
from dataclasses import dataclass
from pathlib import Path

from payload.backends.edgetpu import EdgeTpuUnavailable, delegate_library

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
