"""Fan-out: from one platform instruction to every simulated DER acknowledged.

    python bench/fanout.py               # 100 and 1,000 DERs
    python bench/fanout.py --sizes 100 1000 10000

Each size starts a fresh `der-gateway serve` (child process, SQLite, dev PKI), registers one
dual-participation LDC with N DERs, and issues one LDC export limit on the whole area. The
latency of a DER is the time from submitting the instruction to the platform's event stream
reporting that DER's acknowledgement. Protocol mix (state it with the figures):
  50 % IEEE 2030.5 behind aggregator clients (500 EndDevices per certificate, subscriptions),
  25 % OpenADR 3 resources behind VENs (250 per VEN, webhook subscriptions),
  25 % SunSpec Modbus TCP inverters (the gateway polls them; 100 unit ids per port).
Reported: p50 / p95 / max latency, overall and per protocol; the gateway's CPU from
submission to the last acknowledgement, summed over its processes (from /proc), per
acknowledged DER, and that less what the connected fleet costs at rest (its polls, telemetry
and keep-alives, measured over the second half of --rest seconds before the fan-out); peak
RSS per process (VmHWM) and per DER; start-up: seconds to start the gateway, then into the
run until the fleet is registered (topology, 2030.5 grants, VEN credentials) and connected
(2030.5 clients have created their mirror usage points). Raw figures: --out (JSON).

    python bench/fanout.py --sizes 10000 --database postgres --workers 2

runs the gateway on a throwaway PostgreSQL cluster (the test support's) with N workers.

    python bench/fanout.py --sizes 1000 --profile var/profile

also samples every gateway process with py-spy (`pip install py-spy`) from the moment the
fleet is connected to the end of the run, one collapsed-stack file per process (for
flamegraph.pl or speedscope), so the figures can be explained, not only reported
(`--profile-rate N`: samples per second, 50 by default; 200 resolves a 10,000-DER fan-out's
parts).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import math
import os
import signal
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulators.scenario.console import Console
from simulators.scenario.gateway_proc import GatewayChild
from simulators.scenario.runner import Run, RunOptions
from simulators.scenario.spec import parse


def scenario(n: int, per_aggregator: int = 10_000) -> dict:
    """The mix above, split among aggregators of `per_aggregator` DERs each: every client of
    an aggregator lists all of that aggregator's EndDevices, so one aggregator for 100,000
    DERs would make each of its 100 clients page through 50,000 (a fleet nobody runs)."""
    fleets, aggregators = [], []
    for a in range(math.ceil(n / per_aggregator)):
        agg = f"agg{a}" if a else "agg"
        aggregators.append({"id": agg})
        fleets += _aggregator_fleets(agg, min(per_aggregator, n - a * per_aggregator),
                                     prefix="" if not a else f"{a}.")
    return {
        "name": f"fanout-{n}", "duration_s": 0,
        "rates": {"ieee2030_5_poll_s": 300, "ieee2030_5_post_s": 3600, "ven_poll_s": 300.0,
                  "ven_report_s": 3600.0, "modbus_poll_s": 1.0},
        "ldc": [{"id": "ldc", "dso_model": "dual_participation"}],
        "aggregator": aggregators,
        "connection_point": [{"id": "cp", "ldc": "ldc", "td_node": "N"}],
        "fleet": fleets,
        "timeline": [{"at_s": 5, "by": "ldc", "kind": "limit",
                      "target": {"kind": "area", "id": "ldc"},
                      "limits": {"export_max_w": n * 4000.0}, "reason": "fan-out bench"}],
    }


def _aggregator_fleets(agg: str, n: int, prefix: str) -> list[dict]:
    n2030 = n // 2
    nven = n // 4
    nmb = n - n2030 - nven
    fleets = []
    for k in range(math.ceil(n2030 / 500)):
        fleets.append({"name": f"s{prefix}{k}", "protocol": "ieee2030_5", "client": "aggregator",
                       "subscribe": True, "count": min(500, n2030 - 500 * k),
                       "aggregator": agg, "connection_points": ["cp"]})
    for k in range(math.ceil(nven / 250)):
        fleets.append({"name": f"v{prefix}{k}", "protocol": "openadr3", "subscribe": True,
                       "count": min(250, nven - 250 * k), "aggregator": agg,
                       "connection_points": ["cp"]})
    fleets.append({"name": f"m{prefix.rstrip('.')}", "protocol": "modbus", "count": nmb,
                   "aggregator": agg, "connection_points": ["cp"]})
    return fleets


PROTOCOL_OF = {"s": "ieee2030_5", "v": "openadr3", "m": "modbus"}  # by fleet name prefix


def figures(latencies: list[float]) -> dict[str, float]:
    values = sorted(latencies)
    if not values:
        return {}
    return {"p50": round(statistics.median(values), 2),
            "p95": round(values[int(0.95 * (len(values) - 1))], 2), "max": round(values[-1], 2)}


class CpuSamples:
    """The gateway's CPU seconds, sampled every 0.2 s, to read at any moment of the run."""

    def __init__(self, child: GatewayChild) -> None:
        self.child = child
        self.samples: list[tuple[float, float]] = []

    async def run(self) -> None:
        while True:
            self.samples.append((time.monotonic(), self.child.cpu_seconds()))
            await asyncio.sleep(0.2)

    def at(self, when: float) -> float:
        before = [c for t, c in self.samples if t <= when]
        return before[-1] if before else (self.samples[0][1] if self.samples else 0.0)


async def profile_when_connected(run: Run, child: GatewayChild, out: Path, rate: int = 50
                                 ) -> list[asyncio.subprocess.Process]:
    """py-spy on each gateway process once the fleet is connected (start-up is not what the
    figures measure); the caller interrupts them, which makes py-spy write its file."""
    while "connected" not in run.phases:  # noqa: ASYNC110 (a Run announces phases by no event)
        await asyncio.sleep(0.2)
    spies = []
    for pid in child.pids():
        spies.append(await asyncio.create_subprocess_exec(
            str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid),
            "--rate", str(rate), "--format", "raw", "--output", str(out / f"gateway-{pid}.txt"),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL))
    return spies


async def one(n: int, work: Path, progress: bool = False, database_url: str = "",
              workers: int = 1, profile: Path | None = None, step_s: float = 0.2,
              per_aggregator: int = 10_000, rest_s: float = 20.0,
              profile_rate: int = 50) -> dict:
    spec = parse(scenario(n, per_aggregator))
    extra = {"DERGW_DATABASE_URL": database_url} if database_url else {}
    # Light: the Modbus adapter's default poll interval, and a patient time-out (simulated
    # inverters answer late when the fleet's own process is short of CPU).
    modbus = {"poll_interval_s": 5.0 if step_s > 1 else 1.0, "telemetry_interval_s": 3600,
              "timeout_s": 10.0 if step_s > 1 else 2.0}
    child = GatewayChild(work / f"fanout-{n}", modbus=modbus,
                         extra_env=extra, workers=workers)
    started = time.monotonic()
    endpoints = await child.start()
    gateway_s = time.monotonic() - started
    cpu = CpuSamples(child)
    sampler = asyncio.create_task(cpu.run())
    spying: asyncio.Task[list[asyncio.subprocess.Process]] | None = None
    try:
        # The fleet may take long to connect (it is not what is measured); the wait for
        # acknowledgements only bounds a run that would never complete.
        run = Run(spec, endpoints, RunOptions(ack_timeout_s=max(60.0, n / 20),
                                              ready_timeout_s=max(120.0, n / 20), settle_s=0.0,
                                              status_every_s=10.0, quiet=not progress,
                                              step_s=step_s, rest_s=rest_s,
                                              device_tick_s=step_s if step_s > 1 else 0.25),
                  Console(sys.stderr if progress else io.StringIO(), quiet=not progress))
        if profile:
            spying = asyncio.create_task(profile_when_connected(run, child, profile,
                                                                 profile_rate))
        summary = await run.run()
        await asyncio.sleep(0.3)  # one more CPU sample after the last acknowledgement
        peaks = child.peak_rss_by_process_mb()
    finally:
        sampler.cancel()
        if spying is not None:
            spies = await spying if spying.done() else []
            spying.cancel()
            for spy in spies:
                spy.send_signal(signal.SIGINT)
                await spy.wait()
        await child.stop()
    p = summary.steps[0].pending
    acked = p.acked if p else {}
    cpu_ms_per_der = net_ms_per_der = rest_cores = None
    if "rested" in run.phases:  # the connected fleet's cost at rest, in cores: over the
        # rest's second half (the first still has the last clients' start-up in it)
        rest_to = run.t0 + run.phases["rested"]
        rest_from = rest_to - (run.phases["rested"] - run.phases["connected"]) / 2
        rest_cores = (cpu.at(rest_to) - cpu.at(rest_from)) / (rest_to - rest_from)
    if p and acked:
        window = max(acked.values())
        used = cpu.at(p.submitted + window) - cpu.at(p.submitted)
        cpu_ms_per_der = round(1000 * used / len(acked), 2)
        if rest_cores is not None:  # the fan-out's own work: less what the fleet costs at rest
            net_ms_per_der = round(1000 * (used - rest_cores * window) / len(acked), 2)
    by_protocol: dict[str, list[float]] = {}
    for der_id, latency in acked.items():
        by_protocol.setdefault(PROTOCOL_OF[der_id[0]], []).append(latency)
    return {"ders": n, "acked": len(acked), "expected": len(p.expected) if p else 0,
            **figures(list(acked.values())),
            "by_protocol": {k: {"acked": len(v), **figures(v)}
                            for k, v in sorted(by_protocol.items())},
            "cpu_ms_per_acked_der": cpu_ms_per_der, "workers": workers,
            "rest_cores": None if rest_cores is None else round(rest_cores, 3),
            "fanout_cpu_ms_per_der_net_of_rest": net_ms_per_der,
            "database": "postgres" if database_url else "sqlite",
            "peak_rss_mb": round(max(peaks.values(), default=0)),
            "peak_rss_mb_by_process": sorted(round(v) for v in peaks.values()),
            "peak_kb_per_der": round(1024 * max(peaks.values(), default=0) / n, 1),
            "startup_s": {"gateway": round(gateway_s, 1),
                          **{k: round(v, 1) for k, v in run.phases.items()}},
            "wall_s": round(time.monotonic() - started, 1)}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--workdir", type=Path, default=Path("var/bench"))
    ap.add_argument("--progress", action="store_true", help="narrate each run on stderr")
    ap.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--workers", type=int, default=1, help="gateway processes (postgres)")
    ap.add_argument("--light", action="store_true", help="step the simulated DERs' models "
                    "every 5 s, not 0.2 s (their ramps coarser; what the gateway does is the "
                    "same), 2030.5 clients and VENs looking at their schedules every 5 s, not "
                    "0.25 s, Modbus polled every 5 s (the adapter's default) with a 10 s "
                    "time-out: for 100,000 DERs, whose models would fill a core by themselves")
    ap.add_argument("--per-aggregator", type=int, default=10_000,
                    help="DERs per aggregator (each aggregator gets the whole mix)")
    ap.add_argument("--profile", type=Path, help="sample the gateway with py-spy from the "
                    "fleet's connection on; one collapsed-stack file per process here")
    ap.add_argument("--profile-rate", type=int, default=50,
                    help="py-spy samples per second (with --profile)")
    ap.add_argument("--rest", type=float, default=20.0, help="seconds the connected fleet "
                    "idles before the fan-out (so the last clients' start-up is not in the "
                    "fan-out's figures); what it costs the gateway at rest is measured over "
                    "the second half")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results")
                    / "fanout.json", help="where the raw figures go (JSON)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    # The simulated inverters' server complains of every request the gateway gave up on
    # (with a hex dump): counted by the gateway's own metrics, not narrated here.
    logging.getLogger("pymodbus").setLevel(logging.ERROR)
    print("mix: 50% 2030.5 (aggregator clients, subscriptions), 25% OpenADR 3 (VENs, webhooks),"
          " 25% SunSpec Modbus")
    print(f"database {args.database}, {args.workers} worker(s), aggregators of "
          f"{args.per_aggregator} DERs" + (", light fleet (models stepped every 5 s)"
                                           if args.light else ""))
    print(f"{'DERs':>6} {'acked':>11} {'p50 s':>7} {'p95 s':>7} {'max s':>7} {'CPU ms/DER':>10} "
          f"{'gw peak MB':>10}  start-up s (gateway, registered, connected)")
    results = []
    with contextlib.ExitStack() as stack:
        url = ""
        if args.database == "postgres":
            from tests.support.postgres import postgres_cluster

            url = stack.enter_context(postgres_cluster(args.workdir))
        for n in args.sizes:
            if args.profile:
                (args.profile / f"{n}").mkdir(parents=True, exist_ok=True)
            r = await one(n, args.workdir, args.progress, url, args.workers,
                          args.profile / f"{n}" if args.profile else None,
                          5.0 if args.light else 0.2, args.per_aggregator, args.rest,
                          args.profile_rate)
            results.append(r)
            up = r["startup_s"]
            print(f"{r['ders']:>6} {r['acked']:>5}/{r['expected']:<5} {r.get('p50', '-'):>7} "
                  f"{r.get('p95', '-'):>7} {r.get('max', '-'):>7} "
                  f"{r['cpu_ms_per_acked_der'] or '-':>10} {r['peak_rss_mb']:>10}  "
                  f"{up['gateway']}, {up.get('registered', '-')}, {up.get('connected', '-')}",
                  flush=True)
            if r["rest_cores"] is not None:
                print(f"{'':>6} at rest before the fan-out: {r['rest_cores']} of a core; the "
                      f"fan-out less that: {r['fanout_cpu_ms_per_der_net_of_rest']} ms per DER",
                      flush=True)
            for proto, f in r["by_protocol"].items():
                print(f"{'':>6} {proto:>11} {f.get('p50', '-'):>7} {f.get('p95', '-'):>7} "
                      f"{f.get('max', '-'):>7}   ({f['acked']} acked)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpu_count": os.cpu_count(), "runs": results}, indent=2)
                        + "\n")


if __name__ == "__main__":
    asyncio.run(main())
