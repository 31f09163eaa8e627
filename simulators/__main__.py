"""Simulator command line: `python -m simulators <kind> ...`; one subcommand per kind.

    python -m simulators inverters --count N --port 5020 [--units-per-port 100] [--tls]

Inverters: unit ids 1..min(N, units-per-port) on --port, the next ones on --port+1, and so on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

Command = Callable[[argparse.Namespace], int]


def _add_inverters(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("inverters", help="SunSpec Modbus TCP inverters (models 1, 70x, 711, 713)")
    p.add_argument("--count", type=int, default=1, help="number of inverters")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5020, help="first port")
    p.add_argument("--units-per-port", type=int, default=100, help="unit ids per port (<= 247)")
    p.add_argument("--w-max", type=float, default=10_000.0, help="nameplate W of each inverter")
    p.add_argument("--battery-every", type=int, default=0,
                   help="every n-th inverter has a battery (model 713); 0: none")
    p.add_argument("--profile", choices=("constant", "clearsky"), default="constant")
    p.add_argument("--available", type=float, default=0.8, help="constant profile, per unit")
    p.add_argument("--ramp", type=float, default=20.0, help="WRmp, %% of WMax per second")
    p.add_argument("--voltage", type=float, default=240.0, help="grid voltage (V)")
    p.add_argument("--frequency", type=float, default=60.0, help="grid frequency (Hz)")
    p.add_argument("--tick", type=float, default=0.5, help="physics step (s)")
    p.add_argument("--tls", action="store_true",
                   help="Modbus/TCP Security with certificates from --pki modbus/*")
    p.add_argument("--pki", type=Path, default=Path("certs"), help="dev PKI directory")
    p.add_argument("--quiet", action="store_true", help="no live summary")
    p.set_defaults(run=_run_inverters)


def _run_inverters(args: argparse.Namespace) -> int:
    from simulators.sunspec.console import Console
    from simulators.sunspec.fleet import FleetConfig, running_fleet
    from simulators.sunspec.security import security_from_pki

    config = FleetConfig(
        count=args.count, host=args.host, first_port=args.port,
        units_per_port=args.units_per_port, w_max=args.w_max, battery_every=args.battery_every,
        profile=args.profile, available_pu=args.available, ramp_pct_s=args.ramp,
        tick_s=args.tick, security=security_from_pki(args.pki) if args.tls else None,
    )

    async def serve() -> None:
        console = None if args.quiet else Console()
        async with running_fleet(config, on_tick=console) as fleet:
            fleet.set_grid(args.voltage, args.frequency)
            ports = sorted({s.bound_port for s in fleet.servers})
            print(f"serving {args.count} inverters on {args.host} ports {ports[0]}..{ports[-1]}"
                  f"{' (TLS)' if args.tls else ''}; Ctrl-C stops", flush=True)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulators", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="kind", required=True)
    for add in (_add_inverters,):  # one entry per simulator kind
        add(sub)
    args = parser.parse_args(argv)
    run: Command = args.run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
