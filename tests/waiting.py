"""Polling for a condition in tests that talk to threads, sockets and child processes."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(cond: Callable[[], object], timeout: float = 20.0, step: float = 0.05) -> bool:
    """True as soon as `cond()` is truthy, False if it is still falsy after `timeout` seconds.

    Generous timeouts cost nothing when things work (the poll returns at once) and keep a loaded CI
    machine from failing a test that only ran slowly.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())
