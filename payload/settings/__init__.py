"""The config's sections that rooms below the sinks read, one module each, and `ConfigView`.

They sit low in the rooms (only core below them), so the room that reads a section imports it from
here without reaching up to `payload/config.py`, which assembles them into `PayloadConfig` (above the
sinks: a sink's own section lives in its module). A section a sink shares with another room
(`prescription:`, read by payload/grower/ too) or with other sinks (`sinks:`) stays here. They are
settings only: validation and the readable errors, no behaviour.
"""
