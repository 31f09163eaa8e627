"""Retention: the store keeps what operators need, not everything forever.

Every `interval_s`, in the background, rows older than their table's retention are deleted
in small batches (each its own short transaction, with a pause between, so the event loop
and other writers are never held up for long):

    readings                                      readings_days          90 days
    acknowledgements (but those of live ones)     acknowledgements_days  365 days
    notices                                       notices_days           365 days
    outbox rows already published (the event      outbox_hours           24 hours
      stream replays this far back)
    deliveries delivered or failed for good       deliveries_days        7 days

Acknowledgements of live instructions are kept whatever their age: coordination reads the
latest answer of each DER to each live dispatch (a refusal re-allocates its share).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from gateway.background import background
from gateway.domain import utcnow
from gateway.settings import RetentionSettings
from gateway.store import repo
from gateway.store.engine import Database

log = logging.getLogger(__name__)


class Retention:
    def __init__(self, db: Database, settings: RetentionSettings) -> None:
        self._db = db
        self._s = settings
        self.deleted: dict[str, int] = {}  # totals per table, for metrics and tests

    async def run_once(self) -> dict[str, int]:
        """One pass over every table; returns the rows deleted per table."""
        now = utcnow()
        s = self._s
        cutoffs = {
            "reading": now - timedelta(days=s.readings_days),
            "acknowledgement": now - timedelta(days=s.acknowledgements_days),
            "notice": now - timedelta(days=s.notices_days),
            "outbox": now - timedelta(hours=s.outbox_hours),
            "delivery": now - timedelta(days=s.deliveries_days),
        }
        done: dict[str, int] = {}
        for table, cutoff in cutoffs.items():
            total = 0
            while True:
                async with self._db.write() as session:
                    n = await repo.delete_older(session, table, cutoff, now, self._s.batch)
                total += n
                if n < self._s.batch:
                    break
                await asyncio.sleep(self._s.pause_s)  # let the rest of the gateway write
            done[table] = total
            self.deleted[table] = self.deleted.get(table, 0) + total
        if any(done.values()):
            log.info("retention deleted %s", ", ".join(f"{n} {t}" for t, n in done.items() if n))
        return done

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with background(self._loop(), "retention"):
            yield

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # the next pass tries again
                log.exception("retention pass failed")
            await asyncio.sleep(self._s.interval_s)
