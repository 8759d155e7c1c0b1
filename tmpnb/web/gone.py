"""/user/<id>/… with no route: the visitor's notebook ended (culled, or a restart).

The embedded proxy sends paths it has no route for to the orchestrator, so this
is what someone sees who comes back to an old tab or bookmark. With sharing on, the
page also lists the shares made from that server (they outlive it).
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.server import NOT_DONE_YET, Request

from tmpnb.http import replies
from tmpnb.http.methods import OnlyAllowed
from tmpnb.pages import render_page
from tmpnb.web.paths import BadPath, notebook_path

log = Logger()

# (share URL, notebook name) pairs for one container id.
SharesFrom = Callable[[str], "Deferred[list[tuple[str, str]]]"]


def fresh_spawn_url(below_user: list[bytes]) -> str:
    """/spawn/<the same path> for the segments after /user/; /spawn/ if that cannot be.

    The first segment is the old id. A server API path (api/…) means nothing to
    a person, so it gets the default page.
    """
    rest = below_user[1:]
    try:
        below = notebook_path(rest)
    except BadPath:
        return "/spawn/"
    if below == "api" or below.startswith("api/"):
        return "/spawn/"
    return "/spawn/" + below


def shares_markup(shares: list[tuple[str, str]]) -> str:
    if not shares:
        return ""
    items = "".join(f'<li><a href="{escape(url)}">{escape(name)}</a></li>' for url, name in shares)
    return f"<p>Notebooks shared from it are still here:</p><ul>{items}</ul>"


class GonePage(OnlyAllowed):
    isLeaf = True

    def __init__(self, shares_from: SharesFrom | None = None) -> None:
        super().__init__()
        self._shares_from = shares_from

    def _page(self, request: Request, shares: list[tuple[str, str]]) -> bytes:
        page = render_page(
            "gone",
            "This notebook has ended",
            markup={"shares": shares_markup(shares)},
            path=request.path.decode("utf-8", "replace"),
            spawn_url=fresh_spawn_url(request.postpath),
        )
        return replies.html(request, 404, page)

    def render_GET(self, request: Request) -> bytes | int:
        container = request.postpath[0].decode("ascii", "replace") if request.postpath else ""
        if self._shares_from is None or request.method != b"GET" or not container.isalnum():
            return self._page(request, [])
        left: list[bool] = []
        request.notifyFinish().addErrback(lambda _: left.append(True))

        def failed(reason: Any) -> list[tuple[str, str]]:
            log.warn("could not list the shares of {container}: {reason}", container=container,
                     reason=reason.getErrorMessage())
            return []

        d = self._shares_from(container).addErrback(failed)
        d.addCallback(lambda shares: replies.finish(request, left, self._page(request, shares)))
        d.addErrback(lambda reason: log.failure("answering a gone page failed", reason))
        return NOT_DONE_YET

    # The notebook UI keeps polling and saving through its old URL.
    render_POST = render_PUT = render_PATCH = render_DELETE = render_GET
