"""A stand-in node for benchmarking the redirector alone: answers GET /api/stats like a tmpnb node
and counts a visitor on every GET / (a 302 to a page it also serves), taking one off its room.

    python benchmarks/stats_node.py PORT ROOM

Not a tmpnb node: it boots nothing. benchmarks/redirector.py uses real nodes wherever a
notebook is part of the figure (the redirect overhead) and this where only the redirector's
own work is measured (throughput, spread, failover).
"""

import json
import sys

from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site


class Node(Resource):
    isLeaf = True

    def __init__(self, room: int) -> None:
        super().__init__()
        self.available = room
        self.visitors = 0

    def render_GET(self, request):
        if request.path == b"/api/stats":
            request.setHeader(b"Content-Type", b"application/json")
            return json.dumps({"available": self.available, "capacity": self.available + self.visitors,
                               "draining": False, "visitors": self.visitors}).encode()
        if request.path == b"/":
            self.visitors += 1
            self.available = max(0, self.available - 1)
            request.setResponseCode(302)
            request.setHeader(b"Location", b"/user/x/tree")
            return b""
        return b"notebook"


port, room = int(sys.argv[1]), int(sys.argv[2])
reactor.listenTCP(port, Site(Node(room)), interface="127.0.0.1")
reactor.run()
