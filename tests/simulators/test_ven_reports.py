"""The simulated VEN's reports: a failed one is sent again with back-off, a superseded one
is not, a refused one is given up. The VTN edge is an in-memory stand-in (as for codecs);
against the real gateway see tests/e2e/test_ven.py."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from simulators.der import Constant, DerModel, Rating
from simulators.feeder.envelope import ControlledDer
from simulators.ven.http import VtnError
from simulators.ven.ven import Ven, VenConfig


def event(version: str) -> dict[str, Any]:
    return {"id": "e1", "programID": "p1", "modificationDateTime": version,
            "targets": ["ven-1/r1"], "intervalPeriod": {"start": "2020-01-01T00:00:00Z"},
            "intervals": [{"id": 0, "payloads": [
                {"type": "EXPORT_CAPACITY_LIMIT", "values": [2.0]}]}]}


class Edge:
    """Answers POST /reports with the next outcome (an exception, or success)."""

    def __init__(self, outcomes: list[Exception | None]) -> None:
        self.outcomes = outcomes
        self.sent: list[dict[str, Any]] = []

    async def call(self, method: str, path: str, body: Any = None, params: Any = None) -> Any:
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome
        self.sent.append(body)
        return {}


def ven() -> Ven:
    der = ControlledDer(DerModel(Rating(w_max=5000.0), profile=Constant(1.0)))
    v = Ven(VenConfig("ven-1", "https://vtn.invalid", Path("ca.pem"), "c", "s",
                      report_retry_s=0.05), {"r1": der})
    v.resources["r1"].targets = {"ven-1/r1"}
    return v


async def run_worker(v: Ven, edge: Edge, until: Any) -> None:
    worker = asyncio.create_task(v._report_worker(edge))  # type: ignore[arg-type]
    try:
        async with asyncio.timeout(5):
            while True:
                if until():
                    return
                await asyncio.sleep(0.01)
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker


async def test_a_failed_report_is_sent_again_until_it_goes_through():
    v = ven()
    edge = Edge([TimeoutError(), VtnError(503, "busy"), None])
    v.events = {"e1": event("2030-01-01T00:00:00Z")}
    v.apply(datetime.now(UTC))
    await run_worker(v, edge, lambda: edge.sent)
    assert len(edge.sent) == 1 and v.stats.report_errors == 2


async def test_a_superseded_version_is_not_sent_again():
    v = ven()
    edge = Edge([TimeoutError()])
    v.events = {"e1": event("2030-01-01T00:00:00Z")}
    v.apply(datetime.now(UTC))
    await run_worker(v, edge, lambda: v.stats.report_errors == 1)  # retry due in ~0.05 s
    v.events = {"e1": event("2030-01-01T00:05:00Z")}
    v.apply(datetime.now(UTC))
    await run_worker(v, edge, lambda: edge.sent)
    await asyncio.sleep(0.2)  # the first version's retry has come due meanwhile
    await run_worker(v, edge, lambda: v._reports.empty())
    assert [r["eventID"] for r in edge.sent] == ["e1"] and len(edge.sent) == 1


async def test_a_refused_report_is_given_up():
    v = ven()
    edge = Edge([VtnError(400, "bad report")])
    v.events = {"e1": event("2030-01-01T00:00:00Z")}
    v.apply(datetime.now(UTC))
    await run_worker(v, edge, lambda: v.stats.report_errors == 1)
    await asyncio.sleep(0.2)
    assert edge.sent == [] and v._reports.empty()


def test_the_envelope_follows_interval_boundaries_and_new_versions():
    v = ven()
    two = {**event("2030-01-01T00:00:00Z"),
           "intervalPeriod": {"start": "2030-06-01T00:00:00Z", "duration": "PT1H"},
           "intervals": [{"id": 0, "payloads": [{"type": "EXPORT_CAPACITY_LIMIT",
                                                 "values": [3.0]}]},
                         {"id": 1, "payloads": [{"type": "EXPORT_CAPACITY_LIMIT",
                                                 "values": [1.0]}]}]}
    v.events = {"e1": two}
    r1 = v.resources["r1"]
    v.apply(datetime(2030, 6, 1, 0, 30, tzinfo=UTC))
    assert r1.applied.export_max_w == 3000.0
    v.apply(datetime(2030, 6, 1, 0, 59, tzinfo=UTC))  # same interval: kept
    assert r1.applied.export_max_w == 3000.0
    v.apply(datetime(2030, 6, 1, 1, 0, tzinfo=UTC))  # the next interval
    assert r1.applied.export_max_w == 1000.0
    v.apply(datetime(2030, 6, 1, 2, 0, tzinfo=UTC))  # after the event: nothing asked
    assert r1.applied.export_max_w is None
    newer = {**two, "modificationDateTime": "2030-01-02T00:00:00Z", "intervals": [
        {"id": 0, "payloads": [{"type": "EXPORT_CAPACITY_LIMIT", "values": [4.0]}]}]}
    v.events = {"e1": newer}
    v.apply(datetime(2030, 6, 1, 0, 30, tzinfo=UTC))  # a new version is read again
    assert r1.applied.export_max_w == 4000.0


async def test_a_burst_of_notifications_is_applied_once():
    v = ven()
    applied = []
    original = v.apply
    v.apply = lambda now: (applied.append(now), original(now))  # type: ignore[method-assign]
    tick = asyncio.create_task(v._tick_loop())
    try:
        await asyncio.sleep(0.05)
        applied.clear()
        for n in range(50):
            await v._notified({"objectType": "EVENT", "operation": "UPDATE",
                               "object": {**event(f"2030-01-01T00:00:{n:02d}Z"),
                                          "intervalPeriod": {"start": "2020-01-01T00:00:00Z",
                                                             "duration": "P9999Y"}}})
        await asyncio.sleep(0.05)
        assert 1 <= len(applied) <= 2  # not one per notification
        assert v.resources["r1"].applied.export_max_w == 2000.0
    finally:
        tick.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tick
