"""The pieces at the top of a resource tree (the orchestrator's, the redirector's)."""

from __future__ import annotations

from twisted.web.resource import Resource
from twisted.web.server import Request

from tmpnb.http import replies
from tmpnb.http.headers import ResponseHeaders
from tmpnb.http.methods import OnlyAllowed
from tmpnb.pages import render_page

ROBOTS_TXT = b"""\
User-agent: *
Disallow: /user/
Disallow: /spawn/
Disallow: /wait/
Disallow: /api/
Disallow: /share/
Disallow: /remix/
# Every visit to / starts a notebook server: crawlers that understand "$" keep off it.
Disallow: /$
"""


class NotFoundPage(Resource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        page = render_page("notfound", "Nothing here", path=request.path.decode("utf-8", "replace"))
        return replies.html(request, 404, page)


class RobotsTxt(OnlyAllowed):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return ROBOTS_TXT


class ApiBranch(Resource):
    """/api/…: JSON for any path that is not one of ours."""

    def getChild(self, path: bytes, request: Request) -> Resource:
        return self

    def render(self, request: Request) -> bytes:
        return replies.json_reply(request, 404, {"status": "not found"})


class Preflight(Resource):
    """OPTIONS anywhere: 204, with the CORS headers the root already stamped."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        request.setResponseCode(204)
        return b""


class Root(Resource):
    """The top of a tree (the orchestrator's, the redirector's): stamps the CORS and framing
    headers on every answer, answers OPTIONS anywhere, and Not found for what it lacks."""
    def __init__(self, headers: ResponseHeaders) -> None:
        super().__init__()
        self._headers = headers
        self._preflight = Preflight()
        self._not_found = NotFoundPage()

    def getChildWithDefault(self, path: bytes, request: Request) -> Resource:
        self._headers.apply(request)
        if request.method == b"OPTIONS":
            return self._preflight
        return super().getChildWithDefault(path, request)

    def getChild(self, path: bytes, request: Request) -> Resource:
        return self._not_found
