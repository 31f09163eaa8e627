"""IEEE 2030.5 (CSIP, CSIP-AUS) server adapter: DERs and aggregators poll it over mutual TLS."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adapters.ieee2030_5.adapter import Ieee2030Adapter
    from gateway.adapters import AdapterContext


def create_adapter(ctx: AdapterContext) -> Ieee2030Adapter:
    from adapters.ieee2030_5.adapter import create

    return create(ctx)


_HEX40 = re.compile(r"^[0-9A-Fa-f]{40}$")


def address_key(address: dict[str, Any]) -> str:
    """A 2030.5 DER is bound by its device's LFDI (40 hex characters, any case)."""
    # (imported here: the codec, shared with the simulators, must not pull in the core)
    from gateway.errors import InvalidInput
    from gateway.ports import canonical_address_key, require_keys

    require_keys(address, "lfdi")
    if not _HEX40.match(str(address["lfdi"])):
        raise InvalidInput("lfdi must be 40 hexadecimal characters")
    return canonical_address_key(address, upper={"lfdi"}, ignore={"settings", "tls"})
