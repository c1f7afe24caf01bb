"""`make bench-render`'s verdict: exit 1 when the camera cannot keep its frame rate (logic only, not wall time)."""

from __future__ import annotations

import math

from tools.bench_render import MIN_RATIO, peak_rss_mb, verdict


def test_verdict_fails_below_real_time_and_passes_at_or_above() -> None:
    assert verdict(0.99)[0] == 1 and "FAIL" in verdict(0.99)[1]
    assert verdict(1.0)[0] == 0 and verdict(3.2)[0] == 0
    assert verdict(1.5, min_ratio=2.0)[0] == 1
    assert verdict(math.nan)[0] == 1  # a broken measurement never passes
    assert MIN_RATIO == 1.0


def test_peak_rss_is_megabytes() -> None:
    assert 10.0 < peak_rss_mb() < 100_000.0
