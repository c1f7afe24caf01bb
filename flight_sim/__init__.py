"""Test bench: recorded or scripted flights as a live MAVLink vehicle, with a rendered camera."""
