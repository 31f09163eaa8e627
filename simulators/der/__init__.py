"""The one DER physics model every simulator front-end shares (pure, time-stepped, no I/O)."""

from simulators.der.curves import (
    DEFAULT_VOLT_VAR,
    DEFAULT_VOLT_WATT,
    DEFAULT_WATT_VAR,
    CurveError,
    FreqDroop,
    PowerFactor,
    Priority,
    VoltVarCurve,
    VoltWattCurve,
    WattVarCurve,
)
from simulators.der.model import (
    DerModel,
    EnterService,
    Grid,
    Measurement,
    Rating,
    RunState,
    Throttle,
)
from simulators.der.profile import ClearSky, Constant, Profile
from simulators.der.settings import TimedSetting

__all__ = [
    "DEFAULT_VOLT_VAR",
    "DEFAULT_VOLT_WATT",
    "DEFAULT_WATT_VAR",
    "ClearSky",
    "Constant",
    "CurveError",
    "DerModel",
    "EnterService",
    "FreqDroop",
    "Grid",
    "Measurement",
    "PowerFactor",
    "Priority",
    "Profile",
    "Rating",
    "RunState",
    "Throttle",
    "TimedSetting",
    "VoltVarCurve",
    "VoltWattCurve",
    "WattVarCurve",
]
