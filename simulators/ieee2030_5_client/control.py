"""DERControlBase -> the envelope the shared DER model obeys. Pure.

Active powers are value x 10^multiplier W; opModFixedW and opModMaxLimW are hundredths of a
percent of the DER's rated power; opModFreqDroop dead bands are mHz, gains thousandths and
openLoopTms hundredths of a second. Elements an active event leaves out fall back to the
DefaultDERControl's (CSIP-AUS: the default control covers every mode no event sets). The
DefaultDERControl's setGradW and setSoftGradW (hundredths of a percent of setMaxW per
second, 0: no limit) update the DER's ramp settings and stay.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from adapters.ieee2030_5.codec import models as m
from simulators.der import CurveError, FreqDroop
from simulators.feeder.envelope import Envelope

log = logging.getLogger(__name__)
_MERGED = ("export_max_w", "import_max_w", "setpoint_w", "freq_droop", "ramp_pct_s",
           "soft_start_s")
FULL_OUTPUT_HUNDREDTHS = 10_000  # 100 % in hundredths of a percent


def _w(value: m.ActivePower | None) -> float | None:
    return None if value is None else value.value * 10.0 ** value.multiplier


def _lowest(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def freq_droop_of(wire: m.FreqDroopType | None) -> FreqDroop | None:
    """The DER's droop for an opModFreqDroop; one the DER refuses (out of its ranges) is
    logged and not adopted."""
    if wire is None:
        return None
    try:
        return FreqDroop(db_of_hz=wire.dBOF / 1000, db_uf_hz=wire.dBUF / 1000,
                         k_of=wire.kOF / 1000, k_uf=wire.kUF / 1000,
                         response_s=wire.openLoopTms / 100)
    except CurveError as exc:
        log.warning("opModFreqDroop not adopted: %s", exc)
        return None


def envelope_of(base: m.DERControlBase | None, rating_w: float) -> Envelope:
    if base is None:
        return Envelope()
    max_lim = None if base.opModMaxLimW is None else base.opModMaxLimW / 10_000 * rating_w
    setpoint = _w(base.opModTargetW)
    if setpoint is None and base.opModFixedW is not None:
        setpoint = base.opModFixedW / 10_000 * rating_w
    return Envelope(
        export_max_w=_lowest(_w(base.opModExpLimW), _w(base.opModGenLimW), max_lim),
        import_max_w=_lowest(_w(base.opModImpLimW), _w(base.opModLoadLimW)),
        setpoint_w=setpoint,
        connected=base.opModConnect is not False and base.opModEnergize is not False,
        freq_droop=freq_droop_of(base.opModFreqDroop),
    )


def default_envelope(dderc: m.DefaultDERControl, rating_w: float) -> Envelope:
    """A DefaultDERControl's envelope, with the ramp settings it updates."""
    envelope = envelope_of(dderc.DERControlBase, rating_w)
    soft = dderc.setSoftGradW
    return replace(
        envelope,
        ramp_pct_s=None if dderc.setGradW is None else dderc.setGradW / 100,
        soft_start_s=None if soft is None else (FULL_OUTPUT_HUNDREDTHS / soft if soft else 0.0))


def layered(bases: list[m.DERControlBase], rating_w: float) -> Envelope | None:
    """Events of several programs, lowest primacy first, applied mode by mode: each quantity
    comes from the first event that sets it."""
    if not bases:
        return None
    fields: dict[str, Any] = {}
    for base in bases:
        env = envelope_of(base, rating_w)
        for name in _MERGED:
            if name not in fields and getattr(env, name) is not None:
                fields[name] = getattr(env, name)
        if "connected" not in fields and (base.opModConnect is not None
                                          or base.opModEnergize is not None):
            fields["connected"] = env.connected
    return Envelope(**fields)


def merged(active: Envelope | None, default: Envelope) -> Envelope:
    """The active event's envelope with the default control filling what it leaves out."""
    if active is None:
        return default
    fill: dict[str, Any] = {}
    for name in _MERGED:
        if getattr(active, name) is None and getattr(default, name) is not None:
            fill[name] = getattr(default, name)
    return replace(active, **fill) if fill else active
