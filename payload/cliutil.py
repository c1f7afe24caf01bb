"""What every command-line program of the product does the same way.

Operator-facing errors (`UserError`) become one clear message on stderr and exit code 2; a
Ctrl-C becomes exit 130 without a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

from payload.errors import EXIT_USER_ERROR, UserError

log = logging.getLogger(__name__)


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run a CLI body, mapping operator errors to exit code 2 with a readable message."""
    try:
        return int(main(argv) or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
