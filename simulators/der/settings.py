"""A DER control setting with its SunSpec-style reversion timer. Pure.

A setting is (enabled, value) plus what to fall back to (revert_enabled, revert_value) when
the controller has not refreshed it within `timeout_s`. Writing the setting (or its timer)
restarts the countdown; a timeout of 0 never reverts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class TimedSetting(Generic[T]):  # noqa: UP046 - dataclass + slots reads clearer this way
    value: T
    revert_value: T
    enabled: bool = False
    revert_enabled: bool = False
    timeout_s: float = 0.0
    remaining_s: float = 0.0
    reverted: int = 0  # how many times the timer fired (for summaries and tests)

    @property
    def active(self) -> T | None:
        return self.value if self.enabled else None

    def write(
        self,
        *,
        value: T | None = None,
        enabled: bool | None = None,
        revert_value: T | None = None,
        revert_enabled: bool | None = None,
        timeout_s: float | None = None,
    ) -> None:
        """Change any part of the setting; any write restarts the reversion countdown."""
        if value is not None:
            self.value = value
        if enabled is not None:
            self.enabled = enabled
        if revert_value is not None:
            self.revert_value = revert_value
        if revert_enabled is not None:
            self.revert_enabled = revert_enabled
        if timeout_s is not None:
            if timeout_s < 0:
                raise ValueError("reversion timeout must be >= 0")
            self.timeout_s = timeout_s
        self.remaining_s = self.timeout_s

    def tick(self, dt: float) -> bool:
        """Count down; on expiry fall back to the reversion values. True when it reverted."""
        if self.remaining_s <= 0.0:
            return False
        self.remaining_s = max(0.0, self.remaining_s - dt)
        if self.remaining_s > 0.0:
            return False
        self.value = self.revert_value
        self.enabled = self.revert_enabled
        self.reverted += 1
        return True
