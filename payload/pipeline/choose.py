"""Which of a frame's tiles the chip classifies when it cannot classify them all.

A Coral classifies a ResNet-50 tile in ~49 ms (docs/CORAL.md): a 3 x 4 grid at 5 frames a second
asks for 60 tiles a second, five times what one chip does. Dropping whole frames (the mailbox's
newest-frame rule) then leaves the ground under four frames in five unseen, wherever it lies.
Instead the scheduler asks how many tiles the chip can afford per frame (`tile_budget`, from the
frame interval and the measured time per tile) and, when that is fewer than the grid holds, ranks
the newest frame's tiles by what their ground is worth to the map (payload/geo/tilevalue.py:
unseen ground first, then undecided ground and zone edges, certain ground last) and classifies the
best. Tiles left out are never in the look, so the map never counts their ground as seen.

`MapTileChooser` places the frame's tiles as the geotagger will (the pose at the frame's time, the
same `frame_view`), without classifying them, and asks the map. It runs on the inference thread
while the writer thread updates the map: the grid's reads copy its chunk table first (one C-level
call under the GIL), and a value read half-way through an update only reorders a tile by a hair.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Protocol

import numpy as np

from payload.geo.frameview import frame_view
from payload.geo.looks import look_record
from payload.types import Frame, TileBox, TileResult

log = logging.getLogger(__name__)

CHIP_FILL = 0.9  # share of the frame interval the chip may spend, leaving slack for jitter and the writer
_NO_SCORES = np.zeros(0, dtype=np.float32)


class TileChooser(Protocol):
    """Ranks a frame's tiles before classification: higher is looked at first (None: no opinion)."""

    def values(self, frame: Frame, boxes: list[TileBox]) -> np.ndarray | None: ...


def tile_budget(frame_interval_s: float | None, tile_s: float | None, n_tiles: int,
                fill: float = CHIP_FILL) -> int:
    """Tiles the chip can classify per frame without falling behind the camera (all of them when unknown).

    `frame_interval_s` is the camera's (or the rate cap's) time between frames, `tile_s` the measured
    time per classified tile; at least one tile, so a frame is never classified for nothing.
    """
    if not frame_interval_s or not tile_s or tile_s <= 0 or not math.isfinite(frame_interval_s):
        return n_tiles
    return max(1, min(n_tiles, int(fill * frame_interval_s / tile_s)))


def choose(values: np.ndarray | None, n_tiles: int, budget: int, rotation: int) -> list[int]:
    """The `budget` tiles to classify, in grid order: the highest values, ties broken round-robin.

    `rotation` (e.g. the frame's sequence number) moves the tie-break across the grid from frame to
    frame, so tiles of equal worth (all unseen, or no map opinion at all) share the chip evenly.
    """
    if budget >= n_tiles:
        return list(range(n_tiles))
    order = (np.arange(n_tiles) - rotation * budget) % n_tiles
    v = np.zeros(n_tiles) if values is None else np.asarray(values, dtype=np.float64)
    ranked = np.lexsort((order, -v))  # by value descending, then the rotating order
    return sorted(int(i) for i in ranked[:budget])


class MapTileChooser:
    """Values of a frame's tiles from the geotagger's own view of the frame and its map."""

    def __init__(self, geotag: Any) -> None:
        """`geotag`: the GeotagHandler whose context, pose source and map the records will use."""
        self.geotag = geotag

    def values(self, frame: Frame, boxes: list[TileBox]) -> np.ndarray | None:
        g = self.geotag
        est = g._state_at(frame.t_mono)
        if est is None:
            return None
        try:
            view = frame_view(g.ctx, frame, est)
            look = look_record(view, [TileResult(b, _NO_SCORES, "", 0.0, False) for b in boxes])
            v = g.map.tile_values(look)
        except Exception:  # a ranking fault must never cost the frame: classify in grid order
            log.exception("ranking the frame's tiles failed; this frame's tiles go in grid order")
            return None
        return None if v is None else np.asarray(v, dtype=np.float64)
