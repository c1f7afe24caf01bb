"""Frames in: camera and folder sources, the capture thread that keeps the newest frame, JPEG checks."""
