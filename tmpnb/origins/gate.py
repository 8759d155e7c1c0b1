"""The orchestrator on the bare host only, in subdomain mode.

With host routing every request that matches no route reaches the orchestrator, whatever its
Host: `/` on `<id>.nb.example.org` (a visitor's subdomain) would otherwise hand out a
container from a visitor's origin, and tmpnb's pages would run there. On a visitor's subdomain
the orchestrator answers only `POST /api/share` (the Share button in the notebook posts to its
own origin, with the server's token and no cookies) and sends every GET or HEAD to the same
path on the bare host (`/user/<id>/…` of an ended server lands on its "has ended" page);
anything else is 404. Hosts that are neither (an address, as a redirector polls a node at) are
served as before: no visitor's server is routed there.
"""

from __future__ import annotations

from twisted.web.resource import Resource
from twisted.web.server import Request

from tmpnb.http import replies
from tmpnb.origins import Origins

# What a visitor's subdomain may ask the orchestrator for.
ON_VISITOR_HOSTS = frozenset({(b"POST", b"/api/share"), (b"OPTIONS", b"/api/share")})


class ToBareHost(Resource):
    """GET/HEAD: 302 to the same path on the bare host; anything else: 404."""

    isLeaf = True

    def __init__(self, origins: Origins) -> None:
        super().__init__()
        self._origins = origins

    def render(self, request: Request) -> bytes:
        if request.method in (b"GET", b"HEAD"):
            return replies.redirect(request, self._origins.orchestrator_url(request.uri.decode("ascii", "replace")))
        return replies.json_reply(request, 404, {"status": "not found"})


class BareHostGate(Resource):
    """Wraps the orchestrator's root resource (tmpnb.web.make_resource)."""

    def __init__(self, root: Resource, origins: Origins) -> None:
        super().__init__()
        self._root = root
        self._origins = origins
        self._elsewhere = ToBareHost(origins)

    def getChildWithDefault(self, path: bytes, request: Request) -> Resource:
        host = (request.getHeader(b"host") or b"").decode("latin-1")
        if self._origins.container_of_host(host) is not None \
                and (request.method, request.path) not in ON_VISITOR_HOSTS:
            return self._elsewhere
        return self._root.getChildWithDefault(path, request)
