"""Health polling: every node's GET /api/stats, all in parallel, every --health-period.

Rounds start every period, jittered so several redirectors do not poll in step; the timeout is
shorter than the period, and a node whose poll is still in flight is skipped, so polls of one
node never overlap and a hung node costs no more than a refused one. A node's answer must be JSON with the
node's stats; anything else (refused, timed out, 5xx, not JSON) is a failed poll.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from tmpnb.redirector.nodes import Node, NodeTable

log = Logger()

MAX_STATS_BODY = 64 * 1024


class PollFailed(Exception):
    pass


async def fetch_stats(http: Any, clock: Any, url: str, timeout: float) -> dict[str, Any]:
    """The node's /api/stats as a dict; PollFailed for any answer that is not one."""
    d = http.get(f"{url}/api/stats", reactor=clock, timeout=timeout)
    response = await d
    body = await response.content()
    if response.code != 200:
        raise PollFailed(f"HTTP {response.code}")
    if len(body) > MAX_STATS_BODY:
        raise PollFailed("stats too large")
    try:
        stats = json.loads(body)
    except ValueError:
        raise PollFailed("stats not JSON") from None
    if not isinstance(stats, dict):
        raise PollFailed("stats not a JSON object")
    return stats


class Poller(Service):
    """Polls every node of `table` each `period` (± `jitter` × period) seconds."""

    def __init__(
        self,
        clock: Any,
        http: Any,
        table: NodeTable,
        period: float,
        timeout: float | None = None,
        jitter: float = 0.1,
        rng: random.Random | None = None,
        on_poll: Callable[[Node, str], None] | None = None,
    ) -> None:
        self._clock = clock
        self._http = http
        self._table = table
        self.period = period
        self.timeout = timeout if timeout is not None else max(0.5, min(5.0, 0.8 * period))
        self._jitter = jitter
        self._rng = rng or random.Random()
        self._on_poll = on_poll  # (node, "ok" | "failed"): metrics
        self._next: IDelayedCall | None = None
        self._in_flight: dict[str, Deferred[None]] = {}  # by node URL

    def startService(self) -> None:
        super().startService()
        self._start_round()

    def stopService(self) -> Deferred[Any] | None:
        super().stopService()
        if self._next is not None and self._next.active():
            self._next.cancel()
        for polling in list(self._in_flight.values()):
            polling.cancel()
        return None

    def poll_now(self) -> Deferred[None]:
        """One round over every node not already being polled (a new node need not wait a
        period to be known); fires when all of them answered or failed."""
        polls = []
        for node in self._table:
            if node.url in self._in_flight:
                continue
            polling = self._in_flight[node.url] = Deferred.fromCoroutine(self._poll(node))
            polling.addBoth(self._landed, node.url, polling)
            polls.append(polling)
        return gatherResults(polls, consumeErrors=True).addCallback(lambda _: None)

    def _landed(self, result: Any, url: str, polling: Deferred[None]) -> Any:
        if self._in_flight.get(url) is polling:
            del self._in_flight[url]
        return result

    def _start_round(self) -> None:
        self._next = None
        self.poll_now().addErrback(lambda f: log.failure("a health round failed", f))
        if self.running:
            delay = self.period * (1 + self._rng.uniform(-self._jitter, self._jitter))
            self._next = self._clock.callLater(delay, self._start_round)

    async def _poll(self, node: Node) -> None:
        sent_then = self._table.polling(node)
        try:
            d = Deferred.fromCoroutine(fetch_stats(self._http, self._clock, node.url, self.timeout))
            # The whole exchange, body included, is bounded (treq's timeout covers the headers).
            d.addTimeout(self.timeout, self._clock)
            stats = await d
        except Exception as e:  # refused, timed out, cancelled at stop, not stats: all a failed poll
            self._table.failed(node, _cause(e))
            self._report(node, "failed")
            return
        self._table.answered(node, stats, sent_then)
        self._report(node, "ok")

    def _report(self, node: Node, outcome: str) -> None:
        if self._on_poll is not None:
            self._on_poll(node, outcome)


def _cause(error: BaseException) -> str:
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
