"""A visitor in the waiting line (tmpnb/waitingline.py), as the web serves them.

Without JavaScript: the request that joined the line is held open for a moment and answered
with the redirect to the notebook if it is ready by then. Otherwise a browser gets a page
with the visitor's place and an estimate, whose `<meta refresh>` asks `/wait/<ticket>` at
once: that request is held again (long poll) and answered with the redirect or the page
once more, the page staying on screen meanwhile. A client that does not take HTML (curl -L)
is sent on with 303 See Other instead of the page. A held request that is dropped frees the
place at once; between two requests the place is kept for `grace` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request

from tmpnb.faults import log_fault
from tmpnb.http import replies
from tmpnb.http.methods import OnlyAllowed
from tmpnb.pages import render_page
from tmpnb.tickets import Ticket
from tmpnb.web.handout import HandOut

log = Logger()

WAIT_PATH = "/wait/"


@dataclass(frozen=True)
class Holds:
    """How long requests wait on a ticket (seconds)."""

    first: float = 2.0  # the request that joined the line
    poll: float = 10.0  # each /wait/<ticket> request after it
    grace: float = 15.0  # the place is kept between two requests


def takes_html(request: Request) -> bool:
    return b"text/html" in (request.getHeader(b"Accept") or b"")


def _duration(seconds: float) -> str:
    if seconds < 1.5:
        return "a second"
    if seconds < 90:
        return f"{seconds:.0f} seconds"
    return f"{seconds / 60:.0f} minutes"


def waiting_page(request: Request, handout: HandOut, ticket: Ticket, url: str) -> bytes:
    """202: where the visitor stands; the page asks again at once (the next request is held)."""
    place = handout.place(ticket)
    refresh = f'<meta http-equiv="refresh" content="0; url={url}">'
    page = render_page(
        "waiting",
        "Waiting for your notebook",
        head=refresh,
        position=place.position or 1,
        estimate=_duration(place.estimate),
        rate=f"{place.rate:.1f}",
        url=url,
    )
    return replies.html(request, 202, page)


def expired_page(request: Request) -> bytes:
    return replies.html(request, 410, render_page("expired", "Your place in line has ended", url="/"))


def serve_ticket(
    request: Request, handout: HandOut, ticket: Ticket, hold: float, holds: Holds, retry_after: int,
) -> int:
    """Answer `request` for `ticket`: the notebook if it is ready within `hold` seconds,
    else the visitor's place in line. Returns NOT_DONE_YET."""
    left: list[bool] = []

    def dropped(_: Failure) -> None:
        left.append(True)
        ticket.leave()

    request.notifyFinish().addErrback(dropped)

    def answer(assignment: object) -> None:
        if left:
            return
        if assignment is not None and ticket.state == "ready":
            replies.finish(request, left, replies.redirect(request, handout.url(ticket, request)))
        elif ticket.done:  # another request on the same ticket took or dropped it
            replies.finish(request, left, expired_page(request))
        else:
            ticket.away(holds.grace)
            url = WAIT_PATH + ticket.id
            if takes_html(request):
                replies.finish(request, left, waiting_page(request, handout, ticket, url))
            else:
                request.setHeader(b"Location", url.encode("ascii"))
                replies.no_store(request)
                request.setResponseCode(303)
                replies.finish(request, left, b"")

    def failed(reason: Failure) -> None:
        log_fault(log, reason, "handing out a notebook")  # its route refused: the proxy is away
        replies.finish(request, left, replies.no_vacancy(request, retry_after))

    ticket.wait(hold).addCallbacks(answer, failed).addErrback(
        lambda reason: log.failure("answering a visitor in line failed", reason)
    )
    return NOT_DONE_YET


class WaitPage(OnlyAllowed):
    """GET /wait/<ticket>: the long poll of a visitor in line."""

    isLeaf = True

    def __init__(self, handout: HandOut, holds: Holds, retry_after: int) -> None:
        super().__init__()
        self._handout = handout
        self._holds = holds
        self._retry_after = retry_after

    def render_GET(self, request: Request) -> bytes | int:
        name = request.postpath[0].decode("ascii", "replace") if request.postpath else ""
        ticket = self._handout.find(name)
        if ticket is None:
            return expired_page(request)
        return serve_ticket(request, self._handout, ticket, self._holds.poll, self._holds, self._retry_after)

    def render_HEAD(self, request: Request) -> bytes:
        return replies.html(request, 200, b"")
