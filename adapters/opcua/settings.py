"""The adapter's settings, table ``[adapters.opcua]``: checked once, in `create_adapter`.

An unknown key, a wrong type or a value out of range stops the start with the key named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pki.devpki import OPCUA_SERVER_URI

DEFAULT_LISTEN = "opc.tcp://127.0.0.1:4840"
SECURITY_POLICY_NAMES = (
    "Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt",
    "Aes128Sha256RsaOaep_Sign", "Aes128Sha256RsaOaep_SignAndEncrypt",
    "Aes256Sha256RsaPss_Sign", "Aes256Sha256RsaPss_SignAndEncrypt",
)


class UserSettings(BaseModel):
    """An operator defined in the settings file (read-only to the platform routes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64)
    role: Literal["viewer", "controller"]
    ldc_id: str = Field(min_length=1)
    password: str | None = Field(default=None, min_length=8)  # hashed at start-up
    password_hash: str | None = None

    @model_validator(mode="after")
    def _one_secret(self) -> UserSettings:
        if not self.password and not self.password_hash:
            raise ValueError("a user needs password or password_hash")
        if self.password_hash and not self.password_hash.startswith("scrypt$"):
            raise ValueError("password_hash must be an scrypt hash made by hash_password")
        return self


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True  # read by the core: a disabled adapter is not created
    listen: str = DEFAULT_LISTEN
    application_uri: str = OPCUA_SERVER_URI
    # PEM certificate, with .der and .key beside it; relative paths are under the PKI root
    certificate: Path = Path("opcua/server.pem")
    # CA certificates and/or pinned client certificates (files or directories)
    trust: tuple[Path, ...] = (Path("opcua/ca.pem"), Path("opcua/trusted"))
    security_policies: tuple[str, ...] | None = None  # None: all the secure ones
    allow_none_policy: bool = False  # only honoured in dev mode
    users: tuple[UserSettings, ...] = ()
    flush_interval_ms: int = Field(default=100, ge=10, le=10_000)
    # how often the sums over connection points and T-D nodes are published
    aggregates_interval_ms: int = Field(default=1000, ge=10, le=60_000)
    restore_window_s: float = Field(default=120.0, ge=0)
    # DER model nodes kept made while no monitored item samples them (about 2 KB each);
    # those sampled are always kept (model/addressspace.py)
    cached_nodes: int = Field(default=20_000, ge=100)

    @field_validator("listen")
    @classmethod
    def _opc_tcp(cls, value: str) -> str:
        if not value.startswith("opc.tcp://"):
            raise ValueError(f"must be an opc.tcp:// URL, not {value!r}")
        return value

    @field_validator("security_policies")
    @classmethod
    def _known_policies(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        unknown = [name for name in value if name not in SECURITY_POLICY_NAMES]
        if unknown or not value:
            raise ValueError(f"unknown or empty {unknown or list(value)}; choose from "
                             f"{', '.join(SECURITY_POLICY_NAMES)}")
        return value

    @property
    def flush_interval(self) -> float:
        return self.flush_interval_ms / 1000

    @property
    def aggregates_interval(self) -> float:
        return self.aggregates_interval_ms / 1000

    def allow_none(self, dev_mode: bool) -> bool:
        """The None security policy: only in dev mode AND when asked for."""
        return dev_mode and self.allow_none_policy

    def certificate_path(self, pki_root: Path) -> Path:
        return _under(pki_root, self.certificate)

    def trust_paths(self, pki_root: Path) -> tuple[Path, ...]:
        return tuple(_under(pki_root, path) for path in self.trust)


def _under(root: Path, path: Path) -> Path:
    return path if path.is_absolute() else root / path
