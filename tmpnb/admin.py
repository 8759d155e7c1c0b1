"""The admin API, served on its own loopback listener (--admin-port).

    GET    /health                 status of dockerd and the proxy API; no token needed
    GET    /api/containers         {"containers": [...]}  as Pool.containers() lists them
    DELETE /api/containers/<id>    cull one: {"culled": id}, 404 if unknown
    DELETE /api/pool               cull the unassigned pool, refill follows: {"drained": n}

Everything under /api/ needs ``Authorization: token <ADMIN_AUTH_TOKEN>``; 403 otherwise.
/health is read-only and names no container, so monitoring can poll it without the token;
with the token it also says why a component is not ok.
"""

from __future__ import annotations

import hmac
import json
from typing import Any, Protocol

from twisted.logger import Logger
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request

from tmpnb.health import Health

log = Logger()

ADMIN_CULL_REASON = "admin"


class AdminPool(Protocol):
    """The part of tmpnb.pool.Pool the admin API uses."""

    def containers(self) -> list[dict]: ...

    def cull(self, container_id: str, reason: str) -> bool: ...

    def drain(self) -> int: ...


class AdminResource(Resource):
    isLeaf = True

    def __init__(self, pool: AdminPool, health: Health, token: str) -> None:
        super().__init__()
        self._pool = pool
        self._health = health
        # An empty token would let "Authorization: token " in: refuse everything instead.
        self._expected = f"token {token}".encode() if token else None

    def render(self, request: Request) -> bytes:
        segments = [s for s in request.path.decode("utf-8", "replace").split("/") if s]
        method = request.method.decode("ascii", "replace")
        if segments == ["health"]:
            if method not in ("GET", "HEAD"):
                return _method_not_allowed(request, "GET, HEAD")
            return self._health_page(request)
        if segments[:1] != ["api"]:
            return _json(request, http.NOT_FOUND, {"error": "not found"})
        if not self._authorized(request):
            log.warn("refused admin {method} {path} from {peer}", method=method,
                     path=request.path, peer=str(request.getClientAddress()))
            return _json(request, http.FORBIDDEN, {"error": "forbidden"})
        if segments == ["api", "containers"]:
            if method not in ("GET", "HEAD"):
                return _method_not_allowed(request, "GET, HEAD")
            return _json(request, http.OK, {"containers": self._pool.containers()})
        if len(segments) == 3 and segments[:2] == ["api", "containers"]:
            if method != "DELETE":
                return _method_not_allowed(request, "DELETE")
            return self._cull(request, segments[2])
        if segments == ["api", "pool"]:
            if method != "DELETE":
                return _method_not_allowed(request, "DELETE")
            drained = self._pool.drain()
            log.info("admin drained {drained} pooled containers", drained=drained)
            return _json(request, http.OK, {"drained": drained})
        return _json(request, http.NOT_FOUND, {"error": "not found"})

    def _authorized(self, request: Request) -> bool:
        given = request.getHeader("authorization")
        if self._expected is None or given is None:
            return False
        return hmac.compare_digest(given.encode(), self._expected)

    def _health_page(self, request: Request) -> bytes:
        snapshot = self._health.snapshot()
        if not self._authorized(request):
            for component in ("docker", "proxy"):
                snapshot[component].pop("cause", None)
        code = http.OK if snapshot["status"] == "ok" else http.SERVICE_UNAVAILABLE
        return _json(request, code, snapshot)

    def _cull(self, request: Request, container_id: str) -> bytes:
        if not self._pool.cull(container_id, ADMIN_CULL_REASON):
            return _json(request, http.NOT_FOUND, {"error": "no such container"})
        log.info("admin culled {container}", container=container_id)
        return _json(request, http.OK, {"culled": container_id})


def _json(request: Request, code: int, body: Any) -> bytes:
    request.setResponseCode(code)
    request.setHeader("content-type", "application/json")
    request.setHeader("cache-control", "no-store")
    return json.dumps(body).encode()


def _method_not_allowed(request: Request, allowed: str) -> bytes:
    request.setHeader("allow", allowed)
    return _json(request, http.NOT_ALLOWED, {"error": "method not allowed"})
