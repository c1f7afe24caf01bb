"""The quick mosaic's settings (`mosaic:`), read by payload/sinks/mosaic.py."""

from __future__ import annotations

from pydantic import Field

from payload.configio import StrictModel


class MosaicSection(StrictModel):
    """The quick mosaic: the flight's frames on flat ground (payload/geo/mosaic.py, sinks/mosaic.py; docs/MAPS.md)."""

    enabled: bool = Field(default=True,
                          description="write mosaic.tif, mosaic.png and mosaic.json at the end of the run")
    m_per_px: float = Field(default=0.15, ge=0.05, le=1.0,
                            description="ground size of a mosaic pixel (10-20 cm shows plants and patches; finer "
                            "costs memory and disk as the square)")
    every_n_frames: int = Field(default=3, ge=1, le=1000,
                                description="use every n-th trusted frame (at 5 fps and 5 m/s consecutive frames "
                                "overlap by over 95 %)")
    max_tiles_in_memory: int = Field(default=48, ge=4, le=4096,
                                     description="256x256 tiles kept in memory (256 KiB each); colder tiles wait on "
                                     "disk beside the outputs until the end of the run")
    png_max_px: int = Field(default=2048, ge=256, le=16384,
                            description="mosaic.png is the mosaic shrunk by a power of two to at most this many pixels "
                            "on its longer side")
