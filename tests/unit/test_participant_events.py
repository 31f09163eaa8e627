"""Participant changes are announced like every other change: one outbox row per participant
in the transaction that stores it, published by the outbox relay; never a credential."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from gateway.bus import Event, InProcessBus, Subscription, Topic
from gateway.domain import DsoModel, Participant, Role
from gateway.errors import Conflict, InvalidInput
from gateway.outbox import OutboxRelay
from gateway.services import TOKEN_PREFIX, GatewayServices
from gateway.store.engine import Database
from gateway.store.tables import OutboxRow

ADMIN = Participant("admin", Role.ADMIN)
CERT = "ab" * 32


@pytest.fixture
async def core(tmp_path) -> AsyncIterator[tuple[Database, GatewayServices, Subscription]]:
    """The store, the services and a bus subscriber, wired as the runtime wires them."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    await db.upgrade()
    bus = InProcessBus()
    relay = OutboxRelay(db, bus)
    services = GatewayServices(db, on_commit=relay.wake)
    try:
        async with bus.subscription(Topic.PARTICIPANT_CHANGED) as sub, relay.running():
            yield db, services, sub
    finally:
        await db.close()


async def outbox(db: Database) -> list[OutboxRow]:
    async with db.read() as session:
        return list((await session.execute(select(OutboxRow).order_by(OutboxRow.id))).scalars())


async def all_marked_published(db: Database) -> bool:
    """The relay marks rows after publishing them: wait (up to 5 s) until it has."""
    for _ in range(500):
        if all(r.published_at is not None for r in await outbox(db)):
            return True
        await asyncio.sleep(0.01)
    return False


async def received(sub: Subscription, count: int) -> list[Event]:
    return [await asyncio.wait_for(sub.get(), 5.0) for _ in range(count)]


async def test_registering_writes_one_row_per_participant_and_the_relay_publishes_them(core):
    db, services, sub = core
    assert await services.ensure_participant(ADMIN)
    assert not await services.ensure_participant(ADMIN)  # already there: nothing written
    await services.register_participants(ADMIN, [
        Participant("ldc-h", Role.LDC, dso_model=DsoModel.DUAL_PARTICIPATION, cert_sha256=CERT),
        Participant("ldc-e", Role.LDC, dso_model=DsoModel.TOTAL, host_ldc_id="ldc-h"),
        Participant("scada-e", Role.SCADA, ldc_id="ldc-e")])
    expected = [{"participant_id": pid, "change": "registered"}
                for pid in ("admin", "ldc-h", "ldc-e", "scada-e")]

    events = await received(sub, 4)
    assert [(e.topic, e.payload) for e in events] == \
        [(Topic.PARTICIPANT_CHANGED, p) for p in expected]
    rows = await outbox(db)
    assert [(r.id, r.topic, r.payload) for r in rows] == \
        [(e.id, e.topic, e.payload) for e in events]  # exactly these rows, in this order
    assert await all_marked_published(db)
    assert CERT not in json.dumps([r.payload for r in rows])


async def test_a_refused_registration_writes_no_row(core):
    db, services, sub = core
    await services.register_participants(ADMIN, [ADMIN])
    await received(sub, 1)
    with pytest.raises(Conflict):  # the whole batch is rolled back with its rows
        await services.register_participants(ADMIN, [Participant("iso", Role.ISO), ADMIN])
    with pytest.raises(InvalidInput):
        await services.register_participants(ADMIN, [Participant("s", Role.SCADA)])
    assert [r.payload["participant_id"] for r in await outbox(db)] == ["admin"]
    assert await services.participant("iso") is None


async def test_tokens_are_announced_without_the_token(core):
    db, services, sub = core
    await services.register_participants(ADMIN, [
        ADMIN, Participant("ldc-a", Role.LDC, dso_model=DsoModel.TOTAL)])
    await received(sub, 2)
    token, _ = await services.issue_token(ADMIN, "ldc-a")
    token_id, _, secret = token.removeprefix(TOKEN_PREFIX).partition(".")
    await services.revoke_token(ADMIN, token_id)
    await services.revoke_token(ADMIN, token_id)  # revoked already: nothing new to announce
    events = await received(sub, 2)
    assert [e.payload for e in events] == [
        {"participant_id": "ldc-a", "change": "token_issued"},
        {"participant_id": "ldc-a", "change": "token_revoked"}]
    assert len(await outbox(db)) == 4
    payloads = json.dumps([r.payload for r in await outbox(db)])
    assert secret not in payloads and token_id not in payloads
