"""``twistd tmpnb-proxy``: the reverse proxy and its REST API, alone, with CHP's option names.

    CONFIGPROXY_AUTH_TOKEN=secret twistd -n tmpnb-proxy --ip 127.0.0.1 --port 8000 \\
        --default-target http://127.0.0.1:9000

The API listens on ``--api-ip:--api-port`` (default ``127.0.0.1:<port+1>``), as CHP's does.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.application import strports
from twisted.application.service import IService, MultiService
from twisted.internet.endpoints import quoteStringArgument
from twisted.logger import Logger
from twisted.python import usage
from twisted.web.server import Site

from tmpnb.proxy.api import ProxyAPIResource
from tmpnb.proxy.routes import RouteTable

log = Logger()

TOKEN_VARIABLE = "CONFIGPROXY_AUTH_TOKEN"


class Options(usage.Options):
    optParameters = [
        ["ip", None, "127.0.0.1", "Public-facing IP of the proxy ('' or 0.0.0.0: every interface)."],
        ["port", None, 8000, "Public-facing port of the proxy.", int],
        ["socket", None, None, "UNIX socket for the proxy to listen on, instead of --ip/--port."],
        ["api-ip", None, "127.0.0.1", "Inward-facing IP for API requests."],
        ["api-port", None, None, "Inward-facing port for API requests (default: --port + 1).", int],
        ["api-socket", None, None, "UNIX socket for the API to listen on, instead of --api-ip/--api-port."],
        ["default-target", None, None, "Default proxy target (proto://host[:port]): the route '/'."],
        ["static-dir", None, None, "Directory served centrally for every notebook's static files."],
    ]

    def postOptions(self) -> None:
        if self["api-port"] is None:
            self["api-port"] = self["port"] + 1
        # CHP's only channel for the secret: never a command-line argument, which `ps` shows.
        self["auth-token"] = os.environ.get(TOKEN_VARIABLE) or None


def tcp_endpoint(ip: str, port: int) -> str:
    """A strports description for a TCP listener; '' means every interface, as in CHP."""
    if ip in ("", "*"):
        return f"tcp:{port}"
    return f"tcp:{port}:interface={quoteStringArgument(ip)}"


def unix_endpoint(path: str) -> str:
    return f"unix:{quoteStringArgument(path)}"


def makeService(options: Options, reactor: Any = None) -> IService:
    """The route table, the API listener and the public listener, as one service."""
    if reactor is None:
        from twisted.internet import reactor
    token = options["auth-token"]
    if not token:
        log.warn("{variable} is not set: the REST API accepts anyone", variable=TOKEN_VARIABLE)

    routes = RouteTable(reactor)
    if options["default-target"]:
        routes.add("/", {"target": options["default-target"]})

    top = MultiService()
    api_description = (
        unix_endpoint(options["api-socket"])
        if options["api-socket"]
        else tcp_endpoint(options["api-ip"], options["api-port"])
    )
    api_site = Site(ProxyAPIResource(routes, token))
    api_site.displayTracebacks = False
    strports.service(api_description, api_site, reactor=reactor).setServiceParent(top)

    public_description = (
        unix_endpoint(options["socket"]) if options["socket"] else tcp_endpoint(options["ip"], options["port"])
    )
    strports.service(public_description, _forwarding_factory(reactor, routes, options), reactor=reactor).setServiceParent(top)
    log.info(
        "proxy on {public}, its API on {api}",
        public=public_description,
        api=api_description,
    )
    return top


def _forwarding_factory(reactor: Any, routes: RouteTable, options: Options) -> Any:
    # Imported here: the forwarding side pulls in more than the API needs.
    from tmpnb.proxy.server import ReverseProxyFactory

    # No fallback target here: as in CHP, --default-target is the route "/" (added in
    # makeService), which the API can show, replace and delete.
    return ReverseProxyFactory(reactor, routes, None, static_dir=options["static-dir"])
