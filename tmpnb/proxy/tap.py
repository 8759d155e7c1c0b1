"""``twistd tmpnb-proxy`` (and the ``tmpnb-proxy`` command): the proxy and its REST API, alone.

    CONFIGPROXY_AUTH_TOKEN=secret tmpnb-proxy --ip 127.0.0.1 --port 8000 \\
        --default-target http://127.0.0.1:9000

The command line is configurable-http-proxy's (see ``options.py``); the API listens on
``--api-ip:--api-port`` (default ``127.0.0.1:<port+1>``), as CHP's does. This module only wires.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService, Service
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint, UNIXServerEndpoint
from twisted.internet.abstract import isIPv6Address
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.server import Site

from tmpnb.http.strict import strict
from tmpnb.proxy.api import ProxyAPIResource
from tmpnb.proxy.options import NO_EFFECT, TOKEN_VARIABLE, Options
from tmpnb.proxy.routes import RouteTable

__all__ = ["Options", "makeService"]

log = Logger()


def listener(reactor: Any, ip: str, port: int, socket: str | None, factory: Any, tls: Any = None) -> IService:
    """A listening service on a unix socket or ip:port ('' for every interface), TLS if given."""
    if socket:
        endpoint = UNIXServerEndpoint(reactor, socket)
    elif isIPv6Address(ip):
        endpoint = TCP6ServerEndpoint(reactor, port, interface=ip)
    else:
        endpoint = TCP4ServerEndpoint(reactor, port, interface=ip)
    if tls is not None:
        factory = TLSMemoryBIOFactory(tls, False, factory)
    service = StreamServerEndpointService(endpoint, factory)
    service._raiseSynchronously = True  # a port in use stops the start, as in CHP
    return service


def makeService(options: Options, reactor: Any = None) -> IService:
    """The route table, the API listener and the public listener, as one service."""
    if reactor is None:
        from twisted.internet import reactor
    # Imported here: what the forwarding side needs is more than `twistd --help` should load.
    from tmpnb.proxy import tls
    from tmpnb.proxy.public import public_proxy
    from tmpnb.proxy.redirect import HTTPSRedirect
    from tmpnb.proxy.settings import settings_from_options

    token = options["auth-token"]
    if not token:
        # Options refused this unless the API is on loopback or a unix socket.
        log.warn("{variable} is not set: the REST API accepts anyone who can reach it", variable=TOKEN_VARIABLE)
    if options.given("log-level") and not options.get("log-level-applied"):
        log.info("--log-level {chosen}: under twistd, twistd's logging decides what is shown", chosen=options["log-level"])
    for name, why in NO_EFFECT.items():
        if options[name]:
            log.info("--{option} has no effect: {why}", option=name, why=why)

    routes = RouteTable(reactor)
    if options["default-target"]:
        routes.add("/", {"target": options["default-target"]})

    public_tls = tls.listener_tls(options, "ssl-")
    api_tls = tls.listener_tls(options, "api-ssl-")
    top = MultiService()
    api_site = strict(Site(ProxyAPIResource(routes, token, host_routing=options["host-routing"],
                                            unix_root=options["unix-socket-root"])))
    api_site.displayTracebacks = False
    listener(reactor, options["api-ip"], options["api-port"], options["api-socket"], api_site, api_tls).setServiceParent(top)

    public = public_proxy(reactor, routes, settings_from_options(options))
    listener(reactor, options["ip"], options["port"], options["socket"], public, public_tls).setServiceParent(top)

    if options["redirect-port"]:
        https_port = options["redirect-to"] or options["port"]
        listener(reactor, options["ip"], options["redirect-port"], None, Site(HTTPSRedirect(https_port))).setServiceParent(top)
    if options["pid-file"]:
        PidFile(options["pid-file"]).setServiceParent(top)
    log.info(
        "proxy on {scheme}://{public}, its API on {api_scheme}://{api}",
        scheme="https" if public_tls else "http",
        public=options["socket"] or f"{options['ip']}:{options['port']}",
        api_scheme="https" if api_tls else "http",
        api=options["api-socket"] or f"{options['api-ip']}:{options['api-port']}",
    )
    return top


class PidFile(Service):
    """CHP's --pid-file: written when the proxy starts, removed when it stops."""

    def __init__(self, path: str) -> None:
        self.path = path

    def startService(self) -> None:
        super().startService()
        with open(self.path, "w") as f:
            f.write(str(os.getpid()))

    def stopService(self) -> None:
        super().stopService()
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass
