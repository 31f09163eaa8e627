"""One settings object: embedded defaults, then a TOML file, then environment overrides.

Environment variables are ``DERGW_<FIELD>`` for top-level fields and
``DERGW_ADAPTERS__<NAME>__<KEY>`` for an adapter's table, e.g.
``DERGW_DATABASE_URL=postgresql+asyncpg://...`` or ``DERGW_ADAPTERS__OPCUA__ENABLED=false``.
"""

from __future__ import annotations

import json
import os
import socket
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator

ENV_PREFIX = "DERGW_"



class RetentionSettings(BaseModel):
    """How long the store keeps each kind of row (gateway.retention)."""

    model_config = {"extra": "forbid"}

    readings_days: float = Field(default=90, gt=0)
    acknowledgements_days: float = Field(default=365, gt=0)
    notices_days: float = Field(default=365, gt=0)
    outbox_hours: float = Field(default=24, gt=0)
    deliveries_days: float = Field(default=7, gt=0)
    interval_s: float = Field(default=300, gt=0)
    batch: int = Field(default=2000, ge=10)
    pause_s: float = Field(default=0.05, ge=0)


class Settings(BaseModel):
    model_config = {"extra": "forbid"}

    data_dir: Path = Path("var")
    database_url: str = ""  # empty: sqlite file under data_dir
    pki_dir: Path = Path("certs")
    platform_listen: str = "https://127.0.0.1:9443"
    dev_mode: bool = True  # generate the dev PKI on first run; allow loopback HTTP webhooks
    log_json: bool = False
    log_level: str = "INFO"
    iana_pen: int = 37244  # the IANA private enterprise number closing server-made mRIDs
    max_body_bytes: int = 1_048_576
    # Networks callbacks (2030.5 notifications, OpenADR webhooks) may reach although they are
    # not public, e.g. ["10.20.0.0/16"] for aggregators on a private link (gateway.outbound).
    outbound_allow: list[str] = Field(default_factory=list)
    horizon_s: int = 7 * 24 * 3600  # how far ahead coordination looks for open-ended limits
    group_cap_rule: str = "nameplate"  # pluggable: nameplate | equal
    disaggregation_rule: str = "headroom"  # pluggable: headroom | equal
    # /metrics without credentials for a scraper on the gateway's own host (loopback peers);
    # otherwise only the admin may read it (docs/operations.md).
    metrics_allow_loopback: bool = False
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    # Several processes (PostgreSQL only): each has a name (its event-log position is kept
    # under it; default: the host name) and they share listening ports (SO_REUSEPORT).
    process_name: str = ""
    reuse_port: bool = False
    adapters: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("log_level must be DEBUG, INFO, WARNING or ERROR")
        return value

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'der-gateway.db'}"

    def adapter_config(self, name: str) -> dict[str, Any]:
        # (an adapter's defaults are its own: its settings model fills them in)
        merged = dict(self.adapters.get(name, {}))
        merged.setdefault("enabled", True)
        return merged

    @property
    def is_postgres(self) -> bool:
        return self.effective_database_url.startswith("postgresql")

    @property
    def effective_process_name(self) -> str:
        return self.process_name or socket.gethostname()

    @property
    def platform_host_port(self) -> tuple[str, int]:
        return split_listen(self.platform_listen)


def split_listen(url: str) -> tuple[str, int]:
    """'https://127.0.0.1:9443' -> ('127.0.0.1', 9443)."""
    rest = url.split("://", 1)[-1].rstrip("/")
    host, _, port = rest.rpartition(":")
    return host.strip("[]"), int(port)


def _coerce(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        parts = key[len(ENV_PREFIX) :].lower().split("__")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = _coerce(raw)
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(
    path: Path | None = None, environ: dict[str, str] | None = None
) -> Settings:
    """Defaults, then the TOML file (if given or DERGW_CONFIG names one), then environment."""
    environ = dict(os.environ if environ is None else environ)
    config_path = path or (Path(environ.pop("DERGW_CONFIG")) if "DERGW_CONFIG" in environ else None)
    environ.pop("DERGW_CONFIG", None)
    data: dict[str, Any] = {}
    if config_path is not None:
        with config_path.open("rb") as fh:
            data = tomllib.load(fh)
    data = _merge(data, _env_overrides(environ))
    return Settings.model_validate(data)
