"""The redirector's admin API, on its own loopback listener (--admin-listen).

    GET    /metrics                Prometheus (no token: read-only, as the node's admin /metrics)
    GET    /api/stats              the public /api/stats with each node in "nodes"
    GET    /api/nodes              {"nodes": [...]}: each node's URLs, health, counts, errors
    POST   /api/nodes              body {"url": "http://host:port"}: 201 {"added": url} (200 if known)
    DELETE /api/nodes?url=<url>    {"removed": url}; 404 JSON for a node it does not have
    POST   /api/reload             read --nodes-file again (as SIGHUP does): {"reloaded": bool}

Everything else needs `Authorization: token <ADMIN_AUTH_TOKEN>`; 403 otherwise. Every answer
but /metrics is JSON. Node details and metrics name the nodes' internal addresses: they stay
here, off the public port.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from tmpnb.http import replies
from tmpnb.http.auth import has_token
from tmpnb.redirector.metrics import MetricsPage
from tmpnb.redirector.nodes import normalized_url
from tmpnb.redirector.web import Redirector

log = Logger()


class RedirectorAdmin(Resource):
    isLeaf = True

    def __init__(self, redirector: Redirector, token: str, reload: Callable[[], bool] | None = None,
                 on_added: Callable[[], Any] | None = None) -> None:
        super().__init__()
        self._redirector = redirector
        self._expected = token or None  # no token: nobody gets in
        self._reload = reload
        self._on_added = on_added  # poll at once, so a new node need not wait a period
        self._metrics = MetricsPage(redirector.metrics)

    def render(self, request: Request) -> bytes:
        if request.path == b"/metrics":
            if request.method not in (b"GET", b"HEAD"):
                return _not_allowed(request, b"GET, HEAD")
            return self._metrics.render(request)
        if not self._authorized(request):
            return replies.json_reply(request, 403, {"error": "forbidden"})
        method = request.method
        if request.path == b"/api/nodes":
            if method in (b"GET", b"HEAD"):
                return replies.json_reply(request, 200, {"nodes": self._redirector.stats()["nodes"]})
            if method == b"POST":
                return self._add(request)
            if method == b"DELETE":
                return self._remove(request)
            return _not_allowed(request, b"GET, POST, DELETE")
        if request.path == b"/api/stats":
            if method not in (b"GET", b"HEAD"):
                return _not_allowed(request, b"GET, HEAD")
            return replies.json_reply(request, 200, self._redirector.stats())
        if request.path == b"/api/reload":
            if method != b"POST":
                return _not_allowed(request, b"POST")
            if self._reload is None:
                return replies.json_reply(request, 409, {"error": "no --nodes-file"})
            return replies.json_reply(request, 200, {"reloaded": self._reload()})
        return replies.json_reply(request, 404, {"error": "not found"})

    def _authorized(self, request: Request) -> bool:
        return has_token(request, self._expected)

    def _add(self, request: Request) -> bytes:
        try:
            document = json.loads(request.content.read(4096))
            url = normalized_url(document["url"])
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            return replies.json_reply(request, 400, {"error": f"expected {{\"url\": \"http://host:port\"}}: {e}"})
        known = self._redirector.table.get(url) is not None
        self._redirector.table.add(url, source="admin")
        if self._on_added is not None:
            self._on_added()
        return replies.json_reply(request, 200 if known else 201, {"added": url})

    def _remove(self, request: Request) -> bytes:
        url = (request.args.get(b"url") or [b""])[0].decode("utf-8", "replace")
        node = self._redirector.table.get(url)
        if node is None or not self._redirector.table.remove(node.url):
            return replies.json_reply(request, 404, {"error": "no such node", "url": url})
        return replies.json_reply(request, 200, {"removed": node.url})


def _not_allowed(request: Request, allowed: bytes) -> bytes:
    request.setHeader(b"Allow", allowed)
    return replies.json_reply(request, 405, {"error": "method not allowed"})
