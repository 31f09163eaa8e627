"""Bulk background work that shares the event loop with the listeners, at a bounded share.

`await asyncio.sleep(0)` between units of CPU-bound work is not enough: every loop iteration
then runs one unit, so a request that needs many short awaits (a database transaction has
several) waits one unit per await. A `Pacer` lets the work run for a time slice, then sleeps
long enough that the work takes at most `share` of the loop; in the pauses everything else
runs at full speed.
"""

from __future__ import annotations

import asyncio
import time


class Pacer:
    def __init__(self, share: float = 0.5, slice_s: float = 0.02) -> None:
        if not 0.0 < share <= 1.0:
            raise ValueError("share must be in (0, 1]")
        self.share = share
        self.slice_s = slice_s
        self._started: float | None = None
        self.paused_s = 0.0  # total time given back to the loop

    async def step(self) -> None:
        """Call after each unit of work: pauses when the current slice is used up."""
        now = time.perf_counter()
        if self._started is None:
            self._started = now
            return
        busy = now - self._started
        if busy < self.slice_s:
            return
        pause = busy * (1.0 - self.share) / self.share
        self.paused_s += pause
        await asyncio.sleep(pause)  # share 1.0: sleep(0), a plain yield
        self._started = time.perf_counter()

    def idle(self) -> None:
        """The work waits for more (e.g. on an event): the next slice starts afresh."""
        self._started = None
