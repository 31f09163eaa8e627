"""End to end: the small scenario (20 DERs over 2030.5, OpenADR 3 and SunSpec Modbus, plus an
OPC UA SCADA operator; a dual-participation LDC, a total DSO, an embedded LDC under its host)
against `der-gateway serve` started as a child process. Every instruction must be acknowledged
by every DER it reaches, every DER's output must follow its effective control, and the feeder
must come back into its voltage band once the DSO limit is on."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from simulators.scenario.cli import simulate
from simulators.scenario.console import Console
from simulators.scenario.gateway_proc import GatewayChild
from simulators.scenario.runner import Run, RunOptions
from simulators.scenario.spec import load

SMALL = Path(__file__).with_name("small.toml")

pytestmark = [pytest.mark.timeout(240)]


async def test_small_scenario_end_to_end(tmp_path):
    scenario = load(SMALL)
    assert scenario.der_count == 20
    assert {x.dso_model for x in scenario.ldcs} == {"dual_participation", "total"}
    assert any(x.host for x in scenario.ldcs)
    child = GatewayChild(tmp_path / "gw", modbus={"poll_interval_s": 0.5})
    endpoints = await child.start()
    out = io.StringIO()
    try:
        run = Run(scenario, endpoints, RunOptions(ack_timeout_s=20.0), Console(out))
        summary = await run.run()
    finally:
        assert await child.stop() == 0, child.log_path.read_text()[-2000:]
    Console(out).summary(summary)
    report = out.getvalue()
    assert not summary.skipped, report
    assert summary.by_protocol == {"ieee2030_5": 8, "openadr3": 7, "modbus": 5,
                                   "opcua (SCADA)": 1}, report
    for step in summary.steps:
        assert step.error is None, report
        p = step.pending
        assert p is not None and p.expected, report
        assert p.complete and not p.refused, report  # every DER reached acknowledged it
        assert max(p.acked.values()) < 20.0, report  # within the expected time
        assert step.checked >= len(p.expected) and not step.mismatches, report
    dso, total, host, direct, scada = summary.steps
    assert len(dso.pending.expected) == 12  # every DER in ldc-a's area
    assert len(total.pending.expected) == 4  # disaggregated over ldc-b's DERs
    assert len(host.pending.expected) == 4  # the embedded LDC's DERs, under the host's cap
    # Before the DSO limit the unconstrained PV pushed the feeder out of band; with it on,
    # every solve after the step kept it in band.
    assert summary.feeder_v_range is not None and summary.feeder_v_range[1] > 1.05, report
    assert dso.feeder is not None and dso.feeder.in_band, report
    for step in (total, host, direct, scada):
        assert step.feeder is not None and step.feeder.in_band, report
    assert "PASS" in report


async def test_cli_refuses_a_bad_scenario(tmp_path, capsys):
    from simulators.scenario.cli import command

    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[[fleet]]\nname = "f"\nprotocol = "zigbee"\ncount = 1\n'
                   'aggregator = "a"\nconnection_points = ["c"]\n')
    code = command(argparse.Namespace(scenario=str(bad), start_gateway=False,
                                      workdir=tmp_path, quiet=True, ack_timeout=1.0))
    assert code == 2
    assert "protocol must be one of" in capsys.readouterr().out
    assert callable(simulate)
