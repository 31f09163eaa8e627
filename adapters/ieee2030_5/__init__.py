"""IEEE 2030.5 (CSIP, CSIP-AUS) server adapter: DERs and aggregators poll it over mutual TLS."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adapters.ieee2030_5.adapter import Ieee2030Adapter
    from gateway.adapters import AdapterContext


def create_adapter(ctx: AdapterContext) -> Ieee2030Adapter:
    from adapters.ieee2030_5.adapter import create

    return create(ctx)
