"""The Modbus adapter's settings, `[adapters.modbus]` (or `DERGW_ADAPTERS__MODBUS__<KEY>`).

Unknown keys are refused, so a typo stops the start with the key named instead of being
ignored. Every setting has a default that suits a field of a few hundred inverters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.errors import InvalidInput


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True  # the core's switch for every adapter
    # Device loops
    poll_interval_s: float = Field(5.0, gt=0)  # how often a device loop wakes unprompted
    telemetry_interval_s: float = Field(10.0, gt=0)  # 701/713 reads
    timeout_s: float = Field(2.0, gt=0)  # per connection attempt and per request
    max_concurrency: int = Field(100, ge=1)  # devices served at the same time
    backoff_initial_s: float = Field(1.0, gt=0)  # after a failure, doubling ...
    backoff_max_s: float = Field(60.0, gt=0)  # ... up to this
    offline_after: int = Field(3, ge=1)  # failures in a row before a device is offline
    # Rendering
    reversion_s: int = Field(60, ge=1)  # RvrtTms written with every control and curve
    refresh_fraction: float = Field(1 / 3, gt=0, lt=1)  # rewrite after this share of it
    nominal_hz: float = Field(60.0, gt=0)  # the grid's (711 dead bands from freq_watt)
    # Modbus/TCP Security: the gateway's client certificate, pki modbus/clients/<name>.pem
    client_cert: str = Field("gateway", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    # Feedback to the core: online marks, readings and delivery marks are flushed together
    flush_interval_s: float = Field(1.0, gt=0)
    max_pending_readings: int = Field(20_000, ge=1)  # oldest dropped beyond this (counted)

    @model_validator(mode="after")
    def _backoff_order(self) -> Settings:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be at least backoff_initial_s")
        return self

    @property
    def refresh_s(self) -> float:
        """How long a written control or curve is left before its timer is restarted."""
        return self.reversion_s * self.refresh_fraction


def load(config: Mapping[str, Any], where: str = "adapters.modbus") -> Settings:
    """The settings from the adapter's table; `InvalidInput` naming every bad key."""
    try:
        return Settings.model_validate(dict(config))
    except ValidationError as exc:
        problems = "; ".join(
            f"{where}.{'.'.join(str(p) for p in err['loc']) or '(table)'}: {err['msg']}"
            for err in exc.errors())
        raise InvalidInput(f"invalid settings: {problems}") from None
