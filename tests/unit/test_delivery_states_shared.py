"""With several processes, a delivery mark that one process would skip as a repeat of what
it last wrote is written again once the event log says another process wrote otherwise
(else the store keeps the other's `undeliverable` although this process reaches the DER)."""

from __future__ import annotations

from gateway.domain import (
    Binding,
    ConnectionPoint,
    DeliveryMark,
    DeliveryState,
    DerKind,
    DsoModel,
    Nameplate,
    Participant,
    Resource,
    Role,
)
from gateway.services import GatewayServices
from gateway.store.engine import Database


async def test_a_mark_is_written_again_after_another_process_wrote_otherwise(tmp_path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}")
    await db.upgrade()
    try:
        a = GatewayServices(db)
        admin = Participant("admin", Role.ADMIN)
        await a.register_participants(admin, [
            admin, Participant("ldc", Role.LDC, dso_model=DsoModel.DUAL_PARTICIPATION)])
        await a.register_connection_points(admin, [ConnectionPoint("cp", "ldc", "N")])
        await a.register_resources(admin, [Resource(
            "d1", "cp", DerKind.PV, Nameplate(5_000),
            Binding("modbus", {"host": "h", "port": 502, "unit_id": 1}))])
        b = GatewayServices(db)  # a second process over the same store

        async def state() -> str:
            return (await a.delivery_states(["d1"]))["d1"].state.value

        await b.mark_delivery([DeliveryMark("d1", DeliveryState.FETCHED)])
        await a.mark_delivery([DeliveryMark("d1", DeliveryState.UNDELIVERABLE, "unreachable")])
        await b.mark_delivery([DeliveryMark("d1", DeliveryState.FETCHED)])
        assert await state() == "undeliverable"  # b skipped it: the same as it last wrote

        b.feedback.delivery.heard([("d1", "undeliverable", "unreachable")])  # the event log
        await b.mark_delivery([DeliveryMark("d1", DeliveryState.FETCHED)])
        assert await state() == "fetched"

        b.feedback.delivery.heard([("d1", "fetched", "")])  # its own announcement: no cost
        assert "d1" in b.feedback.delivery._known
    finally:
        await db.close()
