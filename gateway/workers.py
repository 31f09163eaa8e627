"""`der-gateway serve --workers N`: N gateway processes on one host, one gateway.

Each worker is a whole gateway (`der-gateway serve`) on the same PostgreSQL database and
the same listening ports (SO_REUSEPORT: the kernel spreads connections over them), named
`<host>/worker-<i>` so that its event-log position survives its restarts. The supervisor
only starts, restarts and stops them: a worker that dies is started again (after a pause
that grows if it keeps dying), and meanwhile the others serve its clients and take over
its leased work. SIGTERM or SIGINT stops every worker gracefully.

SQLite has one writer and lives in one process: asking for several workers on it is an
error, said before anything starts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from contextlib import suppress

from gateway.settings import Settings

log = logging.getLogger(__name__)
MAX_PAUSE_S = 30.0


class WorkersError(Exception):
    pass


def check(settings: Settings, workers: int) -> None:
    if workers < 1:
        raise WorkersError("--workers must be at least 1")
    if workers > 1 and not settings.is_postgres:
        raise WorkersError(
            "several workers need PostgreSQL (set database_url to postgresql+asyncpg://...); "
            "SQLite is the embedded, one-process store")


async def supervise(argv: list[str], workers: int, base_name: str = "") -> int:
    """Run `workers` copies of `der-gateway serve <argv>` until SIGTERM/SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    host = base_name or socket.gethostname()
    tasks = [asyncio.create_task(_keep_running(i, argv, f"{host}/worker-{i}", stop),
                                 name=f"worker-{i}") for i in range(workers)]
    print(f"der-gateway: {workers} workers on one set of ports (PostgreSQL); "
          "stop with Ctrl-C or SIGTERM", flush=True)
    await stop.wait()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    return 0 if all(r == 0 for r in results) else 1


async def _keep_running(index: int, argv: list[str], name: str, stop: asyncio.Event) -> int:
    pause = 1.0
    while not stop.is_set():
        env = {**os.environ, "DERGW_PROCESS_NAME": name, "DERGW_REUSE_PORT": "true"}
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "serve", *argv, env=env)
        waiter = asyncio.create_task(proc.wait())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if stop.is_set():
            if proc.returncode is None:
                proc.terminate()
            with suppress(TimeoutError):
                await asyncio.wait_for(waiter, 30)
            if proc.returncode is None:
                proc.kill()
                await waiter
            return 0 if proc.returncode in (0, -signal.SIGTERM) else int(proc.returncode or 1)
        code = proc.returncode
        pause = 1.0 if time.monotonic() - started > 60 else min(MAX_PAUSE_S, pause * 2)
        log.warning("worker %d (%s) exited with %s; starting it again in %.0f s", index, name,
                    code, pause)
        print(f"der-gateway: worker {index} exited ({code}); restarting in {pause:.0f} s",
              file=sys.stderr, flush=True)
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), pause)
    return 0
