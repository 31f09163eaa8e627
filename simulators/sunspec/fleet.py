"""A fleet of simulated SunSpec inverters in one process: many unit ids per port, many ports.

Inverter i (0-based) is served on port `first_port + i // units_per_port` with unit id
`1 + i % units_per_port`, so `--count 10` is unit ids 1..10 on one port, and `--count 1000`
with 100 units per port is ports P..P+9, unit ids 1..100 on each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from simulators.der import ClearSky, Constant, Grid, Profile, Rating
from simulators.sunspec.inverter import InverterSpec, SunSpecInverter
from simulators.sunspec.server import PortServer, Security

log = logging.getLogger(__name__)

MAX_UNITS_PER_PORT = 247


@dataclass(frozen=True)
class FleetConfig:
    count: int
    host: str = "127.0.0.1"
    first_port: int = 5020  # 0: every port ephemeral (tests)
    units_per_port: int = 100
    w_max: float = 10_000.0
    battery_every: int = 0  # every n-th inverter also has a battery (0: none)
    profile: str = "constant"  # constant | clearsky
    available_pu: float = 0.8
    ramp_pct_s: float = 20.0
    tick_s: float = 0.5
    security: Security | None = None

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError("count must be >= 1")
        if not 1 <= self.units_per_port <= MAX_UNITS_PER_PORT:
            raise ValueError(f"units per port must lie within 1..{MAX_UNITS_PER_PORT}")

    def placement(self, index: int) -> tuple[int, int]:
        """(port slot, unit id) of inverter `index`."""
        return index // self.units_per_port, 1 + index % self.units_per_port


def _profile(config: FleetConfig, index: int) -> Profile:
    if config.profile == "clearsky":
        return ClearSky(seed=index)
    return Constant(config.available_pu)


def build_inverter(config: FleetConfig, index: int) -> SunSpecInverter:
    battery = config.battery_every > 0 and index % config.battery_every == 0
    rating = Rating(w_max=config.w_max, w_cha_max=config.w_max if battery else 0.0,
                    wh_max=2 * config.w_max if battery else 0.0)
    spec = InverterSpec(serial=f"SIM{index + 1:06d}", rating=rating,
                        profile=_profile(config, index), ramp_pct_s=config.ramp_pct_s)
    return SunSpecInverter(spec)


class Fleet:
    def __init__(self, config: FleetConfig) -> None:
        self.config = config
        self.inverters = [build_inverter(config, i) for i in range(config.count)]
        slots: dict[int, dict[int, SunSpecInverter]] = {}
        for i, inv in enumerate(self.inverters):
            slot, unit = config.placement(i)
            slots.setdefault(slot, {})[unit] = inv
        self.servers = [
            PortServer(config.host, config.first_port + slot if config.first_port else 0,
                       units, config.security)
            for slot, units in sorted(slots.items())
        ]
        self.elapsed_s = 0.0

    def address(self, index: int) -> tuple[str, int, int]:
        """(host, port, unit id) of inverter `index` (ports known once started)."""
        slot, unit = self.config.placement(index)
        return self.config.host, self.servers[slot].bound_port, unit

    def set_grid(self, v: float, f: float) -> None:
        for inv in self.inverters:
            inv.model.grid = Grid(v, f)

    def step(self, dt: float) -> None:
        for inv in self.inverters:
            inv.step(dt)
        self.elapsed_s += dt

    async def tick_forever(self, on_tick: Callable[[Fleet], None] | None = None) -> None:
        """Step every inverter by the real time that passed; never falls behind by > 5 s."""
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(self.config.tick_s)
            now = loop.time()
            self.step(min(now - last, 5.0))
            last = now
            if on_tick is not None:
                on_tick(self)


@asynccontextmanager
async def running_fleet(
    config: FleetConfig, on_tick: Callable[[Fleet], None] | None = None
) -> AsyncIterator[Fleet]:
    """Serve the fleet and step it in real time until the block exits (errors propagate)."""
    fleet = Fleet(config)
    async with AsyncExitStack() as stack:
        for server in fleet.servers:
            await server.start()
            stack.push_async_callback(server.stop)
        async with asyncio.TaskGroup() as group:
            ticker = group.create_task(fleet.tick_forever(on_tick), name="sunspec-fleet-tick")
            try:
                yield fleet
            finally:
                ticker.cancel()
