"""Where things are: coordinate frames, the camera's geometry, detections on the ground, the evidence grid, zones.

Pure computation (numpy, pymap3d): no I/O and no clocks, so the simulator renders with the same
code the payload inverts, and every function can be checked against hand-worked answers.
"""
