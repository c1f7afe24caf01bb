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


class DevTools:
    """One headless Chromium page driven through the Chrome DevTools Protocol (real key presses, not JS calls).

    Started with `--remote-debugging-port=0`: Chromium picks a free port and writes it to DevToolsActivePort
    in its profile folder; the page's websocket is found through /json/list. `press` sends
    Input.dispatchKeyEvent keyDown/keyUp pairs, as a keyboard would; `evaluate` reads the page's state.
    """

    KEYS = {"Backspace": ("Backspace", 8), "ArrowLeft": ("ArrowLeft", 37), "ArrowRight": ("ArrowRight", 39)}

    def __init__(self, url: str, profile: Path, width: int = 1280, height: int = 900, timeout_s: float = 30.0) -> None:
        import json
        import time
        import urllib.request

        import websocket  # websocket-client: the test extra (pyproject.toml)

        profile.mkdir(parents=True, exist_ok=True)
        cmd = [chromium(), "--headless", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               "--remote-debugging-port=0", f"--user-data-dir={profile}", f"--window-size={width},{height}",
               "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", url]
        if os.geteuid() == 0:
            cmd.insert(1, "--no-sandbox")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout_s
        while not (port_file.is_file() and port_file.read_text().strip()) and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"chromium exited {self.proc.returncode}: {self.proc.stderr.read()[-3000:]}")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        pages: list[dict] = []
        while not pages and time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            time.sleep(0.05)
        assert pages, "chromium opened no page"
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=timeout_s,
                                              suppress_origin=True)
        self._id = 0

    def call(self, method: str, **params: object) -> dict:
        """Send one DevTools command and return its result (events in between are skipped)."""
        import json

        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def evaluate(self, expression: str) -> object:
        """The value of a JavaScript expression in the page (JSON-serialisable values only)."""
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise AssertionError(f"{expression}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 20.0) -> object:
        """Poll an expression until it is truthy; returns its value (fails after timeout_s with the last error)."""
        import time

        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            # a page still loading may not have the elements yet: an exception is "not yet"
            res = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
            last = res.get("exceptionDetails")
            value = None if last else res["result"].get("value")
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"page never satisfied {expression!r} within {timeout_s} s (last error: {last})")

    def press(self, key: str) -> None:
        """One key press as the keyboard sends it: keyDown (with its text, for a character) then keyUp."""
        if key in self.KEYS:
            code, vk = self.KEYS[key]
            down: dict[str, object] = {"type": "rawKeyDown", "key": key, "code": code, "windowsVirtualKeyCode": vk}
        else:
            code = f"Digit{key}" if key.isdigit() else f"Key{key.upper()}"
            vk = ord(key.upper())
            down = {"type": "keyDown", "key": key, "code": code, "text": key, "unmodifiedText": key,
                    "windowsVirtualKeyCode": vk}
        self.call("Input.dispatchKeyEvent", **down)
        self.call("Input.dispatchKeyEvent", type="keyUp", key=key, code=code, windowsVirtualKeyCode=vk)

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def screenshot(self, png: Path) -> None:
        """The page as it is now, into a PNG."""
        import base64

        png.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.kill()
            self.proc.wait(timeout=10)
