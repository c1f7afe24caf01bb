"""Errors a person can act on.

Every failure that comes from the operator's input (a config file, a model bundle, a camera, a
telemetry link) is raised as a `UserError` whose message names the problem and the fix. The CLIs
print that message and exit with code 2 instead of showing a traceback from deep inside a library.
"""

from __future__ import annotations

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem with the operator's input, with a message that says how to fix it."""


class ConfigError(UserError):
    """A configuration file that is missing, unreadable or invalid."""


class BundleError(UserError):
    """A model bundle that is missing, corrupt, tampered with or of the wrong shape."""


class CameraError(UserError):
    """A camera or frame source that cannot be opened or read."""


class TelemetryError(UserError):
    """A telemetry link that cannot be opened or that gives unusable data."""


class UnreadableFrameError(ValueError):
    """A frame whose pixels cannot be turned into RGB uint8 (skipped and counted, never a user error)."""


class PrescriptionError(UserError):
    """A prescription that cannot be made as configured (a strict terminal's limit, an unknown class name):
    no prescription file is written."""
