"""gateway.heap.freeze, in a child interpreter (freezing is process-wide)."""

from __future__ import annotations

import subprocess
import sys

CHILD = """
import gc
from gateway import heap

state = [[i] for i in range(100_000)]  # long-lived, tracked by the collector
before = len(gc.get_objects(2)) + len(gc.get_objects(1)) + len(gc.get_objects(0))
heap.configure()
frozen = gc.get_freeze_count()
after = len(gc.get_objects(2)) + len(gc.get_objects(1)) + len(gc.get_objects(0))
print(frozen >= 100_000, after < 1_000 < before, gc.get_threshold() == heap.THRESHOLDS)
"""


def test_configure_freezes_live_objects_and_enlarges_the_young_generation():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.split() == ["True", "True", "True"]
