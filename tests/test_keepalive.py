"""Kept-alive client connections: steady polling keeps one warm, a burst's extras idle out."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.web.client import HTTPConnectionPool

from tmpnb.http.keepalive import RecentFirstPool

KEY = ("http", b"node", 8000)


class KeptConnection:
    """What the pool sees of an HTTP/1.1 client connection between requests."""

    state = "QUIESCENT"

    def __init__(self) -> None:
        self.closed = False
        self.transport = self

    def loseConnection(self) -> None:
        self.closed = True


def after_a_burst_and_a_minute_of_polls(pool: HTTPConnectionPool, clock: Clock) -> list[KeptConnection]:
    """Three connections left by a burst, then one poll a second for a minute, each poll
    taking a kept connection and giving it back."""
    pool.retryAutomatically = False
    pool.maxPersistentPerHost = 4
    pool.cachedConnectionTimeout = 4.0
    burst = [KeptConnection() for _ in range(3)]
    for connection in burst:
        pool._putConnection(KEY, connection)
    for _ in range(60):
        clock.advance(1)
        used = []
        pool.getConnection(KEY, endpoint=None).addCallback(used.append)
        pool._putConnection(KEY, used[0])
    return burst


def test_steady_polls_keep_one_connection_and_the_bursts_extras_close():
    clock = Clock()
    burst = after_a_burst_and_a_minute_of_polls(RecentFirstPool(clock), clock)
    assert [c.closed for c in burst] == [True, True, False]
    assert len(clock.getDelayedCalls()) == 1  # the kept one's idle timeout


def test_twisteds_own_pool_cycles_through_the_burst_and_keeps_all_of_it_open():
    # Why RecentFirstPool exists: oldest-first reuse never lets one sit idle.
    clock = Clock()
    burst = after_a_burst_and_a_minute_of_polls(HTTPConnectionPool(clock), clock)
    assert [c.closed for c in burst] == [False, False, False]
