"""The proxy's REST API as the orchestrator sees it: add, get, delete and list routes.

Two implementations of one interface: ``CHPClient`` talks HTTP to configurable-http-proxy
(or to ``twistd tmpnb-proxy``, which answers the same way); ``InProcessProxyAPI`` edits the
embedded proxy's ``RouteTable`` directly.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Protocol
from urllib.parse import quote

import treq
from treq.client import HTTPClient
from twisted.internet.defer import Deferred, succeed
from twisted.web.client import Agent, HTTPConnectionPool, Response

from tmpnb.logs import quiet_connection_pool
from tmpnb.proxy.routes import RouteTable, normalize_route_path, to_millis
from tmpnb.slices import Slicer


class ProxyAPI(Protocol):
    """Routes as CHP keeps them: ``/user/abc`` → ``{"target", "last_activity", ...data}``."""

    def add_route(self, path: str, target: str, **data: Any) -> Deferred[None]: ...

    def delete_route(self, path: str) -> Deferred[None]: ...

    def get_route(self, path: str) -> Deferred[dict | None]: ...

    def list_routes(self, inactive_since: datetime | None = None) -> Deferred[dict[str, dict]]: ...


class ProxyAPIError(Exception):
    """The proxy answered with a status the call did not expect."""

    def __init__(self, method: str, url: str, status: int, body: bytes) -> None:
        super().__init__(f"{method} {url}: {status} {body[:200]!r}")
        self.method = method
        self.url = url
        self.status = status
        self.body = body


def format_iso8601(moment: datetime) -> str:
    """A time as UTC ISO 8601 with milliseconds and ``Z``; a naive time is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CHPClient:
    """configurable-http-proxy's REST API over treq.

    ``api_url`` is the API listener's base, e.g. ``http://127.0.0.1:8001``; ``/api/routes`` is
    appended. ``http_client`` is a ``HTTPClient`` (or anything with its ``request``).
    """

    def __init__(
        self,
        http_client: HTTPClient,
        api_url: str,
        token: str,
        timeout: float | None = None,
        reactor: Any = None,
    ) -> None:
        self._http = http_client
        self._reactor = reactor
        self._routes_url = api_url.rstrip("/") + "/api/routes"
        self._headers = {"Authorization": f"token {token}"}
        self._timeout = timeout

    def _url(self, path: str) -> str:
        # CHP decodes the path once (decodeURIComponent); quote all but "/" so it sees ours.
        return self._routes_url + quote(normalize_route_path(path), safe="/")

    async def _call(self, method: str, url: str, expected: tuple[int, ...], **kwargs: Any) -> tuple[int, bytes]:
        if self._timeout is not None:
            # treq schedules the timeout on this reactor (the global one if None)
            kwargs["timeout"] = self._timeout
            kwargs["reactor"] = self._reactor
        response: Response = await self._http.request(method, url, headers=self._headers, **kwargs)
        body = await treq.content(response)
        if response.code not in expected:
            raise ProxyAPIError(method, url, response.code, body)
        return response.code, body

    def add_route(self, path: str, target: str, **data: Any) -> Deferred[None]:
        async def add() -> None:
            await self._call("POST", self._url(path), (201,), json={"target": target, **data})

        return Deferred.fromCoroutine(add())

    def delete_route(self, path: str) -> Deferred[None]:
        async def delete() -> None:
            # 404: someone (a restart, a second cull) removed it already; the goal is met.
            await self._call("DELETE", self._url(path), (204, 404))

        return Deferred.fromCoroutine(delete())

    def get_route(self, path: str) -> Deferred[dict | None]:
        async def get() -> dict | None:
            if normalize_route_path(path) == "/":
                # CHP answers GET /api/routes/ with the whole table, so pick the root from it.
                return (await self.list_routes()).get("/")
            code, body = await self._call("GET", self._url(path), (200, 404))
            return json.loads(body) if code == 200 else None

        return Deferred.fromCoroutine(get())

    def list_routes(self, inactive_since: datetime | None = None) -> Deferred[dict[str, dict]]:
        async def list_() -> dict[str, dict]:
            params = {} if inactive_since is None else {"inactive_since": format_iso8601(inactive_since)}
            _, body = await self._call("GET", self._routes_url, (200,), params=params)
            return json.loads(body)

        return Deferred.fromCoroutine(list_())


class InProcessProxyAPI:
    """The same interface over the embedded proxy's table: every call has already happened,
    but for a listing given a `slicer`: it is rendered in stretches (tmpnb/slices.py), since
    rendering 20,000 routes at once holds the reactor ≈0.2 s."""

    def __init__(self, routes: RouteTable, slicer: Slicer | None = None) -> None:
        self._routes = routes
        self._slicer = slicer

    def add_route(self, path: str, target: str, **data: Any) -> Deferred[None]:
        self._routes.add(path, {"target": target, **data})
        return succeed(None)

    def delete_route(self, path: str) -> Deferred[None]:
        self._routes.remove(path)
        return succeed(None)

    def get_route(self, path: str) -> Deferred[dict | None]:
        return succeed(self._routes.get(path))

    def list_routes(self, inactive_since: datetime | None = None) -> Deferred[dict[str, dict]]:
        since = None if inactive_since is None else _as_utc(inactive_since).timestamp()
        if self._slicer is None:
            return succeed(self._routes.all(since))
        return Deferred.fromCoroutine(self._list_in_slices(since))

    async def _list_in_slices(self, since: float | None) -> dict[str, dict]:
        """What `RouteTable.all(since)` answers, rendered a stretch at a time; a route removed
        meanwhile is left out, one added meanwhile may be."""
        routes, listed = self._routes, {}
        cutoff = None if since is None else to_millis(since)

        def render(path: str) -> None:
            data = routes.listed(path, cutoff)
            if data is not None:
                listed[path] = data

        await self._slicer.each(routes.paths(), render)
        return listed


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def make_chp_client(
    reactor: Any,
    api_url: str,
    token: str,
    timeout: float = 10.0,
    pool: HTTPConnectionPool | None = None,
) -> CHPClient:
    """The production client: keep-alive connections to the API, and a timeout per call.

    Pass ``pool`` to own the connections (``pool.closeCachedConnections()`` at shutdown).
    """
    if pool is None:
        pool = quiet_connection_pool(reactor, persistent=True)
        pool.maxPersistentPerHost = 4
        # CHP drops idle keep-alive connections after 5 s; let ours go first, or a POST
        # (which Twisted never retries) may be written into a closing connection.
        pool.cachedConnectionTimeout = 4.0
    http_client = HTTPClient(Agent(reactor, pool=pool))
    return CHPClient(http_client, api_url, token, timeout=timeout, reactor=reactor)
