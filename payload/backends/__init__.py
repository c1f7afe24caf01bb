"""Classifier backends: one small class per accelerator behind one interface (`Classifier`).

`open_classifier` picks one from the config (auto / edgetpu / cpu) and logs exactly why.
"""

from payload.backends.base import Classifier, TFLiteClassifier
from payload.backends.select import open_classifier

__all__ = ["Classifier", "TFLiteClassifier", "open_classifier"]
