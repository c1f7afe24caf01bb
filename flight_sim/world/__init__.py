"""The simulator's physical world: crops, leaves, lesions and light at their real sizes (docs/WORLD.md).

Its own code (numpy; pydantic for the config sections): it imports nothing from compile/ (the
classifier's training side), and compile imports nothing from here.
"""

from flight_sim.world.config import STAGES, CropSection, LightSection, Stage
from flight_sim.world.light import apply_haze, decode, encode
from flight_sim.world.world import LABEL_OUTSIDE, Shaded, World

__all__ = ["LABEL_OUTSIDE", "STAGES", "CropSection", "LightSection", "Shaded", "Stage", "World", "apply_haze",
           "decode", "encode"]
