"""What one power-flow solve says about the feeder: the voltage band and the loading."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class FeederReport:
    converged: bool
    v_min_pu: float
    v_max_pu: float
    v_min_bus: str
    v_max_bus: str
    band: tuple[float, float]
    line_loading_max_pct: float
    trafo_loading_max_pct: float
    der_p_w: float  # total simulated-DER active power injected (after der_scale)
    der_q_var: float
    frequency_hz: float
    bus_v_pu: dict[str, float] = field(default_factory=dict)  # buses hosting DERs

    @property
    def out_of_band(self) -> list[str]:
        lo, hi = self.band
        return sorted(b for b, v in self.bus_v_pu.items() if not lo <= v <= hi)

    @property
    def in_band(self) -> bool:
        lo, hi = self.band
        return self.converged and lo <= self.v_min_pu and self.v_max_pu <= hi

    def line(self) -> str:
        """One console line."""
        if not self.converged:
            return "feeder: power flow did not converge"
        flag = "in band" if self.in_band else f"OUT OF BAND at {', '.join(self.out_of_band[:4])}"
        return (f"feeder V {self.v_min_pu:.3f}..{self.v_max_pu:.3f} pu "
                f"[{self.band[0]:.2f}, {self.band[1]:.2f}] {flag}; "
                f"lines <= {self.line_loading_max_pct:.0f} %, "
                f"trafos <= {self.trafo_loading_max_pct:.0f} %; "
                f"DERs {self.der_p_w / 1e3:.1f} kW, {self.frequency_hz:.2f} Hz")
