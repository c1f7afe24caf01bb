"""Paths from the config, resolved and checked before the flight starts.

A drone's payload is started by systemd, whose working directory is whatever the unit says; a
relative or `~` path in the YAML would otherwise land somewhere nobody looks (or in a folder named
"~"), and an output folder that cannot be written would only show up as a traceback at the first
detection, mid-flight. So both are made absolute here and checked: the bundle must be a folder,
the output folder must exist or be creatable, be a folder, and accept a file.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

from payload.config import PayloadConfig
from payload.errors import BundleError, ConfigError

log = logging.getLogger("payload.paths")


def resolve(path: str | Path) -> Path:
    """`~` expanded, made absolute against the working directory, symlinks resolved."""
    return Path(os.path.expanduser(str(path))).resolve()


def check_output_dir(path: str | Path) -> Path:
    """Create the output folder if needed and prove it takes a file; ConfigError naming the fix."""
    p = resolve(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"output.dir {p}: exists but is not a folder; point output.dir at a folder") from None
    except NotADirectoryError:
        raise ConfigError(f"output.dir {p}: a parent of it is a file, not a folder; fix output.dir") from None
    except OSError as err:
        raise ConfigError(f"output.dir {p}: cannot be created ({err.strerror or err}); "
                          "point output.dir at a writable folder (the SD card or USB stick)") from None
    if not p.is_dir():
        raise ConfigError(f"output.dir {p}: exists but is not a folder; point output.dir at a folder")
    probe = p / f".write-probe-{uuid.uuid4().hex[:8]}"
    try:
        with open(probe, "wb") as f:
            f.write(b"ok")
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        raise ConfigError(f"output.dir {p}: not writable ({err.strerror or err}); check its permissions, "
                          "that the card is not mounted read-only, and that it is not full") from None
    finally:
        try:
            probe.unlink()
        except OSError:
            pass
    return p


def check_bundle_dir(path: str | Path) -> Path:
    """The bundle path resolved; BundleError unless it is a folder."""
    p = resolve(path)
    if p.exists() and not p.is_dir():
        raise BundleError(f"model.bundle {p}: is a file, not a bundle folder; set model.bundle to the folder "
                          "written by `make edgetpu` (model_card.json inside)")
    return p


def resolve_config_paths(cfg: PayloadConfig) -> PayloadConfig:
    """A copy of `cfg` with model.bundle and output.dir absolute and checked (idempotent)."""
    bundle = check_bundle_dir(cfg.model.bundle)
    out = check_output_dir(cfg.output.dir)
    if bundle != cfg.model.bundle or out != cfg.output.dir:
        log.info("paths: model.bundle %s, output.dir %s", bundle, out)
    return cfg.model_copy(update={
        "model": cfg.model.model_copy(update={"bundle": bundle}),
        "output": cfg.output.model_copy(update={"dir": out}),
    })
