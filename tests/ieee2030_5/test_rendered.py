"""Pollable control documents are served from rendered state (issue 12, finding 11): no
recomputation per request, a new render on every change, and time still moves a control
from scheduled to active."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from lxml import etree

from tests.ieee2030_5.conftest import limit_control

NS = {"s": "urn:ieee:std:2030.5:ns", "c": "https://csipaus.org/ns"}


class Counting:
    def __init__(self, gateway):
        self.gateway = gateway
        self.calls = 0
        self.inner = gateway.effective_control

    async def __call__(self, rid):
        self.calls += 1
        return await self.inner(rid)


async def test_polls_are_served_from_rendered_state(server):
    server.gateway.controls["der-1"] = replace(limit_control("der-1"),
                                               default_control={"export_max_w": 1500})
    await server.parts.renderer.on_controls_changed(["der-1"])
    edev = server.parts.registry.by_resource("der-1").id
    counting = Counting(server.gateway)
    server.gateway.effective_control = counting
    p = f"/edev/{edev}/derp/1"
    async with server.client("device-1") as c:
        bodies = {}
        for _ in range(20):
            for doc in ("derc", "actderc", "dderc"):
                async with c.get(f"{p}/{doc}") as resp:
                    assert resp.status == 200
                    bodies.setdefault(doc, set()).add(await resp.read())
        assert counting.calls <= 1, "the DefaultDERControl was recomputed per request"
        assert all(len(v) == 1 for v in bodies.values())
        # A change is a new render.
        server.gateway.controls["der-1"] = replace(limit_control("der-1", 3000),
                                                   default_control={"export_max_w": 900})
        await server.parts.renderer.on_controls_changed(["der-1"])
        async with c.get(f"{p}/derc") as resp:
            derc = etree.fromstring(await resp.read())
        async with c.get(f"{p}/dderc") as resp:
            dderc = etree.fromstring(await resp.read())
    live = [c for c in derc.findall("s:DERControl", NS)
            if c.findtext("s:EventStatus/s:currentStatus", namespaces=NS) in ("0", "1")]
    assert [c.findtext("s:DERControlBase/c:opModExpLimW/s:value", namespaces=NS)
            for c in live] == ["3000"]
    assert dderc.findtext("s:DERControlBase/c:opModExpLimW/s:value", namespaces=NS) == "900"


async def test_time_moves_a_rendered_control_to_active(server, monkeypatch):
    import time as real_time

    start = datetime.now(UTC) + timedelta(seconds=30)
    control = limit_control("der-1")
    interval = replace(control.intervals[0], start=start, end=start + timedelta(hours=1))
    server.gateway.controls["der-1"] = replace(control, intervals=(interval,))
    await server.parts.renderer.on_controls_changed(["der-1"])
    edev = server.parts.registry.by_resource("der-1").id
    path = f"/edev/{edev}/derp/1/derc"
    async with server.client("device-1") as c:
        async with c.get(path) as resp:
            status = etree.fromstring(await resp.read()).findtext(
                ".//s:EventStatus/s:currentStatus", namespaces=NS)
        assert status == "0"  # scheduled
        later = real_time.time() + 60
        for module in ("render", "function_sets.tree"):
            monkeypatch.setattr(f"adapters.ieee2030_5.{module}.time.time", lambda: later)
        async with c.get(path) as resp:
            status = etree.fromstring(await resp.read()).findtext(
                ".//s:EventStatus/s:currentStatus", namespaces=NS)
    assert status == "1"  # active, without any re-render by the platform


async def test_the_effective_control_cache_drops_the_oldest_when_full(server, monkeypatch):
    """Bounded for fleets larger than the bound: reaching it drops the least recently
    written entries, not every entry (one more DER would otherwise re-read them all)."""
    monkeypatch.setattr("adapters.ieee2030_5.render.EFFECTIVE_KEPT", 3)
    for rid in ("a", "b", "c", "d"):
        server.gateway.controls[rid] = limit_control(rid)
    publisher = server.parts.renderer.publisher
    publisher.forget(["a", "b", "c", "d"])
    counting = Counting(server.gateway)
    server.gateway.effective_control = counting
    for rid in ("a", "b", "c"):
        await publisher.effective(rid)
    assert counting.calls == 3
    await publisher.effective("d")  # the cache is full: "a", the oldest, goes
    for rid in ("b", "c", "d"):
        await publisher.effective(rid)
    assert counting.calls == 4, "a full cache was emptied rather than trimmed"
    await publisher.effective("a")
    assert counting.calls == 5


async def test_a_refresh_does_not_write_an_older_control_over_a_newer_one(server):
    """The periodic refresh and the event log's batches re-render side by side: a refresh
    that read a DER's control before a batch wrote its successor must not write the older
    one back (a client would answer the control it was sent, and be refused)."""
    import asyncio

    server.gateway.controls["der-1"] = limit_control("der-1", 1000)
    renderer = server.parts.renderer
    await renderer.on_controls_changed(["der-1"])
    read, go_on = asyncio.Event(), asyncio.Event()
    inner = server.gateway.effective_controls

    async def slow_first_read(ids=None):
        found = await inner(ids)
        if not read.is_set():
            read.set()
            await go_on.wait()  # the refresh has read the old control, and waits
        return found

    server.gateway.effective_controls = slow_first_read
    refresh = asyncio.create_task(renderer.refresh_all())
    await read.wait()
    server.gateway.controls["der-1"] = limit_control("der-1", 2000)
    batch = asyncio.create_task(renderer.on_controls_changed(["der-1"]))
    await asyncio.sleep(0.05)
    go_on.set()
    await asyncio.gather(refresh, batch)
    published = await renderer.publisher.published("der-1")
    live = [c for c in published if c.status == 0]
    assert len(live) == 1 and "2000" in live[0].base_xml, \
        f"the refresh wrote the older control back: {[c.base_xml for c in live]}"
