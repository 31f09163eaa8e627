"""Sums over the DERs below a connection point or a T-D interface node. Pure, no I/O.

Each group keeps running sums, changed by each DER's change: a T-D node above 100,000 DERs
is not summed again from its members every second (six passes over 100,000 DERs each
aggregates interval took a sixth of a core). The sums are integers in thousandths (mW,
mvar), so adding and taking away is exact: no float drift accumulates however long the
gateway runs.
"""

from __future__ import annotations

from dataclasses import dataclass

_SCALE = 1000  # thousandths of a W or var: exact sums, finer than any meter reports

W, VAR, EXPORT, IMPORT, COUNT, ONLINE = range(6)


def _milli(value: float) -> int:
    return round(value * _SCALE)


@dataclass(slots=True)
class DerFigures:
    groups: tuple[str, ...]
    w: int = 0  # in thousandths, like the sums
    var: int = 0
    export_w: int = 0
    import_w: int = 0
    online: bool = True

    def row(self) -> tuple[int, int, int, int, int, int]:
        return (self.w, self.var, self.export_w, self.import_w, 1, int(self.online))


class Aggregates:
    def __init__(self) -> None:
        self._ders: dict[str, DerFigures] = {}
        self._sums: dict[str, list[int]] = {}  # group -> [W, VAR, EXPORT, IMPORT, COUNT, ONLINE]
        self._dirty: set[str] = set()

    def place(self, resource_id: str, groups: tuple[str, ...], *, online: bool) -> None:
        old = self._ders.get(resource_id)
        if old is not None and old.groups != groups:
            self.remove(resource_id)
            old = None
        if old is None:
            der = DerFigures(groups, online=online)
            self._ders[resource_id] = der
            self._add(der, 1)
        else:
            self.set_online(resource_id, online)

    def remove(self, resource_id: str) -> None:
        der = self._ders.pop(resource_id, None)
        if der is not None:
            self._add(der, -1)

    def set_power(self, resource_id: str, *, w: float | None = None,
                  var: float | None = None) -> None:
        der = self._ders.get(resource_id)
        if der is None:
            return
        self._add(der, -1)
        if w is not None:
            der.w = _milli(w)
        if var is not None:
            der.var = _milli(var)
        self._add(der, 1)

    def set_caps(self, resource_id: str, export_w: float, import_w: float) -> None:
        der = self._ders.get(resource_id)
        if der is None:
            return
        self._add(der, -1)
        der.export_w, der.import_w = _milli(export_w), _milli(import_w)
        self._add(der, 1)

    def set_online(self, resource_id: str, online: bool) -> None:
        der = self._ders.get(resource_id)
        if der is not None and der.online != online:
            self._add(der, -1)
            der.online = online
            self._add(der, 1)

    def _add(self, der: DerFigures, sign: int) -> None:
        row = der.row()
        for group in der.groups:
            sums = self._sums.get(group)
            if sums is None:
                sums = self._sums[group] = [0] * 6
            for i, value in enumerate(row):
                sums[i] += sign * value
            self._dirty.add(group)

    def totals(self, group: str) -> dict[str, float | int]:
        """A group's totals now (zeros for a group without DERs)."""
        sums = self._sums.get(group) or [0] * 6
        return {
            "ActivePowerW": sums[W] / _SCALE,
            "ReactivePowerVar": sums[VAR] / _SCALE,
            "ExportLimitW": sums[EXPORT] / _SCALE,
            "ImportLimitW": sums[IMPORT] / _SCALE,
            "DerCount": sums[COUNT],
            "OnlineCount": sums[ONLINE],
        }

    def take_dirty(self) -> dict[str, dict[str, float | int]]:
        """The totals of every group touched since the last call."""
        out = {group: self.totals(group) for group in self._dirty}
        self._dirty.clear()
        return out
