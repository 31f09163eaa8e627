"""Soak: does the gateway stay flat over time? (issue 17: retention, memory, open files)

    python bench/soak.py                  # 200 DERs, 30 minutes
    python bench/soak.py --minutes 10 --ders 100

A fresh `der-gateway serve` with retention set short (rows older than 5 minutes go, a pass
every minute) and a fleet of simulated DERs (half IEEE 2030.5 behind an aggregator client
with subscriptions, a quarter OpenADR VENs with webhooks, a quarter SunSpec Modbus) that
report readings every 30 s, while an LDC sends an instruction every 30 s (limits on the
whole area, alternating). Every minute it samples the gateway's resident memory, open files
and database size; it reports them after warm-up and at the end (goal: flat).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulators.scenario.console import Console
from simulators.scenario.gateway_proc import GatewayChild
from simulators.scenario.runner import Run, RunOptions
from simulators.scenario.spec import parse

SHORT_RETENTION = {  # rows older than 5 minutes go; a pass every minute
    "DERGW_RETENTION__READINGS_DAYS": str(5 / 1440),
    "DERGW_RETENTION__ACKNOWLEDGEMENTS_DAYS": str(5 / 1440),
    "DERGW_RETENTION__NOTICES_DAYS": str(5 / 1440),
    "DERGW_RETENTION__DELIVERIES_DAYS": str(5 / 1440),
    "DERGW_RETENTION__OUTBOX_HOURS": str(5 / 60),
    "DERGW_RETENTION__INTERVAL_S": "60",
}


def scenario(n: int, minutes: float) -> dict:
    n2030, nven = n // 2, n // 4
    fleets = [{"name": f"s{k}", "protocol": "ieee2030_5", "client": "aggregator",
               "subscribe": True, "count": min(500, n2030 - 500 * k), "aggregator": "agg",
               "connection_points": ["cp"]} for k in range(math.ceil(n2030 / 500))]
    fleets += [{"name": f"v{k}", "protocol": "openadr3", "subscribe": True,
                "count": min(250, nven - 250 * k), "aggregator": "agg",
                "connection_points": ["cp"]} for k in range(math.ceil(nven / 250))]
    fleets.append({"name": "m", "protocol": "modbus", "count": n - n2030 - nven,
                   "aggregator": "agg", "connection_points": ["cp"]})
    steps = [{"at_s": 10 + 30 * k, "by": "ldc", "kind": "limit", "check": False,
              "target": {"kind": "area", "id": "ldc"}, "duration_s": 600,
              "limits": {"export_max_w": n * (3000.0 if k % 2 else 4000.0)},
              "reason": f"soak step {k}"} for k in range(int(minutes * 2))]
    return {
        "name": f"soak-{n}", "duration_s": minutes * 60 + 10,
        "rates": {"ieee2030_5_poll_s": 60, "ieee2030_5_post_s": 30, "ven_poll_s": 60.0,
                  "ven_report_s": 30.0, "modbus_poll_s": 1.0},
        "ldc": [{"id": "ldc", "dso_model": "dual_participation"}],
        "aggregator": [{"id": "agg"}],
        "connection_point": [{"id": "cp", "ldc": "ldc", "td_node": "N"}],
        "fleet": fleets, "timeline": steps,
    }


async def soak(n: int, minutes: float, work: Path, warmup_min: float) -> dict:
    child = GatewayChild(work / f"soak-{n}", modbus={"poll_interval_s": 1.0,
                                                     "telemetry_interval_s": 30},
                         extra_env=SHORT_RETENTION)
    endpoints = await child.start()
    samples: list[dict] = []
    started = time.monotonic()

    async def sampler() -> None:
        while True:
            samples.append({"minute": round((time.monotonic() - started) / 60, 1),
                            **child.sample()})
            print(json.dumps(samples[-1]), file=sys.stderr, flush=True)
            await asyncio.sleep(60)

    task = asyncio.create_task(sampler())
    try:
        run = Run(parse(scenario(n, minutes)), endpoints,
                  RunOptions(ready_timeout_s=300, settle_s=0, status_every_s=60, quiet=True),
                  Console(io.StringIO(), quiet=True))
        await run.run()
        samples.append({"minute": round((time.monotonic() - started) / 60, 1), **child.sample()})
    finally:
        task.cancel()
        await child.stop()
    warm = next((s for s in samples if s["minute"] >= warmup_min), samples[0])
    return {"ders": n, "minutes": minutes, "after_warmup": warm, "end": samples[-1],
            "samples": samples}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ders", type=int, default=200)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--warmup", type=float, default=8, help="minutes before the baseline")
    ap.add_argument("--workdir", type=Path, default=Path("var/bench"))
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results")
                    / "soak.json")
    args = ap.parse_args()
    r = await soak(args.ders, args.minutes, args.workdir, args.warmup)
    w, e = r["after_warmup"], r["end"]
    print(f"{r['ders']} DERs, {r['minutes']} min, retention 5 min:")
    print(f"{'':>16} {'minute':>7} {'RSS MB':>8} {'open files':>11} {'DB MB':>7}")
    for label, s in (("after warm-up", w), ("end", e)):
        print(f"{label:>16} {s['minute']:>7} {s['rss_mb']:>8} {s['open_files']:>11} "
              f"{s['db_mb']:>7}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(r, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
