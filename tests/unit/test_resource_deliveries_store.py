"""The store's latest delivery mark per DER: new DERs inserted, known ones updated, each mark
returned with the state it replaced - also when one batch marks a DER twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.domain import DeliveryMark, DeliveryState
from gateway.store import repo
from gateway.store.engine import Database

T0 = datetime(2026, 12, 8, 1, 0, tzinfo=UTC)


async def test_marks_insert_update_and_report_what_they_replaced(tmp_path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}")
    await db.upgrade()
    try:
        async with db.write() as session:
            first = await repo.put_resource_deliveries(session, [
                DeliveryMark("a", DeliveryState.FETCHED, at=T0),
                DeliveryMark("b", DeliveryState.PENDING, "queued", at=T0)])
        assert [p for _, p in first] == [None, None]

        later = T0 + timedelta(seconds=5)
        async with db.write() as session:
            second = await repo.put_resource_deliveries(session, [
                DeliveryMark("a", DeliveryState.FETCHED, at=later),  # same state: since kept
                DeliveryMark("b", DeliveryState.DELIVERED, at=later),
                DeliveryMark("c", DeliveryState.PENDING, at=later),
                DeliveryMark("c", DeliveryState.UNDELIVERABLE, "refused", at=later)])
        assert [p for _, p in second] == [DeliveryState.FETCHED, DeliveryState.PENDING, None,
                                          DeliveryState.PENDING]

        async with db.read() as session:
            stored = await repo.resource_deliveries(session, None)
        assert stored["a"].state is DeliveryState.FETCHED and stored["a"].since == T0
        assert stored["a"].last_fetched_at == later
        assert stored["b"].state is DeliveryState.DELIVERED and stored["b"].since == later
        assert stored["b"].last_delivered_at == later and stored["b"].reason == ""
        assert stored["c"].state is DeliveryState.UNDELIVERABLE
        assert stored["c"].reason == "refused"
    finally:
        await db.close()
