"""CHP's ``--redirect-port``: plain HTTP on another port, every request sent on to HTTPS."""

from __future__ import annotations

from twisted.web.resource import Resource
from twisted.web.server import Request


class HTTPSRedirect(Resource):
    isLeaf = True

    def __init__(self, https_port: int) -> None:
        super().__init__()
        self._port = https_port

    def render(self, request: Request) -> bytes:
        host = request.getHeader(b"host")
        if host is None:
            request.setResponseCode(400)
            return b"This server is HTTPS-only on port %d, but an HTTP request was made and the host could not be determined from the request." % self._port
        name = host.split(b":", 1)[0]
        if self._port != 443:
            name += b":%d" % self._port
        request.setResponseCode(301)
        request.setHeader(b"location", b"https://" + name + request.uri)
        return b""
