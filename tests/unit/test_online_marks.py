"""Online marks in bulk: one transaction, one recompute, the same outcome as one by one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from gateway.bus import Topic
from gateway.coordination.engine import Coordinator
from gateway.domain import (
    Binding,
    ConnectionPoint,
    DerKind,
    DsoModel,
    InstructionDraft,
    InstructionKind,
    Nameplate,
    Participant,
    Resource,
    Role,
    SetpointStep,
    Target,
    TargetKind,
)
from gateway.errors import NotFound
from gateway.services import GatewayServices
from gateway.store.engine import Database
from gateway.store.tables import OutboxRow


async def total_dso_with_dispatch(tmp_path, ders: int) -> tuple[Database, GatewayServices]:
    """An ISO dispatch of 1,000 W per DER at a total DSO's T-D node, shared among the
    online DERs below it."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'o.db'}")
    await db.upgrade()
    services = GatewayServices(db)
    admin = Participant("admin", Role.ADMIN)
    await services.register_participants(admin, [
        admin, Participant("iso", Role.ISO), Participant("a", Role.LDC, dso_model=DsoModel.TOTAL)])
    await services.register_connection_points(admin, [ConnectionPoint("cp", "a", "N")])
    await services.register_resources(admin, [Resource(
        f"d{i}", "cp", DerKind.PV, Nameplate(10_000), Binding(
            "modbus", {"host": "h", "port": 502, "unit_id": i})) for i in range(ders)])
    now = datetime.now(UTC)
    hour = (SetpointStep(now, now + timedelta(hours=1), 1000.0 * ders),)
    await services.submit_instruction(await services.participant("iso"), InstructionDraft(
        InstructionKind.DISPATCH, Target(TargetKind.NODE, "N"), now, now + timedelta(hours=1),
        schedule=hour))
    return db, services


async def setpoints(services: GatewayServices) -> dict[str, float | None]:
    now = datetime.now(UTC)
    controls = await services.effective_controls()
    return {rid: (i.setpoint_w if (i := c.at(now)) else None) for rid, c in controls.items()}


async def test_a_batch_of_marks_is_one_recompute_with_the_outcome_of_single_marks(tmp_path):
    db, services = await total_dso_with_dispatch(tmp_path, 4)
    try:
        await marks_in_bulk(db, services)
    finally:
        await db.close()


async def marks_in_bulk(db: Database, services: GatewayServices) -> None:
    assert list((await setpoints(services)).values()) == [pytest.approx(1000.0)] * 4

    await services.set_online_many({"d2": True})  # first contact: None (never heard) -> True
    changed = await services.set_online_many({"d0": False, "d1": False, "d2": True, "gone": False})
    assert changed == {"d0": False, "d1": False}  # d2 was online already; unknown ids skipped
    after = await setpoints(services)
    assert after["d2"] == pytest.approx(2000.0) and after["d3"] == pytest.approx(2000.0)
    assert not (await services.resource("d0")).online
    async with db.read() as session:
        marks = [r.payload for r in (await session.execute(select(OutboxRow).where(
            OutboxRow.topic == Topic.RESOURCE_CHANGED))).scalars() if "online" in r.payload]
    assert sorted((m["resource_id"], m["online"]) for m in marks) == [
        ("d0", False), ("d1", False), ("d2", True)]
    assert await services.set_online_many({"d0": False}) == {}

    await services.set_online("d0", True)  # the single mark is the same path
    assert (await setpoints(services))["d0"] == pytest.approx(4000.0 / 3)
    with pytest.raises(NotFound):
        await services.set_online("gone", True)


class CountingCoordinator(Coordinator):
    """The engine, counting how often it is asked to coordinate."""

    runs = 0

    def coordinate(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.runs += 1
        return super().coordinate(*args, **kwargs)


async def test_a_first_contact_changes_no_control_and_keeps_the_topology(tmp_path):
    """Thousands of DERs are marked online at their first contact: a DER not yet heard from
    already counts as available, so nothing is recomputed and the cached topology takes the
    flags in place instead of being read again."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'o.db'}")
    await db.upgrade()
    engine = CountingCoordinator()
    services = GatewayServices(db, engine)
    admin = Participant("admin", Role.ADMIN)
    await services.register_participants(admin, [
        admin, Participant("a", Role.LDC, dso_model=DsoModel.TOTAL)])
    await services.register_connection_points(admin, [ConnectionPoint("cp", "a", "N")])
    await services.register_resources(admin, [Resource(
        f"d{i}", "cp", DerKind.PV, Nameplate(10_000), Binding(
            "modbus", {"host": "h", "port": 502, "unit_id": i})) for i in range(3)])
    cached = await services.topology()
    runs = engine.runs
    assert await services.set_online_many({"d0": True, "d1": True}) == {"d0": True, "d1": True}
    assert engine.runs == runs  # no recompute
    after = await services.topology()
    assert after is not cached and after.resources["d0"].online is True
    assert after.resources["d2"].online is None and after.participants is cached.participants
    await services.set_online_many({"d0": False})  # this one changes availability
    assert engine.runs == runs + 1
    assert (await services.topology()).resources["d0"].online is False
    await db.close()


async def test_flips_and_registrations_change_the_cached_topology_in_place(tmp_path,
                                                                           monkeypatch):
    """A DER going offline and back, and new DERs, are taken into the cached topology in
    place: the store's DERs are not all read again (at 100,000 DERs a read took seconds,
    inside a write), and what is cached is what a fresh read gives."""
    from gateway.store import repo

    db, services = await total_dso_with_dispatch(tmp_path, 4)
    try:
        await services.set_online_many({f"d{i}": True for i in range(4)})
        await services.uow.topology()
        reads = 0
        real = repo.resources

        async def counted(*args, **kwargs):
            nonlocal reads
            reads += 1
            return await real(*args, **kwargs)

        monkeypatch.setattr(repo, "resources", counted)
        before = await setpoints(services)
        await services.set_online_many({"d0": False})  # a flip: d0's share moves
        after = await setpoints(services)
        assert before["d0"] == 1000.0 and not after["d0"]
        assert after["d1"] == pytest.approx(4000.0 / 3)
        await services.set_online_many({"d0": True})
        assert await services.set_online_many({"d1": True}) == {}  # a repeat: no change
        await services.uow.topology()
        admin = await services.participant("admin")
        await services.register_resources(admin, [Resource(
            "d9", "cp", DerKind.PV, Nameplate(10_000), Binding(
                "modbus", {"host": "h", "port": 502, "unit_id": 9}))])
        cached = await services.uow.topology()
        assert reads == 0
        monkeypatch.setattr(repo, "resources", real)
        async with db.read() as session:
            stored = {r.id: r for r in await repo.resources(session)}
        assert dict(cached.resources) == stored
    finally:
        await db.close()
