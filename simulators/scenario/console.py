"""The live console view (progress, acknowledgements, latencies, voltage band) and the
summary. Plain lines, so that it reads the same in a terminal, a log and CI."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TextIO

from simulators.feeder.report import FeederReport
from simulators.scenario.check import Mismatch
from simulators.scenario.tracker import Pending


@dataclass
class StepResult:
    title: str
    at_s: float
    instruction_id: str | None = None
    pending: Pending | None = None
    mismatches: list[Mismatch] = field(default_factory=list)
    checked: int = 0
    feeder: FeederReport | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        acked = self.pending is None or (self.pending.complete and not self.pending.refused)
        return self.error is None and acked and not self.mismatches


@dataclass
class Summary:
    scenario: str
    ders: int
    by_protocol: dict[str, int]
    skipped: dict[str, str]
    steps: list[StepResult]
    acknowledgements: int
    feeder_band: tuple[float, float] | None = None
    feeder_v_range: tuple[float, float] | None = None
    gateway_peak_rss_mb: float | None = None

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps)


def _fmt_latency(p: Pending | None) -> str:
    if p is None:
        return "-"
    lat = p.latencies()
    if not lat:
        return "no acks"
    return f"p50 {lat['p50']:.2f}s p95 {lat['p95']:.2f}s max {lat['max']:.2f}s"


class Console:
    def __init__(self, out: TextIO | None = None, quiet: bool = False) -> None:
        self.out = out or sys.stdout
        self.quiet = quiet

    def say(self, elapsed: float, text: str) -> None:
        if not self.quiet:
            print(f"[{elapsed:7.1f}s] {text}", file=self.out, flush=True)

    def status(self, elapsed: float, steps: list[StepResult], acks: int,
               feeder: FeederReport | None) -> None:
        live = [s for s in steps if s.pending is not None and not s.pending.complete]
        parts = [f"acks {acks}"]
        for s in live[-2:]:
            assert s.pending is not None
            parts.append(f"{s.title}: {len(s.pending.acked)}/{len(s.pending.expected)} acked")
        if feeder is not None:
            parts.append(feeder.line())
        self.say(elapsed, " | ".join(parts))

    def summary(self, s: Summary) -> None:
        """Details first, the verdict last: the final line is the one people read."""
        w = self.out
        print(f"\n=== {s.scenario} ===", file=w)
        mix = ", ".join(f"{k} {v}" for k, v in sorted(s.by_protocol.items()))
        print(f"DERs {s.ders} ({mix}); acknowledgements seen {s.acknowledgements}", file=w)
        for proto, why in s.skipped.items():
            print(f"skipped {proto}: {why}", file=w)
        for step in s.steps:
            p = step.pending
            acked = f"{len(p.acked)}/{len(p.expected)} acked" if p else "not tracked"
            mark = "ok " if step.ok else "BAD"
            outputs = (f", outputs {step.checked - len(step.mismatches)}/{step.checked} as "
                       "controlled" if p else "")
            print(f" {mark} {step.at_s:6.1f}s {step.title}: {acked}, {_fmt_latency(p)}"
                  f"{outputs}"
                  + (f", feeder V max {step.feeder.v_max_pu:.3f}" if step.feeder else ""),
                  file=w)
            if step.error:
                print(f"     error: {step.error}", file=w)
            for m in step.mismatches[:5]:
                print(f"     {m.line()}", file=w)
            if p and p.refused:
                print(f"     refused: {p.refused}", file=w)
        if s.feeder_v_range and s.feeder_band:
            print(_voltage_line(s.feeder_v_range, s.feeder_band, s.steps), file=w)
        if s.gateway_peak_rss_mb is not None:
            print(f"gateway peak memory {s.gateway_peak_rss_mb:.0f} MB", file=w)
        bad = sum(1 for step in s.steps if not step.ok)
        print(f"RESULT: {'PASS' if s.ok else 'FAIL'} ({len(s.steps) - bad}/{len(s.steps)} "
              "steps acknowledged and followed)", file=w)
        w.flush()


def _voltage_line(v_range: tuple[float, float], band: tuple[float, float],
                  steps: list[StepResult]) -> str:
    """The voltage over the run, said so that an excursion the scenario corrects (before
    the DSO's limit) does not read as a failure, and one that remains does."""
    lo, hi = v_range
    line = f"feeder voltage over the run {lo:.3f}..{hi:.3f} pu, band {band[0]:.2f}..{band[1]:.2f}"
    if band[0] <= lo and hi <= band[1]:
        return line + ": always within the band"
    last = next((step.feeder for step in reversed(steps) if step.feeder), None)
    if last is None:
        return line + ": left the band during the run"
    inside = band[0] <= last.v_min_pu and last.v_max_pu <= band[1]
    return line + (f": left the band during the run, back within it at the last check "
                   f"({last.v_min_pu:.3f}..{last.v_max_pu:.3f} pu)" if inside else
                   f": STILL OUTSIDE the band at the last check "
                   f"({last.v_min_pu:.3f}..{last.v_max_pu:.3f} pu)")
