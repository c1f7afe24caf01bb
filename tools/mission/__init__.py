"""The whole mission: a simulated survey flown by the real payload, scored against the ground truth."""
