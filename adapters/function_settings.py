"""The canonical IEEE 1547 function settings, read the same way by every adapter. Pure.

`EffectiveControl.function_settings` is one document of standing settings. What its keys
mean does not depend on the protocol that carries them; each adapter renders what its
protocol can express and refuses the rest (cannot_comply, with the reason). This module
holds the parts of that meaning more than one adapter needs: which y-axis references each
curve may use (2030.5 DERUnitRefType, the vocabulary of the platform), the default one, and
where the normal ramp rate `set_grad_w` is read from.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

# 2030.5 DERUnitRefType: what a curve's y values are a percentage of.
UNIT_REFS = MappingProxyType({
    0: "N/A", 1: "%setMaxW", 2: "%setMaxVar", 3: "%statVarAvail", 4: "%setEffectiveV",
    5: "%setMaxChargeRateW", 6: "%setMaxDischargeRateW", 7: "%statWAvail",
})
# Curve key -> the references its y axis may use (IEEE 2030.5 DERControlBase: volt-var and
# watt-var y "must be one of %setMaxW, %setMaxVar, or %statVarAvail", volt-watt y one of
# %setMaxW or %statWAvail, freq-watt y is %setMaxW); watt_pf y is a power factor.
Y_REFS: Mapping[str, tuple[int, ...]] = MappingProxyType({
    "volt_var": (1, 2, 3), "volt_watt": (1, 7), "watt_var": (1, 2, 3), "freq_watt": (1,),
    "watt_pf": tuple(UNIT_REFS),
})
# `<curve>_y_ref` absent: volt-var vars are % of the maximum reactive power (as the SunSpec
# adapter always rendered them); every other curve's y is % of the maximum active power.
DEFAULT_Y_REF: Mapping[str, int] = MappingProxyType({
    "volt_var": 2, "volt_watt": 1, "watt_var": 1, "freq_watt": 1, "watt_pf": 1,
})
# Settings also accepted in the default-control document (where 2030.5 carries setGradW);
# the function settings win when both carry one.
FROM_DEFAULT_CONTROL = ("set_grad_w",)


class InvalidSetting(ValueError):
    """A function setting that means nothing on any protocol; the message says why."""


def y_ref(settings: Mapping[str, Any], curve: str) -> int:
    """The DERUnitRefType of `curve`'s y axis: `<curve>_y_ref`, else the curve's default."""
    key = f"{curve}_y_ref"
    value = settings.get(key)
    if value is None:
        return DEFAULT_Y_REF[curve]
    allowed = Y_REFS[curve]
    if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
        known = ", ".join(f"{ref} ({UNIT_REFS[ref]})" for ref in allowed)
        raise InvalidSetting(f"{key} {value!r} is not a y reference of a {curve} curve; "
                             f"it can be {known}")
    return value


def with_default_control(functions: Mapping[str, Any] | None,
                         default: Mapping[str, Any] | None) -> tuple[dict[str, Any], bool]:
    """The function settings with the keys of `FROM_DEFAULT_CONTROL` the default control
    carries and they do not; and whether any was taken from there."""
    merged = dict(functions or {})
    taken = False
    for key in FROM_DEFAULT_CONTROL:
        if merged.get(key) is None and (default or {}).get(key) is not None:
            merged[key] = (default or {})[key]
            taken = True
    return merged, taken
