"""The soak names the native threads it counts, so a thread that appears mid-flight can be traced to a library."""

from __future__ import annotations

import threading

from tools.soak import Sample, _native_growth, native_threads, new_threads


def test_new_threads_counts_only_names_that_grew() -> None:
    assert new_threads({"python": 3}, {"python": 3}) == {}
    assert new_threads({"python": 3}, {"python": 4, "gdal-worker": 1}) == {"python": 1, "gdal-worker": 1}
    assert new_threads({"python": 3, "x": 1}, {"python": 2}) == {}


def test_a_python_thread_is_not_counted_as_native() -> None:
    before = native_threads()
    release = threading.Event()
    t = threading.Thread(target=release.wait, name="soak-test", daemon=True)
    t.start()
    try:
        # the kernel sees one thread more; none of it is native
        assert native_threads() == before
    finally:
        release.set()
        t.join()


def test_growth_message_says_when_and_what() -> None:
    def sample(minute: float, native: dict[str, int], detections: int) -> Sample:
        return Sample(minute * 60, 0.0, 100.0, 4, 6, 10, 0, detections, 0.0, native)

    samples = [sample(0, {"python": 2}, 0), sample(60, {"python": 2}, 500), sample(85, {"python": 3}, 700)]
    msg = _native_growth(samples)
    assert "85 min" in msg and "700 detections" in msg and "1 x 'python'" in msg
    assert _native_growth(samples[:2]) == ""

