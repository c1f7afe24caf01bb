"""One logging format for every program of the product.

Operators read these logs in a terminal during a flight and in journald afterwards, so every line
carries a timestamp, the level and the component that spoke.
"""

from __future__ import annotations

import argparse
import logging

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def add_log_level_argument(parser: argparse.ArgumentParser) -> None:
    """Give a CLI the shared `--log-level` option."""
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=LEVELS,
        help="how much to log (default INFO)",
    )


def setup_logging(level: str = "INFO") -> None:
    """Configure the root logger once, replacing handlers a library may have installed."""
    logging.basicConfig(level=getattr(logging, level.upper()), format=LOG_FORMAT, force=True)
