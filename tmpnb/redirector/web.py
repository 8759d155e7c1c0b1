"""The redirector's public side.

    GET  /, /spawn/<path>   302 to a chosen node, path and query kept; No-vacancy page if none
    POST /api/spawn         forwarded to a chosen node: {"url": <absolute>}; 429 JSON if none
    ?flavor=NAME, or {"flavor": "NAME"} in the API body: only nodes that report that flavor,
                            by its room; 404 with the flavors served when no node serves it
    GET  /api/stats         the nodes summed (each node, and /metrics: the admin listener only)
    GET  /health            200 while some node is up, else 503

Every answer under /api/ is JSON, errors included.
"""

from __future__ import annotations

import json
from html import escape
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
from tmpnb.redirector.choosing import candidates, choose, flavors_served
from tmpnb.options import flavor_name
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

    def take(self, how: str, exclude: tuple[Node, ...] = (), flavor: str | None = None) -> Node | None:
        """Choose a node for one visitor asking for `flavor` (None: none) and count them
        against its room at once."""
        node = choose(self.table, self.headroom, self._rng, exclude, flavor)
        if node is None:
            self.metrics.full.labels(how).inc()
            if flavor is not None:
                self.metrics.flavor_full.labels(self.metrics.flavor_label(flavor), how).inc()
            return None
        self.table.sent_visitor(node, flavor)
        self.metrics.sent.labels(node.url, how).inc()
        if flavor is not None:
            self.metrics.flavor_sent.labels(node.url, self.metrics.flavor_label(flavor), how).inc()
        return node

    def flavors(self) -> list[str]:
        """The flavors a visitor may ask for: those the nodes that are up serve."""
        return flavors_served(self.table)

    def unknown(self, flavor: str | None) -> bool:
        """Whether no node serves `flavor` while some node is up (with none up, it is not
        known whether the flavor exists: that is No vacancy)."""
        if flavor is None:
            return False
        nodes = list(self.table)
        return any(n.up for n in nodes) and flavor not in flavors_served(nodes)

    def refused_flavor(self, how: str) -> None:
        self.metrics.unknown_flavor.labels(how).inc()

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
            "flavors": {name: {"room": sum(r for _, r in candidates(nodes, self.headroom, name)),
                               "available": sum(n.flavors[name].available for n in serving
                                                if n.flavors is not None and name in n.flavors)}
                        for name in flavors_served(nodes)},
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
        asked = request.args.get(b"flavor")
        flavor = None if asked is None else _flavor_of_query(asked)
        if asked is not None and (flavor is None or self._redirector.unknown(flavor)):
            self._redirector.refused_flavor("redirect")
            return unknown_flavor_page(request, flavor, self._redirector.flavors())
        node = self._redirector.take("redirect", flavor=flavor)
        if node is None:
            return replies.no_vacancy(request, self._retry_after)
        # The whole target as the visitor sent it (tmpnb/http/strict.py let it in): the node
        # reads the same ?flavor= and path.
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
        document = _json_object(body) if body.strip() else {}
        if document is None:
            # Refused here: no node is chosen (nor counted) for a request none could serve.
            return replies.json_reply(request, 400, {"status": "the body must be a JSON object"})
        asked = document.get("flavor")  # absent or null: the node's default flavor
        flavor = flavor_name(asked)
        if asked is not None and (flavor is None or self._redirector.unknown(flavor)):
            self._redirector.refused_flavor("api")
            return unknown_flavor_json(request, flavor, self._redirector.flavors())
        headers = {name: [v] for name in FORWARDED_HEADERS if (v := request.getHeader(name)) is not None}
        if xff := forwarded_for(request):
            headers[b"X-Forwarded-For"] = [xff]  # the node counts the visitor, not us
        left = departure(request)
        d = Deferred.fromCoroutine(self._forward(body, headers, flavor))

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

    async def _forward(self, body: bytes, headers: dict, flavor: str | None) -> tuple[int, dict]:
        tried: list[Node] = []
        for _ in range(SPAWN_ATTEMPTS):
            node = self._redirector.take("api", tuple(tried), flavor)
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
                self._redirector.table.found_full(node, flavor)
                continue
            if response.code == 404 and flavor is not None and isinstance((document or {}).get("flavors"), list):
                # It no longer serves the flavor (restarted with others since its last poll): its
                # unknown-flavor answer lists what it serves (docs/many-hosts.md, the seam).
                self._redirector.table.stopped_serving(node, flavor)
                continue
            if response.code == 200 and document is not None and isinstance(document.get("url"), str):
                url = visitor_spawn_url(node.visitor_url, document["url"])
                if url is None:
                    return 502, {"status": "bad gateway", "node": node.url}
                return 200, {**document, "url": url}
            if document is None:  # a node that answers non-JSON: a proxy page, say
                return 502, {"status": "bad gateway", "node": node.url}
            return response.code, document  # the node's own verdict (400, 401, 413, 503)
        if self._redirector.unknown(flavor):  # every node tried had stopped serving it
            return 404, unknown_flavor_document(flavor, self._redirector.flavors())
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


def _flavor_of_query(values: list[bytes]) -> str | None:
    """The one well-formed flavor name of `?flavor=`; None for anything else (several values
    included: the node might read another one than the redirector chose by)."""
    if len(values) != 1:
        return None
    return flavor_name(values[0].decode("ascii", "replace"))


def unknown_flavor_document(flavor: str | None, flavors: list[str]) -> dict:
    # Only a well-formed name is repeated: the answer never carries what a visitor made up.
    error = f"no node serves flavor {flavor}" if flavor else "a flavor is a name of [a-z0-9-]{1,32}"
    return {"error": error, "flavors": flavors}


def unknown_flavor_json(request: Request, flavor: str | None, flavors: list[str]) -> bytes:
    return replies.json_reply(request, 404, unknown_flavor_document(flavor, flavors))


def unknown_flavor_page(request: Request, flavor: str | None, flavors: list[str]) -> bytes:
    """404: the flavors a visitor may choose, each a link (names are [a-z0-9-]: nothing to quote)."""
    items = "".join(f'<li><a href="/?flavor={escape(name)}">{escape(name)}</a></li>' for name in flavors)
    choices = f"<ul>{items}</ul>" if items else "<p>No flavor is served right now.</p>"
    asked = f"<code>{escape(flavor)}</code>" if flavor else "by that name"
    page = render_page("redirector_flavors", "No such flavor", markup={"asked": asked, "choices": choices})
    return replies.html(request, 404, page)


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
