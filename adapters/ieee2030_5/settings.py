"""The 2030.5 adapter's settings (`[adapters.ieee2030_5]`): one model, unknown keys refused.

`create_adapter` validates the adapter's table with `Settings.from_config`, so a typo such as
`DERGW_ADAPTERS__IEEE2030_5__REFRSH_S=5` stops the start with the key named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.errors import InvalidInput


class NotificationTls(BaseModel):
    """How the gateway, as a TLS client, posts Notifications to subscribers' listeners.

    2030.5 asks for the same TLS in this direction as towards the server: TLS 1.2 with
    ECDHE-ECDSA-AES128-CCM8, a client certificate from the 2030.5 PKI with clientAuth usage,
    and the receiver's certificate verified against the 2030.5 trust chain. Paths are
    relative to the PKI directory unless absolute.
    """

    model_config = ConfigDict(extra="forbid")

    cert_chain: Path = Path("ieee2030_5/notifier-chain.pem")
    key: Path = Path("ieee2030_5/notifier.key")
    trust_chain: Path = Path("ieee2030_5/ca-chain.pem")
    # 2030.5 devices are identified by their certificate (LFDI), not by host name: their
    # certificates usually carry no DNS or IP names, so a listener's certificate is checked
    # by its chain to the 2030.5 root. Turn this on where receivers have named certificates.
    check_hostname: bool = False


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    listen: str = "https://127.0.0.1:8443"
    # Re-render every DER this often: extends open-ended controls before they lapse and drops
    # records past retention. Unchanged controls keep their mRIDs: no notifications.
    refresh_s: float = Field(3600.0, gt=0)
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    dispatch_as: Literal["target_w", "fixed_w"] = "target_w"
    programs: list[dict[str, Any]] | None = None  # a DERProgram layout (see programs.py)
    primacy: int = Field(1, ge=0, le=255)
    default_pin: int = Field(111115, ge=0, le=999999)
    allow_inband_registration: bool = True
    inband_connection_point: str | None = None
    # The participant that owns DERs a device client registers in-band for itself (an
    # aggregator client's DERs are its aggregator's). None: such DERs stay EndDevices only.
    inband_owner: str | None = None
    sync_interval_s: float = Field(10.0, gt=0)
    # Subscriptions one client certificate may hold: this many, plus so many per DER it may
    # see (a DER has about six subscribable lists per DERProgram). Issue 12: one device made
    # 1,000, multiplying every notification.
    max_subscriptions: int = Field(16, ge=1, le=100_000)
    max_subscriptions_per_der: int = Field(8, ge=0, le=1_000)
    notification_tls: NotificationTls = Field(default_factory=NotificationTls)
    # The listener under abuse: a TLS handshake and a request's headers must arrive within
    # these; at most so many connections in all and per client certificate.
    handshake_timeout_s: float = Field(10.0, gt=0)
    header_timeout_s: float = Field(10.0, gt=0)
    keepalive_timeout_s: float = Field(75.0, gt=0)
    max_connections: int = Field(4096, ge=1)
    max_connections_per_client: int = Field(64, ge=1)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Settings:
        """The adapter's table, validated; InvalidInput names each bad or unknown key."""
        try:
            return cls.model_validate(config)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or '(table)'}: {e['msg']}" for e in exc.errors())
            raise InvalidInput(f"adapters.ieee2030_5: {problems}") from None
