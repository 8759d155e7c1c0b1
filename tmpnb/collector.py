"""Keep the garbage collector's full passes short: what exists when the service starts is
never walked again.

CPython's full (generation 2) collection walks every tracked object, and the reactor
thread stops for it: a visitor's request waits behind it. tmpnb's imports alone (Twisted,
docker-py, treq, prometheus_client, …) are ≈66,000 objects, a full pass over them ≈57 ms
on this machine (benchmarks/RESULTS.md, "scale"); on top come ≈13 objects per tracked
container. Objects made before the reactor starts (modules, classes, the services) live
as long as the process: `gc.freeze()` moves them out of every later collection. What is
still walked is what the running service made: the containers', mostly.
"""

from __future__ import annotations

import gc

from twisted.logger import Logger

log = Logger()


def freeze_startup_objects() -> int:
    """Collect once, then leave everything that survived out of every later collection;
    returns how many objects were frozen. Call it once the service is built (e.g.
    `reactor.callWhenRunning`)."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("{frozen} objects made at start are out of the garbage collector's passes", frozen=frozen)
    return frozen
