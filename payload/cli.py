"""`payload`: the program that runs on the drone's companion computer."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from payload import __version__
from payload.cliutil import run_cli
from payload.config import load_payload_config
from payload.logsetup import add_log_level_argument, setup_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="payload",
        description="Crop-disease scouting payload: classify camera frames on the Edge TPU (or CPU) "
        "and geotag every disease sighting.",
    )
    parser.add_argument("--version", action="version", version=f"payload {__version__}")
    add_log_level_argument(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("validate-config", help="check a payload YAML file and print it resolved")
    p.add_argument("config", help="path of the payload YAML file")
    return parser


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    if args.command == "validate-config":
        cfg = load_payload_config(args.config)
        print(cfg.model_dump_json(indent=2))
        return 0
    raise AssertionError(f"unhandled command {args.command}")


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run_cli(_main, argv))


if __name__ == "__main__":
    main()
