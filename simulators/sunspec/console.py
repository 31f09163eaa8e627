"""The live one-line summary a field engineer watches while the fleet runs."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TextIO

from simulators.der import RunState
from simulators.sunspec.fleet import Fleet


@dataclass(frozen=True, slots=True)
class Summary:
    elapsed_s: float
    inverters: int
    connected: int
    throttled: int
    limited: int  # WMaxLimPct enabled
    w: float
    var: float
    writes: int
    reversions: int
    clients: int

    def line(self) -> str:
        return (
            f"t={self.elapsed_s:7.1f}s  inverters={self.inverters} connected={self.connected} "
            f"throttled={self.throttled} limited={self.limited}  "
            f"P={self.w / 1000:10.1f} kW  Q={self.var / 1000:8.1f} kvar  "
            f"writes={self.writes} reversions={self.reversions} clients={self.clients}"
        )


def summarise(fleet: Fleet) -> Summary:
    ms = [inv.model.measurement() for inv in fleet.inverters]
    return Summary(
        elapsed_s=fleet.elapsed_s,
        inverters=len(ms),
        connected=sum(m.connected for m in ms),
        throttled=sum(m.state == RunState.THROTTLED for m in ms),
        limited=sum(inv.model.w_max_lim.enabled for inv in fleet.inverters),
        w=sum(m.w for m in ms),
        var=sum(m.var for m in ms),
        writes=sum(inv.writes for inv in fleet.inverters),
        reversions=sum(s.reverted for inv in fleet.inverters for s in inv.model.timed_settings()),
        clients=sum(server.connections for server in fleet.servers),
    )


class Console:
    """Prints the summary every `every_s` seconds; rewrites one line on a terminal."""

    def __init__(self, every_s: float = 1.0, out: TextIO | None = None) -> None:
        self.every_s = every_s
        self.out = out or sys.stdout
        self._next = 0.0

    def __call__(self, fleet: Fleet) -> None:
        if fleet.elapsed_s < self._next:
            return
        self._next = fleet.elapsed_s + self.every_s
        line = summarise(fleet).line()
        if self.out.isatty():
            self.out.write("\r" + line)
        else:
            self.out.write(line + "\n")
        self.out.flush()
