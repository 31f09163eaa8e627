"""`der-gateway simulate SCENARIO [--start-gateway]` (entry point group der_gateway.cli) and
`python -m simulators.scenario SCENARIO ...`: run a scenario, print the live view and summary.
Exit status 0 when every step was acknowledged and followed, 1 otherwise."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the fleet, feeder and protocol stacks load only when a scenario runs
    from simulators.scenario.console import Summary
    from simulators.scenario.gateway_proc import Endpoints
    from simulators.scenario.spec import Scenario

BUNDLED = Path(__file__).resolve().parents[2] / "scenarios"
# Bundled scenarios are named by the DSO model they play, as the API spells it
# (dual_participation, total, market_facilitator); the names of earlier releases still work.
FORMER_NAMES = {"dual-participation": "dual_participation", "total-dso": "total",
                "embedded-ldc": "embedded_ldc"}
DEFAULT = "dual_participation"


def _resolve(name: str) -> Path:
    from simulators.scenario.spec import ScenarioError

    path = Path(name)
    if path.exists():
        return path
    name = FORMER_NAMES.get(name.removesuffix(".toml"), name)
    bundled = BUNDLED / (name if name.endswith(".toml") else f"{name}.toml")
    if bundled.exists():
        return bundled
    raise ScenarioError(f"no scenario {name!r} (bundled: "
                        f"{', '.join(sorted(p.stem for p in BUNDLED.glob('*.toml')))})")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", nargs="?", default=DEFAULT,
                   help="a scenario TOML file, or a bundled one: dual_participation (default), "
                        "total, embedded_ldc")
    p.add_argument("--start-gateway", action="store_true",
                   help="start a fresh gateway (child process) for this run")
    p.add_argument("--workdir", type=Path, default=Path("var/simulate"),
                   help="with --start-gateway: its data and dev PKI (recreated each run)")
    p.add_argument("--quiet", action="store_true", help="summary only")
    p.add_argument("--platform", default="https://127.0.0.1:9443",
                   help="without --start-gateway: the running gateway's platform API")
    p.add_argument("--pki", default="certs",
                   help="without --start-gateway: its certificates (the admin client's)")
    p.add_argument("--ack-timeout", type=float, default=30.0)


def register(subparsers: Any) -> None:
    """The `simulate` command of `der-gateway`."""
    p = subparsers.add_parser("simulate", help="run a simulated fleet scenario (see scenarios/)")
    add_arguments(p)
    p.set_defaults(func=command)


async def _endpoints_of_running_gateway(args: argparse.Namespace) -> Endpoints:
    """Ask the running gateway where it listens (its status, as its admin): a simulator is
    an outside party and learns this over the network, as a field engineer's rig would."""
    import aiohttp

    from pki.tls import client_context
    from simulators.scenario.gateway_proc import Endpoints

    pki = Path(args.pki)
    ssl = client_context(pki / "platform/ca.pem", pki / "platform/clients/admin.pem",
                         pki / "platform/clients/admin.key")
    async with aiohttp.ClientSession() as http, http.get(
            f"{args.platform.rstrip('/')}/v1/status", ssl=ssl) as resp:
        if resp.status != 200:
            raise SystemExit(f"the gateway at {args.platform} answered {resp.status} to its "
                             "admin's status request")
        listeners = (await resp.json())["listeners"]

    def first(name: str) -> str:
        return str((listeners.get(name) or [""])[0])

    return Endpoints(platform=args.platform, ieee2030_5=first("ieee2030_5"),
                     openadr3=first("openadr3"), opcua=first("opcua"), pki=pki)


async def simulate(scenario: Scenario, args: argparse.Namespace) -> Summary:
    from simulators.scenario.gateway_proc import GatewayChild
    from simulators.scenario.runner import Run, RunOptions

    options = RunOptions(ack_timeout_s=args.ack_timeout, quiet=args.quiet)
    if not args.start_gateway:
        run = Run(scenario, await _endpoints_of_running_gateway(args), options)
        summary = await run.run()
        assert run.console is not None
        run.console.summary(summary)
        return summary
    child = GatewayChild(args.workdir / scenario.name.replace(" ", "-"),
                         modbus={"poll_interval_s": scenario.rates.modbus_poll_s,
                                 "telemetry_interval_s": 5})
    endpoints = await child.start()
    try:
        run = Run(scenario, endpoints, options)
        summary = await run.run()
        summary.gateway_peak_rss_mb = child.peak_rss_mb()
    finally:
        await child.stop()
    assert run.console is not None
    run.console.summary(summary)
    return summary


def command(args: argparse.Namespace) -> int:
    from simulators.scenario.spec import ScenarioError, load

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("asyncua").setLevel(logging.ERROR)  # its session chatter is not ours
    try:
        scenario = load(_resolve(args.scenario))
    except ScenarioError as exc:
        print(f"scenario error: {exc}")
        return 2
    summary = None
    with contextlib.suppress(KeyboardInterrupt):
        summary = asyncio.run(simulate(scenario, args))
    return 0 if summary is not None and summary.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulators.scenario", description=__doc__)
    add_arguments(parser)
    return command(parser.parse_args(argv))
