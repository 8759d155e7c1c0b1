"""``twistd tmpnb-redirector``: one front door for several tmpnb nodes.

    twistd -n tmpnb-redirector --listen tcp:8000 \\
        --node http://10.0.0.1:8000 --node http://10.0.0.2:8000 --health-period 5

Each node is polled at GET /api/stats; each new visitor is redirected to (or, for POST
/api/spawn, forwarded to) a node chosen by its room among the healthy, not draining ones.
--nodes-file is read again on SIGHUP; a bad file keeps the last good list.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Callable
from typing import Any

from twisted.application.service import IService, MultiService, Service
from twisted.logger import Logger
from twisted.python import usage
from twisted.web.server import Site

from tmpnb.http.guard import RequestLimits, guard_site
from tmpnb.http.headers import CorsPolicy, ResponseHeaders
from tmpnb.logs import QuietSite, quiet_connection_pool
from tmpnb.options import ADMIN_TOKEN_VARIABLE, endpoint_or_port, yes_no
from tmpnb.redirector.admin import RedirectorAdmin
from tmpnb.redirector.metrics import Metrics
from tmpnb.redirector.publicurls import PublicURLPolicy
from tmpnb.redirector.nodes import NodeTable, Thresholds, normalized_url
from tmpnb.redirector.nodesfile import load_nodes_file
from tmpnb.redirector.polling import Poller
from tmpnb.redirector.web import Redirector, make_resource

log = Logger()


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = __doc__

    optParameters = [
        ["listen", None, "tcp:8000:interface=127.0.0.1", "Public endpoint."],
        ["nodes-file", None, None, "File of node URLs, one a line (# comments); read again on SIGHUP."],
        ["health-period", None, 5.0, "Seconds between polls of every node.", float],
        ["health-timeout", None, None, "Seconds a poll may take (default: 0.8 x period, at most 5).", float],
        ["down-after", None, 2, "Failed polls in a row that take a node out of rotation.", int],
        ["up-after", None, 2, "Answered polls in a row that bring a node that was down back.", int],
        ["headroom", None, 0, "Pooled containers left on each node as a margin.", int],
        ["spawn-timeout", None, 30.0, "Seconds a forwarded POST /api/spawn may take.", float],
        ["retry-after", None, 5, "Retry-After when every node is full.", int],
        ["allow-origin", None, "", "Access-Control-Allow-Origin (as on a node)."],
        ["allow-credentials", None, False, "Access-Control-Allow-Credentials.", yes_no],
        ["allow-methods", None, "", "Access-Control-Allow-Methods."],
        ["allow-headers", None, "", "Access-Control-Allow-Headers."],
        ["admin-listen", None, None, f"Admin API port or endpoint, on loopback (token in ${ADMIN_TOKEN_VARIABLE})."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["node"] = []
        self["public-host"] = []

    def opt_node(self, url: str) -> None:
        """A node's URL (repeatable), e.g. http://10.0.0.1:8000."""
        try:
            self["node"].append(normalized_url(url))
        except ValueError as e:
            raise usage.UsageError(str(e)) from None

    def opt_public_host(self, host: str) -> None:
        """A host a node's reported public_url may name besides the node's own (repeatable;
        `*.nb.example.org` for every subdomain). Other public_urls keep their node out of rotation."""
        host = host.strip().lower()
        if not host:
            return  # an empty value (a stack file's unset variable) allows nothing
        if "/" in host or ":" in host or "@" in host:
            raise usage.UsageError(f"--public-host takes a host name (or *.suffix), not {host!r}")
        self["public-host"].append(host)

    def postOptions(self) -> None:
        if not self["node"] and not self["nodes-file"]:
            raise usage.UsageError("give at least one --node or a --nodes-file")
        if self["health-period"] <= 0 or self["down-after"] < 1 or self["up-after"] < 1 or self["headroom"] < 0:
            raise usage.UsageError("need --health-period > 0, --down-after and --up-after >= 1, --headroom >= 0")
        if self["admin-listen"] is not None:
            self["admin-listen"] = endpoint_or_port(self["admin-listen"])


class SighupReload(Service):
    """Reads the nodes file again on SIGHUP (the handler only schedules it on the reactor)."""

    def __init__(self, reactor: Any, reload: Any) -> None:
        self._reactor = reactor
        self._reload = reload
        self._previous: Any = None

    def startService(self) -> None:
        super().startService()
        self._previous = signal.signal(signal.SIGHUP, lambda *_: self._reactor.callFromThread(self._reload))

    def stopService(self) -> None:
        super().stopService()
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)


def makeService(options: Options, reactor: Any = None, environ: dict[str, str] | None = None) -> IService:
    if reactor is None:
        from twisted.internet import reactor
    # Here, not at the top: endpoints load automat (Twisted's own machines), which option
    # parsing and the import check in tests/test_redirector_tap.py need not.
    from twisted.application import strports

    environ = dict(os.environ) if environ is None else environ
    top = MultiService()
    table = NodeTable(Thresholds(down_after=options["down-after"], up_after=options["up-after"]),
                      PublicURLPolicy(tuple(options["public-host"])))
    for url in options["node"]:
        table.add(url, source="option")
    http = _http_client(reactor)
    metrics = Metrics(table, options["headroom"])
    rng = random.Random()
    poller = Poller(reactor, http, table, options["health-period"], options["health-timeout"], rng=rng,
                    on_poll=metrics.poll)
    poller.setName("poller")
    reload = None
    if options["nodes-file"]:
        reload = _nodes_file(reactor, options["nodes-file"], table, poller)
        SighupReload(reactor, reload).setServiceParent(top)
    poller.setServiceParent(top)

    redirector = Redirector(table, options["headroom"], rng, metrics)
    _named(strports.service(options["listen"], _public_site(reactor, options, redirector, http), reactor=reactor),
           "web").setServiceParent(top)
    if options["admin-listen"]:
        admin = QuietSite(RedirectorAdmin(redirector, environ.get(ADMIN_TOKEN_VARIABLE, ""), reload,
                                          on_added=lambda: poller.poll_now() if poller.running else None),
                          reactor=reactor, name="redirector-admin")
        admin.displayTracebacks = False
        _named(strports.service(options["admin-listen"], admin, reactor=reactor), "admin").setServiceParent(top)
    log.info("redirector on {listen} for {count} nodes", listen=options["listen"], count=len(table))
    return top


def _nodes_file(reactor: Any, path: str, table: NodeTable, poller: Poller) -> Callable[[], bool]:
    """Load --nodes-file now; the returned reload loads it again and polls at once if it changed."""

    def reload() -> bool:
        loaded = load_nodes_file(path, table)
        if loaded and poller.running:
            poller.poll_now()
        return loaded

    load_nodes_file(path, table)
    return reload


def _http_client(reactor: Any) -> Any:
    """One treq client for the polls and the forwarded spawns, a few kept connections per node."""
    from treq.client import HTTPClient
    from twisted.web.client import Agent

    # Quiet: a factory per connection logged start and stop (28 of 62 lines of a 25 s run).
    pool = quiet_connection_pool(reactor, persistent=True)
    pool.maxPersistentPerHost = 4
    # A burst of spawns opens up to four per node; once it is over, the polls keep one warm
    # and the rest close after this long idle (Twisted's default, 240 s, keeps them for long).
    pool.cachedConnectionTimeout = 15.0
    return HTTPClient(Agent(reactor, pool=pool))


def _public_site(reactor: Any, options: Options, redirector: Redirector, http: Any) -> Site:
    cors = CorsPolicy(allow_origin=options["allow-origin"], allow_credentials=options["allow-credentials"],
                      allow_methods=options["allow-methods"], allow_headers=options["allow-headers"])
    site = QuietSite(make_resource(redirector, http, reactor, ResponseHeaders(cors, "'self'"),
                                   options["spawn-timeout"], options["retry-after"]), reactor=reactor,
                     name="redirector")
    site.displayTracebacks = False
    # Strangers' requests: a node's front-door deadlines and body limit (tmpnb/http/guard.py).
    return guard_site(site, RequestLimits(), reactor)


def _named(service: IService, name: str) -> IService:
    service.setName(name)
    return service
