"""Writing and verifying the model bundle (CONTRACTS.md section 1).

A bundle is staged in a temporary folder next to its destination and renamed into place only when
it is complete, so a failed build never leaves a half bundle over a good one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from payload.bundle import CARD, ModelCard, sha256_file  # the contract: one digest, one card for build and flight

from .errors import BuildError


def file_table(folder: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file under `folder` except the model card, by relative '/' path."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != CARD:
            rel = p.relative_to(folder).as_posix()
            out[rel] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    return out


def verify_bundle(folder: Path) -> list[str]:
    """Problems with a bundle's files against its card (empty list: all good)."""
    card_path = folder / CARD
    if not card_path.is_file():
        return [f"{card_path} missing"]
    card = json.loads(card_path.read_text())
    problems = []
    for rel, meta in card.get("files", {}).items():
        p = folder / rel
        if not p.is_file():
            problems.append(f"{rel}: listed but missing")
        elif sha256_file(p) != meta["sha256"]:
            problems.append(f"{rel}: sha256 differs")
    listed = set(card.get("files", {}))
    for rel in file_table(folder):
        if rel not in listed:
            problems.append(f"{rel}: present but not listed")
    return problems


def staging_dir(dest: Path) -> Path:
    """A fresh temporary folder on the same filesystem as `dest` (so the final rename is atomic)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{dest.name}.staging-", dir=dest.parent))


def finalize(staging: Path, dest: Path, card: ModelCard) -> Path:
    """Hash every staged file into the card, write it, and move the folder into place."""
    card = card.with_files(file_table(staging))
    (staging / CARD).write_text(card.to_json(), encoding="utf-8")
    if dest.exists() and not dest.is_dir():
        raise BuildError(f"{dest} exists and is not a folder; choose another --out")
    old = None
    if dest.exists():
        old = dest.parent / f".{dest.name}.old-{int(time.time() * 1000)}"
        os.replace(dest, old)
    try:
        os.replace(staging, dest)
    except OSError:
        if old is not None:
            os.replace(old, dest)  # put the good bundle back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return dest
