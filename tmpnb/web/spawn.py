"""GET / and GET /spawn/<path>: a visitor gets a pooled notebook by redirect."""

from __future__ import annotations

from twisted.web.server import Request

from tmpnb.clients import Refusal
from tmpnb.clients.answers import refused_page
from tmpnb.http import replies
from tmpnb.http.methods import OnlyAllowed
from tmpnb.pages import render_page
from tmpnb.web.flavorchoice import asked_in_query, unknown_flavor_page
from tmpnb.web.handout import HandOut
from tmpnb.web.paths import BadPath, notebook_path
from tmpnb.web.waiting import Holds, serve_ticket


def _without_old_user(segments: list[bytes]) -> list[bytes]:
    """tmpnb's /spawn/user/<old id>/<path> links mean <path> in a fresh server."""
    if len(segments) >= 2 and segments[0] == b"user":
        return segments[2:]
    return segments


class SpawnPage(OnlyAllowed):
    """302 to /user/<id>/<path>?token=…, the waiting line's page, or the No-vacancy page;
    a visitor whose server lives is sent back to it; a refused client gets 429/403.

    `from_path`: take the notebook path from the URL (/spawn/<path>); the front
    page (/) always sends the visitor to --redirect-uri.
    """

    isLeaf = True

    def __init__(self, handout: HandOut, default_below: str, retry_after: int, from_path: bool,
                 holds: Holds = Holds()) -> None:
        super().__init__()
        self._holds = holds
        self._handout = handout
        self._default_below = default_below
        self._retry_after = retry_after
        self._from_path = from_path

    def render_GET(self, request: Request) -> bytes | int:
        # ?flavor=NAME (tmpnb/flavors.py): one the node lacks is a 404, never another flavor.
        flavor, asked = asked_in_query(request, self._handout.flavors)
        if flavor is None:
            return unknown_flavor_page(request, self._handout.flavors, asked or "")
        below = self._handout.landing(flavor, self._default_below)
        if self._from_path:
            try:  # a path in the link wins over the flavor's landing page
                below = notebook_path(_without_old_user(request.postpath)) or below
            except BadPath:
                shown = request.path.decode("utf-8", "replace")
                return replies.html(request, 400, render_page("badpath", "Bad path", path=shown))
        # A reload by a visitor whose server (of this flavor) lives: the same server, nothing spawned.
        again = self._handout.returning(request, below, flavor)
        if again is not None:
            return replies.redirect(request, again)
        ticket = self._handout.take(request, below, flavor=flavor)
        if isinstance(ticket, Refusal):  # not a navigation, or over the client's share
            return refused_page(request, ticket)
        if ticket is None:
            return replies.no_vacancy(request, self._retry_after)
        # Served at once when a container is pooled; otherwise the visitor waits in line.
        return serve_ticket(request, self._handout, ticket, self._holds.first, self._holds, self._retry_after)

    def render_HEAD(self, request: Request) -> bytes:
        # Link checkers and chat unfurlers send HEAD: it must not take a container.
        return replies.html(request, 200, b"")
