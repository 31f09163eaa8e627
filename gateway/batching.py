"""Group commit: concurrent calls that each write one small item share one transaction.

SQLite has one writer, and each write transaction holds it across several trips through the
database thread, each waiting for an event-loop turn. Thousands of DERs acknowledging at
once (one transaction each) queue behind one another for minutes. A `Coalescer` lets the
first caller start a batch; whoever arrives while it is being written goes into the next
one. Each caller still gets its own result, or the batch's exception, and only after the
commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class Coalescer[T, R]:
    def __init__(self, write: Callable[[list[T]], Awaitable[list[R]]],
                 max_batch: int = 500) -> None:
        self._write = write
        self._max = max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._drainer: asyncio.Task[None] | None = None
        self.batches = 0

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._drainer is None or self._drainer.done():
            # Its own task: a caller that gives up must not stop the others' batch.
            self._drainer = asyncio.create_task(self._drain(), name="group-commit")
        return await future

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:self._max], self._pending[self._max:]
            try:
                results = await self._write([item for item, _ in batch])
            except Exception as exc:  # every caller of the batch hears of it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except BaseException as exc:  # cancelled (shutdown): nobody waits forever
                for _, future in batch + self._pending:
                    if not future.done():
                        future.set_exception(exc)
                self._pending = []
                raise
            self.batches += 1
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():  # (a caller may have given up meanwhile)
                    future.set_result(result)
