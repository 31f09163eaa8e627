"""Long-lived state and CPython's cyclic garbage collector.

A full collection walks every object the collector tracks, and most of the gateway's heap
lives as long as the process: the OPC UA address space alone is about 3,200 objects per DER.
With 10,000 DERs each full collection stopped the event loop for 3 to 7 s (59 s of the
first 180 s of the fan-out bench), and they come often while that state is being built,
since a full collection is due whenever the old generation has grown by a quarter.

`freeze()` first collects the young generations (cheap), then moves everything still alive
to the permanent generation, which collections skip. It is called once start-up is done and
by code that has just built a large amount of long-lived state. The price: an object frozen
while alive that later becomes part of an unreachable reference cycle is never reclaimed
(reference counting still frees everything that is not in a cycle), so it is not called on
a timer or per request.
"""

from __future__ import annotations

import gc


def freeze() -> None:
    """Exempt everything alive now from later collections. (gc.get_freeze_count() walks
    the whole permanent generation: not for a hot path.)"""
    gc.collect(1)
    gc.freeze()
