"""One thread per cv2.VideoCapture, so a camera call stuck in the driver can be left behind.

A blocked cap.read() (a USB camera wedged in the kernel driver, a network stream that stops sending
without closing) can be neither interrupted nor killed from Python. OpenCVSource (payload/capture/sources.py)
runs every call on a capture through a CaptureThread and waits with a deadline: past it, the call is
a stall, the thread is retired (it releases its capture and ends whenever the driver lets go) and the
camera is opened again on a new thread.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("payload.source")


class StoppedError(Exception):
    """stop() was called while waiting for the camera."""


class StallError(Exception):
    """A call on the camera did not return in time."""

    def __init__(self, what: str, waited_s: float) -> None:
        super().__init__(f"{what} did not return within {waited_s:.1f} s")
        self.what = what
        self.waited_s = waited_s


class CaptureCall:
    """One call on a capture, run by its capture thread; `done` is set when it returned or raised."""

    __slots__ = ("fn", "done", "result", "error")

    def __init__(self, fn: Callable[[CaptureThread], Any]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self, owner: CaptureThread) -> None:
        owner.busy_since = time.monotonic()
        try:
            self.result = self.fn(owner)
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            self.error = err
        finally:
            owner.busy_since = None
            self.done.set()


class CaptureThread:
    """The only thread that touches one cv2.VideoCapture, so that a call stuck in the driver can be left behind.

    A blocked cap.read() can be neither interrupted nor killed from Python. With every call on the
    capture running here, the source can stop waiting after a deadline, leave this thread (a daemon)
    to return whenever the driver lets go (it then releases its capture and ends) and open the camera
    again on a new thread. `threaded=False` runs calls inline: video files, which have nothing to watch.
    """

    _numbers = itertools.count(1)

    def __init__(self, threaded: bool, on_exit: Callable[[CaptureThread], None] | None = None) -> None:
        self.cap: Any = None
        self.name = f"camera-{next(self._numbers)}"
        self.busy_since: float | None = None
        self.exited = False
        self._on_exit = on_exit
        self._calls: queue.SimpleQueue[CaptureCall | None] | None = None
        self.thread: threading.Thread | None = None
        if threaded:
            self._calls = queue.SimpleQueue()
            self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self.thread.start()

    def submit(self, fn: Callable[[CaptureThread], Any]) -> CaptureCall:
        call = CaptureCall(fn)
        if self._calls is None:
            call.run(self)
        else:
            self._calls.put(call)
        return call

    def release(self) -> None:
        """Release the capture (on this thread, or inline)."""
        cap, self.cap = self.cap, None
        if cap is not None:
            try:
                cap.release()
            except Exception:  # a capture that cannot release is dropped anyway
                log.debug("%s: releasing the capture raised", self.name, exc_info=True)

    def retire(self) -> None:
        """No more calls: release the capture and end as soon as the call in progress (if any) returns."""
        if self._calls is None:
            self.release()
            self.exited = True
        else:
            self._calls.put(None)

    def _run(self) -> None:
        assert self._calls is not None
        try:
            while (call := self._calls.get()) is not None:
                call.run(self)
        finally:
            self.release()
            if self._on_exit is not None:
                self._on_exit(self)
            else:
                self.exited = True


def read_frame(w: CaptureThread) -> tuple[bool, Any]:
    return w.cap.read()
