"""Classifier backends: one small class per accelerator behind one interface (`Classifier`).

`registry.open_classifier` picks one from the config (auto / edgetpu / cpu) and logs exactly why;
`registry.cpu_fallback` says what takes over in flight.
"""

from payload.backends.base import Classifier, TFLiteClassifier
from payload.backends.registry import BACKEND_NAMES, cpu_fallback, open_classifier

__all__ = ["BACKEND_NAMES", "Classifier", "TFLiteClassifier", "cpu_fallback", "open_classifier"]
