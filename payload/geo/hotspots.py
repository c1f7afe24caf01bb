"""Merge detections of one disease that lie close together into hotspots.

An agronomist walks to places, not to 400 tile sightings: sightings of the same class within
`radius_m` of a hotspot's centroid (across frames) join it. The same tracker runs in flight (to
raise one live alert per new hotspot) and in `payload export` (replaying detections.jsonl in
order), so both give the same hotspots.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from payload.geo.frames import enu_to_geodetic, geodetic_to_enu


@dataclass(slots=True)
class Hotspot:
    """A cluster of sightings of one class. Centroid is the mean of member positions."""

    id: str
    label: str
    anchor_lat: float
    anchor_lon: float
    count: int = 0
    sum_e: float = 0.0
    sum_n: float = 0.0
    sum_conf: float = 0.0
    max_confidence: float = 0.0
    first_seen: float = math.inf
    last_seen: float = -math.inf
    first_utc: str = ""
    last_utc: str = ""
    # member positions as packed doubles (e0, n0, e1, n1, ...): 16 bytes a sighting instead of ~120
    # for a tuple in a list, so a long flight over a badly diseased field keeps the tracker small
    _members_en: array = field(default_factory=lambda: array("d"), repr=False)

    def snapshot(self) -> Hotspot:
        """A copy another thread can read (the layer writer) while this one keeps growing."""
        return replace(self, _members_en=array("d", self._members_en))

    @property
    def centroid_en(self) -> tuple[float, float]:
        return self.sum_e / self.count, self.sum_n / self.count

    @property
    def centroid(self) -> tuple[float, float]:
        """Centroid (lat, lon) degrees."""
        e, n = self.centroid_en
        lat, lon, _ = enu_to_geodetic(e, n, 0.0, self.anchor_lat, self.anchor_lon, 0.0)
        return float(lat), float(lon)

    @property
    def mean_confidence(self) -> float:
        return self.sum_conf / self.count

    @property
    def extent_m(self) -> float:
        """Largest distance from the centroid to a member (how spread the sightings are)."""
        ce, cn = self.centroid_en
        m = self._members_en
        return max((math.hypot(m[i] - ce, m[i + 1] - cn) for i in range(0, len(m), 2)), default=0.0)

    def as_dict(self) -> dict[str, Any]:
        lat, lon = self.centroid
        return {
            "id": self.id,
            "label": self.label,
            "count": self.count,
            "max_confidence": round(self.max_confidence, 5),
            "mean_confidence": round(self.mean_confidence, 5),
            "lat": round(lat, 8),
            "lon": round(lon, 8),
            "extent_m": round(self.extent_m, 3),
            "first_seen": self.first_utc,
            "last_seen": self.last_utc,
            "first_seen_t": self.first_seen,
            "last_seen_t": self.last_seen,
        }


def usable(det: Mapping[str, Any], include_untrusted: bool) -> bool:
    """Whether a detection record may join a hotspot (it needs a ground position)."""
    if det.get("lat") is None or det.get("lon") is None:
        return False
    return include_untrusted or bool(det.get("trusted"))


class HotspotTracker:
    """Incremental hotspot merging; `add` says whether a detection confirmed a new hotspot.

    A cluster is only a candidate until `min_detections` sightings have joined it: a real patch is
    seen in many consecutive frames, while a misclassified tile (soil, a shadow) is seen once or
    twice, so confirmation keeps sporadic false alarms off the map and off the ground station.
    Candidates get their id (rust-1, rust-2...) when they are confirmed.
    """

    def __init__(self, radius_m: float, include_untrusted: bool = False, min_detections: int = 1,
                 candidate_ttl_s: float = math.inf) -> None:
        if radius_m <= 0:
            raise ValueError("radius_m must be positive")
        if min_detections < 1:
            raise ValueError("min_detections must be at least 1")
        if not candidate_ttl_s > 0:
            raise ValueError("candidate_ttl_s must be positive")
        self.radius_m = radius_m
        self.include_untrusted = include_untrusted
        self.min_detections = min_detections
        self.candidate_ttl_s = candidate_ttl_s
        self.clusters: list[Hotspot] = []
        self.retired = 0  # candidates forgotten unconfirmed (see _retire_stale)
        self._last_retire_t = -math.inf
        self._per_label: dict[str, int] = {}
        self._anchor: tuple[float, float] | None = None
        self._confirmed_order: dict[str, int] = {}

    def _absorb_neighbours(self, h: Hotspot) -> Hotspot:
        """Merge into one the clusters of h's disease whose centroids have come within the radius.

        A patch first seen from two sides can start as two clusters a few metres apart; once their
        centroids converge they are one place to send an agronomist. The cluster confirmed first
        (else created first) keeps its id; an alert already sent for the other is not repeated.
        """
        while True:
            ce, cn = h.centroid_en
            other = next(
                (o for o in self.clusters
                 if o is not h and o.label == h.label
                 and math.hypot(o.centroid_en[0] - ce, o.centroid_en[1] - cn) <= self.radius_m),
                None,
            )
            if other is None:
                return h
            keep, gone = (h, other) if self._rank(h) <= self._rank(other) else (other, h)
            _merge_into(keep, gone)
            self.clusters.remove(gone)
            h = keep

    def _retire_stale(self, t: float) -> None:
        """Forget candidates no sighting joined for `candidate_ttl_s` of flight time.

        Over a long flight the sporadic sightings (a shadow, a patch of soil) would pile up as
        candidates, growing memory and the time of every `add` without end. A real patch is seen
        frame after frame, or again on the next survey leg a minute or two later, so a candidate
        left alone for ten minutes is not going to be confirmed. The sightings themselves stay in
        detections.jsonl and every detection layer. Deterministic on the records' own times, so
        `payload export` replaying the file forgets exactly what the flight forgot.
        """
        if t - self._last_retire_t < min(self.candidate_ttl_s / 10.0, 30.0):
            return
        self._last_retire_t = t
        horizon = t - self.candidate_ttl_s
        keep = [h for h in self.clusters if h.id or h.last_seen >= horizon]
        self.retired += len(self.clusters) - len(keep)
        self.clusters = keep

    def _rank(self, h: Hotspot) -> tuple[int, int]:
        if h.id:
            return (0, self._confirmed_order[h.id])
        return (1, self.clusters.index(h))

    @property
    def hotspots(self) -> list[Hotspot]:
        """The confirmed hotspots, in the order they were confirmed."""
        return sorted((h for h in self.clusters if h.id), key=lambda h: self._confirmed_order[h.id])

    def add(self, det: Mapping[str, Any]) -> tuple[Hotspot | None, bool]:
        """Merge one detection record; returns (its cluster or None if unusable, newly confirmed)."""
        if not usable(det, self.include_untrusted):
            return None, False
        lat, lon = float(det["lat"]), float(det["lon"])
        label = str(det["label"])
        frame = det.get("frame") or {}
        t = float(frame.get("t_wall", 0.0))
        self._retire_stale(t)
        # One tangent plane for the whole flight, anchored at the first usable sighting: each
        # detection is projected once (not once per hotspot), and over a field a few km across the
        # plane is exact to millimetres.
        if self._anchor is None:
            self._anchor = (lat, lon)
        e0, n0, _ = geodetic_to_enu(lat, lon, 0.0, self._anchor[0], self._anchor[1], 0.0)
        e, n = float(e0), float(n0)
        best: tuple[float, Hotspot] | None = None
        for h in self.clusters:
            if h.label != label:
                continue
            ce, cn = h.centroid_en
            d = math.hypot(e - ce, n - cn)
            if d <= self.radius_m and (best is None or d < best[0]):
                best = (d, h)
        if best is None:
            h = Hotspot(id="", label=label, anchor_lat=self._anchor[0], anchor_lon=self._anchor[1])
            self.clusters.append(h)
        else:
            h = best[1]
        en = (e, n)
        conf = float(det.get("confidence", 0.0))
        h.count += 1
        h.sum_e += en[0]
        h.sum_n += en[1]
        h._members_en.extend(en)
        h.sum_conf += conf
        h.max_confidence = max(h.max_confidence, conf)
        if t < h.first_seen:
            h.first_seen, h.first_utc = t, str(frame.get("utc", ""))
        if t > h.last_seen:
            h.last_seen, h.last_utc = t, str(frame.get("utc", ""))
        h = self._absorb_neighbours(h)
        is_new = not h.id and h.count >= self.min_detections
        if is_new:
            k = self._per_label.get(label, 0) + 1
            self._per_label[label] = k
            h.id = f"{label}-{k}"
            self._confirmed_order[h.id] = len(self._confirmed_order)
        return h, is_new


def _merge_into(keep: Hotspot, gone: Hotspot) -> None:
    keep.count += gone.count
    keep.sum_e += gone.sum_e
    keep.sum_n += gone.sum_n
    keep._members_en.extend(gone._members_en)
    keep.sum_conf += gone.sum_conf
    keep.max_confidence = max(keep.max_confidence, gone.max_confidence)
    if gone.first_seen < keep.first_seen:
        keep.first_seen, keep.first_utc = gone.first_seen, gone.first_utc
    if gone.last_seen > keep.last_seen:
        keep.last_seen, keep.last_utc = gone.last_seen, gone.last_utc


def merge_hotspots(
    detections: Iterable[Mapping[str, Any]],
    radius_m: float,
    include_untrusted: bool = False,
    min_detections: int = 1,
    candidate_ttl_s: float = math.inf,
) -> list[Hotspot]:
    """All confirmed hotspots of a sequence of detection records (in recording order)."""
    tracker = HotspotTracker(radius_m, include_untrusted, min_detections, candidate_ttl_s)
    for det in detections:
        tracker.add(det)
    return tracker.hotspots
