"""Cut a frame into a grid of tiles at the model's input size.

The geometry is a pure function (no pixels) so it can be checked against hand-worked answers and
reused by the simulator and the geotagger (a tile's centre is the pixel that gets projected to the
ground). This is the only tile grid in the repository: the simulator's per-tile truth, the
mission, bench, soak and tile-evaluation tools all take their boxes from `grid()`, overlap included.
Cropping and resizing stay uint8 (cv2.resize INTER_AREA into a preallocated batch): no float maths
per pixel on the hot path.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from payload.types import TileBox


def tile_span(length: float, n: int, overlap: float) -> float:
    """The exact size of each of n equal spans covering `length` with fractional `overlap`.

    `grid` rounds it up to whole pixels; the simulator uses it unrounded for the ground a tile
    covers (texture scale, zone size).
    """
    return length / (n - (n - 1) * overlap)


def _spans(length: int, n: int, overlap: float) -> list[tuple[int, int]]:
    """(start, size) of n equal spans covering [0, length) with the given fractional overlap.

    The size is rounded up so that together the spans cover every pixel; the starts are spread
    evenly so that the first begins at 0 and the last ends exactly at `length`.
    """
    size = min(length, math.ceil(tile_span(length, n, overlap) - 1e-9))
    if n == 1:
        return [(0, size)]
    return [(round(i * (length - size) / (n - 1)), size) for i in range(n)]


def grid(width: int, height: int, rows: int, cols: int, overlap: float = 0.0) -> list[TileBox]:
    """Tile boxes of a `rows` x `cols` grid over a width x height frame, row by row.

    `overlap` is the fraction of a tile shared with its neighbour (0 = edge to edge). Tiles never
    extend past the frame and together cover all of it.
    """
    if width < 1 or height < 1:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    if rows < 1 or cols < 1:
        raise ValueError(f"rows and cols must be >= 1, got {rows}x{cols}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if cols > width or rows > height:
        raise ValueError(f"a {width}x{height} frame cannot hold {cols} columns x {rows} rows of tiles")
    xs = _spans(width, cols, overlap)
    ys = _spans(height, rows, overlap)
    return [TileBox(x, y, w, h, row=r, col=c) for r, (y, h) in enumerate(ys) for c, (x, w) in enumerate(xs)]


def staggered_grid(width: int, height: int, rows: int, cols: int, overlap: float = 0.0) -> list[TileBox]:
    """`grid`'s rows with cols - 1 columns of the same size, each centred on a seam of `grid`'s columns.

    A survey line flies the same cross-track tile positions frame after frame, so ground beside a
    patch can share a tile with the patch on every look and never be seen alone; alternating with
    this grid puts a tile edge through the middle of every `grid` tile, at fewer tiles per frame
    (docs/MAPS.md). With one column there is no seam: the grid itself.
    """
    base = grid(width, height, rows, cols, overlap)
    if cols == 1:
        return base
    xs = [(b.x, b.w) for b in base[:cols]]
    mids = [(min(width - w, round((x + xs[i + 1][0]) / 2)), w) for i, (x, w) in enumerate(xs[:-1])]
    ys = [(b.y, b.h) for b in base[::cols]]
    return [TileBox(x, y, w, h, row=r, col=c) for r, (y, h) in enumerate(ys) for c, (x, w) in enumerate(mids)]


class Tiler:
    """Crops and resizes a frame's tiles into a reused uint8 batch (N, H, W, 3).

    The grid is computed once per frame size; the output buffer is reused between frames, so the
    caller must be done with one batch before asking for the next (the inference worker is). With
    `stagger`, every second frame is cut by `staggered_grid` instead.
    """

    def __init__(self, rows: int, cols: int, overlap: float, input_size: tuple[int, int],
                 stagger: bool = False) -> None:
        self.rows, self.cols, self.overlap = rows, cols, overlap
        self.stagger = stagger
        self.input_h, self.input_w = input_size
        self._boxes: dict[tuple[int, int, bool], list[TileBox]] = {}
        self._out = np.empty((rows * cols, self.input_h, self.input_w, 3), dtype=np.uint8)
        self._frames = 0

    def boxes(self, width: int, height: int, staggered: bool = False) -> list[TileBox]:
        key = (width, height, staggered)
        if key not in self._boxes:
            cut = staggered_grid if staggered else grid
            self._boxes[key] = cut(width, height, self.rows, self.cols, self.overlap)
        return self._boxes[key]

    def tiles(self, pixels: np.ndarray) -> tuple[list[TileBox], np.ndarray]:
        """Return the boxes and the batch of tiles for an RGB uint8 (H, W, 3) frame."""
        h, w = pixels.shape[:2]
        staggered = self.stagger and self._frames % 2 == 1
        self._frames += 1
        boxes = self.boxes(w, h, staggered)
        out = self._out[:len(boxes)]
        size = (self.input_w, self.input_h)
        for i, b in enumerate(boxes):
            crop = pixels[b.y : b.y + b.h, b.x : b.x + b.w]
            if crop.shape[0] == self.input_h and crop.shape[1] == self.input_w:
                out[i] = crop
            else:
                cv2.resize(crop, size, dst=out[i], interpolation=cv2.INTER_AREA)
        return boxes, out


def resize_whole(pixels: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """One tile of the whole image at the model's input size (for `payload classify`)."""
    h, w = input_size
    return cv2.resize(pixels, (w, h), interpolation=cv2.INTER_AREA)[np.newaxis]
