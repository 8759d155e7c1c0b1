"""The admin API, served on its own loopback listener (--admin-port).

    GET    /health                 status of dockerd and the proxy API; no token needed
    GET    /metrics                Prometheus metrics (tmpnb/metrics.py); no token needed
    GET    /api/containers         {"containers": [{"id", "state", "path", "age", "idle",
                                   "in_state", "docker_id"}, ...]}  (seconds; idle is null
                                   for a container nobody has been given)
    DELETE /api/containers/<id>    cull one: {"culled": id}, 404 if unknown
    DELETE /api/pool               cull the unassigned pool, refill follows: {"drained": n}
    DELETE /api/shares/<id>        take a share down (with sharing on): {"deleted": id}, 404 if
                                   unknown or already gone
    POST   /api/drain              drain the node: no new visitors, no refill, visitors stay
                                   until culled: {"draining": true}
    DELETE /api/drain              end the drain: {"draining": false}

Everything under /api/ needs ``Authorization: token <ADMIN_AUTH_TOKEN>``; 403 otherwise.
/health and /metrics are read-only and name no container, so monitoring can poll them
without the token; with the token /health also says why a component is not ok.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from tmpnb.http.auth import has_token
from tmpnb.health import Health

log = Logger()

ADMIN_CULL_REASON = "admin"


class AdminPool(Protocol):
    """The part of tmpnb.pool.Pool the admin API uses."""

    def containers(self) -> list[dict]: ...  # each its machine's describe()

    def cull(self, container_id: str, reason: str) -> bool: ...

    def drain(self) -> int: ...

    def set_draining(self, draining: bool) -> None: ...


class AdminResource(Resource):
    isLeaf = True

    def __init__(
        self, pool: AdminPool, health: Health, token: str, clock: IReactorTime | None = None,
        takedown: Callable[[str], Coroutine[Any, Any, bool]] | None = None,
        metrics: Resource | None = None,
    ) -> None:
        super().__init__()
        self._takedown = takedown
        self._pool = pool
        self._health = health
        self._metrics = metrics  # prometheus_client.twisted.MetricsResource over the service's registry
        self._clock = clock if clock is not None else health.clock
        # An empty token would let "Authorization: token " in: refuse everything instead.
        self._expected = token or None

    def render(self, request: Request) -> bytes:
        segments = [s for s in request.path.decode("utf-8", "replace").split("/") if s]
        method = request.method.decode("ascii", "replace")
        if segments == ["health"]:
            if method not in ("GET", "HEAD"):
                return _method_not_allowed(request, "GET, HEAD")
            return self._health_page(request)
        if segments == ["metrics"] and self._metrics is not None:
            if method not in ("GET", "HEAD"):
                return _method_not_allowed(request, "GET, HEAD")
            return self._metrics.render(request)
        if segments[:1] != ["api"]:
            return _json(request, http.NOT_FOUND, {"error": "not found"})
        if not self._authorized(request):
            log.warn("refused admin {method} {path} from {peer}", method=method,
                     path=request.path.decode("utf-8", "replace"), peer=_peer(request))
            return _json(request, http.FORBIDDEN, {"error": "forbidden"})
        if segments == ["api", "containers"]:
            if method not in ("GET", "HEAD"):
                return _method_not_allowed(request, "GET, HEAD")
            now = self._clock.seconds()
            listing = [listed(described, now) for described in self._pool.containers()]
            return _json(request, http.OK, {"containers": listing})
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
        if len(segments) == 3 and segments[:2] == ["api", "shares"] and self._takedown is not None:
            if method != "DELETE":
                return _method_not_allowed(request, "DELETE")
            return self._take_down(request, segments[2])
        if segments == ["api", "drain"]:
            if method not in ("POST", "DELETE"):
                return _method_not_allowed(request, "POST, DELETE")
            self._pool.set_draining(method == "POST")
            log.info("admin set draining to {draining}", draining=method == "POST")
            return _json(request, http.OK, {"draining": method == "POST"})
        return _json(request, http.NOT_FOUND, {"error": "not found"})

    def _take_down(self, request: Request, share_id: str) -> Any:
        def answer(deleted: bool) -> None:
            if deleted:
                log.info("admin took down share {share}", share=share_id)
                body = _json(request, http.OK, {"deleted": share_id})
            else:
                body = _json(request, http.NOT_FOUND, {"error": "no such share"})
            request.write(body)
            request.finish()

        def failed(reason: Any) -> None:
            log.failure("taking down share {share}", reason, share=share_id)
            request.write(_json(request, http.INTERNAL_SERVER_ERROR, {"error": "takedown failed"}))
            request.finish()

        d = Deferred.fromCoroutine(self._takedown(share_id))
        d.addCallbacks(answer, failed).addErrback(lambda f: log.failure("answering a takedown", f))
        return NOT_DONE_YET

    def _authorized(self, request: Request) -> bool:
        return has_token(request, self._expected)

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


def listed(described: dict[str, Any], now: float) -> dict[str, Any]:
    """One container for the admin, from its machine's describe(): ages instead of times."""
    state = described["state"]
    if state == "idle":
        idle = now - described["idle_since"]
    elif state == "assigned":
        last_seen = described.get("last_activity") or described["assigned_at"]
        idle = max(0.0, now - last_seen)
    else:
        idle = None  # nobody is using it, so it cannot be idle
    return {
        "id": described["container"],
        "state": state,
        "path": described["path"],
        "age": now - described["created"],
        "idle": idle,
        "in_state": now - described["in_state_since"],
        "docker_id": described.get("docker_id"),
    }


def _peer(request: Request) -> str:
    address = request.getClientAddress()
    return f"{address.host}:{address.port}" if hasattr(address, "port") else str(address)


def _json(request: Request, code: int, body: Any) -> bytes:
    request.setResponseCode(code)
    request.setHeader("content-type", "application/json")
    request.setHeader("cache-control", "no-store")
    return json.dumps(body).encode()


def _method_not_allowed(request: Request, allowed: str) -> bytes:
    request.setHeader("allow", allowed)
    return _json(request, http.NOT_ALLOWED, {"error": "method not allowed"})
