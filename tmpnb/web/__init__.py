"""The orchestrator's web app: visitors' front door, the JSON API and its pages.

`make_resource(pool, settings)` builds the resource tree; the embedded proxy (or
CHP, as its default target) sends it every request that has no /user/<id> route.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.internet.task import Clock
from twisted.web.resource import Resource
from twisted.web.server import Request
from twisted.web.util import Redirect

from tmpnb.config import DEFAULT_IMAGE
from tmpnb.pages import render_page
from tmpnb.web import replies
from tmpnb.web.api import SpawnAPI, StatsAPI
from tmpnb.web.gone import GonePage
from tmpnb.web.handout import HandOut, Spawner
from tmpnb.web.headers import CorsPolicy, ResponseHeaders
from tmpnb.web.methods import OnlyAllowed
from tmpnb.web.paths import below_from_redirect_uri
from tmpnb.web.spawn import SpawnPage
from tmpnb.web.waiting import Holds, WaitPage
from tmpnb.waitingline import WaitingLine

__all__ = ["CorsPolicy", "Holds", "Spawner", "WebSettings", "make_resource"]

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


@dataclass(frozen=True)
class WebSettings:
    redirect_uri: str = "/tree"
    use_tokens: bool = True
    # API_AUTH_TOKEN: guards POST /api/spawn and, as tmpnb did, turns off / and /spawn/.
    api_token: str | None = None
    container_image: str = DEFAULT_IMAGE
    frame_ancestors: str = "'self'"
    cors: CorsPolicy = field(default_factory=CorsPolicy)
    retry_after: int = 5
    holds: Holds = field(default_factory=Holds)  # how long requests wait on the waiting line
    # Many hosts: this node's name (--instance) and the URL visitors reach it at (--public-url).
    node: str = ""
    public_url: str | None = None


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


def make_resource(pool: Spawner, settings: WebSettings, line: WaitingLine | None = None,
                  sharing: Any = None) -> Resource:
    """The orchestrator's resource tree over `pool` (tmpnb.pool.Pool or its twin), handing
    containers out through `line` (tmpnb.tap wires one to the pool).

    `sharing`: a tmpnb.share.service.Sharing, for share and remix (tmpnb/share/web.py).
    """
    if line is None:
        # Nobody waits in a line of 0: its clock only times requests whose route is being added.
        line = WaitingLine(Clock(), pool, max_waiting=0)  # type: ignore[arg-type]
    default_below = below_from_redirect_uri(settings.redirect_uri)
    handout = HandOut(line, settings.use_tokens)
    root = Root(ResponseHeaders(settings.cors, settings.frame_ancestors))

    if settings.api_token is None:
        holds = settings.holds
        root.putChild(b"", SpawnPage(handout, default_below, settings.retry_after, from_path=False, holds=holds))
        root.putChild(b"spawn", SpawnPage(handout, default_below, settings.retry_after, from_path=True, holds=holds))
        root.putChild(b"wait", WaitPage(handout, holds, settings.retry_after))
    api = ApiBranch()
    api.putChild(b"spawn", SpawnAPI(handout, settings.api_token, settings.retry_after))
    node = {"node": settings.node, "public_url": settings.public_url}
    api.putChild(b"stats", StatsAPI(pool, settings.container_image, node))
    root.putChild(b"api", api)
    root.putChild(b"stats", Redirect(b"/api/stats"))
    if sharing is None:
        root.putChild(b"user", GonePage())
    else:
        from tmpnb.share.web import mount, shares_lister

        mount(root, api, sharing, handout, settings.frame_ancestors, settings.retry_after)
        root.putChild(b"user", GonePage(shares_lister(sharing)))
    root.putChild(b"robots.txt", RobotsTxt())
    return root
