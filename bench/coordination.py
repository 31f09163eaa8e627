"""Recompute effective controls for 100,000 DERs after one ISO dispatch and one DSO limit.

Topology: a total-DSO LDC with 100,000 DERs (PV and batteries) on 100 feeders under one T-D
interface node. The ISO dispatches the aggregate at the node (disaggregated by headroom); the
DSO caps the export of one feeder group (shared by nameplate). Reported: wall time and peak
memory of `Coordinator.coordinate`, beside a floor measured in the same run (a bare loop that
clips one setpoint per DER), so the figure reads as a ratio on any machine.

    python bench/coordination.py [--ders 100000]
"""

from __future__ import annotations

import argparse
import gc
import resource
import time
import tracemalloc
from datetime import UTC, datetime, timedelta

from gateway.coordination.engine import Coordinator
from gateway.coordination.topology import Topology
from gateway.domain import (
    Binding,
    ConnectionPoint,
    DerKind,
    DsoModel,
    Instruction,
    InstructionKind,
    LimitEnvelope,
    Nameplate,
    Participant,
    Resource,
    Role,
    SetpointStep,
    Target,
    TargetKind,
)


def build(n: int) -> tuple[Topology, list[Instruction], datetime]:
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    parts = {"iso": Participant("iso", Role.ISO),
             "ldc": Participant("ldc", Role.LDC, dso_model=DsoModel.TOTAL),
             "agg": Participant("agg", Role.AGGREGATOR)}
    cps = {f"cp{f}": ConnectionPoint(f"cp{f}", "ldc", "N1", f"F{f}") for f in range(100)}
    res = {}
    for i in range(n):
        battery = i % 4 == 0
        res[f"d{i}"] = Resource(f"d{i}", f"cp{i % 100}", DerKind.BATTERY if battery else DerKind.PV,
                                Nameplate(5000.0 + (i % 7) * 1000, 5000.0 if battery else 0.0),
                                Binding("modbus", {"host": "h", "port": 1000 + i // 200,
                                                         "unit_id": i % 200 + 1}),
                                "agg")
    start, end = now, now + timedelta(hours=1)
    dispatch = Instruction("D1", InstructionKind.DISPATCH, "iso", Target(TargetKind.AREA, "ldc"),
                           start, end, now, schedule=(SetpointStep(start, end, 300e6),), seq=1)
    limit = Instruction("L1", InstructionKind.LIMIT, "ldc", Target(TargetKind.FEEDER, "F7"),
                        now - timedelta(minutes=30), now + timedelta(minutes=30), now,
                        "thermal", limits=LimitEnvelope(export_max_w=1e6), seq=2)
    return Topology(parts, cps, res), [dispatch, limit], now


def floor(topology: Topology) -> float:
    t0 = time.perf_counter()
    out = {}
    for rid, r in topology.resources.items():
        out[rid] = min(max(3000.0, -r.nameplate.import_max_w), r.nameplate.export_max_w)
    return time.perf_counter() - t0


async def through_store(topology: Topology, instructions: list[Instruction], n: int) -> None:
    """The same two instructions through GatewayServices on SQLite: authorise, store,
    recompute, write the changed controls and the outbox, commit."""
    import tempfile
    from pathlib import Path

    from gateway.domain import InstructionDraft
    from gateway.services import GatewayServices
    from gateway.store.engine import Database

    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}")
        await db.upgrade()
        services = GatewayServices(db)
        admin = Participant("admin", Role.ADMIN)
        await services.register_participants(admin, [admin, *topology.participants.values()])
        await services.register_connection_points(admin, list(topology.connection_points.values()))
        t0 = time.perf_counter()
        await services.register_resources(admin, list(topology.resources.values()))
        print(f"store: registered {n:,} DERs in {time.perf_counter() - t0:.1f} s")
        now = datetime.now(UTC)
        for ins in instructions:
            draft = InstructionDraft(ins.kind, ins.target, now, now + timedelta(hours=1),
                                     ins.reason, tuple(SetpointStep(now, now + timedelta(hours=1),
                                                                    s.setpoint_w)
                                                       for s in ins.schedule), ins.limits)
            actor = topology.participants[ins.issuer_id]
            t0 = time.perf_counter()
            await services.submit_instruction(actor, draft)
            print(f"store: {ins.kind.value} accepted (recomputed, {n:,} controls written, "
                  f"committed) in {time.perf_counter() - t0:.2f} s")
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ders", type=int, default=100_000)
    parser.add_argument("--store", action="store_true",
                        help="also run the instructions through the services and SQLite")
    args = parser.parse_args()
    topology, instructions, now = build(args.ders)
    coordinator = Coordinator()
    coordinator.coordinate(topology, instructions, now=now)  # warm-up
    gc.collect()
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        result = coordinator.coordinate(topology, instructions, now=now)
        runs.append(time.perf_counter() - t0)
    tracemalloc.start()
    coordinator.coordinate(topology, instructions, now=now)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    base = min(floor(topology) for _ in range(3))
    placed = sum(i.setpoint_w or 0 for c in result.controls.values() for i in c.intervals[:1])
    print(f"DERs: {args.ders:,}  controls: {len(result.controls):,}  notices: "
          f"{len(result.notices):,}  placed: {placed / 1e6:.1f} MW")
    print(f"coordinate: best {min(runs):.3f} s, median {sorted(runs)[1]:.3f} s")
    print(f"floor (bare clip loop): {base * 1000:.1f} ms -> ratio {min(runs) / base:.0f}x")
    print(f"peak traced memory during one recompute: {peak / 2**20:.0f} MiB; "
          f"process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if args.store:
        import asyncio

        asyncio.run(through_store(topology, instructions, args.ders))


if __name__ == "__main__":
    main()
