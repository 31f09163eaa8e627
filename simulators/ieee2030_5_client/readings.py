"""What a DER mirrors to the server: a MirrorUsagePoint with W, var, V and Hz readings. Pure."""

from __future__ import annotations

import hashlib

from adapters.ieee2030_5.codec import models as m
from simulators.der import Measurement

# (Measurement field, uom, powerOfTenMultiplier): 2030.5 UomType 38 W, 63 var, 29 V, 33 Hz.
CHANNELS: tuple[tuple[str, int, int], ...] = (("w", 38, 0), ("var", 63, 0), ("v", 29, -1),
                                                ("hz", 33, -2))


def mrid(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32].upper()


def usage_point(lfdi: str, measurement: Measurement, now: int,
                post_rate: int) -> m.MirrorUsagePoint:
    return m.MirrorUsagePoint(
        mRID=mrid("mup", lfdi), description="DER site", roleFlags="49", serviceCategoryKind=0,
        status=1, deviceLFDI=lfdi, MirrorMeterReading=meter_readings(lfdi, measurement, now,
                                                                        post_rate, typed=True))


def meter_readings(lfdi: str, measurement: Measurement, now: int, post_rate: int,
                   typed: bool = False) -> list[m.MirrorMeterReading]:
    out = []
    for key, uom, power in CHANNELS:
        value = round(getattr(measurement, key) / 10.0**power)
        out.append(m.MirrorMeterReading(
            mRID=mrid("mmr", lfdi, key), description=key, lastUpdateTime=now,
            Reading=m.Reading(value=value, timePeriod=m.DateTimeInterval(duration=post_rate,
                                                                         start=now)),
            ReadingType=m.ReadingType(uom=uom, powerOfTenMultiplier=power, kind=37,
                                      flowDirection=19, dataQualifier=2) if typed else None))
    return out
