"""On-board payload for the drone's companion computer.

Frames -> classifier (Edge TPU or CPU TFLite) -> pose at frame time -> ground point -> sinks.
Nothing here may import TensorFlow: the drone installs only the TFLite runtime.
"""

__version__ = "0.1.0"
