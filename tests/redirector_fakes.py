"""In-memory tmpnb nodes for the redirector's tests: they answer GET /api/stats and POST
/api/spawn as a node does (tmpnb/web/api.py), reached through treq's StubTreq by host."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request


@dataclass
class FakeNode:
    available: int = 3
    capacity: int = 10
    draining: bool = False
    name: str = ""
    public_url: str | None = None
    waiting: int | None = None  # a node with a waiting line says how many wait
    mode: str = "ok"  # "ok", "error" (500, not JSON) or "silent" (never answers)
    spawned: int = 0
    stats_asked: int = 0
    hanging: list[Request] = field(default_factory=list)

    def render(self, request: Request) -> bytes | int:
        if self.mode == "silent":
            self.hanging.append(request)
            return NOT_DONE_YET
        if self.mode == "error":
            request.setResponseCode(500)
            return b"<html>oops</html>"
        request.setHeader(b"Content-Type", b"application/json")
        if request.path == b"/api/stats":
            self.stats_asked += 1
            return json.dumps({"available": self.available, "capacity": self.capacity, "draining": self.draining,
                               "node": self.name, "public_url": self.public_url, "version": "0.1.0",
                               **({} if self.waiting is None else {"waiting": {"length": self.waiting, "max": 100}})}).encode()
        if request.path == b"/api/spawn" and request.method == b"POST":
            if self.available == 0 or self.draining:
                request.setResponseCode(429)
                return b'{"status": "full"}'
            self.available -= 1
            self.spawned += 1
            return json.dumps({"url": f"/user/u{self.spawned}/tree?token=t"}).encode()
        request.setResponseCode(404)
        return b'{"status": "not found"}'


class FakeNodes(Resource):
    """Every fake node, by the Host its URL names ("127.0.0.2:8000")."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.nodes: dict[str, FakeNode] = {}

    def add(self, host: str, **kwargs) -> FakeNode:
        node = self.nodes[host] = FakeNode(**kwargs)
        return node

    def render(self, request: Request) -> bytes | int:
        host = (request.getHeader(b"host") or b"").decode()
        node = self.nodes.get(host)
        if node is None:
            request.setResponseCode(502)
            return b"no such host"
        return node.render(request)
