"""Run a test case as an unprivileged user, also when the suite runs as root (CI, these machines).

The payload runs as its own service user on the drone, so "a read-only folder is refused" and "an
unreadable key file is refused" must be checked as such a user: root reads and writes whatever the
mode bits say. The venv's interpreter lives in root's home, which another user cannot enter, so the
case is not exec'd as a new process: the test process forks, the child drops to `nobody` (setgid,
setgroups, setuid) and runs the case on the modules already imported, and its outcome comes back
through a pipe. Without root the case simply runs in this process.
"""

from __future__ import annotations

import json
import os
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

NOBODY = 65534


def as_root() -> bool:
    return os.geteuid() == 0


def shared_dir(prefix: str = "cropscout-asuser-") -> Path:
    """A fresh folder the unprivileged user can reach (pytest's tmp_path is root-only, 0700)."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    d.chmod(0o755)
    return d


def give_to_nobody(*paths: Path) -> None:
    """Make `paths` owned by the unprivileged user (as root; a no-op otherwise, the files are ours)."""
    if as_root():
        for p in paths:
            os.chown(p, NOBODY, NOBODY)


def run_unprivileged(case: Callable[[], object], uid: int = NOBODY, gid: int = NOBODY) -> None:
    """Run `case` as `uid`/`gid` (forked child when root); re-raise its failure here as AssertionError."""
    if not as_root():
        case()
        return
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, run, report, never return into pytest
        os.close(r)
        outcome: dict[str, object]
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            assert os.geteuid() == uid and os.getegid() == gid
            case()
            outcome = {"ok": True}
        except BaseException as err:  # noqa: BLE001 - everything goes back to the parent
            outcome = {"ok": False, "error": f"{type(err).__name__}: {err}", "trace": traceback.format_exc()}
        with os.fdopen(w, "w") as f:
            f.write(json.dumps(outcome))
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        raise AssertionError(f"the unprivileged child died without reporting (wait status {status})")
    outcome = json.loads(data)
    if not outcome["ok"]:
        raise AssertionError(f"as uid {uid}: {outcome['error']}\n{outcome['trace']}")
