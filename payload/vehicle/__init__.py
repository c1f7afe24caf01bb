"""The vehicle link: MAVLink telemetry (a PoseSource), pose interpolation at a frame's time, signing."""
