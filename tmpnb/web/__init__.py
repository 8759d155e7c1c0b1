"""The orchestrator's web app: visitors' front door, the JSON API and its pages.

`make_resource(pool, settings, line, extensions)` builds the resource tree; the embedded proxy
(or CHP, as its default target) sends it every request that has no /user/<id> route. The
pieces every tree shares (Root, ApiBranch, replies, headers) are in tmpnb/http.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from twisted.internet.task import Clock
from twisted.web.resource import Resource
from twisted.web.util import Redirect

from tmpnb.clients import ClientGate
from tmpnb.config import DEFAULT_IMAGE
from tmpnb.flavors import Flavors
from tmpnb.http.headers import CorsPolicy, ResponseHeaders
from tmpnb.http.tree import ApiBranch, Root, RobotsTxt
from tmpnb.origins import Origins
from tmpnb.origins.gate import BareHostGate
from tmpnb.web.api import SpawnAPI, StatsAPI
from tmpnb.web.gone import GonePage
from tmpnb.web.handout import HandOut, Spawner
from tmpnb.web.paths import below_from_redirect_uri
from tmpnb.web.spawn import SpawnPage
from tmpnb.web.waiting import Holds, WaitPage
from tmpnb.waitingline import WaitingLine

__all__ = ["Holds", "Spawner", "Tree", "TreeExtension", "WebSettings", "make_resource"]


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
    # --subdomain-host: each visitor's server on a host of its own (tmpnb/origins).
    origins: Origins = field(default_factory=Origins)
    # The node's flavors (tmpnb/flavors.py); None: the one flavor "default" of container_image.
    flavors: Flavors | None = None


@dataclass(frozen=True)
class Tree:
    """What an extension of the tree (share and remix: tmpnb/share/web.py) adds to."""

    root: Root
    api: ApiBranch
    handout: HandOut
    settings: WebSettings


TreeExtension = Callable[[Tree], None]


def make_resource(pool: Spawner, settings: WebSettings, line: WaitingLine | None = None,
                  extensions: Sequence[TreeExtension] = (), *, gate: ClientGate) -> Resource:
    """The orchestrator's resource tree over `pool` (tmpnb.pool.Pool or its twin), handing
    containers out through `line` (tmpnb.tap wires one to the pool), to the clients `gate`
    lets through (tmpnb.clients.make_gate: each address's share and spawn rate, navigations
    and API calls only, the same server again on a reload).

    `extensions`: each called once with the finished `Tree`, to add its own branches (share and
    remix: tmpnb.share.web.sharing_extension); tmpnb/tap.py chooses them.
    """
    if line is None:
        # Nobody waits in a line of 0: its clock only times requests whose route is being added.
        line = WaitingLine(Clock(), pool, max_waiting=0)  # type: ignore[arg-type]
    default_below = below_from_redirect_uri(settings.redirect_uri)
    flavors = settings.flavors or Flavors.single(settings.container_image, 0)
    handout = HandOut(line, settings.use_tokens, gate, settings.origins, flavors)
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
    root.putChild(b"user", GonePage())
    root.putChild(b"robots.txt", RobotsTxt())
    tree = Tree(root, api, handout, settings)
    for extend in extensions:
        extend(tree)
    if settings.origins.subdomains:
        return BareHostGate(root, settings.origins)
    return root
