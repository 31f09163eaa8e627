"""schemathesis, all checks, against both specification files: zero failures.

The VTN runs in the real gateway (real TLS); schemathesis runs as its own process with a
business-logic token (it may write programs and events) and, in a second pass, the token of
the VEN whose objects stand for the platform's DERs (with a live control on one of them):
after the run that control still reaches the VEN, or the platform knows it cannot.
Where the specification contradicts itself, the patched reading is in `spec_patch.py`.
Knobs: OADR_ST_EXAMPLES (examples per operation), OADR_ST_SEED.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.openadr3.conftest import CORE_WARNINGS, SPEC_ROOT, V31, V301
from tests.openadr3.spec_patch import patched_spec
from tests.openadr3.test_integration import submit_limit

pytestmark = [
    *CORE_WARNINGS,
    pytest.mark.skipif(
        shutil.which("schemathesis") is None
        and not Path(sys.executable).with_name("schemathesis").exists(),
        reason="schemathesis is not installed (pip install -e .[test])",
    ),
]
EXAMPLES = os.environ.get("OADR_ST_EXAMPLES", "6")
SEED = os.environ.get("OADR_ST_SEED", "20261122")


def _spec(version: str) -> Path:
    path = SPEC_ROOT / version / "openadr3.yaml"
    if not path.exists():
        pytest.skip(f"OpenADR {version} specification not found at {path}")
    return path


async def run_schemathesis(
    spec: Path, base: str, token: str, ca: Path, out: Path, *extra: str
) -> tuple[int, str]:
    exe = shutil.which("schemathesis") or str(Path(sys.executable).with_name("schemathesis"))
    proc = await asyncio.create_subprocess_exec(
        exe,
        "run",
        str(spec),
        "--url",
        base,
        "--checks",
        "all",
        "--header",
        f"Authorization: Bearer {token}",
        "--tls-verify",
        str(ca),
        "--max-examples",
        EXAMPLES,
        "--seed",
        SEED,
        "--generation-database",
        "none",
        "--workers",
        "2",
        "--suppress-health-check",  # a loaded CI machine must not fail a run for speed
        "all",
        "--no-color",
        "--output-truncate",
        "true",
        "--warnings",
        "off",
        "--report-dir",
        str(out),
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    output, _ = await proc.communicate()
    return proc.returncode or 0, output.decode(errors="replace")


async def _token_for(vtn, role: str, version: str) -> str:
    if role == "bl":
        cred = await vtn.provision("admin", {"role": "bl", "participant_id": "ldc-a"})
    else:  # the VEN whose ven and resource objects stand for the platform's DERs o1, o2
        cred = await vtn.provision(
            "agg-x", {"role": "ven", "ven_name": "ven-x", "api_version": version}
        )
    return await vtn.token(cred, version)


async def _control_reaches_o1_or_platform_knows(vtn, version: str) -> None:
    """The run may not sever control silently: o1's limit is still rendered for its VEN,
    or the platform's delivery state for o1 says it is undeliverable."""
    bl = await vtn.token(
        await vtn.provision("admin", {"role": "bl", "participant_id": "ldc-a"}), version)
    renderer = vtn.gw.gateway.adapters["openadr3"].renderer
    await renderer.render_many(["o1"])
    store = vtn.gw.gateway.adapters["openadr3"].store
    rendered = [e for e in store.all(version, "event")
                if e.meta.get("resource_id") == "o1" and e.meta.get("origin") == "gateway"]
    _, resource = await vtn.clients["admin"].get("/v1/resources/o1")
    state = (resource.get("delivery") or {}).get("state")
    assert rendered or state == "undeliverable", (resource, bl)


@pytest.mark.parametrize(
    ("version", "role"),
    [
        (V31, "bl"),
        (V301, "bl"),
        (V31, "ven"),
        (V301, "ven"),
    ],
)
async def test_schemathesis_all_checks_zero_failures(vtn, tmp_path, version, role):
    """Business logic may use every operation; a VEN token meets 403s where it must."""
    source = _spec(version)
    token = await _token_for(vtn, role, version)
    await submit_limit(vtn, 3_500)  # a live control on o1 that the run must not cut silently
    spec = patched_spec(source, tmp_path / "openadr3.yaml", vtn.base(version))
    code, output = await run_schemathesis(spec, vtn.base(version), token, vtn.ca, tmp_path / "r")
    assert code == 0, output[-20000:]
    await _control_reaches_o1_or_platform_knows(vtn, version)
