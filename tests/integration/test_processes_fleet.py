"""Two gateway processes on one host and one PostgreSQL database, sharing their ports
(SO_REUSEPORT), fan a limit out to 1,000 simulated DERs (2030.5 aggregator clients with
subscriptions, OpenADR VENs with webhooks, SunSpec Modbus inverters). One process is killed
with SIGKILL in the middle: the survivor finishes the fan-out, every DER acknowledges, and
the dead process's Modbus buckets are polled again within 10 s (issue 14)."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from gateway.store.engine import Database
from simulators.scenario.console import Console
from simulators.scenario.gateway_proc import environment
from simulators.scenario.runner import Run, RunOptions
from simulators.scenario.spec import parse
from tests.support.postgres import postgres_cluster

pytestmark = [pytest.mark.timeout(600)]
DERS = 1000


def fanout(n: int) -> dict:
    n2030, nven = n // 2, n // 4
    fleets = [{"name": f"s{k}", "protocol": "ieee2030_5", "client": "aggregator",
               "subscribe": True, "count": min(250, n2030 - 250 * k), "aggregator": "agg",
               "connection_points": ["cp"]} for k in range((n2030 + 249) // 250)]
    fleets += [{"name": f"v{k}", "protocol": "openadr3", "subscribe": True,
                "count": min(125, nven - 125 * k), "aggregator": "agg",
                "connection_points": ["cp"]} for k in range((nven + 124) // 125)]
    fleets.append({"name": "m", "protocol": "modbus", "count": n - n2030 - nven,
                   "aggregator": "agg", "connection_points": ["cp"]})
    return {"name": "two processes", "duration_s": 0,
            "rates": {"ieee2030_5_poll_s": 60, "ieee2030_5_post_s": 3600, "ven_poll_s": 60.0,
                      "ven_report_s": 3600.0, "modbus_poll_s": 1.0},
            "ldc": [{"id": "ldc", "dso_model": "dual_participation"}],
            "aggregator": [{"id": "agg"}],
            "connection_point": [{"id": "cp", "ldc": "ldc", "td_node": "N"}],
            "fleet": fleets,
            "timeline": [{"at_s": 3, "by": "ldc", "kind": "limit",
                          "target": {"kind": "area", "id": "ldc"},
                          "limits": {"export_max_w": n * 4000.0}, "reason": "fan-out"}]}


def start(work: Path, env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
    with (work / f"{name}.log").open("ab") as log:  # (the child keeps its own descriptor)
        return subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve"], cwd=work,
                                env={**os.environ, **env, "DERGW_PROCESS_NAME": name},
                                stdout=log, stderr=subprocess.STDOUT)


async def healthy(env: dict[str, str], proc: subprocess.Popen[bytes], work: Path,
                  name: str) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError((work / f"{name}.log").read_text()[-3000:])
        if (work / f"{name}.log").read_bytes().count(b"der-gateway is running"):
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(name)


async def buckets(url: str) -> dict[str, str]:
    db = Database(url)
    try:
        async with db.read() as session:
            rows = await session.execute(text(
                "SELECT name, holder FROM lease WHERE name LIKE 'modbus:devices:%' "
                "AND expires_at > now()"))
            return {str(n): str(h) for n, h in rows.all()}
    finally:
        await db.close()


async def test_a_killed_process_s_fan_out_is_finished_by_the_survivor(tmp_path):
    with postgres_cluster(tmp_path) as url:
        env, endpoints = environment(tmp_path, {"poll_interval_s": 1.0,
                                                "telemetry_interval_s": 3600})
        env |= {"DERGW_DATABASE_URL": url, "DERGW_REUSE_PORT": "true",
                "DERGW_LOG_LEVEL": "INFO"}
        procs: list[subprocess.Popen[bytes]] = []
        killed_at = None
        task: asyncio.Task | None = None
        try:
            a = start(tmp_path, env, "a")
            procs.append(a)
            await healthy(env, a, tmp_path, "a")  # (a makes the dev PKI; b then shares it)
            b = start(tmp_path, env, "b")
            procs.append(b)
            await healthy(env, b, tmp_path, "b")
            out = io.StringIO()
            run = Run(parse(fanout(DERS)), endpoints,
                      RunOptions(ack_timeout_s=240.0, ready_timeout_s=240.0, settle_s=0.0,
                                 status_every_s=5.0, quiet=True), Console(out, quiet=True))
            task = asyncio.create_task(run.run())
            while not task.done():
                await asyncio.sleep(0.2)
                pending = run.results[0].pending if run.results else None
                if killed_at is None and pending and len(pending.acked) >= DERS // 5:
                    before = await buckets(url)
                    a.send_signal(signal.SIGKILL)  # in the middle of the fan-out
                    killed_at = asyncio.get_running_loop().time()
                    a.wait()
                    dead = {n for n, h in before.items() if h.startswith("a#")}
                    while asyncio.get_running_loop().time() - killed_at < 10:
                        now = await buckets(url)
                        if dead and all(now.get(n, "").startswith("b#") for n in dead):
                            break
                        await asyncio.sleep(0.5)
                    taken = asyncio.get_running_loop().time() - killed_at
                    now = await buckets(url)
                    assert dead, f"a held no Modbus bucket: {before}"
                    assert all(now.get(n, "").startswith("b#") for n in dead), (now, taken)
                    assert taken < 10, taken
            summary = await task
        finally:
            if task is not None:
                task.cancel()
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(30)
        assert killed_at is not None, "the fan-out finished before the kill"
        p = summary.steps[0].pending
        assert p is not None and len(p.expected) == DERS
        missing = sorted(set(p.expected) - set(p.acked))
        assert not missing, f"{len(missing)} DERs never acknowledged, e.g. {missing[:10]}"
