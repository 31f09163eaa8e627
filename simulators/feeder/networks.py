"""The benchmark feeders a scenario may name, and which of their buses can host DERs.

CIGRE LV (European residential/industrial/commercial, 0.4 kV, 44 buses) and CIGRE MV
(20 kV, 15 buses) ship with pandapower, so nothing is downloaded at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandapower as pp
import pandapower.networks as pn


@dataclass(frozen=True, slots=True)
class Benchmark:
    build: Callable[[], pp.pandapowerNet]
    host_kv_max: float  # buses at or below this nominal voltage may host simulated DERs
    description: str


BENCHMARKS: dict[str, Benchmark] = {
    "cigre_lv": Benchmark(pn.create_cigre_network_lv, 1.0,
                          "CIGRE LV benchmark (0.4 kV, residential R, industrial I, commercial C)"),
    "cigre_mv": Benchmark(pn.create_cigre_network_mv, 25.0, "CIGRE MV benchmark (20 kV)"),
}


def build(name: str) -> pp.pandapowerNet:
    try:
        return BENCHMARKS[name].build()
    except KeyError:
        raise ValueError(f"unknown feeder {name!r}; known: {', '.join(sorted(BENCHMARKS))}"
                         ) from None


def host_buses(net: pp.pandapowerNet, name: str) -> list[str]:
    """Names of the buses that may host DERs: below the feeder's host voltage, not the slack,
    in the benchmark's own order."""
    limit = BENCHMARKS[name].host_kv_max
    slack = set(net.ext_grid.bus)
    bus = net.bus
    return [str(bus.at[idx, "name"]) for idx in bus.index
            if bus.at[idx, "vn_kv"] <= limit and idx not in slack and bus.at[idx, "in_service"]]
