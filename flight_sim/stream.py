"""The simulated camera as the payload meets a real one: an MJPEG-over-HTTP stream on loopback.

IP cameras and companion-computer camera servers (mjpg-streamer, motion) serve
`multipart/x-mixed-replace` JPEG streams; OpenCV opens them with
`cv2.VideoCapture("http://127.0.0.1:PORT/stream.mjpg")` through its FFmpeg backend. Serving the
simulator's frames that way keeps the simulator and the payload in separate processes with real
transport delay between them. A `CameraStreamer` thread renders the frame at the shared clock's
time at the camera's frame rate; every HTTP client gets the newest frame (a slow client skips
frames instead of queueing them, as with a real camera). `/frame.jpg` serves one still.

Every part carries the frame's truth in its headers: `X-Frame-Index` (1, 2, ... in exposure order),
`X-Exposure-Time` (the vehicle's boot clock, seconds, at the instant the frame was exposed: the
clock the payload's telemetry is stamped in) and `X-Sim-Time` (the flight's timeline time). A real
camera sends none of them, so the payload never reads them; the mission does, to score the
payload's own stamps (docs/TELEMETRY.md, "Frame time"). A real camera also delivers a frame some
time after exposing it; `latency_s` holds each frame back until exposure + latency (render and
encode count towards it), so the payload meets the delay its `camera.latency_s` must undo.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

from flight_sim.clock import SimClock
from flight_sim.errors import EndpointError
from payload.types import Frame

log = logging.getLogger(__name__)

BOUNDARY = "cropscoutframe"
STREAM_PATH = "/stream.mjpg"
STILL_PATH = "/frame.jpg"


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of an RGB frame."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - imencode fails only for empty images
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


@dataclass(frozen=True)
class ServedFrame:
    """What the camera knows of one frame: the truth the stream's headers carry and when it was delivered.

    `exposure_s` is on the vehicle's boot clock (or the timeline's when the camera has no vehicle);
    `exposure_mono` and `delivered_mono` are time.monotonic() on this machine, the clock the payload
    stamps frames with when it runs here too.
    """

    index: int
    sim_t: float
    exposure_s: float
    exposure_mono: float
    delivered_mono: float

    def headers(self) -> str:
        """The part's truth headers (each line ends with CRLF)."""
        return (f"X-Frame-Index: {self.index}\r\nX-Exposure-Time: {self.exposure_s:.6f}\r\n"
                f"X-Sim-Time: {self.sim_t:.3f}\r\n")


class _Latest:
    """The newest JPEG and a condition to wait for the next one."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.jpeg: bytes | None = None
        self.frame: ServedFrame | None = None
        self.seq = 0
        self.closed = False

    def publish(self, jpeg: bytes, frame: ServedFrame) -> None:
        with self.cond:
            self.jpeg, self.frame = jpeg, frame
            self.seq += 1
            self.cond.notify_all()

    def wait_newer(self, seq: int, timeout: float) -> tuple[int, bytes | None, ServedFrame | None]:
        with self.cond:
            self.cond.wait_for(lambda: self.seq > seq or self.closed, timeout)
            return self.seq, self.jpeg, self.frame


class MjpegServer:
    """A small threaded HTTP server for one MJPEG stream. port=0 picks a free port."""

    # the frames published and, per stream connection in the order they opened, the indices sent on it:
    # a client that reads every part in order got connection k's list, which is how the mission matches the
    # payload's frames (counted from 0 in the order read) to their true exposure times
    MAX_LOGGED = 200_000

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.latest = _Latest()
        self.clients = 0
        self.frames_sent = 0
        self.published = 0
        self.served: deque[ServedFrame] = deque(maxlen=self.MAX_LOGGED)
        self.connections: list[list[int]] = []
        self._log_lock = threading.Lock()
        latest, server_ref = self.latest, self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, fmt: str, *args: object) -> None:
                log.debug("http %s", fmt % args)

            def do_GET(self) -> None:  # http.server's naming
                path = self.path.split("?")[0]
                if path == STILL_PATH:
                    _, jpeg, frame = latest.wait_newer(0, 5.0)
                    if jpeg is None or frame is None:
                        self.send_error(503, "no frame yet")
                        return
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(jpeg)))
                    self.send_header("X-Frame-Index", str(frame.index))
                    self.send_header("X-Exposure-Time", f"{frame.exposure_s:.6f}")
                    self.send_header("X-Sim-Time", f"{frame.sim_t:.3f}")
                    self.end_headers()
                    self.wfile.write(jpeg)
                    return
                if path not in (STREAM_PATH, "/", "/stream", "/video"):
                    self.send_error(404, f"the stream is at {STREAM_PATH}")
                    return
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.send_header("Cache-Control", "no-cache, private")
                self.send_header("Pragma", "no-cache")
                self.end_headers()
                server_ref.clients += 1
                sent: list[int] = []
                with server_ref._log_lock:
                    server_ref.connections.append(sent)
                seq = 0
                try:
                    while not latest.closed:
                        newer, jpeg, frame = latest.wait_newer(seq, 1.0)
                        if newer == seq or jpeg is None or frame is None:  # timed out, or closed: nothing new
                            continue
                        seq = newer
                        head = (
                            f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n"
                            f"{frame.headers()}\r\n"
                        ).encode("ascii")
                        self.wfile.write(head + jpeg + b"\r\n")
                        self.wfile.flush()
                        sent.append(frame.index)
                        server_ref.frames_sent += 1
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass
                finally:
                    server_ref.clients -= 1

        try:
            self._httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise EndpointError(
                    f"camera stream http://{host}:{port}{STREAM_PATH}: port {port} is already in use; stop the "
                    "program using it or choose another port with --camera-port (0 picks a free one)"
                ) from None
            raise EndpointError(f"camera stream on {host}:{port}: cannot listen there ({err.strerror})") from None
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The URL to give cv2.VideoCapture (and the payload's `source.uri`)."""
        host = self._httpd.server_address[0]
        return f"http://{host}:{self.port}{STREAM_PATH}"

    def publish(self, jpeg: bytes, sim_t: float = 0.0, frame: ServedFrame | None = None) -> ServedFrame:
        """Make `jpeg` the newest frame; every connected client gets it next.

        `frame` carries its truth (exposure time, index); without it the frame counts as exposed now,
        at timeline time `sim_t`. The frame as served (its delivery time filled in) is logged and returned.
        """
        now = time.monotonic()
        with self._log_lock:
            self.published += 1
            if frame is None:
                frame = ServedFrame(self.published, sim_t, sim_t, now, now)
            else:
                frame = ServedFrame(frame.index, frame.sim_t, frame.exposure_s, frame.exposure_mono, now)
            self.served.append(frame)
        self.latest.publish(jpeg, frame)
        return frame

    def log_snapshot(self) -> tuple[list[ServedFrame], list[list[int]]]:
        """A copy of the frames served and of the indices sent per connection, taken while the stream runs."""
        with self._log_lock:
            return list(self.served), [list(c) for c in self.connections]

    def start(self) -> MjpegServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="flight-sim-mjpeg", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self.latest.cond:
            self.latest.closed = True
            self.latest.cond.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> MjpegServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SimCamera:
    """Frames of a rendered camera at timeline times; usable in-process without any server.

    `render_at(t)` gives the RGB frame at timeline time t, rendered at the TRUE pose then (the
    renderer reads the timeline itself: motion blur needs the motion, not only the pose).
    """

    def __init__(self, render_at: Callable[[float], np.ndarray]) -> None:
        self._render_at = render_at
        self.seq = 0

    def render_at(self, t: float) -> np.ndarray:
        return self._render_at(t)

    def frame_at(self, t: float, t_wall: float | None = None) -> Frame:
        """A payload Frame stamped now (t_mono) and at the simulated wall time if given."""
        pixels = self.render_at(t)
        self.seq += 1
        return Frame(pixels, self.seq, time.monotonic(), time.time() if t_wall is None else t_wall, "flight_sim")

    def live(self, clock: SimClock, fps: float, max_frames: int | None = None) -> Iterator[Frame]:
        """Frames paced in wall time at the clock's current instant, until a non-looping flight ends.

        For an in-process payload: `InProcessSource(sim.rig.camera.live(sim.clock, fps))`. `fps` is
        per wall second here (the payload's capture rate), unlike the scenario's per-flight-second fps.
        """
        period = 1.0 / fps
        next_t = time.monotonic()
        n = 0
        while not clock.finished() and (max_frames is None or n < max_frames):
            delay = next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            next_t = max(next_t + period, time.monotonic() - period)
            sim_t = clock.now()
            yield self.frame_at(sim_t)
            n += 1

    def frames(self, times: Iterator[float] | list[float] | np.ndarray) -> Iterator[tuple[float, np.ndarray]]:
        """(t, RGB frame) for each timeline time given."""
        for t in times:
            yield float(t), self.render_at(float(t))


class _DelayLine:
    """Frames held back until their delivery time, published in order by a thread of their own.

    The render loop goes on exposing frames while earlier ones wait: a latency longer than the frame
    period (0.15 s at 10 fps) keeps several in flight, as in a real camera's pipeline.
    """

    def __init__(self, server: MjpegServer) -> None:
        self.server = server
        self._cond = threading.Condition()
        self._queue: deque[tuple[float, bytes, ServedFrame]] = deque()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="flight-sim-camera-delay", daemon=True)
        self._thread.start()

    def put(self, due_mono: float, jpeg: bytes, frame: ServedFrame) -> None:
        with self._cond:
            self._queue.append((due_mono, jpeg, frame))
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(5.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closed)
                if self._closed:
                    return
                due, jpeg, frame = self._queue[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)  # woken early by a newer frame or close: look again
                    continue
                self._queue.popleft()
            self.server.publish(jpeg, frame=frame)


class CameraStreamer:
    """Renders the frame at the clock's current time into an MjpegServer.

    `fps` is frames per second of FLIGHT time, like a real camera's; at speed x the stream carries
    fps * x frames per wall second, capped at `max_wall_fps` (frames beyond it are simply not taken,
    as a payload that cannot keep up would drop them).

    `latency_s` is the camera's delay from exposure to delivery in wall seconds (the payload's
    clock, and a restamped vehicle's, tick with the wall at any speed): a frame exposed at t is
    published at t + latency_s, or as soon as it is encoded if that takes longer. `boot_clock` maps
    a time.monotonic() instant to the vehicle's boot clock (VehicleEndpoint.boot_s_now), the
    exposure time the headers carry; without it the timeline time stands in.
    """

    def __init__(
        self,
        camera: SimCamera,
        clock: SimClock,
        server: MjpegServer,
        fps: float,
        quality: int = 90,
        max_wall_fps: float = 30.0,
        latency_s: float = 0.0,
        boot_clock: Callable[[float], float] | None = None,
    ) -> None:
        if latency_s < 0:
            raise ValueError(f"camera latency {latency_s} s is negative: a frame cannot arrive before it is exposed")
        self.camera, self.clock, self.server = camera, clock, server
        self.period = 1.0 / min(fps * clock.speed, max_wall_fps)
        self.quality = quality
        self.latency_s = float(latency_s)
        self.boot_clock = boot_clock
        self.frames = 0
        self.render_s = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._delay: _DelayLine | None = None
        self.error: BaseException | None = None

    def start(self) -> CameraStreamer:
        if self.latency_s > 0:
            self._delay = _DelayLine(self.server)
        self._thread = threading.Thread(target=self._run, name="flight-sim-camera", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        if self._delay is not None:
            self._delay.close()

    IDLE_PERIOD_S = 1.0  # with no stream viewer, keep /frame.jpg fresh without burning a core

    def expose(self) -> tuple[bytes, ServedFrame, float]:
        """Expose, render and encode one frame now: its JPEG, its truth, and when it is due for delivery."""
        t0 = time.monotonic()
        sim_t = self.clock.now(t0)
        exposure = self.boot_clock(t0) if self.boot_clock is not None else sim_t
        jpeg = encode_jpeg(self.camera.render_at(sim_t), self.quality)
        self.frames += 1
        self.render_s += time.monotonic() - t0
        return jpeg, ServedFrame(self.frames, sim_t, exposure, t0, t0), t0 + self.latency_s

    def _deliver(self, jpeg: bytes, frame: ServedFrame, due: float) -> None:
        if self._delay is None:
            self.server.publish(jpeg, frame=frame)
        else:
            self._delay.put(due, jpeg, frame)

    def _run(self) -> None:
        next_t = time.monotonic()
        last = -1e9
        try:
            while not self._stop.is_set():
                t0 = time.monotonic()
                if self.server.clients == 0 and t0 - last < self.IDLE_PERIOD_S:
                    self._stop.wait(min(self.period, 0.05))
                    next_t = time.monotonic()
                    continue
                last = t0
                self._deliver(*self.expose())
                next_t += self.period
                delay = next_t - time.monotonic()
                if delay < -self.period:  # fell behind: drop frames rather than burst
                    next_t = time.monotonic()
                self._stop.wait(max(delay, 0.0))
        except BaseException as err:  # reported through .error
            log.exception("camera streamer stopped by an error")
            self.error = err


def free_port(host: str = "127.0.0.1") -> int:
    """A currently free TCP port on host (for tests and `--camera-port 0`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ImageFolderWriter:
    """Writes frames as JPEGs named and EXIF-stamped with their simulated capture time (UTC).

    Names look like IMG_20260601_100012_250.jpg, which payload's FolderSource reads with
    time_from=filename; EXIF DateTimeOriginal/SubSecTimeOriginal/OffsetTimeOriginal serve time_from=exif.
    """

    def __init__(self, folder: str | Path, t0_unix: float, quality: int = 90) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.t0_unix = t0_unix
        self.quality = quality

    def write(self, t: float, rgb: np.ndarray) -> Path:
        import piexif

        ts = self.t0_unix + t
        whole = int(ts)
        ms = int(round((ts - whole) * 1000))
        if ms == 1000:
            whole, ms = whole + 1, 0
        stamp = time.strftime("%Y%m%d_%H%M%S", time.gmtime(whole))
        p = self.folder / f"IMG_{stamp}_{ms:03d}.jpg"
        exif = piexif.dump(
            {
                "Exif": {
                    piexif.ExifIFD.DateTimeOriginal: time.strftime("%Y:%m:%d %H:%M:%S", time.gmtime(whole)).encode(),
                    piexif.ExifIFD.SubSecTimeOriginal: f"{ms:03d}".encode(),
                    36881: b"+00:00",  # OffsetTimeOriginal
                }
            }
        )
        p.write_bytes(_insert_exif(encode_jpeg(rgb, self.quality), exif))
        return p


def write_image_folder(
    frames: Iterator[tuple[float, np.ndarray]], folder: str | Path, t0_unix: float, quality: int = 90
) -> list[Path]:
    """Write (t, RGB) frames into an image folder (see ImageFolderWriter); returns the paths."""
    w = ImageFolderWriter(folder, t0_unix, quality)
    return [w.write(t, rgb) for t, rgb in frames]


def _insert_exif(jpeg: bytes, exif: bytes) -> bytes:
    import io

    import piexif

    buf = io.BytesIO()
    piexif.insert(exif, jpeg, buf)
    return buf.getvalue()


class VideoFileWriter:
    """An MJPG AVI via OpenCV's VideoWriter (plays anywhere, opens in cv2.VideoCapture)."""

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path = Path(path)
        self.fps = float(fps)
        self._writer: cv2.VideoWriter | None = None

    def write(self, rgb: np.ndarray) -> None:
        if self._writer is None:
            h, w = rgb.shape[:2]
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"MJPG"), self.fps, (w, h))
            if not self._writer.isOpened():
                self._writer = None
                raise EndpointError(
                    f"{self.path}: OpenCV cannot write a video there; use an .avi path in a writable folder"
                )
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


def write_video(frames: Iterator[tuple[float, np.ndarray]], path: str | Path, fps: float) -> Path:
    """Write (t, RGB) frames as an MJPG AVI."""
    w = VideoFileWriter(path, fps)
    try:
        for _, rgb in frames:
            w.write(rgb)
    finally:
        w.close()
    return w.path
