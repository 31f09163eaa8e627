"""der-gateway: serve | certs init|issue|fingerprint | send | status | db upgrade | token issue.

Imports are lazy: each command loads only what it uses, so `der-gateway --help` and the
client commands start in a fraction of a second. A mistake (gateway not running, unknown
participant, missing file, bad JSON, a settings typo) ends in one line on stderr and exit
status 2; the traceback is for `--debug`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, entry_points, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.settings import Settings

CLI_ENTRY_POINTS = "der_gateway.cli"
ADMIN_CERT = "platform/clients/admin.pem"


class CliError(Exception):
    """A mistake the user can fix; shown as one line."""


def _settings(args: argparse.Namespace, **overrides: str) -> Settings:
    from gateway.settings import load_settings

    environ = None
    if overrides:
        import os

        environ = {**os.environ, **{f"DERGW_{k.upper()}": v for k, v in overrides.items()}}
    return load_settings(args.config, environ)


def _run(coro: Any) -> Any:
    import asyncio

    return asyncio.run(coro)


# --- serve ----------------------------------------------------------------------------------

SERVE_OPTIONS = {  # option -> settings key; each overrides the file and DERGW_* variables
    "platform_listen": "address of the platform API, e.g. https://127.0.0.1:9443",
    "data_dir": "folder of the SQLite database (and other state)",
    "database_url": "postgresql+asyncpg://user@host/db instead of SQLite",
    "pki_dir": "folder of the (dev) PKI",
    "log_level": "DEBUG, INFO, WARNING or ERROR",
}


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway import logs, workers
    from gateway.runtime import serve_forever

    overrides = {k: getattr(args, k) for k in SERVE_OPTIONS if getattr(args, k) is not None}
    if args.log_json:
        overrides["log_json"] = "true"
    settings = _settings(args, **overrides)
    logs.configure(settings.log_level, settings.log_json)
    try:
        workers.check(settings, args.workers)
    except workers.WorkersError as exc:
        raise CliError(str(exc)) from exc
    if args.workers > 1:
        from pki.devpki import DevPki

        if settings.dev_mode and not DevPki(settings.pki_dir).exists:
            # Made once, here: workers starting at once would each make their own, and a
            # client would meet a server certificate from a CA it was not given.
            DevPki(settings.pki_dir).init()
        return int(_run(workers.supervise(_serve_argv(args), args.workers)))
    _run(serve_forever(settings))
    return 0


def _serve_argv(args: argparse.Namespace) -> list[str]:
    """The options a worker is started with: the supervisor's own, but --workers."""
    argv: list[str] = []
    if getattr(args, "config", None):
        argv += ["--config", str(args.config)]
    for key in SERVE_OPTIONS:
        if getattr(args, key) is not None:
            argv += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    if args.log_json:
        argv.append("--log-json")
    return argv


# --- certificates ----------------------------------------------------------------------------


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


def cmd_certs_fingerprint(args: argparse.Namespace) -> int:
    """What the platform calls a certificate (`cert_sha256`): the SHA-256 of its DER
    encoding, not of the PEM file; and for 2030.5 devices their LFDI and SFDI too."""
    from cryptography import x509

    from pki.identity import lfdi, sfdi, sha256_hex

    path: Path = args.file
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError as exc:
        raise CliError(f"no file {path}") from exc
    except ValueError as exc:
        raise CliError(f"{path} is not a PEM certificate") from exc
    print(sha256_hex(cert) if not args.all else
          f"sha256 {sha256_hex(cert)}\nlfdi   {lfdi(cert)}\nsfdi   {sfdi(cert)}")
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


# --- platform client commands ----------------------------------------------------------------


def _load_instruction(path: Path) -> Any:
    import json
    import tomllib

    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise CliError(f"no file {path}") from exc
    try:
        if path.suffix.lower() == ".toml":
            return tomllib.loads(raw.decode())
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, TOMLDecodeError
        kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
        raise CliError(f"{path} is not valid {kind}: {exc}") from exc


def _client(args: argparse.Namespace) -> Any:
    from gateway.client import PlatformClient

    settings = _settings(args)
    if args.cert is not None and not args.cert.exists():
        raise CliError(f"no certificate {args.cert}")
    if args.cert is None and not args.token and not (settings.pki_dir / ADMIN_CERT).exists():
        raise CliError(f"no admin certificate under {settings.pki_dir}/ (run `der-gateway "
                       "serve` once, or `der-gateway certs init`), or pass --cert/--token")
    return PlatformClient(settings, cert=args.cert, token=args.token)


async def _request(client: Any, method: str, path: str, body: Any = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
    import aiohttp

    try:
        return await client.request(method, path, body, headers)  # type: ignore[no-any-return]
    except aiohttp.ClientConnectorError as exc:
        reason = exc.os_error.strerror or str(exc)
        raise CliError(f"cannot reach the gateway at {client.base} ({reason}); is "
                       "`der-gateway serve` running with the same settings?") from exc
    except aiohttp.ClientError as exc:
        raise CliError(f"the gateway at {client.base} did not answer properly: {exc}") from exc


def _problem_line(status: int, reply: Any) -> str:
    if isinstance(reply, dict):
        detail = reply.get("detail") or reply.get("title") or ""
        cid = reply.get("correlation_id")
        errors = "; ".join(f"{e.get('loc')}: {e.get('msg')}" for e in reply.get("errors", ()))
        return (f"refused ({status} {reply.get('title', '')}): {detail}"
                + (f" [{errors}]" if errors else "") + (f" (correlation id {cid})" if cid else ""))
    return f"refused ({status}): {reply}"


def cmd_send(args: argparse.Namespace) -> int:
    import json
    import uuid

    body = _load_instruction(args.file)
    key = args.idempotency_key or str(uuid.uuid5(uuid.NAMESPACE_URL,
                                                 json.dumps(body, sort_keys=True)))
    status, reply = _run(_request(_client(args), "POST", "/v1/instructions", body,
                                  {"Idempotency-Key": key}))
    if status >= 400:
        print(_problem_line(status, reply), file=sys.stderr)
        if status == 403 and args.cert is None and not args.token:
            print("hint: this was sent as the admin, who registers but does not instruct; send "
                  "as the issuing participant: --cert certs/platform/clients/ldc-a.pem (its "
                  "registered certificate) or --token TOKEN (`der-gateway token issue ldc-a`)",
                  file=sys.stderr)
        return 1
    print(json.dumps(reply, indent=2))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import json

    status, reply = _run(_request(_client(args), "GET", "/v1/status"))
    if status >= 400 or not isinstance(reply, dict):
        print(_problem_line(status, reply), file=sys.stderr)
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


# --- store commands ----------------------------------------------------------------------------


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from gateway.store.engine import Database

    settings = _settings(args)

    async def upgrade() -> None:
        db = Database(settings.effective_database_url)
        try:
            await db.upgrade()
        finally:
            await db.close()

    _run(upgrade())
    print(f"database at {settings.effective_database_url} is at the latest schema")
    return 0


def cmd_token_issue(args: argparse.Namespace) -> int:
    """Issue a bearer token straight from the store (an operator on the gateway's host)."""
    from datetime import timedelta

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

    print(_run(issue()))
    return 0


# --- the parser ----------------------------------------------------------------------------------


def _version() -> str:
    try:
        return version("der-gateway")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _add_serve(sub: Any) -> None:
    serve = sub.add_parser(
        "serve", help="run the gateway",
        description="Run the gateway: platform API and every enabled adapter, until Ctrl-C "
                    "or SIGTERM. Settings: embedded defaults, then --config FILE (or "
                    "DERGW_CONFIG), then DERGW_<KEY> environment variables, then these options.",
        epilog="Adapters are set in the file ([adapters.<name>]) or with "
               "DERGW_ADAPTERS__<NAME>__<KEY>, e.g. DERGW_ADAPTERS__OPCUA__ENABLED=false.")
    serve.add_argument("--config", type=Path, default=argparse.SUPPRESS,
                       help="TOML settings file")
    for key, text in SERVE_OPTIONS.items():
        serve.add_argument(f"--{key.replace('_', '-')}", dest=key, default=None, help=text)
    serve.add_argument("--log-json", action="store_true", help="JSON log lines")
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="N processes sharing the ports, one gateway (PostgreSQL only)")
    serve.set_defaults(func=cmd_serve)


def _add_certs(sub: Any) -> None:
    certs = sub.add_parser("certs", help="the dev PKI").add_subparsers(dest="certs_cmd",
                                                                       required=True)
    init = certs.add_parser("init", help="create the dev PKI under certs/ and print identities")
    init.add_argument("--devices", type=int, default=0, help="number of 2030.5 device certs")
    init.set_defaults(func=cmd_certs_init)
    issue = certs.add_parser("issue", help="issue more client certificates")
    issue.add_argument("family", choices=["ieee2030_5", "platform", "opcua", "modbus"])
    issue.add_argument("names", nargs="+")
    issue.set_defaults(func=cmd_certs_issue)
    fp = certs.add_parser("fingerprint",
                          help="a certificate's SHA-256 as the platform wants it (cert_sha256)")
    fp.add_argument("file", type=Path, help="a PEM certificate, e.g. "
                                            "certs/platform/clients/ldc-a.pem")
    fp.add_argument("--all", action="store_true", help="also the 2030.5 LFDI and SFDI")
    fp.set_defaults(func=cmd_certs_fingerprint)


def _add_client_commands(sub: Any) -> None:
    for name, func, text in (("send", cmd_send, "submit an instruction (JSON or TOML file)"),
                             ("status", cmd_status, "listeners, DERs, controls, feedback")):
        p = sub.add_parser(name, help=text)
        if name == "send":
            p.add_argument("file", type=Path)
            p.add_argument("--idempotency-key", default=None)
        else:
            p.add_argument("--json", action="store_true")
        p.add_argument("--cert", type=Path, default=None,
                       help="platform client certificate of the participant to act as "
                            "(default: the dev admin's, who may not instruct)")
        p.add_argument("--token", default=None, help="bearer token instead of a certificate")
        p.set_defaults(func=func)


def _add_store_commands(sub: Any) -> None:
    db = sub.add_parser("db", help="database").add_subparsers(dest="db_cmd", required=True)
    db.add_parser("upgrade", help="apply schema migrations").set_defaults(func=cmd_db_upgrade)
    token = sub.add_parser("token", help="bearer tokens").add_subparsers(dest="token_cmd",
                                                                         required=True)
    tissue = token.add_parser("issue", help="issue a token for a participant")
    tissue.add_argument("participant")
    tissue.add_argument("--days", type=int, default=90)
    tissue.set_defaults(func=cmd_token_issue)


def _add_plugins(sub: Any, wanted: str | None) -> None:
    """Commands of installed plugins (e.g. the simulator fleet's `simulate`): each entry
    point names `register(subparsers)`. Only the plugin being run is imported; the others
    are listed by name, so that `--help` stays fast."""
    for ep in entry_points(group=CLI_ENTRY_POINTS):
        if ep.name == wanted:
            ep.load()(sub)
        else:
            sub.add_parser(ep.name, help=f"(plugin; `der-gateway {ep.name} --help`)")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="der-gateway", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"der-gateway {_version()}")
    parser.add_argument("--config", type=Path, default=None,
                        help="TOML settings file (default: embedded defaults; env DERGW_*)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_serve(sub)
    _add_certs(sub)
    _add_client_commands(sub)
    _add_store_commands(sub)
    args = sys.argv[1:] if argv is None else argv
    _add_plugins(sub, next((a for a in args if not a.startswith("-")), None))
    return parser


def _explain(exc: BaseException, args: argparse.Namespace) -> str | None:
    """One line for a mistake the user can fix; None for a bug (then the traceback)."""
    from pydantic import ValidationError

    from gateway.errors import GatewayError

    if isinstance(exc, CliError):
        return str(exc)
    if isinstance(exc, ValidationError):
        source = f"{args.config} or DERGW_* variables" if args.config else "DERGW_* variables"
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: "
            + ("unknown setting (a typo?)" if e["type"] == "extra_forbidden" else e["msg"])
            for e in exc.errors())
        return f"settings error in {source}: {problems}"
    if isinstance(exc, FileNotFoundError):
        return f"no such file: {exc.filename}"
    if isinstance(exc, ValueError) and args.config and "TOML" in type(exc).__name__:
        return f"{args.config} is not valid TOML: {exc}"
    if isinstance(exc, GatewayError):
        return exc.detail
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):  # a plugin's placeholder (its module was not loaded)
        parser.parse_args([*(argv or sys.argv[1:]), "--help"])
        return 2
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        line = _explain(exc, args)
        if line is None or args.debug:
            raise
        print(f"der-gateway: {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
