"""The adapter's settings table ``[adapters.opcua]``, validated once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.adapters import PkiPaths
from pki.devpki import OPCUA_SERVER_URI

DEFAULT_LISTEN = "opc.tcp://127.0.0.1:4840"


@dataclass(frozen=True)
class OpcUaConfig:
    listen: str
    application_uri: str
    certificate: Path  # PEM; the key is next to it (.key)
    trust: tuple[Path, ...]  # CA or client certificates (files or directories)
    security_policies: tuple[str, ...] | None  # None: all the secure ones
    allow_none: bool  # effective: dev mode AND the explicit flag
    users: tuple[dict[str, Any], ...] = field(default=())
    flush_interval: float = 0.1
    restore_window_s: float = 120.0


def load_config(raw: dict[str, Any], pki: PkiPaths, *, dev_mode: bool) -> OpcUaConfig:
    def path(value: Any) -> Path:
        p = Path(str(value))
        return p if p.is_absolute() else pki.root / p

    listen = str(raw.get("listen") or DEFAULT_LISTEN)
    if not listen.startswith("opc.tcp://"):
        raise ValueError(f"opcua: listen must be an opc.tcp:// URL, not {listen!r}")
    trust = raw.get("trust") or ["opcua/ca.pem", "opcua/trusted"]
    policies = raw.get("security_policies")
    interval_ms = float(raw.get("flush_interval_ms", 100))
    if not 10 <= interval_ms <= 10_000:
        raise ValueError("opcua: flush_interval_ms must be between 10 and 10000")
    return OpcUaConfig(
        listen=listen,
        application_uri=str(raw.get("application_uri") or OPCUA_SERVER_URI),
        certificate=path(raw.get("certificate") or "opcua/server.pem"),
        trust=tuple(path(t) for t in trust),
        security_policies=tuple(policies) if policies is not None else None,
        allow_none=bool(dev_mode and raw.get("allow_none_policy", False)),
        users=tuple(dict(u) for u in raw.get("users", ())),
        flush_interval=interval_ms / 1000,
        restore_window_s=float(raw.get("restore_window_s", 120)),
    )
