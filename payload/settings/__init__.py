"""The config's sections that one part of the payload reads, one module each.

They sit low in the rooms (only core below them), so the room that reads a section imports it from
here without reaching up to `payload/config.py`, which assembles them into `PayloadConfig`. They are
settings only: validation and the readable errors, no behaviour.
"""
