"""What the operator's log holds: one line per thing that matters, as text or JSON lines.

Twisted logs "Starting factory …" and "Stopping factory …" for every connection a client
factory makes; tmpnb makes one per readiness poll and per proxied backend connection, so
those lines drowned everything else (1,518 of the first 1,739 lines of `tools/run`). Two
remedies, both here:

- at the source: the connections tmpnb makes use quiet factories
  (``quiet_connection_pool``, ``connect_quietly``);
- for the whole service, factories tmpnb does not own included: the observers below drop
  that noise.  twistd builds its log observer itself, so they are chosen with twistd's own
  ``--logger`` option (which writes to stdout; ``--logfile`` is then ignored)::

      twistd -n --logger tmpnb.logs.json_observer tmpnb …   # JSON, one event per line
      twistd -n --logger tmpnb.logs.text_observer tmpnb …   # text, like twistd's own
"""

from __future__ import annotations

import sys
from typing import IO, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogObserver,
    LogEvent,
    LogLevel,
    PredicateResult,
    eventAsJSON,
    eventAsText,
    formatEventAsClassicLogText,
)
from twisted.web.client import HTTPConnectionPool, _HTTP11ClientFactory
from twisted.web.server import Site

from tmpnb.http.keepalive import RecentFirstPool
from tmpnb.http.strict import StrictHTTPChannel, StrictRequest

# Lines that say nothing an operator acts on: a factory started or stopped (for every
# client connection), twisted.web's "Starting factory" for each listener included.
NOISE_FORMATS = ("Starting factory {factory!r}", "Stopping factory {factory!r}")


def is_noise(event: LogEvent) -> PredicateResult:
    """The filter of the observers below: drop factory start/stop lines, keep the rest."""
    if event.get("log_format") in NOISE_FORMATS and event.get("log_level", LogLevel.info) <= LogLevel.info:
        return PredicateResult.no
    return PredicateResult.maybe


def quiet(observer: ILogObserver) -> ILogObserver:
    """``observer`` without the noise."""
    return FilteringLogObserver(observer, [is_noise])


def json_line(event: LogEvent) -> str:
    """One event as a line of JSON (twisted.logger's eventAsJSON: loadable with
    eventFromJSON), plus "text", the event as a person reads it (a failure's traceback too)."""
    text = eventAsText(event, includeTimestamp=False, includeSystem=False)
    return eventAsJSON({**event, "text": text}) + "\n"


def json_observer(out: IO[str] | None = None) -> ILogObserver:
    """For ``twistd --logger``: every event but the noise as JSON lines on stdout."""
    return quiet(FileLogObserver(out if out is not None else sys.stdout, json_line))


def text_observer(out: IO[str] | None = None) -> ILogObserver:
    """For ``twistd --logger``: twistd's usual text lines on stdout, without the noise."""
    return quiet(FileLogObserver(out if out is not None else sys.stdout, formatEventAsClassicLogText))


# -- quiet factories -------------------------------------------------------------------------


class QuietSite(Site):
    """A twisted.web Site that writes no access log line per request and no factory lines:
    the orchestrator logs what it hands out, and a Prometheus scrape every 15 s of the admin
    listener would otherwise be four lines a minute."""

    noisy = False
    # Header values with control bytes, `..`/NUL/overlong targets: 4xx (tmpnb/http/strict.py).
    protocol = StrictHTTPChannel
    requestFactory = StrictRequest

    def __init__(self, resource: Any, *args: Any, name: str = "Site", **kwargs: Any) -> None:
        super().__init__(resource, *args, **kwargs)
        self._name = name

    def logPrefix(self) -> str:
        """What the listener's "… starting on <port>" line calls it."""
        return self._name

    def log(self, request: Any) -> None:
        pass



class _QuietHTTP11ClientFactory(_HTTP11ClientFactory):
    noisy = False


def quiet_connection_pool(reactor: Any, persistent: bool) -> HTTPConnectionPool:
    """An HTTPConnectionPool (for treq/Agent) whose connections log nothing when made, and
    whose kept connections are reused newest first (tmpnb/http/keepalive.py)."""
    pool = RecentFirstPool(reactor, persistent=persistent)
    # _factory is the pool's documented hook for its connections' factory (private name,
    # stable since Twisted 12.1): setting `noisy` on Twisted's own class would affect everyone.
    pool._factory = _QuietHTTP11ClientFactory
    return pool


class _OneConnection(Factory):
    noisy = False

    def __init__(self, protocol: Protocol) -> None:
        self._protocol = protocol

    def buildProtocol(self, addr: Any) -> Protocol:
        return self._protocol


def connect_quietly(endpoint: IStreamClientEndpoint, protocol: Protocol) -> Deferred[Protocol]:
    """twisted.internet.endpoints.connectProtocol, without its two log lines per connection."""
    return endpoint.connect(_OneConnection(protocol))
