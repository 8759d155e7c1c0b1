"""In-memory tmpnb nodes for the redirector's tests: they answer GET /api/stats and POST
/api/spawn as a node does (tmpnb/web/api.py), reached through treq's StubTreq by host."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

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
    # What it reports of flavors, as sent (anything: a node may report junk); None: no key
    # (an older node). A flavor's `room` is what its API spawns take from (404: not served).
    flavors: Any = None
    default_flavor: Any = None
    spawned: int = 0
    stats_asked: int = 0
    hanging: list[Request] = field(default_factory=list)
    spawn_bodies: list[bytes] = field(default_factory=list)  # each POST /api/spawn, as received

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
                               **({} if self.waiting is None else {"waiting": {"length": self.waiting, "max": 100}}),
                               **({} if self.flavors is None else {"flavors": self.flavors}),
                               **({} if (room := self._summed_room()) is None else {"room": room}),
                               **({} if self.default_flavor is None else {"default_flavor": self.default_flavor}),
                               }).encode()
        if request.path == b"/api/spawn" and request.method == b"POST":
            body = request.content.read()
            self.spawn_bodies.append(body)
            if self.flavors is not None:
                return self._spawn_flavor(request, body)
            if self.available == 0 or self.draining:
                request.setResponseCode(429)
                return b'{"status": "full"}'
            self.available -= 1
            self.spawned += 1
            return json.dumps({"url": f"/user/u{self.spawned}/tree?token=t"}).encode()
        request.setResponseCode(404)
        return b'{"status": "not found"}'

    def _summed_room(self) -> int | None:
        """A node with flavors reports its `room` as their sum (when they are well-formed)."""
        if not isinstance(self.flavors, dict):
            return None
        rooms = [f.get("room") if isinstance(f, dict) else None for f in self.flavors.values()]
        return sum(rooms) if all(type(r) is int for r in rooms) else None

    def _spawn_flavor(self, request: Request, body: bytes) -> bytes:
        """As a node with flavors answers: the asked one (or its default) from its own room."""
        name = (json.loads(body) if body.strip() else {}).get("flavor") or self.default_flavor
        flavor = self.flavors.get(name) if isinstance(self.flavors, dict) else None
        if not isinstance(flavor, dict):
            request.setResponseCode(404)
            return json.dumps({"error": f"no flavor {name}", "flavors": sorted(self.flavors)}).encode()
        if flavor.get("room", 0) <= 0 or self.draining:
            request.setResponseCode(429)
            return b'{"status": "full"}'
        flavor["room"] -= 1
        flavor["available"] = max(0, flavor.get("available", 0) - 1)
        self.spawned += 1
        return json.dumps({"url": f"/user/u{self.spawned}/tree?token=t", "flavor": name}).encode()


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
