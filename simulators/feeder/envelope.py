"""The shared DER model behind a control envelope, as a 2030.5 client or a VEN drives it.

Front ends that speak in limits and setpoints (2030.5 DERControls, OpenADR events) set an
`Envelope`; `ControlledDer` turns it into the DER model's own settings each step, together
with volt-watt (the model has volt-var but no volt-watt), so that the cap a DER obeys is the
most restrictive of what it was told and what its terminal voltage allows. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulators.der import DerModel, EnterService, FreqDroop, Measurement
from simulators.feeder.voltwatt import VoltWatt


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the DER has been told, in W (generator convention: export > 0)."""

    export_max_w: float | None = None
    import_max_w: float | None = None
    setpoint_w: float | None = None
    connected: bool = True
    freq_droop: FreqDroop | None = None  # None: the DER's own frequency-droop setting
    # Standing settings: once told they stay (None: the DER keeps what it has).
    ramp_pct_s: float | None = None  # normal ramp rate, % of w_max per second; 0: no limit
    soft_start_s: float | None = None  # enter service: zero to full output; 0: normal ramp


class ControlledDer:
    def __init__(self, model: DerModel, volt_watt: VoltWatt | None = None) -> None:
        self.model = model
        self.volt_watt = volt_watt
        self.envelope = Envelope()
        self._droop_told = False
        self._push()

    def apply(self, envelope: Envelope) -> None:
        self.envelope = envelope
        self._push()

    def step(self, dt: float) -> None:
        self._push()  # volt-watt follows the voltage the feeder last wrote
        self.model.step(dt)

    def measurement(self) -> Measurement:
        return self.model.measurement()

    def _cap_pu(self) -> float:
        rating, grid = self.model.rating, self.model.grid
        cap = 1.0
        if self.envelope.export_max_w is not None:
            cap = min(cap, max(0.0, self.envelope.export_max_w) / rating.w_max)
        if self.volt_watt is not None and grid is not None:
            cap = min(cap, self.volt_watt.cap_pu(grid.v / rating.v_nom))
        return cap

    def _push(self) -> None:
        env, model = self.envelope, self.model
        cap = self._cap_pu()
        if cap < 1.0 or model.w_max_lim.enabled:
            model.w_max_lim.write(value=cap, enabled=cap < 1.0)
        if env.setpoint_w is not None:
            setpoint = env.setpoint_w
            if env.import_max_w is not None:
                setpoint = max(setpoint, -env.import_max_w)
            model.w_set.write(value=setpoint, enabled=True)
        elif model.w_set.enabled:
            model.w_set.write(enabled=False)
        if env.ramp_pct_s is not None:
            model.ramp_pct_s = env.ramp_pct_s
        es = model.enter_service
        soft_start = es.ramp_s if env.soft_start_s is None else env.soft_start_s
        if env.connected != es.enabled or soft_start != es.ramp_s:
            model.enter_service = EnterService(enabled=env.connected, ramp_s=soft_start)
        self._push_droop(env.freq_droop)

    def _push_droop(self, droop: FreqDroop | None) -> None:
        """A told droop is adopted (only when it changes: a write restarts the timer); when
        no longer told, the DER falls back to its own (reversion) setting."""
        setting = self.model.freq_watt
        if droop is not None:
            if not setting.enabled or setting.value != droop:
                setting.write(value=droop, enabled=True)
            self._droop_told = True
        elif self._droop_told:
            setting.write(value=setting.revert_value, enabled=setting.revert_enabled)
            self._droop_told = False
