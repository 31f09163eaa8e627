"""Every simulated DER at a bus of a benchmark feeder: solve, then feed voltages back.

Each step gathers the DERs' measured P and Q per bus (one static generator per hosting bus),
solves the AC power flow, and writes each bus voltage (and the feeder frequency) into the
`grid` of every DER model at that bus, so volt-var, volt-watt and enter-service react to the
voltages their own output causes. The solve itself runs in a worker thread (`step`): it is
CPU work on the pandapower network, which only this object touches.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pandapower as pp

from simulators.der import DerModel, Grid
from simulators.feeder import networks
from simulators.feeder.report import FeederReport

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FeederConfig:
    network: str = "cigre_lv"
    source_pu: float = 1.0  # the substation's voltage setpoint (external grid)
    load_scale: float = 1.0  # scales every load of the benchmark
    frequency_hz: float = 60.0
    band: tuple[float, float] = (0.94, 1.10)  # the voltage band reported on, per unit
    der_scale: float = 1.0  # how many times each simulated DER counts in the network

    def __post_init__(self) -> None:
        if self.network not in networks.BENCHMARKS:
            raise ValueError(f"unknown feeder {self.network!r}")
        lo, hi = self.band
        if not 0.5 < lo < hi < 1.5:
            raise ValueError("band must be (low, high) per unit with 0.5 < low < high < 1.5")
        if self.der_scale < 0 or self.load_scale < 0:
            raise ValueError("der_scale and load_scale must be >= 0")


@dataclass(slots=True)
class _Attached:
    der_id: str
    model: DerModel
    bus: str


class Feeder:
    def __init__(self, config: FeederConfig) -> None:
        self.config = config
        self.net = networks.build(config.network)
        self.net.ext_grid["vm_pu"] = config.source_pu
        self.net.load["scaling"] = config.load_scale
        self.frequency_hz = config.frequency_hz
        self.hosts = networks.host_buses(self.net, config.network)
        names = {str(n): int(i) for i, n in self.net.bus["name"].items()}
        self._bus_index = {n: names[n] for n in self.hosts}
        self._sgen: dict[str, int] = {
            bus: int(pp.create_sgen(self.net, idx, p_mw=0.0, q_mvar=0.0, name=f"sim {bus}"))
            for bus, idx in self._bus_index.items()}
        self._ders: dict[str, _Attached] = {}
        self._by_bus: defaultdict[str, list[_Attached]] = defaultdict(list)
        self._next_host = itertools.cycle(self.hosts)
        self._solved_once = False
        self.last: FeederReport | None = None

    # -- placement ---------------------------------------------------------------------------

    def resolve_bus(self, bus: str | None) -> str:
        """A hosting bus by name ('Bus R11' or 'R11'), or the next one round-robin."""
        if bus is None or bus == "":
            return next(self._next_host)
        for candidate in (bus, f"Bus {bus}"):
            if candidate in self._bus_index:
                return candidate
        raise ValueError(f"bus {bus!r} cannot host DERs on {self.config.network}")

    def attach(self, der_id: str, model: DerModel, bus: str | None = None) -> str:
        if der_id in self._ders:
            raise ValueError(f"DER {der_id!r} is already attached")
        placed = _Attached(der_id, model, self.resolve_bus(bus))
        self._ders[der_id] = placed
        self._by_bus[placed.bus].append(placed)
        return placed.bus

    def bus_of(self, der_id: str) -> str:
        return self._ders[der_id].bus

    def __len__(self) -> int:
        return len(self._ders)

    # -- driving -----------------------------------------------------------------------------

    def set_frequency(self, hz: float) -> None:
        self.frequency_hz = hz

    def set_load_scale(self, scale: float) -> None:
        self.net.load["scaling"] = scale

    def _injections(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        idx, p, q = [], [], []
        scale = self.config.der_scale
        for bus, sgen in self._sgen.items():
            ders = self._by_bus.get(bus, ())
            pw = qv = 0.0
            for d in ders:
                m = d.model.measurement()
                pw += m.w
                qv += m.var
            idx.append(sgen)
            p.append(pw * scale / 1e6)
            q.append(qv * scale / 1e6)
        return np.array(idx), np.array(p), np.array(q)

    def _solve(self, idx: np.ndarray, p: np.ndarray, q: np.ndarray) -> bool:
        self.net.sgen.loc[idx, "p_mw"] = p
        self.net.sgen.loc[idx, "q_mvar"] = q
        try:
            pp.runpp(self.net, numba=False, init="results" if self._solved_once else "auto")
        except pp.LoadflowNotConverged:
            log.warning("feeder power flow did not converge")
            return False
        self._solved_once = True
        return True

    def _apply(self, converged: bool, p: np.ndarray, q: np.ndarray) -> FeederReport:
        if not converged:
            report = FeederReport(False, float("nan"), float("nan"), "", "", self.config.band,
                                  float("nan"), float("nan"), float(p.sum() * 1e6),
                                  float(q.sum() * 1e6), self.frequency_hz)
            self.last = report
            return report
        vm = self.net.res_bus["vm_pu"]
        bus_v: dict[str, float] = {}
        for bus, ders in self._by_bus.items():
            v_pu = float(vm.at[self._bus_index[bus]])
            bus_v[bus] = v_pu
            for d in ders:
                d.model.grid = Grid(v_pu * d.model.rating.v_nom, self.frequency_hz)
        names = self.net.bus["name"]
        lines = self.net.res_line["loading_percent"]
        trafos = self.net.res_trafo["loading_percent"]
        report = FeederReport(
            converged=True, v_min_pu=float(vm.min()), v_max_pu=float(vm.max()),
            v_min_bus=str(names.at[vm.idxmin()]), v_max_bus=str(names.at[vm.idxmax()]),
            band=self.config.band,
            line_loading_max_pct=float(lines.max()) if len(lines) else 0.0,
            trafo_loading_max_pct=float(trafos.max()) if len(trafos) else 0.0,
            der_p_w=float(p.sum() * 1e6), der_q_var=float(q.sum() * 1e6),
            frequency_hz=self.frequency_hz, bus_v_pu=bus_v)
        self.last = report
        return report

    def solve(self) -> FeederReport:
        """One co-simulation step, synchronously (tests, batch runs)."""
        idx, p, q = self._injections()
        return self._apply(self._solve(idx, p, q), p, q)

    async def step(self) -> FeederReport:
        """One co-simulation step; the power flow runs in a worker thread."""
        idx, p, q = self._injections()
        converged = await asyncio.to_thread(self._solve, idx, p, q)
        return self._apply(converged, p, q)
