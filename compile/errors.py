"""Build errors an operator can act on (each message names the problem and the fix).

They subclass `payload.errors.UserError`, so every CLI of the product prints them the same way
and exits with code 2 instead of a traceback.
"""

from __future__ import annotations

from payload.errors import UserError


class BuildError(UserError):
    """A model build that cannot go on because of its inputs or environment."""


class DataError(BuildError):
    """A data folder or data set that is missing, empty or unreadable."""


class WeightsError(BuildError):
    """Backbone weights that cannot be had (offline) or do not fit the model."""


class QuantizationError(BuildError):
    """An int8 model that is not faithful enough to the float model to ship."""


class ModelCheckError(BuildError):
    """A .tflite file that cannot be read as a model."""


class CompilerError(BuildError):
    """edgetpu_compiler is missing, failed or timed out."""


class NothingMappedError(CompilerError):
    """edgetpu_compiler "succeeded" with 0 Edge TPU subgraphs: every op would run on the CPU."""


class CompilerNotFoundError(CompilerError):
    """edgetpu_compiler is not installed; the int8 bundle is still written."""
