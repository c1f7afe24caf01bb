"""A real browser for the tests: headless Chromium from Debian's `chromium` package (`make ci-tools` installs it).

`screenshot` opens a local page the way a grower's browser would, saves a PNG and returns what the
page wrote to the console (Chromium logs every console message and uncaught JavaScript error as a
`CONSOLE` line on stderr with --enable-logging=stderr --v=0). A missing browser fails the test with
the command that installs it: CI installs it, so a skip would hide a broken report.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

NAMES = ("chromium", "chromium-browser", "google-chrome", "chromium-headless-shell")
CONSOLE = re.compile(r":CONSOLE[:(]")


def chromium() -> str:
    """The headless-capable Chromium on PATH, or fail naming the make target that installs it."""
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("no Chromium on PATH (looked for " + ", ".join(NAMES) + "): run `make ci-tools`, which installs "
                "Debian's chromium package (apt-get install chromium) as CI does")


def console_lines(stderr: str) -> list[str]:
    """The page's console messages and uncaught errors in Chromium's log (browser noise such as D-Bus excluded)."""
    return [line for line in stderr.splitlines() if CONSOLE.search(line) or "Uncaught" in line]


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 1800, timeout_s: float = 60.0) -> list[str]:
    """Render `page` headless into `png`; returns the console lines it logged. Raises if no PNG was written."""
    cmd = [chromium(), "--headless", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           f"--user-data-dir={png.parent / 'chromium-profile'}", f"--window-size={width},{height}",
           f"--screenshot={png}", "--enable-logging=stderr", "--v=0",
           # no network at view time: a page that needed it would show broken images here
           "--host-resolver-rules=MAP * ~NOTFOUND", page.resolve().as_uri()]
    if os.geteuid() == 0:
        cmd.insert(1, "--no-sandbox")  # Chromium refuses to run its sandbox as root (CI containers run as root)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    if not png.is_file():
        raise AssertionError(f"chromium wrote no screenshot (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return console_lines(done.stderr)
