"""The 705 (volt-var), 706 (volt-watt), 711 (freq-droop) and 712 (watt-var) curve functions
and their adoption handshake.

A controller writes a staging curve (index 2..N), writes its index to AdptCrvReq/AdptCtlReq,
and polls AdptCrvRslt: IN_PROGRESS until the next step, then COMPLETED (the staging curve is
copied onto curve 1, the active read-only one, and the DER model uses it) or FAILED.
On reversion-timer expiry the function is disabled, unless RvrtCrv/RvrtCtl names a curve,
which is then adopted and stays enabled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

from simulators.der import DerModel, Rating
from simulators.der.curves import CurveError
from simulators.sunspec.controls import (
    ENABLED,
    read_freq_droop,
    read_volt_var,
    read_volt_watt,
    read_watt_var,
)
from simulators.sunspec.image import RegisterImage


@dataclass(frozen=True, slots=True)
class CurveFunction:
    model_id: int
    setting: str  # DerModel attribute
    group: str  # "Crv" / "Ctl"
    req: str
    rslt: str
    rvrt: str
    count: str
    read: Callable[[RegisterImage, int, Rating], Any]

    IN_PROGRESS: ClassVar[int] = 0
    COMPLETED: ClassVar[int] = 1
    FAILED: ClassVar[int] = 2

    def revert_index(self, image: RegisterImage) -> int | None:
        index, count = image.get(self.model_id, self.rvrt), image.get(self.model_id, self.count)
        if isinstance(index, int) and isinstance(count, int) and 1 <= index <= count:
            return index - 1
        return None

    def push_settings(self, image: RegisterImage, model: DerModel) -> None:
        """Enable flag, reversion timer and reversion curve from registers to the model."""
        setting = getattr(model, self.setting)
        revert = self.revert_index(image)
        revert_value = None
        if revert is not None:
            try:
                revert_value = self.read(image, revert, model.rating)
            except CurveError:
                revert = None
        setting.write(
            enabled=image.get(self.model_id, "Ena") == ENABLED,
            timeout_s=float(image.value(self.model_id, "RvrtTms") or 0.0),
            revert_value=revert_value,
            revert_enabled=revert is not None,
        )

    def adopt(self, image: RegisterImage, model: DerModel, index: int) -> None:
        """Validate curve `index` and make it the active one; CurveError leaves all as it was."""
        curve = self.read(image, index, model.rating)
        self.copy_group(image, index, 0)
        getattr(model, self.setting).write(value=curve)

    def revert_registers(self, image: RegisterImage, enabled: bool) -> None:
        image.set(self.model_id, "Ena", ENABLED if enabled else 0)
        revert = self.revert_index(image)
        if revert is not None:
            self.copy_group(image, revert, 0)

    def copy_group(self, image: RegisterImage, source: int, target: int) -> None:
        if source == target:
            return
        src, dst = f"{self.group}[{source}].", f"{self.group}[{target}]."
        for path in image.block(self.model_id).layout.points:
            if path.startswith(src) and not path.endswith(".ReadOnly"):
                image.copy(self.model_id, path, dst + path[len(src):])


CURVES: MappingProxyType[int, CurveFunction] = MappingProxyType({
    705: CurveFunction(705, "volt_var", "Crv", "AdptCrvReq", "AdptCrvRslt", "RvrtCrv", "NCrv",
                       read_volt_var),
    706: CurveFunction(706, "volt_watt", "Crv", "AdptCrvReq", "AdptCrvRslt", "RvrtCrv", "NCrv",
                       read_volt_watt),
    711: CurveFunction(711, "freq_watt", "Ctl", "AdptCtlReq", "AdptCtlRslt", "RvrtCtl", "NCtl",
                       read_freq_droop),
    712: CurveFunction(712, "watt_var", "Crv", "AdptCrvReq", "AdptCrvRslt", "RvrtCrv", "NCrv",
                       read_watt_var),
})
