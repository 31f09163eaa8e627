"""IEEE 1547-2018 volt-watt: an active-power cap that falls as the terminal voltage rises.

The shared DER model's own volt-watt (simulators.der, set through SunSpec 706) is off unless
a controller enables it, so the feeder's front ends apply this fixed cap on top of whatever
export cap the gateway instructed (with both on, the lower cap wins). Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulators.der.curves import CurveError


@dataclass(frozen=True, slots=True)
class VoltWatt:
    """Cap in per unit of rated power: 1 up to `v1_pu`, falling linearly to `p2_pu` at `v2_pu`.

    Defaults are IEEE 1547-2018 category B: V1 1.06 pu, V2 1.10 pu, P2 0.2 pu.
    """

    v1_pu: float = 1.06
    v2_pu: float = 1.10
    p2_pu: float = 0.2

    def __post_init__(self) -> None:
        if not 1.0 <= self.v1_pu < self.v2_pu <= 1.2:
            raise CurveError("volt-watt needs 1.0 <= V1 < V2 <= 1.2 pu")
        if not 0.0 <= self.p2_pu <= 1.0:
            raise CurveError("volt-watt P2 must lie within 0..1 pu")

    def cap_pu(self, v_pu: float) -> float:
        if v_pu <= self.v1_pu:
            return 1.0
        if v_pu >= self.v2_pu:
            return self.p2_pu
        share = (v_pu - self.v1_pu) / (self.v2_pu - self.v1_pu)
        return 1.0 - share * (1.0 - self.p2_pu)
