"""A small real HTTP server on 127.0.0.1 that answers as a tmpnb node with flavors does, for the
redirector's end-to-end test (tests/test_redirector_flavors_process.py):

    python3 -m tests.fake_flavor_node NAME '{"python": 100}' DEFAULT

prints its port on the first line of stdout, then serves until SIGTERM:

    GET  /api/stats        the seam's stats (docs/many-hosts.md, "Flavors across nodes")
    GET  /, /spawn/<path>  200 "NAME": a visitor arriving after the redirect
    POST /api/spawn        {"url": "/user/<n>/tree?token=t", "flavor": …}; 404 JSON for a flavor
                           it does not serve
    GET  /_received        what it received on the three above: [{"method", "uri", "body"}, …]
"""

from __future__ import annotations

import json
import sys

from twisted.web.resource import Resource
from twisted.web.server import Request, Site


class FakeFlavorNode(Resource):
    isLeaf = True

    def __init__(self, name: str, rooms: dict[str, int], default: str) -> None:
        super().__init__()
        self._name = name
        self._rooms = rooms
        self._default = default
        self.received: list[dict] = []

    def render(self, request: Request) -> bytes:
        path = request.path
        if path == b"/api/stats":
            return self._json(request, 200, self._stats())
        if path == b"/_received":
            return self._json(request, 200, self.received)
        body = request.content.read().decode("utf-8", "replace")
        self.received.append({"method": request.method.decode(), "uri": request.uri.decode(), "body": body})
        if path == b"/api/spawn" and request.method == b"POST":
            asked = (json.loads(body) if body.strip() else {}).get("flavor") or self._default
            if asked not in self._rooms:
                return self._json(request, 404, {"error": f"no flavor {asked}", "flavors": sorted(self._rooms)})
            return self._json(request, 200, {"url": f"/user/u{len(self.received)}/tree?token=t", "flavor": asked})
        request.setHeader(b"Content-Type", b"text/plain")
        return self._name.encode()

    def _stats(self) -> dict:
        flavors = {name: {"image": f"tmpnb/{name}:test", "pool_size": room, "available": room, "waiting": 0,
                          "room": room} for name, room in self._rooms.items()}
        room = sum(self._rooms.values())
        return {"available": room, "room": room, "capacity": room, "draining": False, "node": self._name,
                "version": "0.1.0", "default_flavor": self._default, "flavors": flavors}

    @staticmethod
    def _json(request: Request, code: int, document: object) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps(document).encode()


def main(argv: list[str]) -> None:
    from twisted.internet import reactor  # a process of its own: its reactor is its own

    name, rooms, default = argv[0], json.loads(argv[1]), argv[2]
    port = reactor.listenTCP(0, Site(FakeFlavorNode(name, rooms, default)), interface="127.0.0.1")
    print(port.getHost().port, flush=True)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
