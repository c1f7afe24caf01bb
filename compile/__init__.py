"""Workstation model build: data -> ResNet-50 -> int8 TFLite -> edgetpu_compiler -> model bundle.

Installed as the top-level package `compile` inside the project's own virtual environment only
(see README, "Installing"); importing this package must stay cheap and TensorFlow-free so that
`compile.synthetic` can be reused by the simulator.
"""
