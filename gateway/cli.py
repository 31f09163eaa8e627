"""`der-gateway`: serve | certs init | certs issue | send | status | db upgrade | token issue."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tomllib
import uuid
from collections.abc import Callable
from datetime import timedelta
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from gateway import logs
from gateway.settings import Settings, load_settings

CLI_ENTRY_POINTS = "der_gateway.cli"


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.runtime import serve_forever

    settings = _settings(args)
    logs.configure(settings.log_level, settings.log_json)
    asyncio.run(serve_forever(settings))
    return 0


def cmd_certs_init(args: argparse.Namespace) -> int:
    from pki.devpki import DEFAULT_DEVICES, DevPki

    settings = _settings(args)
    devices = tuple(f"device-{i}" for i in range(1, args.devices + 1)) if args.devices else (
        DEFAULT_DEVICES)
    identities = DevPki(settings.pki_dir).init(devices=devices)
    _print_identities(identities, settings.pki_dir)
    return 0


def cmd_certs_issue(args: argparse.Namespace) -> int:
    from pki.devpki import DevPki

    settings = _settings(args)
    pki = DevPki(settings.pki_dir)
    if not pki.exists:
        pki.init()
    issuers: dict[str, Callable[[str], Path]] = {
        "ieee2030_5": pki.issue_2030_5_client, "platform": pki.issue_platform_client,
        "opcua": pki.issue_opcua_client,
        "modbus": lambda name: pki.issue_modbus_client(name, role="operator"),
    }
    for name in args.names:
        print(issuers[args.family](name))
    _print_identities(pki.write_identities(), settings.pki_dir, family=args.family)
    return 0


def _print_identities(identities: dict[str, dict[str, Any]], root: Path,
                      family: str | None = None) -> None:
    print(f"dev PKI in {root}/ (private keys stay there; never commit them)")
    for name, entry in identities.items():
        if family and entry["family"] != family:
            continue
        if entry["family"] == "ieee2030_5":
            print(f"  {name:<32} LFDI {entry['lfdi']}  SFDI {entry['sfdi']}")
        else:
            print(f"  {name:<32} SHA-256 {entry['sha256']}")


def _load_instruction(path: Path) -> Any:
    raw = path.read_bytes()
    if path.suffix.lower() == ".toml":
        return tomllib.loads(raw.decode())
    return json.loads(raw)


def _client(args: argparse.Namespace) -> Any:
    from gateway.client import PlatformClient

    return PlatformClient(_settings(args), cert=args.cert, token=args.token)


def cmd_send(args: argparse.Namespace) -> int:
    body = _load_instruction(args.file)
    key = args.idempotency_key or str(uuid.uuid5(uuid.NAMESPACE_URL, json.dumps(body,
                                                                                sort_keys=True)))
    status, reply = asyncio.run(_client(args).request("POST", "/v1/instructions", body,
                                                      {"Idempotency-Key": key}))
    print(json.dumps(reply, indent=2))
    return 0 if status < 400 else 1


def cmd_status(args: argparse.Namespace) -> int:
    status, reply = asyncio.run(_client(args).request("GET", "/v1/status"))
    if status >= 400 or not isinstance(reply, dict):
        print(json.dumps(reply, indent=2), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(reply, indent=2))
        return 0
    print("listeners:")
    for name, urls in reply["listeners"].items():
        print(f"  {name:<12} {', '.join(urls) or '-'}")
    ders = reply["ders"]
    print(f"DERs: {ders['total']} ({ders['online']} online) "
          + " ".join(f"{k}={v}" for k, v in sorted(ders["by_protocol"].items())))
    print(f"effective controls: {reply['effective_controls']['ders_with_intervals']} DERs "
          "with active or scheduled intervals")
    print(f"acknowledgements: {reply['acknowledgements']}   readings: {reply['readings']}   "
          f"outbox pending: {reply['outbox_pending']}")
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from gateway.store.engine import Database

    settings = _settings(args)

    async def upgrade() -> None:
        db = Database(settings.effective_database_url)
        try:
            await db.upgrade()
        finally:
            await db.close()

    asyncio.run(upgrade())
    print(f"database at {settings.effective_database_url} is at the latest schema")
    return 0


def cmd_token_issue(args: argparse.Namespace) -> int:
    """Issue a bearer token straight from the store (an operator on the gateway's host)."""
    from gateway.runtime import ADMIN_ID, ensure_admin
    from gateway.services import GatewayServices
    from gateway.store.engine import Database

    settings = _settings(args)

    async def issue() -> str:
        db = Database(settings.effective_database_url)
        try:
            await db.upgrade()
            services = GatewayServices(db)
            await ensure_admin(services, settings)
            admin = await services.participant(ADMIN_ID)
            assert admin is not None
            token, _ = await services.issue_token(admin, args.participant,
                                                  timedelta(days=args.days))
            return token
        finally:
            await db.close()

    print(asyncio.run(issue()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="der-gateway", description=__doc__)
    parser.add_argument("--config", type=Path, default=None,
                        help="TOML settings file (default: embedded defaults; env DERGW_*)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the gateway").set_defaults(func=cmd_serve)
    certs = sub.add_parser("certs", help="the dev PKI").add_subparsers(dest="certs_cmd",
                                                                       required=True)
    init = certs.add_parser("init", help="create the dev PKI under certs/ and print identities")
    init.add_argument("--devices", type=int, default=0, help="number of 2030.5 device certs")
    init.set_defaults(func=cmd_certs_init)
    issue = certs.add_parser("issue", help="issue more client certificates")
    issue.add_argument("family", choices=["ieee2030_5", "platform", "opcua", "modbus"])
    issue.add_argument("names", nargs="+")
    issue.set_defaults(func=cmd_certs_issue)
    for name, func, text in (("send", cmd_send, "submit an instruction (JSON or TOML file)"),
                             ("status", cmd_status, "listeners, DERs, controls, feedback")):
        p = sub.add_parser(name, help=text)
        if name == "send":
            p.add_argument("file", type=Path)
            p.add_argument("--idempotency-key", default=None)
        else:
            p.add_argument("--json", action="store_true")
        p.add_argument("--cert", type=Path, default=None,
                       help="platform client certificate (default: the dev admin's)")
        p.add_argument("--token", default=None, help="bearer token instead of a certificate")
        p.set_defaults(func=func)
    db = sub.add_parser("db", help="database").add_subparsers(dest="db_cmd", required=True)
    db.add_parser("upgrade", help="apply schema migrations").set_defaults(func=cmd_db_upgrade)
    token = sub.add_parser("token", help="bearer tokens").add_subparsers(dest="token_cmd",
                                                                         required=True)
    tissue = token.add_parser("issue", help="issue a token for a participant")
    tissue.add_argument("participant")
    tissue.add_argument("--days", type=int, default=90)
    tissue.set_defaults(func=cmd_token_issue)
    # Commands of installed plugins (e.g. the simulator fleet's `simulate`): each entry point
    # in the group names `register(subparsers)`, which adds a parser with `func` set.
    for ep in entry_points(group=CLI_ENTRY_POINTS):
        ep.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
