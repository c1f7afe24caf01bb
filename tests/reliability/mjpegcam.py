"""A loopback MJPEG camera that can be unplugged, replugged and made to send corrupt frames.

Test double for an IP camera (what OpenCVSource opens over HTTP): multipart/x-mixed-replace JPEG
parts at `fps`. `unplug()` closes every connection and the listening socket (the camera is gone:
connections are refused), `replug()` listens again on the same port. `corrupt_every=N` makes every
Nth part a corrupt JPEG (valid start/end markers, garbage inside), `truncate_every=N` a JPEG cut in
half: what a flaky USB-to-Ethernet bridge or a radio link delivers. `stall()` keeps every connection
open but stops sending (and answers no new request) until `resume()`: a camera whose firmware hung,
which a reader blocked in recv() never notices by itself.
"""

from __future__ import annotations

import socket
import threading
import time

import cv2
import numpy as np

BOUNDARY = b"frame"


class MjpegCamera:
    def __init__(self, fps: float = 20.0, size: tuple[int, int] = (160, 120)) -> None:
        self.fps = fps
        self.size = size
        self.port = 0
        self.corrupt_every = 0
        self.truncate_every = 0
        self.sent = 0
        self.corrupt_sent = 0
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._clients: list[socket.socket] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._rng = np.random.default_rng(5)
        self._sending = threading.Event()
        self._sending.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> MjpegCamera:
        self._listen()
        return self

    def _listen(self) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(4)
        s.settimeout(0.1)
        self.port = s.getsockname()[1]
        self._sock = s
        stop = threading.Event()
        self._stop = stop
        t = threading.Thread(target=self._accept, args=(s, stop), daemon=True)
        t.start()
        self._threads.append(t)

    def _accept(self, s: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                conn, _ = s.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._clients.append(conn)
            t = threading.Thread(target=self._serve, args=(conn, stop), daemon=True)
            t.start()
            self._threads.append(t)

    def _jpeg(self, k: int) -> bytes:
        w, h = self.size
        img = np.full((h, w, 3), (k * 7) % 256, np.uint8)
        cv2.putText(img, str(k), (5, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
        ok, buf = cv2.imencode(".jpg", img)
        assert ok
        data = buf.tobytes()
        if self.corrupt_every and k % self.corrupt_every == self.corrupt_every - 1:
            self.corrupt_sent += 1
            junk = self._rng.integers(0, 256, len(data) - 4, dtype=np.uint8).tobytes()
            return b"\xff\xd8" + junk + b"\xff\xd9"
        if self.truncate_every and k % self.truncate_every == self.truncate_every - 1:
            self.corrupt_sent += 1
            return data[: len(data) // 2]
        return data

    def _wait_while_stalled(self, stop: threading.Event) -> bool:
        """False when the camera was unplugged meanwhile."""
        while not self._sending.wait(0.05):
            if stop.is_set():
                return False
        return not stop.is_set()

    def _serve(self, conn: socket.socket, stop: threading.Event) -> None:
        try:
            conn.settimeout(2.0)
            req = b""
            while b"\r\n\r\n" not in req and len(req) < 8192:
                chunk = conn.recv(1024)
                if not chunk:
                    return
                req += chunk
            if not self._wait_while_stalled(stop):
                return
            conn.sendall(b"HTTP/1.0 200 OK\r\nCache-Control: no-cache\r\n"
                         b"Content-Type: multipart/x-mixed-replace; boundary=" + BOUNDARY + b"\r\n\r\n")
            period = 1.0 / self.fps
            while self._wait_while_stalled(stop):
                k = self.sent
                self.sent += 1
                data = self._jpeg(k)
                conn.sendall(b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\nContent-Length: "
                             + str(len(data)).encode() + b"\r\n\r\n" + data + b"\r\n")
                stop.wait(period)
        except OSError:
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def stall(self) -> None:
        """Stop sending on every connection, keeping them open (and answer no new request) until resume()."""
        self._sending.clear()

    def resume(self) -> None:
        self._sending.set()

    def unplug(self) -> None:
        """The camera is gone: close every stream and stop listening (connections are refused)."""
        self._stop.set()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        with self._lock:
            clients, self._clients = self._clients, []
        for c in clients:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def replug(self) -> None:
        """The camera is back on the same port."""
        deadline = time.monotonic() + 5
        while True:
            try:
                self._listen()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        self.unplug()
        for t in self._threads:
            t.join(2.0)
