"""Available-power profiles: how much primary power (sun) a DER has at a time of day. Pure."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

DAY_S = 86_400.0


class Profile(Protocol):
    def available_pu(self, time_of_day_s: float) -> float:
        """Available primary power in per unit of the DER's w_max (0..1)."""
        ...


@dataclass(frozen=True, slots=True)
class Constant:
    pu: float = 1.0

    def available_pu(self, time_of_day_s: float) -> float:
        del time_of_day_s
        return self.pu


@dataclass(frozen=True, slots=True)
class ClearSky:
    """A half-sine between sunrise and sunset, peaking at `peak_pu`, with a seeded cloud ripple.

    The ripple is a deterministic sum of sines (no random state), so two DERs with different
    seeds differ while every run of the same DER is reproducible.
    """

    sunrise_s: float = 6 * 3600.0
    sunset_s: float = 20 * 3600.0
    peak_pu: float = 0.9
    cloud_depth: float = 0.15
    seed: int = 0

    def available_pu(self, time_of_day_s: float) -> float:
        tod = time_of_day_s % DAY_S
        if not self.sunrise_s < tod < self.sunset_s:
            return 0.0
        x = (tod - self.sunrise_s) / (self.sunset_s - self.sunrise_s)
        sun = self.peak_pu * math.sin(math.pi * x)
        phase = (self.seed * 0.618_034) % 1.0 * 2 * math.pi
        ripple = 0.5 + 0.25 * math.sin(tod / 97.0 + phase) + 0.25 * math.sin(tod / 23.0 + 2 * phase)
        return max(0.0, min(1.0, sun * (1.0 - self.cloud_depth * ripple)))
