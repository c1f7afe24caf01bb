"""review/: the tiles worth a person's look, kept in flight for `payload review` (docs/REVIEW.md).

The crops sink keeps only the tiles the model already flagged; a grower who wants to teach the model
also needs the tiles it was unsure of, the ones on the edges of the zones it drew, and some of what it
called healthy (a missed patch hides there). This sink keeps a bounded sample of each kind:

- `edge`: tiles whose ground footprint crosses the boundary of a zone the map has confirmed so far
  (the zones are the live map's, refreshed at the end of every frame: `on_snapshot`; a zone first cut
  late in the flight has no edge tiles from before it existed);
- `margin`: tiles near the decision (margin sampling): the margin is the smaller of the gap between the
  top disease score and its threshold and the gap between the top two classes; the smallest margins
  are kept;
- `flagged`: the other flagged tiles, the least sure first;
- `healthy`: a uniform random sample of the remaining tiles (reservoir sampling: every tile of the
  flight has the same chance, however long the flight).

A tile goes to the first kind it qualifies for, in that order. Each kind holds at most its
configured count: when full, a more informative tile (smaller margin) replaces the least informative
one and that one's JPEG is deleted at once, so memory (metadata only, never pixels) and disk stay
bounded whatever the flight's length. Each kept tile is a JPEG in review/tiles/ and a JSON line in
review/review.jsonl (appended and fsync'd when kept, so a cut flight keeps what it had; rewritten at
close with the survivors only, most informative first). A line whose JPEG is gone was replaced. The
free-disk guard stops the review's JPEGs as it stops the crops (payload/ops/diskguard.py).
"""

from __future__ import annotations

import heapq
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import shapely
from pydantic import Field
from shapely.geometry.base import BaseGeometry

from payload.configio import StrictModel
from payload.files.atomic import atomic_write_text
from payload.files.jsonl import JsonlWriter, iter_jsonl
from payload.sinks.base import SinkBase, SinkContext, register_sink
from payload.types import FrameResult

log = logging.getLogger(__name__)

REVIEW_DIR = "review"
TILES_DIR = "tiles"
REVIEW_JSONL = "review.jsonl"
REVIEW_SCHEMA = "cropscout.review/1"
KINDS = ("edge", "margin", "flagged", "healthy")


class ReviewSection(StrictModel):
    """Tiles kept in flight for a person to label (payload/sinks/review.py, `payload review`; docs/REVIEW.md)."""

    enabled: bool = Field(default=False, description="keep review tiles in OUT/review/ for `payload review`")
    max_margin: int = Field(default=60, ge=0, le=10_000, description="tiles nearest the decision kept at most")
    max_edge: int = Field(default=40, ge=0, le=10_000, description="tiles on zone boundaries kept at most")
    max_flagged: int = Field(default=40, ge=0, le=10_000, description="other flagged tiles kept at most")
    max_healthy: int = Field(default=40, ge=0, le=10_000, description="random healthy tiles kept at most")
    margin_below: float = Field(default=0.2, gt=0, le=1.0,
                                description="a tile is a margin tile when its margin is below this")
    jpeg_quality: int = Field(default=90, ge=10, le=100)
    seed: int = Field(default=0, description="the healthy sample's random seed (a flight's sample is repeatable)")


def tile_margin(scores: Sequence[float], classes: Sequence[str], thresholds: Mapping[str, float]) -> float:
    """How near a tile is to another call: min(|top disease score - its threshold|, top1 - top2).

    Without thresholds (a bundle that has none for these classes) only the gap between the top two
    classes counts. 0 is a coin toss; 1 is as sure as a softmax gets.
    """
    s = np.asarray(scores, dtype=float).ravel()
    if s.size == 0:
        return 1.0
    top = np.sort(s)[::-1]
    margin = float(top[0] - top[1]) if s.size > 1 else 1.0
    diseases = [(float(s[i]), float(thresholds[c])) for i, c in enumerate(classes) if c in thresholds and i < s.size]
    if diseases:
        best, thr = max(diseases)
        margin = min(margin, abs(best - thr))
    return round(max(0.0, margin), 5)


@dataclass(order=True)
class Kept:
    """One kept tile in a kind's pool: ordered by informativeness (1 - margin), least informative first."""

    info: float
    tile_id: str = field(compare=True)
    record: dict[str, Any] = field(compare=False, default_factory=dict)


class ZoneEdges:
    """The current zones' outlines in lon/lat, rebuilt when the map's zone snapshot changes."""

    def __init__(self) -> None:
        self._source: object = None
        self._ids: list[str] = []
        self._geoms: list[BaseGeometry] = []
        self._tree: shapely.STRtree | None = None

    def refresh(self, features: Sequence[Mapping[str, Any]]) -> None:
        if features is self._source:
            return
        self._source = features
        self._ids, self._geoms = [], []
        for f in features:
            polys = [shapely.Polygon(np.asarray(rings[0])[:, :2], [np.asarray(r)[:, :2] for r in rings[1:]])
                     for rings in f.get("polygons") or [] if len(rings) and len(rings[0]) >= 4]
            if polys:
                self._ids.append(str(f["properties"].get("id", "")))
                self._geoms.append(shapely.union_all(polys))
        self._tree = shapely.STRtree(self._geoms) if self._geoms else None

    def crossed_by(self, footprint_latlon: Sequence[Sequence[float]] | None) -> list[str]:
        """The ids of the zones whose boundary the footprint ([lat, lon] corners) crosses."""
        if self._tree is None or not footprint_latlon:
            return []
        quad = shapely.Polygon([(lon, lat) for lat, lon in footprint_latlon])
        if not quad.is_valid or quad.area == 0:
            return []
        hits = self._tree.query(quad, predicate="intersects")
        return [self._ids[i] for i in sorted(int(h) for h in hits) if self._geoms[i].boundary.intersects(quad)]


class Pool:
    """At most `size` tiles of one kind: by informativeness, or a uniform reservoir sample."""

    def __init__(self, size: int, reservoir: bool, rng: np.random.Generator) -> None:
        self.size = size
        self.reservoir = reservoir
        self.rng = rng
        self.heap: list[Kept] = []  # a min-heap: the least informative at [0]
        self.slots: list[Kept] = []  # the reservoir's slots
        self.seen = 0

    def items(self) -> list[Kept]:
        return list(self.slots if self.reservoir else self.heap)

    def admit(self, info: float) -> tuple[bool, int | None]:
        """Whether a new tile of this informativeness is kept, and the reservoir slot it takes (if any)."""
        self.seen += 1
        if self.size == 0:
            return False, None
        if self.reservoir:
            if len(self.slots) < self.size:
                return True, None
            j = int(self.rng.integers(0, self.seen))  # Algorithm R: kept with probability size / seen
            return (True, j) if j < self.size else (False, None)
        return len(self.heap) < self.size or info > self.heap[0].info, None

    def put(self, kept: Kept, slot: int | None) -> Kept | None:
        """Add an admitted tile; returns the one it pushed out, if any."""
        if self.reservoir:
            if slot is None:
                self.slots.append(kept)
                return None
            old, self.slots[slot] = self.slots[slot], kept
            return old
        if len(self.heap) < self.size:
            heapq.heappush(self.heap, kept)
            return None
        return heapq.heapreplace(self.heap, kept)


def encode_jpeg(pixels: np.ndarray, box: Any, quality: int) -> bytes:
    """The tile of an RGB frame as JPEG bytes."""
    crop = pixels[box.y:box.y + box.h, box.x:box.x + box.w]
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise OSError("JPEG encoding failed")
    return buf.tobytes()


def write_bytes_durably(path: Path, data: bytes) -> None:
    """Write a file whole (fsync, then rename), so a cut flight leaves no half JPEG behind a kept line."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_review(folder: str | Path) -> list[dict[str, Any]]:
    """A flight's kept tiles (the last line of each id wins; tiles whose JPEG is gone were replaced),
    most informative first."""
    root = Path(folder) / REVIEW_DIR
    path = root / REVIEW_JSONL
    if not path.is_file():
        return []
    by_id: dict[str, dict[str, Any]] = {}
    for rec in iter_jsonl(path):
        if rec.get("schema") == REVIEW_SCHEMA and (root / str(rec.get("image", ""))).is_file():
            by_id[str(rec["id"])] = rec
    return sorted(by_id.values(), key=lambda r: (-float(r.get("informativeness", 0.0)), str(r["id"])))


@register_sink(15, key="review", settings=ReviewSection)
class ReviewSink(SinkBase):
    """Keeps a bounded sample of tiles worth a person's look (margin, zone edge, flagged, healthy)."""

    name = "review"

    def __init__(self, out_dir: str | Path, cfg: ReviewSection, *, thresholds: Mapping[str, float] | None = None,
                 zones: Callable[[], Sequence[dict[str, Any]]] = list,
                 allowed: Callable[[], bool] = lambda: True) -> None:
        self.root = Path(out_dir) / REVIEW_DIR
        (self.root / TILES_DIR).mkdir(parents=True, exist_ok=True)
        self.cfg = cfg
        self.thresholds = dict(thresholds or {})
        self._zones = zones
        self._allowed = allowed
        rng = np.random.default_rng(cfg.seed)
        sizes = {"edge": cfg.max_edge, "margin": cfg.max_margin, "flagged": cfg.max_flagged,
                 "healthy": cfg.max_healthy}
        self.pools = {k: Pool(sizes[k], k == "healthy", rng) for k in KINDS}
        self.edges = ZoneEdges()
        self.skipped_disk = 0
        self.replaced = 0
        self._resume()
        self._jsonl = JsonlWriter(self.root / REVIEW_JSONL)

    @classmethod
    def from_context(cls, ctx: SinkContext) -> ReviewSink | None:
        s = ctx.settings(ReviewSection)
        if not s.enabled:
            return None
        return cls(ctx.out_dir, s, thresholds=ctx.thresholds, zones=ctx.zones, allowed=ctx.crops_allowed)

    def _resume(self) -> None:
        """A restart into the same folder keeps the earlier run's tiles in their pools (and their bound)."""
        for rec in reversed(read_review(self.root.parent)):
            pool = self.pools.get(str(rec.get("kind")))
            if pool is None:
                continue
            kept = Kept(float(rec["informativeness"]), str(rec["id"]), rec)
            ok, slot = pool.admit(kept.info)
            out = pool.put(kept, slot) if ok else kept
            if out is not None:
                self._drop(out)

    def kind_of(self, flagged: bool, margin: float, crossed: list[str]) -> str:
        """The first kind a tile qualifies for (edge before margin: a boundary is where the map is least sure)."""
        if crossed:
            return "edge"
        if margin < self.cfg.margin_below:
            return "margin"
        return "flagged" if flagged else "healthy"

    def on_look(self, look: dict[str, Any], result: FrameResult) -> None:
        classes = list(look.get("classes") or [])
        for tile, rec in zip(result.tiles, look.get("tiles", []), strict=True):
            margin = tile_margin(rec["scores"], classes, self.thresholds)
            crossed = self.edges.crossed_by(rec.get("footprint"))
            kind = self.kind_of(bool(rec["flagged"]), margin, crossed)
            info = round(1.0 - margin, 5)
            ok, slot = self.pools[kind].admit(info)
            if not ok:
                continue
            if not self._allowed():  # below the free-disk floor: no more JPEGs (the records go on)
                self.skipped_disk += 1
                continue
            record = self._record(look, rec, tile.box, kind, margin, crossed, classes)
            image = self.root / record["image"]
            try:
                write_bytes_durably(image, encode_jpeg(result.frame.pixels, tile.box, self.cfg.jpeg_quality))
                self._jsonl.write(record)
            except (OSError, ValueError) as err:  # a full card, a tile off the frame: the flight goes on
                log.warning("review tile %s not kept: %s", record["id"], err)
                image.unlink(missing_ok=True)  # no JPEG without its line: the bound counts lines
                continue
            out = self.pools[kind].put(Kept(info, record["id"], record), slot)
            if out is not None:
                self._drop(out)

    def _record(self, look: Mapping[str, Any], rec: Mapping[str, Any], box: Any, kind: str, margin: float,
                crossed: list[str], classes: list[str]) -> dict[str, Any]:
        frame = look.get("frame") or {}
        tile_id = f"{look.get('run_id', 'run')}_f{int(frame.get('seq', 0)):07d}_r{box.row}c{box.col}"
        names = classes if len(classes) == len(rec["scores"]) else [f"class_{i}" for i in range(len(rec["scores"]))]
        return {
            "schema": REVIEW_SCHEMA, "id": tile_id, "kind": kind, "informativeness": round(1.0 - margin, 5),
            "margin": margin, "label": rec["label"], "flagged": bool(rec["flagged"]),
            "scores": dict(zip(names, rec["scores"], strict=True)), "classes": names,
            "thresholds": {c: self.thresholds[c] for c in names if c in self.thresholds},
            "zones_crossed": crossed, "footprint": rec.get("footprint"),
            "pose": look.get("vehicle"), "trusted": bool(look.get("trusted")), "flags": list(look.get("flags") or []),
            "frame": {"seq": frame.get("seq"), "utc": frame.get("utc"), "t_wall": frame.get("t_wall")},
            "tile": {"x": box.x, "y": box.y, "w": box.w, "h": box.h, "row": box.row, "col": box.col},
            "model_sha256": look.get("model_sha256"), "run_id": look.get("run_id"),
            "image": f"{TILES_DIR}/{tile_id}.jpg",
        }

    def _drop(self, kept: Kept) -> None:
        self.replaced += 1
        try:
            (self.root / TILES_DIR / f"{kept.tile_id}.jpg").unlink(missing_ok=True)
        except OSError as err:
            log.warning("replaced review tile %s not deleted: %s", kept.tile_id, err)

    def on_snapshot(self) -> None:
        self.edges.refresh(self._zones())

    def kept(self) -> list[dict[str, Any]]:
        """The tiles kept now, most informative first."""
        recs = [k.record for pool in self.pools.values() for k in pool.items()]
        return sorted(recs, key=lambda r: (-float(r["informativeness"]), str(r["id"])))

    def on_close(self) -> None:
        self._jsonl.close()
        kept = self.kept()
        atomic_write_text(self.root / REVIEW_JSONL,
                          "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in kept))
        counts = {k: len(p.items()) for k, p in self.pools.items()}
        log.info("review: %d tiles kept for `payload review` (%s), %d replaced, %d skipped (disk low)",
                 len(kept), ", ".join(f"{k} {n}" for k, n in counts.items()), self.replaced, self.skipped_disk)
