"""`python -m tools.review_shot FLIGHT_DIR --out docs/img/review.png`: the review page as a grower sees it.

Serves a copy of the flight's review (payload/report/review.py, the code `payload review` runs) on a free
127.0.0.1 port, gives the first `--answers` tiles the model's own call as answers (so the picture shows
labelled tiles in the strip and the page at the first unlabelled one), and has headless Chromium (Debian's
`chromium`, `make ci-tools`) render it. The flight folder itself is not changed. `make review-shot` flies the
default scenario with the real payload first (tools.mission: missions keep review tiles) and writes
docs/img/review.png.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from payload.cliutil import run_cli
from payload.errors import UserError
from payload.logsetup import add_log_level_argument, setup_logging
from payload.report.review import ReviewApp, open_server
from payload.sinks.review import REVIEW_DIR

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chromium-headless-shell")


def browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    raise UserError("no Chromium on PATH: `make ci-tools` installs Debian's chromium package")


def shoot(flight: Path, png: Path, answers: int = 3, width: int = 1280, height: int = 1000) -> Path:
    """Render the review page of a copy of `flight` (its first `answers` tiles answered) into `png`."""
    with tempfile.TemporaryDirectory(prefix="review_shot_") as tmp:
        copy = Path(tmp) / flight.name
        copy.mkdir()
        shutil.copytree(flight / REVIEW_DIR, copy / REVIEW_DIR)
        for name in ("detections.jsonl", "zones.geojson"):
            if (flight / name).is_file():
                shutil.copy2(flight / name, copy / name)
        app = ReviewApp(copy)
        for t in app.tiles[:answers]:
            app.label(str(t["id"]), str(t["label"]))
        server = open_server(app, 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/"
            cmd = [browser(), "--headless", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                   f"--user-data-dir={Path(tmp) / 'profile'}", f"--window-size={width},{height}",
                   "--virtual-time-budget=5000", f"--screenshot={png.resolve()}",
                   "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", url]
            if os.geteuid() == 0:
                cmd.insert(1, "--no-sandbox")  # Chromium refuses its sandbox as root (CI containers)
            png.parent.mkdir(parents=True, exist_ok=True)
            # the browser found on PATH and our own arguments
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)  # noqa: S603
            if not png.is_file():
                raise UserError(f"chromium wrote no screenshot (exit {done.returncode}): {done.stderr[-2000:]}")
        finally:
            server.shutdown()
            server.server_close()
    return png


def _main(argv: Sequence[str] | None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.review_shot", description=__doc__.split("\n")[0])
    ap.add_argument("flight", type=Path, metavar="FLIGHT_DIR", help="a flight's output folder with review tiles")
    ap.add_argument("--out", type=Path, default=Path("docs/img/review.png"))
    ap.add_argument("--answers", type=int, default=3, help="tiles answered (with the model's call) before the shot")
    add_log_level_argument(ap)
    a = ap.parse_args(argv)
    setup_logging(a.log_level)
    print(f"wrote {shoot(a.flight, a.out, a.answers)}")
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    raise SystemExit(run_cli(_main, argv))


if __name__ == "__main__":
    main()
