"""The OpenADR 3 adapter's settings (`[adapters.openadr3]`, or DERGW_ADAPTERS__OPENADR3__*).

An unknown key is an error that stops the start with the key named (docs/openadr3.md lists
every key with its meaning).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from adapters.openadr3.vtn.mqtt import MqttConfig
from adapters.openadr3.vtn.throttle import ThrottleSettings


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    listen: str = "https://127.0.0.1:8444"
    public_url: str | None = None  # the origin GET /auth/server announces (default: listen)
    token_ttl_s: int = Field(3600, gt=0, le=7 * 24 * 3600)
    # aiohttp refuses request lines and header fields over 8190 bytes with text/plain; long
    # target queries are legitimate, so allow more (and answer anything longer as a problem).
    max_line_size: int = Field(65536, ge=8190)
    max_field_size: int = Field(65536, ge=8190)
    max_reports_per_ven: int = Field(1000, ge=1)
    max_subscriptions_per_ven: int = Field(100, ge=1)
    # Token endpoint: a rate per source address, lock-out per client id and per address.
    token_rate_per_s: float = Field(5.0, gt=0)
    token_burst: int = Field(20, ge=1)
    token_lockout_after: int = Field(5, ge=1)
    token_lockout_after_per_address: int = Field(20, ge=1)
    token_lockout_s: float = Field(60.0, gt=0)
    token_lockout_max_s: float = Field(900.0, gt=0)
    webhook_ca_file: str | None = None  # the CAs webhook receivers are checked against
    # MQTT notifications: off unless a broker URL is set.
    mqtt_url: str | None = None
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_public_uris: list[str] = Field(default_factory=list)
    mqtt_ca_file: str | None = None
    mqtt_max_age_s: float = Field(3600.0, gt=0)

    @property
    def origin(self) -> str:
        return self.public_url or self.listen

    def throttle(self) -> ThrottleSettings:
        return ThrottleSettings(
            rate_per_s=self.token_rate_per_s,
            burst=self.token_burst,
            client_failures=self.token_lockout_after,
            address_failures=self.token_lockout_after_per_address,
            lockout_s=self.token_lockout_s,
            lockout_max_s=self.token_lockout_max_s,
        )

    def mqtt(self) -> MqttConfig | None:
        if not self.mqtt_url:
            return None
        return MqttConfig(
            url=self.mqtt_url,
            username=self.mqtt_username,
            password=self.mqtt_password.get_secret_value() if self.mqtt_password else None,
            public_uris=tuple(self.mqtt_public_uris),
            ca_file=self.mqtt_ca_file,
            max_age_s=self.mqtt_max_age_s,
        )


def load(config: dict[str, object]) -> Settings:
    """The adapter's settings, or a ValueError naming each wrong or unknown key."""
    try:
        return Settings.model_validate(config)
    except ValidationError as exc:
        problems = "; ".join(
            f"adapters.openadr3.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False)
        )
        raise ValueError(problems) from None
