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

`configure()` (the `serve` process) also makes the young generation large: under load many
objects live just long enough (a request, a transaction) to be promoted by the default
700-allocation threshold, and every promotion counts towards the next full collection. With
the defaults the 10,000-DER bench paused 0.6-0.7 s for a full collection every 2.5 s during
the fan-out.
"""

from __future__ import annotations

import gc

THRESHOLDS = (50_000, 20, 10)  # young collection every 50,000 net allocations


def freeze() -> None:
    """Exempt everything alive now from later collections. (gc.get_freeze_count() walks
    the whole permanent generation: not for a hot path.)"""
    gc.collect(1)
    gc.freeze()


def configure() -> None:
    """The serving process's collector: a large young generation, and what start-up built
    frozen."""
    gc.set_threshold(*THRESHOLDS)
    freeze()
