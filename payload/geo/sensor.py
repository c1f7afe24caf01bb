"""The inverse sensor model of the evidence grid: what one tile's call says about a cell under it.

A tile's classification is a wide-beam measurement: it speaks for its whole ground footprint, not
for a point. For each cell under the footprint the grid adds, per disease class k, the log
likelihood ratio

    llr[call][k] = log P(call | the cell is k) - log P(call | the cell is healthy)

where `call` is the tile's decision (a flagged disease label, or the healthy class when nothing
was flagged: the same rule as `payload.bundle.decide`). Summing over looks gives a per-cell
posterior over {healthy, disease_1, ...} (payload/geo/grid.py), so the same ground is not called
both rust and mildew unless the evidence says so: a mildew cell collects mildew evidence far
faster than the occasional rust call can raise rust.

The table comes from the model card (`sensor_model`, written by compile/sensor.py from the
build's validation split); a card without one gets `default_sensor_model`, whose numbers were
measured to localise patches on the simulator's fields (docs/MAPS.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

SENSOR_SCHEMA = "cropscout.sensor/1"

# The documented default: a tile called disease k adds +1.0 to k under its footprint; a tile that
# called nothing takes 0.4 away from every disease; a call of another disease says nothing about k.
DEFAULT_HIT_LLR = 1.0
DEFAULT_MISS_LLR = -0.4
DEFAULT_CROSS_LLR = 0.0


class SensorModelError(ValueError):
    """A model card's sensor_model block is malformed."""


@dataclass(frozen=True)
class SensorModel:
    """Per-call evidence vectors over the disease classes (log-likelihood ratios against healthy)."""

    healthy: str
    diseases: tuple[str, ...]
    llr: Mapping[str, tuple[float, ...]]  # call -> one value per disease class, in `diseases` order
    source: str = "default"

    def call_of(self, label: str, flagged: bool) -> str:
        """The call a tile made: its label when flagged, else healthy (nothing was called)."""
        return label if flagged else self.healthy

    def evidence(self, label: str, flagged: bool) -> np.ndarray:
        """The evidence vector (len(diseases),) a tile adds to each cell it covers fully."""
        row = self.llr.get(self.call_of(label, flagged))
        if row is None:  # a label this model does not know: no evidence rather than a guess
            return np.zeros(len(self.diseases), dtype=np.float64)
        return np.asarray(row, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """The card's `sensor_model` block."""
        return {
            "schema": SENSOR_SCHEMA,
            "source": self.source,
            "healthy": self.healthy,
            "diseases": list(self.diseases),
            "llr": {call: [round(float(v), 5) for v in row] for call, row in self.llr.items()},
        }


def default_sensor_model(healthy: str, diseases: Sequence[str]) -> SensorModel:
    """The documented default table (hit +1.0, miss -0.4, cross 0.0) for a card without a calibration."""
    d = tuple(diseases)
    llr: dict[str, tuple[float, ...]] = {healthy: tuple(DEFAULT_MISS_LLR for _ in d)}
    for c in d:
        llr[c] = tuple(DEFAULT_HIT_LLR if k == c else DEFAULT_CROSS_LLR for k in d)
    return SensorModel(healthy, d, llr, "default")


def sensor_model_from_dict(block: Mapping[str, Any], healthy: str, diseases: Sequence[str]) -> SensorModel:
    """A card's `sensor_model` block, checked against the card's classes (SensorModelError says what is wrong)."""
    if block.get("schema") != SENSOR_SCHEMA:
        raise SensorModelError(f"sensor_model.schema is {block.get('schema')!r}, this payload reads {SENSOR_SCHEMA!r}")
    d = tuple(diseases)
    if list(block.get("diseases", [])) != list(d):
        raise SensorModelError(f"sensor_model.diseases {block.get('diseases')!r} must be the card's disease "
                               f"classes {list(d)}")
    table = block.get("llr")
    if not isinstance(table, Mapping):
        raise SensorModelError("sensor_model.llr must map each call to one number per disease class")
    llr: dict[str, tuple[float, ...]] = {}
    for call in (healthy, *d):
        row = table.get(call)
        if row is None or len(row) != len(d) or not all(isinstance(v, int | float) and math.isfinite(v) for v in row):
            raise SensorModelError(f"sensor_model.llr[{call!r}] must be {len(d)} finite numbers, got {row!r}")
        llr[call] = tuple(float(v) for v in row)
    return SensorModel(healthy, d, llr, str(block.get("source", "card")))


def sensor_model_for_card(card: Any) -> SensorModel:
    """The card's calibrated sensor model, or the documented default when the card has none."""
    block = getattr(card, "sensor_model", None)
    if block is None:
        extra = getattr(card, "model_extra", None) or {}
        block = extra.get("sensor_model")
    if block is None:
        return default_sensor_model(card.healthy_class, card.disease_classes)
    return sensor_model_from_dict(block, card.healthy_class, card.disease_classes)
