"""python -m simulators.scada: an LDC control-room console on the gateway's OPC UA server.

    python -m simulators.scada --user op --password ... ders
    python -m simulators.scada ... show d1
    python -m simulators.scada ... limit d1 --export-w 3000 --duration-s 900 --reason "F-A1"
    python -m simulators.scada ... clear d1
    python -m simulators.scada ... watch d1 --seconds 60
    python -m simulators.scada ... alarms --seconds 600 [--ack]

The password may come from the environment (SCADA_PASSWORD) instead of the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from simulators.scada.operator import POLICIES, Alarm, Console, Operator, connect


async def _ders(op: Operator, args: argparse.Namespace) -> Any:
    return sorted(await op.ders())


async def _show(op: Operator, args: argparse.Namespace) -> Any:
    return await op.snapshot(args.der)


async def _limit(op: Operator, args: argparse.Namespace) -> Any:
    return {"instruction_id": await op.set_limit(
        args.der, export_w=args.export_w, import_w=args.import_w, duration_s=args.duration_s,
        reason=args.reason)}


async def _clear(op: Operator, args: argparse.Namespace) -> Any:
    return {"cleared": await op.clear_limit(args.der, args.instruction_id)}


async def _watch(op: Operator, args: argparse.Namespace) -> Any:
    await op.watch(args.der, lambda name, value: print(json.dumps({name: value}), flush=True),
                   args.seconds)
    return None


async def _alarms(op: Operator, args: argparse.Namespace) -> Any:
    def show(alarm: Alarm) -> None:
        print(json.dumps(alarm.public()), flush=True)
    await op.alarms(show, args.seconds, acknowledge=args.ack)
    return None


COMMANDS: dict[str, Callable[[Operator, argparse.Namespace], Awaitable[Any]]] = {
    "ders": _ders, "show": _show, "limit": _limit, "clear": _clear, "watch": _watch,
    "alarms": _alarms}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m simulators.scada",
                                description="simulated LDC SCADA operator (OPC UA client)")
    p.add_argument("--url", default="opc.tcp://127.0.0.1:4840")
    p.add_argument("--pki", type=Path, default=Path("certs"), help="the dev PKI directory")
    p.add_argument("--client", default="scada-operator",
                   help="certificate name under opcua/clients")
    p.add_argument("--user", required=True)
    p.add_argument("--password", default=os.environ.get("SCADA_PASSWORD", ""))
    p.add_argument("--policy", choices=sorted(POLICIES), default="Basic256Sha256")
    p.add_argument("--sign-only", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("ders")
    alarms = sub.add_parser("alarms", help="follow the alarms (and acknowledge them: --ack)")
    alarms.add_argument("--seconds", type=float, default=60.0)
    alarms.add_argument("--ack", action="store_true")
    for name in ("show", "limit", "clear", "watch"):
        cmd = sub.add_parser(name)
        cmd.add_argument("der")
        if name == "limit":
            cmd.add_argument("--export-w", type=float, default=-1.0)
            cmd.add_argument("--import-w", type=float, default=-1.0)
            cmd.add_argument("--duration-s", type=int, default=0)
            cmd.add_argument("--reason", default="SCADA operator")
        if name == "clear":
            cmd.add_argument("--instruction-id", default="")
        if name == "watch":
            cmd.add_argument("--seconds", type=float, default=30.0)
    return p


async def run(args: argparse.Namespace) -> Any:
    console = Console(url=args.url, certificate=args.pki / f"opcua/clients/{args.client}.pem",
                      server_certificate=args.pki / "opcua/server.der", user=args.user,
                      password=args.password, policy=args.policy, sign_only=args.sign_only)
    async with connect(console) as op:
        return await COMMANDS[args.command](op, args)


def main() -> None:
    result = asyncio.run(run(_parser().parse_args()))
    if result is not None:
        print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
