"""The runtime: tiling, the three-thread scheduler, statistics, geotagging, and the wiring (runner)."""
