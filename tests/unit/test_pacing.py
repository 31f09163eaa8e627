"""Pacer: bulk CPU-bound work leaves the rest of the event loop free most of the time."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.pacing import Pacer


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def test_many_short_awaits_are_not_held_back_one_unit_each():
    pacer = Pacer(share=0.5, slice_s=0.02)
    units = 0
    worked = 0.0  # as the pacer sees it: on a loaded machine a unit may take longer

    async def bulk() -> None:
        nonlocal units, worked
        for _ in range(150):
            started = time.perf_counter()
            busy(0.002)  # 0.3 s of work in units of 2 ms
            worked += time.perf_counter() - started
            units += 1
            await pacer.step()

    async def chatty() -> int:
        first = units
        for _ in range(300):  # e.g. the awaits of a few database transactions
            await asyncio.sleep(0)
        return units - first

    work = asyncio.create_task(bulk())
    await asyncio.sleep(0)
    interleaved = await chatty()
    await work
    # With sleep(0) between units, each of the 300 awaits would wait for one unit (all 150
    # would run meanwhile); paced, the awaits run in the pauses, between a few slices.
    assert interleaved < 60
    assert pacer.paused_s == pytest.approx(worked, rel=0.5)  # the work took about half the loop


def test_share_is_checked():
    with pytest.raises(ValueError):
        Pacer(share=0.0)
