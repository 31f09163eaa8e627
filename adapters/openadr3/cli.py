"""`der-gateway openadr3 credentials ...`: provision OpenADR client credentials from a shell.

A thin client of the platform routes under /v1/adapters/openadr3 (same authority rules):

    der-gateway openadr3 credentials create --role ven --ven-name ven-7 [--api-version 3.0.1]
    der-gateway openadr3 credentials create --role bl [--participant ldc-a]
    der-gateway openadr3 credentials list
    der-gateway openadr3 credentials revoke CLIENT_ID
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

BASE = "/v1/adapters/openadr3/credentials"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("openadr3", help="OpenADR 3 VTN administration")
    sub = parser.add_subparsers(dest="openadr3_cmd", required=True)
    creds = sub.add_parser("credentials", help="VEN and business-logic client credentials")
    actions = creds.add_subparsers(dest="credentials_cmd", required=True)
    create = actions.add_parser("create", help="provision a credential (secret shown once)")
    create.add_argument("--role", choices=["ven", "bl"], required=True)
    create.add_argument("--ven-name", help="the VEN's name (role ven)")
    create.add_argument("--api-version", choices=["3.1.0", "3.0.1"], default=None)
    create.add_argument("--owner", help="the owning aggregator (admin only, role ven)")
    create.add_argument("--participant", help="the party a BL client acts for (admin only)")
    create.set_defaults(func=_create)
    actions.add_parser("list", help="list credentials (no secrets)").set_defaults(func=_list)
    revoke = actions.add_parser("revoke", help="revoke a credential and its tokens")
    revoke.add_argument("client_id")
    revoke.set_defaults(func=_revoke)
    for action in (create, revoke, actions.choices["list"]):
        action.add_argument("--cert", type=Path, default=None,
                            help="platform client certificate (default: the dev admin's)")
        action.add_argument("--token", default=None, help="platform bearer token")


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> int:
    from gateway.ports import platform_request

    status, reply = asyncio.run(platform_request(args.config, method, path, body,
                                                 cert=args.cert, token=args.token))
    if reply is not None:
        print(json.dumps(reply, indent=2))
    return 0 if status < 400 else 1


def _create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"role": args.role}
    optional = {"ven_name": args.ven_name, "api_version": args.api_version,
                "owner_id": args.owner, "participant_id": args.participant}
    body.update({k: v for k, v in optional.items() if v is not None})
    return _call(args, "POST", BASE, body)


def _list(args: argparse.Namespace) -> int:
    return _call(args, "GET", BASE)


def _revoke(args: argparse.Namespace) -> int:
    return _call(args, "DELETE", f"{BASE}/{args.client_id}")
