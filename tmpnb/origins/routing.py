"""The proxy's routes keyed by host, for subdomain mode.

configurable-http-proxy's --host-routing (and tmpnb's embedded proxy with `host_routing`)
matches `/<Host without port><path>`: a route `/<id>.nb.example.org/user/<id>` answers only on
that visitor's own host, so no page of A's server can appear on B's origin or on tmpnb's. The
pool, the heartbeat and adoption keep speaking of `/user/<id>`; `HostRoutes` translates on the
way to the proxy and back, so nothing else changes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from twisted.internet.defer import Deferred

from tmpnb.origins import Origins

USER_PREFIX = "/user/"


def host_route(origins: Origins, path: str) -> str:
    """`/user/<id>[/…]` → `/<id>.<host>/user/<id>[/…]`; any other path unchanged."""
    if not path.startswith(USER_PREFIX):
        return path
    container_id = path[len(USER_PREFIX):].split("/", 1)[0]
    if not container_id:
        return path
    return "/" + origins.visitor_host(container_id) + path


def path_route(origins: Origins, route: str) -> str | None:
    """The inverse of host_route for a route of the proxy's: `/user/<id>…` when its host is that
    container's own subdomain; None for a route that is not one of those."""
    host, slash, rest = route.lstrip("/").partition("/")
    if not slash:
        return None
    path = "/" + rest
    container_id = origins.container_of_host(host)
    if container_id is None or not path.startswith(USER_PREFIX + container_id):
        return None
    return path


class HostRoutes:
    """A tmpnb.proxyapi.ProxyAPI that keys routes by host, over another one (CHP's client or
    the embedded proxy's table). Routes not of this form pass through listed as they are."""

    def __init__(self, proxy: Any, origins: Origins) -> None:
        self._proxy = proxy
        self._origins = origins

    def add_route(self, path: str, target: str, **data: Any) -> Deferred[None]:
        return self._proxy.add_route(host_route(self._origins, path), target, **data)

    def delete_route(self, path: str) -> Deferred[None]:
        return self._proxy.delete_route(host_route(self._origins, path))

    def get_route(self, path: str) -> Deferred[dict | None]:
        return self._proxy.get_route(host_route(self._origins, path))

    def list_routes(self, inactive_since: datetime | None = None) -> Deferred[dict[str, dict]]:
        def by_path(routes: dict[str, dict]) -> dict[str, dict]:
            return {path_route(self._origins, route) or route: data for route, data in routes.items()}

        return self._proxy.list_routes(inactive_since).addCallback(by_path)
