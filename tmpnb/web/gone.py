"""/user/<id>/… with no route: the visitor's notebook ended (culled, or a restart).

The embedded proxy sends paths it has no route for to the orchestrator, so this
is what someone sees who comes back to an old tab or bookmark.
"""

from __future__ import annotations

from twisted.web.server import Request

from tmpnb.pages import render_page
from tmpnb.web import replies
from tmpnb.web.methods import OnlyAllowed
from tmpnb.web.paths import BadPath, notebook_path


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


class GonePage(OnlyAllowed):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        page = render_page(
            "gone",
            "This notebook has ended",
            path=request.path.decode("utf-8", "replace"),
            spawn_url=fresh_spawn_url(request.postpath),
        )
        return replies.html(request, 404, page)

    # The notebook UI keeps polling and saving through its old URL.
    render_POST = render_PUT = render_PATCH = render_DELETE = render_GET
