"""The redirector's public side.

    GET  /, /spawn/<path>   302 to a chosen node, path and query kept; No-vacancy page if none
    POST /api/spawn         forwarded to a chosen node: {"url": <absolute>}; 429 JSON if none
    GET  /api/stats         the nodes summed (each node, and /metrics: the admin listener only)
    GET  /health            200 while some node is up, else 503

Every answer under /api/ is JSON, errors included.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit
import random
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

import tmpnb
from tmpnb.http import replies
from tmpnb.http.headers import ResponseHeaders
from tmpnb.http.methods import OnlyAllowed
from tmpnb.http.replies import departure
from tmpnb.http.tree import ApiBranch, Root, RobotsTxt
from tmpnb.pages import render_page
from tmpnb.redirector.choosing import candidates, choose
from tmpnb.redirector.metrics import Metrics
from tmpnb.redirector.nodes import Node, NodeTable

log = Logger()

MAX_BODY = 4096
SPAWN_ATTEMPTS = 3  # nodes tried for one API spawn before it is answered "full"
FORWARDED_HEADERS = (b"Authorization", b"Content-Type")

__all__ = ["Redirector", "make_resource"]


class Redirector:
    """Chooses nodes and counts what it sent them."""

    def __init__(self, table: NodeTable, headroom: int, rng: random.Random, metrics: Metrics) -> None:
        self.table = table
        self.headroom = headroom
        self._rng = rng
        self.metrics = metrics

    def take(self, how: str, exclude: tuple[Node, ...] = ()) -> Node | None:
        """Choose a node for one visitor and count them against its room at once."""
        node = choose(self.table, self.headroom, self._rng, exclude)
        if node is None:
            self.metrics.full.labels(how).inc()
            return None
        self.table.sent_visitor(node)
        self.metrics.sent.labels(node.url, how).inc()
        return node

    def public_stats(self) -> dict[str, Any]:
        """What anyone may know: the sums. The nodes' addresses, errors and counts are for the
        admin listener (GET /api/nodes) alone."""
        stats = self.stats()
        del stats["nodes"]
        return stats

    def stats(self) -> dict[str, Any]:
        nodes = list(self.table)
        serving = [n for n in nodes if n.up and not n.draining]
        return {
            "available": sum(n.available for n in serving),
            "capacity": sum(n.capacity for n in serving),
            "room": sum(r for _, r in candidates(nodes, self.headroom)),
            "up": sum(n.up for n in nodes),
            "version": tmpnb.__version__,
            "nodes": [n.describe(self.headroom) for n in nodes],
        }


class RedirectPage(OnlyAllowed):
    """GET / and /spawn/<path>: a 302 to the chosen node's own / or /spawn/<path>."""

    isLeaf = True

    def __init__(self, redirector: Redirector, retry_after: int) -> None:
        super().__init__()
        self._redirector = redirector
        self._retry_after = retry_after

    def render_GET(self, request: Request) -> bytes:
        node = self._redirector.take("redirect")
        if node is None:
            return replies.no_vacancy(request, self._retry_after)
        url = node.visitor_url + request.uri.decode("ascii", "replace")
        request.redirect(url.encode("ascii", "replace"))
        return replies.html(request, 302, render_page("redirect", "Your notebook is on its way", url=url))

    def render_HEAD(self, request: Request) -> bytes:
        return replies.html(request, 200, b"")  # link checkers must not take a notebook


class SpawnForward(OnlyAllowed):
    """POST /api/spawn, forwarded to a node; its relative URL made absolute."""

    isLeaf = True

    def __init__(self, redirector: Redirector, http: Any, clock: Any, timeout: float, retry_after: int) -> None:
        super().__init__()
        self._redirector = redirector
        self._http = http
        self._clock = clock
        self._timeout = timeout
        self._retry_after = retry_after

    def render_POST(self, request: Request) -> bytes | int:
        body = request.content.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            return replies.json_reply(request, 413, {"status": "body too large"})
        if body.strip() and _json_object(body) is None:
            # Refused here: no node is chosen (nor counted) for a request none could serve.
            return replies.json_reply(request, 400, {"status": "the body must be a JSON object"})
        headers = {name: [v] for name in FORWARDED_HEADERS if (v := request.getHeader(name)) is not None}
        if xff := forwarded_for(request):
            headers[b"X-Forwarded-For"] = [xff]  # the node counts the visitor, not us
        left = departure(request)
        d = Deferred.fromCoroutine(self._forward(body, headers))

        def answer(result: tuple[int, dict]) -> None:
            code, document = result
            if code in (429, 503):
                request.setHeader(b"Retry-After", str(self._retry_after).encode("ascii"))
            replies.finish(request, left, replies.json_reply(request, code, document))

        def failed(reason: Any) -> None:
            log.failure("forwarding an API spawn", reason)
            replies.finish(request, left, replies.json_reply(request, 503, {"status": "unavailable"}))

        d.addCallback(answer).addErrback(failed).addErrback(lambda f: log.failure("answering an API spawn", f))
        return NOT_DONE_YET

    async def _forward(self, body: bytes, headers: dict) -> tuple[int, dict]:
        tried: list[Node] = []
        for _ in range(SPAWN_ATTEMPTS):
            node = self._redirector.take("api", tuple(tried))
            if node is None:
                break
            tried.append(node)
            try:
                d = self._http.post(f"{node.url}/api/spawn", data=body, headers=headers,
                                    reactor=self._clock, timeout=self._timeout)
                d.addTimeout(self._timeout, self._clock)
                response = await d
                answer = await response.content()
            except Exception as e:
                log.warn("node {url} did not take an API spawn: {error}", url=node.url, error=repr(e))
                self._redirector.table.failed(node, f"spawn: {type(e).__name__}")
                continue
            document = _json_object(answer)
            if response.code == 429:
                self._redirector.table.found_full(node)
                continue
            if response.code == 200 and document is not None and isinstance(document.get("url"), str):
                url = visitor_spawn_url(node.visitor_url, document["url"])
                if url is None:
                    return 502, {"status": "bad gateway", "node": node.url}
                return 200, {**document, "url": url}
            if document is None:  # a node that answers non-JSON: a proxy page, say
                return 502, {"status": "bad gateway", "node": node.url}
            return response.code, document  # the node's own verdict (400, 401, 413, 503)
        return 429, {"status": "full"}


def visitor_spawn_url(visitor_url: str, url: str) -> str | None:
    """A node's /api/spawn "url" as the visitor's absolute URL: a path (path mode) on the node's
    public URL, or (--subdomain-host) an absolute URL on a subdomain of that URL's host, same
    scheme and port; None for anything else, which no visitor is sent to."""
    if url.startswith("/") and not url.startswith("//"):
        return visitor_url + url
    try:
        given, node = urlsplit(url), urlsplit(visitor_url)
        same_port = given.port == node.port
    except ValueError:
        return None
    host, node_host = given.hostname or "", node.hostname or ""
    label = host[: -len(node_host) - 1] if node_host and host.endswith("." + node_host) else ""
    if given.scheme != node.scheme or not same_port or not label or "." in label or given.username:
        return None
    return url
def forwarded_for(request: Request) -> bytes:
    """X-Forwarded-For as configurable-http-proxy's `xfwd` sends it on: what earlier proxies said
    (every line, in order), then the address this request came from. A node that lists the
    redirector in --trusted-proxy counts the visitor (tmpnb/clients/address.py), not the redirector."""
    earlier = [v.strip() for v in request.requestHeaders.getRawHeaders(b"x-forwarded-for", []) if v.strip()]
    peer = getattr(request.getClientAddress(), "host", "") or ""
    return b",".join([*earlier, peer.encode("ascii", "replace")] if peer else earlier)


def _json_object(body: bytes) -> dict | None:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


class StatsPage(OnlyAllowed):
    isLeaf = True

    def __init__(self, redirector: Redirector) -> None:
        super().__init__()
        self._redirector = redirector

    def render_GET(self, request: Request) -> bytes:
        return replies.json_reply(request, 200, self._redirector.public_stats())


class HealthPage(OnlyAllowed):
    isLeaf = True

    def __init__(self, redirector: Redirector) -> None:
        super().__init__()
        self._redirector = redirector

    def render_GET(self, request: Request) -> bytes:
        nodes = list(self._redirector.table)
        up = sum(n.up for n in nodes)
        status = "ok" if up else "no node up"
        return replies.json_reply(request, 200 if up else 503, {"status": status, "nodes": len(nodes), "up": up})


def make_resource(redirector: Redirector, http: Any, clock: Any, headers: ResponseHeaders,
                  spawn_timeout: float = 30.0, retry_after: int = 5) -> Resource:
    root = Root(headers)
    root.putChild(b"", RedirectPage(redirector, retry_after))
    root.putChild(b"spawn", RedirectPage(redirector, retry_after))
    api = ApiBranch()
    api.putChild(b"spawn", SpawnForward(redirector, http, clock, spawn_timeout, retry_after))
    api.putChild(b"stats", StatsPage(redirector))
    root.putChild(b"api", api)
    root.putChild(b"health", HealthPage(redirector))
    root.putChild(b"robots.txt", RobotsTxt())
    return root
