"""The DER physics every simulator front-end shares: PV and/or battery, time-stepped. Pure.

One `DerModel` is one inverter. A front-end (SunSpec registers, 2030.5 client, ...) writes
its control settings, sets the grid voltage and frequency, and calls `step(dt)`; then reads
`measurement()`. SI units throughout (W, var, VA, V, Hz, Wh, s); signs are generator
convention: active power > 0 exports, reactive power > 0 injects (over-excited).

Why not EPRI OpenDER: it keeps its time step in a class attribute shared by every instance,
costs ~3.5 ms to build one DER (3.5 s for a 1,000-DER fleet) and pulls in matplotlib, while
the SunSpec-side behaviour (reversion timers, WSet, curve adoption) would still be ours.

Order of a step: reversion timers, enter-service/cease-to-energize, active-power target
(WSet, else available power; WMaxLimPct caps it), ramp, frequency-droop on top (it is not
held back by the ramp, as IEEE 1547 requires), the volt-watt cap, reactive power (volt-var >
watt-var > VarSet > constant PF), the VA limit by priority, then the battery's state of
charge and the energy counters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from typing import Any

from simulators.der.curves import (
    DEFAULT_VOLT_VAR,
    DEFAULT_VOLT_WATT,
    DEFAULT_WATT_VAR,
    FreqDroop,
    PowerFactor,
    Priority,
    VoltVarCurve,
    VoltWattCurve,
    WattVarCurve,
)
from simulators.der.profile import Constant, Profile
from simulators.der.settings import TimedSetting


class RunState(IntEnum):
    OFF = 0
    SLEEPING = 1  # PV with no sun and no battery to run on
    STARTING = 2  # waiting out the enter-service delay
    RUNNING = 3
    THROTTLED = 4


class Throttle(IntFlag):
    NONE = 0
    MAX_W = 1
    FIXED_W = 2
    FIXED_VAR = 4
    FIXED_PF = 8
    VOLT_VAR = 16
    FREQ_WATT = 32
    VOLT_WATT = 64
    WATT_VAR = 128


@dataclass(frozen=True, slots=True)
class Rating:
    w_max: float  # W, maximum export
    va_max: float = 0.0  # 0: same as w_max
    var_max: float = 0.0  # 0: 44 % of va_max (IEEE 1547 category B)
    v_nom: float = 240.0
    f_nom: float = 60.0
    pv: bool = True
    w_cha_max: float = 0.0  # W, battery charge rating; 0 with wh_max 0: no battery
    wh_max: float = 0.0  # Wh, battery energy
    soc_min_pct: float = 5.0
    soc_max_pct: float = 95.0

    def __post_init__(self) -> None:
        if self.w_max <= 0 or self.v_nom <= 0 or self.f_nom <= 0:
            raise ValueError("w_max, v_nom and f_nom must be > 0")
        if self.va_max <= 0:
            object.__setattr__(self, "va_max", self.w_max)
        if self.var_max <= 0:
            object.__setattr__(self, "var_max", 0.44 * self.va_max)

    @property
    def battery(self) -> bool:
        return self.wh_max > 0


@dataclass(frozen=True, slots=True)
class Grid:
    v: float
    f: float


@dataclass(frozen=True, slots=True)
class EnterService:
    """IEEE 1547 enter service: permitted, inside the voltage/frequency window, after a delay."""

    enabled: bool = True
    v_lo_pct: float = 91.7
    v_hi_pct: float = 105.0
    f_lo_hz: float = 59.5
    f_hi_hz: float = 60.1
    delay_s: float = 0.0
    ramp_s: float = 0.0  # 0: the normal ramp rate

    def window_ok(self, grid: Grid, rating: Rating) -> bool:
        v_pct = 100.0 * grid.v / rating.v_nom
        return self.v_lo_pct <= v_pct <= self.v_hi_pct and self.f_lo_hz <= grid.f <= self.f_hi_hz


@dataclass(frozen=True, slots=True)
class Measurement:
    w: float
    var: float
    va: float
    pf: float  # |P|/S, negative when absorbing vars
    a: float
    v: float
    hz: float
    available_w: float
    soc_pct: float | None
    connected: bool
    state: RunState
    throttle: Throttle
    throttle_pct: float  # how far below its natural output the DER is held, % of w_max
    wh_inj: float
    wh_abs: float
    varh_inj: float
    varh_abs: float


def _first_order(value: float, target: float, dt: float, response_s: float) -> float:
    """Move toward `target` so that 90 % of a step is done after `response_s`."""
    if response_s <= 0.0:
        return target
    return value + (target - value) * (1.0 - math.exp(-dt * 2.303 / response_s))


@dataclass
class DerModel:
    rating: Rating
    profile: Profile = field(default_factory=Constant)
    soc_pct: float = 50.0
    clock_s: float = 12 * 3600.0  # time of day, for the profile
    ramp_pct_s: float = 20.0  # WRmp: % of w_max per second; 0 = no ramp limit
    enter_service: EnterService = field(default_factory=EnterService)
    grid: Grid | None = None
    # controls, each with its reversion timer
    w_max_lim: TimedSetting[float] = field(default_factory=lambda: TimedSetting(1.0, 1.0))
    w_set: TimedSetting[float] = field(default_factory=lambda: TimedSetting(0.0, 0.0))
    var_set: TimedSetting[float] = field(default_factory=lambda: TimedSetting(0.0, 0.0))
    pf_inj: TimedSetting[PowerFactor] = field(
        default_factory=lambda: TimedSetting(PowerFactor(1.0), PowerFactor(1.0)))
    pf_abs: TimedSetting[PowerFactor] = field(
        default_factory=lambda: TimedSetting(PowerFactor(1.0), PowerFactor(1.0)))
    volt_var: TimedSetting[VoltVarCurve] = field(
        default_factory=lambda: TimedSetting(DEFAULT_VOLT_VAR, DEFAULT_VOLT_VAR))
    freq_watt: TimedSetting[FreqDroop] = field(
        default_factory=lambda: TimedSetting(FreqDroop(), FreqDroop()))
    volt_watt: TimedSetting[VoltWattCurve] = field(
        default_factory=lambda: TimedSetting(DEFAULT_VOLT_WATT, DEFAULT_VOLT_WATT))
    watt_var: TimedSetting[WattVarCurve] = field(
        default_factory=lambda: TimedSetting(DEFAULT_WATT_VAR, DEFAULT_WATT_VAR))

    def __post_init__(self) -> None:
        if self.grid is None:
            self.grid = Grid(self.rating.v_nom, self.rating.f_nom)
        self.connected = self.enter_service.enabled and self.enter_service.delay_s <= 0
        self._es_remaining = self.enter_service.delay_s
        self._es_seen = self.enter_service
        self._soft_start = False
        self._p_sched = 0.0  # ramped setpoint, before frequency-droop
        self._droop_w = 0.0
        self._vw_pct = 100.0  # the volt-watt cap after its response time
        self._q = 0.0
        self._p = 0.0
        self._available = 0.0
        self._throttle = Throttle.NONE
        self._energy = [0.0, 0.0, 0.0, 0.0]  # Wh inj, Wh abs, varh inj, varh abs

    @property
    def enter_service_remaining_s(self) -> float:
        """Seconds of the enter-service delay still to wait (0 once connected)."""
        return 0.0 if self.connected else max(0.0, self._es_remaining)

    # -- the step ------------------------------------------------------------------------

    def timed_settings(self) -> tuple[TimedSetting[Any], ...]:
        return (self.w_max_lim, self.w_set, self.var_set, self.pf_inj, self.pf_abs,
                self.volt_var, self.freq_watt, self.volt_watt, self.watt_var)

    def step(self, dt: float) -> None:
        if dt <= 0:
            raise ValueError("dt must be > 0")
        self.clock_s += dt
        for setting in self.timed_settings():
            setting.tick(dt)
        self._update_connection(dt)
        pv = self.rating.w_max * self.profile.available_pu(self.clock_s) if self.rating.pv else 0.0
        p_lo, p_hi = self._bounds(pv)
        target, throttle = self._active_target(pv, p_lo, p_hi)
        self._p_sched = self._ramp(self._p_sched, target, dt)
        p, droop = self._droop(self._p_sched, p_lo, p_hi, dt)
        p, volt_watt = self._volt_watt(p, p_lo, p_hi, dt)
        q, var_mode = self._reactive(p, dt)
        p, q = self._va_limit(p, q)
        self._battery(p, pv, dt)
        self._count_energy(p, q, dt)
        self._p, self._q = p, q
        self._available = p_hi if self.rating.battery else min(pv, self.rating.w_max)
        self._throttle = throttle | droop | volt_watt | var_mode

    def _update_connection(self, dt: float) -> None:
        es = self.enter_service
        assert self.grid is not None
        if es is not self._es_seen:  # new settings: the delay counts from now
            self._es_seen, self._es_remaining = es, es.delay_s
        if not es.enabled:
            self.connected, self._es_remaining = False, es.delay_s
            self._p_sched = self._droop_w = 0.0
        elif not self.connected:
            if es.window_ok(self.grid, self.rating):
                self._es_remaining -= dt
                if self._es_remaining <= 0:
                    self.connected, self._soft_start = True, es.ramp_s > 0
            else:
                self._es_remaining = es.delay_s

    def _bounds(self, pv: float) -> tuple[float, float]:
        r = self.rating
        if not r.battery:
            return 0.0, min(pv, r.w_max)
        discharge = r.w_max if self.soc_pct > r.soc_min_pct else 0.0
        charge = (r.w_cha_max or r.w_max) if self.soc_pct < r.soc_max_pct else 0.0
        return -charge, min(pv + discharge, r.w_max)

    def _active_target(self, pv: float, p_lo: float, p_hi: float) -> tuple[float, Throttle]:
        if not self.connected:
            return 0.0, Throttle.NONE
        natural = min(pv, p_hi)
        throttle = Throttle.NONE
        target = natural
        if self.w_set.enabled:
            target = min(max(self.w_set.value, p_lo), p_hi)
            throttle |= Throttle.FIXED_W
        cap = self.w_max_lim.value * self.rating.w_max if self.w_max_lim.enabled else math.inf
        if target > cap:
            target = cap
            throttle |= Throttle.MAX_W
        return target, throttle

    def _ramp(self, current: float, target: float, dt: float) -> float:
        if self._soft_start:
            rate = self.rating.w_max / self.enter_service.ramp_s
        elif self.ramp_pct_s > 0:
            rate = self.ramp_pct_s / 100.0 * self.rating.w_max
        else:
            return target
        step = rate * dt
        if abs(target - current) > step:
            return current + math.copysign(step, target - current)
        self._soft_start = False
        return target

    def _droop(self, p: float, p_lo: float, p_hi: float, dt: float) -> tuple[float, Throttle]:
        if not (self.connected and self.freq_watt.enabled):
            self._droop_w = 0.0
            return p, Throttle.NONE
        droop = self.freq_watt.value
        assert self.grid is not None
        delta = droop.delta_pu(self.grid.f, self.rating.f_nom) * self.rating.w_max
        if delta < 0:  # over-frequency: reduce, but not below PMin (nor raise a lower output)
            floor = droop.p_min_pct / 100.0 * self.rating.w_max
            delta = max(delta, min(0.0, floor - p))
        else:  # under-frequency: raise within what is available
            delta = min(delta, max(0.0, p_hi - p))
        self._droop_w = _first_order(self._droop_w, delta, dt, droop.response_s)
        out = min(max(p + self._droop_w, p_lo), p_hi)
        return out, (Throttle.FREQ_WATT if abs(self._droop_w) > 1e-6 else Throttle.NONE)

    def _volt_watt(self, p: float, p_lo: float, p_hi: float, dt: float
                   ) -> tuple[float, Throttle]:
        """Cap active power by the volt-watt curve at the grid voltage (first-order)."""
        if not (self.connected and self.volt_watt.enabled):
            self._vw_pct = 100.0
            return p, Throttle.NONE
        curve = self.volt_watt.value
        assert self.grid is not None
        target = curve.w_pct(100.0 * self.grid.v / self.rating.v_nom)
        self._vw_pct = _first_order(self._vw_pct, target, dt, curve.response_s)
        base = p_hi if curve.of_available else self.rating.w_max
        cap = max(self._vw_pct / 100.0 * base, p_lo)
        if p <= cap:
            return p, Throttle.NONE
        return cap, Throttle.VOLT_WATT

    def _reactive(self, p: float, dt: float) -> tuple[float, Throttle]:
        assert self.grid is not None
        if not self.connected:
            self._q = 0.0
            return 0.0, Throttle.NONE
        var_max = self.rating.var_max
        if self.volt_var.enabled:
            curve = self.volt_var.value
            target = curve.var_pct(100.0 * self.grid.v / self.rating.v_nom) / 100.0 * var_max
            q, mode = _first_order(self._q, target, dt, curve.response_s), Throttle.VOLT_VAR
        elif self.watt_var.enabled:
            w_pct = 100.0 * p / self.rating.w_max
            q, mode = self.watt_var.value.var_pct(w_pct) / 100.0 * var_max, Throttle.WATT_VAR
        elif self.var_set.enabled:
            q, mode = self.var_set.value, Throttle.FIXED_VAR
        elif p >= 0 and self.pf_inj.enabled:
            q, mode = self.pf_inj.value.var_for(p), Throttle.FIXED_PF
        elif p < 0 and self.pf_abs.enabled:
            q, mode = self.pf_abs.value.var_for(p), Throttle.FIXED_PF
        else:
            q, mode = 0.0, Throttle.NONE
        self._q = min(max(q, -var_max), var_max)
        return self._q, mode

    def _va_limit(self, p: float, q: float) -> tuple[float, float]:
        va_max = self.rating.va_max
        if math.hypot(p, q) <= va_max:
            return p, q
        curve = self.volt_var.value
        if not self.volt_var.enabled or curve.priority == Priority.REACTIVE:
            q = math.copysign(min(abs(q), va_max), q)
            return math.copysign(math.sqrt(va_max**2 - q**2), p), q
        p = math.copysign(min(abs(p), va_max), p)
        return p, math.copysign(math.sqrt(va_max**2 - p**2), q)

    def _battery(self, p: float, pv: float, dt: float) -> None:
        r = self.rating
        if not r.battery:
            return
        p_bat = p - pv  # > 0 discharges; surplus PV beyond the charge rating is curtailed
        p_bat = max(p_bat, -(r.w_cha_max or r.w_max))
        if p_bat < 0:
            p_bat *= 0.95  # charging losses
        self.soc_pct = min(100.0, max(0.0, self.soc_pct - p_bat * dt / 3600.0 / r.wh_max * 100.0))

    def _count_energy(self, p: float, q: float, dt: float) -> None:
        hours = dt / 3600.0
        self._energy[0] += max(p, 0.0) * hours
        self._energy[1] += max(-p, 0.0) * hours
        self._energy[2] += max(q, 0.0) * hours
        self._energy[3] += max(-q, 0.0) * hours

    # -- what a meter sees -------------------------------------------------------------------

    def measurement(self) -> Measurement:
        assert self.grid is not None
        p, q = self._p, self._q
        va = math.hypot(p, q)
        pf = abs(p) / va if va > 0 else 1.0
        natural = min(self._available, self.rating.w_max)
        return Measurement(
            w=p, var=q, va=va, pf=-pf if q < 0 else pf, a=va / self.grid.v if self.grid.v else 0.0,
            v=self.grid.v, hz=self.grid.f, available_w=self._available,
            soc_pct=self.soc_pct if self.rating.battery else None,
            connected=self.connected, state=self._run_state(), throttle=self._throttle,
            throttle_pct=max(0.0, 100.0 * (natural - p) / self.rating.w_max)
            if self._throttle else 0.0,
            wh_inj=self._energy[0], wh_abs=self._energy[1],
            varh_inj=self._energy[2], varh_abs=self._energy[3],
        )

    def _run_state(self) -> RunState:
        if not self.enter_service.enabled:
            return RunState.OFF
        if not self.connected:
            return RunState.STARTING
        if self._throttle & (Throttle.MAX_W | Throttle.FIXED_W | Throttle.FREQ_WATT
                             | Throttle.VOLT_WATT):
            return RunState.THROTTLED
        if self._available <= 0 and not self.rating.battery:
            return RunState.SLEEPING
        return RunState.RUNNING
