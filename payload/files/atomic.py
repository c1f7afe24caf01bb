"""Replace a file whole: readers see the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_open(path: Path) -> Iterator[IO[str]]:
    """A text file that replaces `path` only when the block ends cleanly (fsync'd, then renamed).

    Readers (QGIS refreshing a layer, the ground crew copying files) see the old file or the new
    one, never half of one; a failure mid-write removes the temporary file and keeps the old layer.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_text(path: Path, text: str) -> None:
    """Replace `path` with `text` so readers see the old file or the new one, never half of one."""
    with atomic_open(path) as f:
        f.write(text)
