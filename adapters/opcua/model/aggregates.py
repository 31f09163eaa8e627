"""Sums over the DERs below a connection point or a T-D interface node. Pure, no I/O.

Groups are recomputed from their members when touched (not updated by deltas), so float
drift never accumulates; the cost is one pass over a touched group per flush.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class DerFigures:
    groups: tuple[str, ...]
    w: float = 0.0
    var: float = 0.0
    export_w: float = 0.0
    import_w: float = 0.0
    online: bool = True


class Aggregates:
    def __init__(self) -> None:
        self._ders: dict[str, DerFigures] = {}
        self._members: dict[str, set[str]] = {}
        self._dirty: set[str] = set()

    def place(self, resource_id: str, groups: tuple[str, ...], *, online: bool) -> None:
        old = self._ders.get(resource_id)
        if old is not None and old.groups != groups:
            self.remove(resource_id)
            old = None
        if old is None:
            self._ders[resource_id] = DerFigures(groups, online=online)
            for group in groups:
                self._members.setdefault(group, set()).add(resource_id)
        else:
            old.online = online
        self._dirty.update(groups)

    def remove(self, resource_id: str) -> None:
        der = self._ders.pop(resource_id, None)
        if der is None:
            return
        for group in der.groups:
            members = self._members.get(group)
            if members is not None:
                members.discard(resource_id)
            self._dirty.add(group)

    def set_power(self, resource_id: str, *, w: float | None = None,
                  var: float | None = None) -> None:
        der = self._ders.get(resource_id)
        if der is None:
            return
        if w is not None:
            der.w = w
        if var is not None:
            der.var = var
        self._dirty.update(der.groups)

    def set_caps(self, resource_id: str, export_w: float, import_w: float) -> None:
        der = self._ders.get(resource_id)
        if der is None:
            return
        der.export_w, der.import_w = export_w, import_w
        self._dirty.update(der.groups)

    def set_online(self, resource_id: str, online: bool) -> None:
        der = self._ders.get(resource_id)
        if der is not None and der.online != online:
            der.online = online
            self._dirty.update(der.groups)

    def totals(self, group: str) -> dict[str, float | int]:
        """A group's totals now (zeros for a group without DERs)."""
        ders = [self._ders[r] for r in self._members.get(group, ())]
        return {
            "ActivePowerW": float(sum(d.w for d in ders)),
            "ReactivePowerVar": float(sum(d.var for d in ders)),
            "ExportLimitW": float(sum(d.export_w for d in ders)),
            "ImportLimitW": float(sum(d.import_w for d in ders)),
            "DerCount": len(ders),
            "OnlineCount": sum(1 for d in ders if d.online),
        }

    def take_dirty(self) -> dict[str, dict[str, float | int]]:
        """The totals of every group touched since the last call."""
        out = {group: self.totals(group) for group in self._dirty}
        self._dirty.clear()
        return out
