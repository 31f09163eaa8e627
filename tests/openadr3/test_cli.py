"""`der-gateway openadr3 credentials` against a running gateway: create, list, revoke."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.support.gateway import GatewayProcess, free_port
from tests.support.seed import seed_platform


def cli(proc: GatewayProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=proc.tmp,
                          env={**os.environ, **proc.env}, capture_output=True, text=True,
                          timeout=60)


async def test_credentials_from_the_cli(tmp_path):
    proc = GatewayProcess(tmp_path, openadr3={"listen": f"https://127.0.0.1:{free_port()}"})
    gw = await proc.start()
    try:
        await seed_platform(gw, resources=[])
        made = cli(proc, "openadr3", "credentials", "create", "--role", "ven",
                   "--ven-name", "ven-cli", "--owner", "agg-x")
        assert made.returncode == 0, made.stdout + made.stderr
        created = json.loads(made.stdout)
        assert created["client_secret"] and created["ven_id"]
        listed = json.loads(cli(proc, "openadr3", "credentials", "list").stdout)
        entry = next(c for c in listed if c["client_id"] == created["client_id"])
        assert "client_secret" not in entry  # secrets are shown once, never listed
        again = cli(proc, "openadr3", "credentials", "create", "--role", "ven",
                    "--ven-name", "ven-cli", "--owner", "agg-x")
        assert again.returncode == 1 and '"status": 409' in again.stdout
        gone = cli(proc, "openadr3", "credentials", "revoke", created["client_id"])
        assert gone.returncode == 0, gone.stdout + gone.stderr
    finally:
        await proc.stop()
