"""Value noise, the one helper every compile generator draws its smooth textures with.

Uneven chlorophyll, soil moisture, light and the outline of a disease patch are all smooth random
fields; one helper keeps their statistics comparable across generators (issue 24 found two copies).
"""

from __future__ import annotations

from typing import Literal

import numpy as np


def smooth_noise(height: int, width: int, cell: float, rng: np.random.Generator,
                 interpolation: Literal["cubic", "smoothstep"] = "cubic") -> np.ndarray:
    """Value noise in about [-1, 1] with features `cell` pixels apart: a random grid, upsampled.

    `cubic` (OpenCV, float32, values clipped to +-1.2) is the fast one the generators that make
    thousands of images per build use. `smoothstep` (numpy, float64, bilinear with a smoothstep
    weight, no grid lines) is what `compile.synthetic` has always drawn: the simulator's painted
    field and every figure measured on it depend on those exact pixels, so it keeps them.
    Both draw the same random grid from `rng`. A `cell` below one pixel is one pixel (white noise).
    """
    cell = max(float(cell), 1.0)
    gh, gw = int(np.ceil(height / cell)) + 2, int(np.ceil(width / cell)) + 2
    grid = rng.uniform(-1.0, 1.0, size=(gh, gw))
    if interpolation == "cubic":
        import cv2

        g32 = grid.astype(np.float32)
        out_w, out_h = int(round(gw * cell)), int(round(gh * cell))
        if out_w * out_h <= 4 * height * width:
            big = cv2.resize(g32, (out_w, out_h), interpolation=cv2.INTER_CUBIC)[:height, :width]
        else:  # a cell far larger than the image: sample only the pixels asked for, not the whole grid
            sx, sy = gw / out_w, gh / out_h
            mx = np.broadcast_to(((np.arange(width, dtype=np.float32) + 0.5) * sx - 0.5)[None], (height, width))
            my = np.broadcast_to(((np.arange(height, dtype=np.float32) + 0.5) * sy - 0.5)[:, None], (height, width))
            big = cv2.remap(g32, np.ascontiguousarray(mx), np.ascontiguousarray(my), cv2.INTER_CUBIC,
                            borderMode=cv2.BORDER_REPLICATE)
        return np.clip(big, -1.2, 1.2)
    y = np.arange(height) / cell
    x = np.arange(width) / cell
    y0 = np.floor(y).astype(int)
    x0 = np.floor(x).astype(int)
    fy = (y - y0)[:, None]
    fx = (x - x0)[None, :]
    fy = fy * fy * (3 - 2 * fy)
    fx = fx * fx * (3 - 2 * fx)
    g00 = grid[np.ix_(y0, x0)]
    g01 = grid[np.ix_(y0, x0 + 1)]
    g10 = grid[np.ix_(y0 + 1, x0)]
    g11 = grid[np.ix_(y0 + 1, x0 + 1)]
    return (g00 * (1 - fx) + g01 * fx) * (1 - fy) + (g10 * (1 - fx) + g11 * fx) * fy
