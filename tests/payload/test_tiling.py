"""Tiling geometry against hand-worked answers, and crops that stay uint8 and match cv2.resize."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from payload.pipeline.tiling import Tiler, grid, resize_whole, staggered_grid


def boxes(*args: float) -> list[tuple[int, int, int, int]]:
    return [(b.x, b.y, b.w, b.h) for b in grid(*args)]  # type: ignore[arg-type]


def test_edge_to_edge_grid() -> None:
    got = grid(400, 300, 3, 4)
    assert [(b.row, b.col) for b in got[:5]] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0)]
    assert boxes(400, 300, 3, 4) == [(x, y, 100, 100) for y in (0, 100, 200) for x in (0, 100, 200, 300)]


def test_half_overlap() -> None:
    # 3 columns sharing half a tile over 400 px: tile = 400 / (3 - 2 * 0.5) = 200, step 100
    assert boxes(400, 100, 1, 3, 0.5) == [(0, 0, 200, 100), (100, 0, 200, 100), (200, 0, 200, 100)]
    # 2 x 2 with 25 % overlap on 700 x 350: w = ceil(700 / 1.75) = 400, h = 200; last ends at the edge
    assert boxes(700, 350, 2, 2, 0.25) == [(0, 0, 400, 200), (300, 0, 400, 200), (0, 150, 400, 200),
                                           (300, 150, 400, 200)]


def test_odd_sizes_still_cover_every_pixel() -> None:
    # 401 px in 2 columns: 201 px tiles at 0 and 200 (one shared column rather than a lost one)
    assert boxes(401, 3, 1, 2) == [(0, 0, 201, 3), (200, 0, 201, 3)]
    assert boxes(7, 5, 1, 1) == [(0, 0, 7, 5)]
    assert boxes(5, 1, 1, 5) == [(i, 0, 1, 1) for i in range(5)]


@pytest.mark.parametrize("w,h,rows,cols,overlap", [(641, 479, 3, 4, 0.0), (1920, 1080, 5, 7, 0.3), (33, 17, 2, 3, 0.6),
                                                   (100, 100, 10, 10, 0.0), (1000, 10, 1, 9, 0.89)])
def test_tiles_cover_the_frame_and_stay_inside(w: int, h: int, rows: int, cols: int, overlap: float) -> None:
    got = grid(w, h, rows, cols, overlap)
    assert len(got) == rows * cols
    cover = np.zeros((h, w), np.int32)
    for b in got:
        assert 0 <= b.x and b.x + b.w <= w and 0 <= b.y and b.y + b.h <= h
        cover[b.y : b.y + b.h, b.x : b.x + b.w] += 1
    assert cover.min() >= 1
    assert {b.w for b in got} == {got[0].w} and {b.h for b in got} == {got[0].h}
    assert got[-1].x + got[-1].w == w and got[-1].y + got[-1].h == h


def test_bad_grids() -> None:
    with pytest.raises(ValueError, match="cannot hold"):
        grid(3, 3, 1, 4)
    with pytest.raises(ValueError, match="overlap"):
        grid(10, 10, 1, 2, 1.0)
    with pytest.raises(ValueError, match="positive"):
        grid(0, 10, 1, 1)


def test_tiler_matches_cv2_inter_area_and_stays_uint8() -> None:
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (101, 77, 3), dtype=np.uint8)
    tiler = Tiler(2, 2, 0.0, (32, 32))
    got_boxes, batch = tiler.tiles(frame)
    assert batch.dtype == np.uint8 and batch.shape == (4, 32, 32, 3)
    for b, tile in zip(got_boxes, batch, strict=True):
        want = cv2.resize(frame[b.y : b.y + b.h, b.x : b.x + b.w], (32, 32), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(tile, want)
    # a tile already at the input size is copied as is
    exact = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    _, batch = tiler.tiles(exact)
    np.testing.assert_array_equal(batch[3], exact[32:, 32:])


def test_resize_whole() -> None:
    out = resize_whole(np.full((10, 20, 3), 7, np.uint8), (32, 32))
    assert out.shape == (1, 32, 32, 3) and out.dtype == np.uint8 and (out == 7).all()


def test_staggered_grid_centres_columns_on_the_seams() -> None:
    boxes = staggered_grid(640, 480, 3, 4)
    assert [(b.x, b.w) for b in boxes[:3]] == [(80, 160), (240, 160), (400, 160)]
    assert [(b.y, b.h) for b in boxes[::3]] == [(0, 160), (160, 160), (320, 160)]
    assert [(b.row, b.col) for b in boxes[:4]] == [(0, 0), (0, 1), (0, 2), (1, 0)]
    assert staggered_grid(640, 480, 3, 1) == grid(640, 480, 3, 1)
    for b in staggered_grid(641, 479, 2, 5, overlap=0.2):  # odd sizes, overlap: still inside the frame
        assert 0 <= b.x and b.x + b.w <= 641 and 0 <= b.y and b.y + b.h <= 479


def test_tiler_alternates_the_grids_only_when_staggered() -> None:
    frame = np.zeros((480, 640, 3), np.uint8)
    t = Tiler(3, 4, 0.0, (32, 32), stagger=True)
    sizes = [len(t.tiles(frame)[0]) for _ in range(4)]
    assert sizes == [12, 9, 12, 9]
    boxes, batch = t.tiles(frame)
    assert len(boxes) == 12 and batch.shape == (12, 32, 32, 3)
    boxes, batch = t.tiles(frame)
    assert batch.shape[0] == 9 and boxes[0].x == 80
    plain = Tiler(3, 4, 0.0, (32, 32))
    assert [len(plain.tiles(frame)[0]) for _ in range(3)] == [12, 12, 12]
