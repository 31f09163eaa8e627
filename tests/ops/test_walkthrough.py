"""The README's walk-through, run as written (docs/walkthrough.sh) against a live gateway
started as a user starts it (`der-gateway serve`), twice: a second run must also work."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.gateway import GatewayProcess

SCRIPT = Path(__file__).parents[2] / "docs/walkthrough.sh"


def run_script(tmp_path, env) -> subprocess.CompletedProcess[str]:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run(["bash", str(SCRIPT)], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, **env, "PATH": path}, timeout=120)


def test_walkthrough_runs_as_written(tmp_path):
    proc = GatewayProcess(tmp_path)
    gw = asyncio.run(proc.start())
    try:
        first = run_script(tmp_path, proc.env)
        assert first.returncode == 0, first.stdout + first.stderr
        again = run_script(tmp_path, proc.env)
        assert again.returncode == 0, again.stdout + again.stderr

        async def check():
            ldc = gw.client("ldc-a")
            control = await ldc.ok("GET", "/v1/resources/d1/effective-control")
            me = await ldc.ok("GET", "/v1/me")
            d1 = await ldc.ok("GET", "/v1/resources/d1")
            return control, me, d1

        control, me, d1 = asyncio.run(check())
    finally:
        asyncio.run(proc.stop())
    assert me["id"] == "ldc-a"  # registered under its certificate's real fingerprint
    lfdi = re.search(r"d1-device LFDI:\s+([0-9a-fA-F]{40})", first.stdout).group(1)
    assert d1["binding"]["address"]["lfdi"].lower() == lfdi.lower()
    in_force = control["intervals"][0]
    assert in_force["export_max_w"] == 5000  # the limit from now is in force
    assert any(i["export_max_w"] == 2500 for i in control["intervals"])  # the CLI's, later
    assert "== done" in first.stdout and "409" not in first.stdout.split("== done")[1]
