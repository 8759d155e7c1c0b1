"""What a refused client gets: 429 (its share, its rate) or 403 (not a navigation), as a page in
the style of tmpnb/pages/ or, for the API, JSON; never a container."""

from __future__ import annotations

from twisted.web.server import Request

from tmpnb.clients.gate import NOT_NAVIGATION, Refusal
from tmpnb.clients.shares import RATE, SHARE
from tmpnb.http import replies
from tmpnb.pages import render_page


def _texts(refusal: Refusal) -> tuple[str, str, str]:
    if refusal.reason == SHARE:
        return ("You have your share of notebooks",
                f"Your address already holds {refusal.held} notebook servers, the most one address may"
                " have at once here.",
                "Go back to a notebook you have open, or try again once one of them has ended.")
    if refusal.reason == RATE:
        return ("Too many new notebooks",
                "Your address has started notebook servers faster than this service allows.",
                f"Try again in {refusal.retry_after} seconds.")
    return ("Open this address as a page",
            "A notebook server starts only when this address is opened as a page, not when another"
            " page loads it as an image, a script or a prefetch.",
            "Follow the link or type the address yourself.")


def _status(refusal: Refusal) -> int:
    return 403 if refusal.reason == NOT_NAVIGATION else 429


def refused_page(request: Request, refusal: Refusal) -> bytes:
    if refusal.retry_after:
        request.setHeader(b"Retry-After", str(refusal.retry_after).encode("ascii"))
    heading, explanation, advice = _texts(refusal)
    page = render_page("refused", heading, heading=heading, explanation=explanation, advice=advice)
    if _status(refusal) == 429:
        request.setResponseCode(429, b"Too Many Requests")
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        replies.no_store(request)
        return page
    return replies.html(request, 403, page)


def refused_json(request: Request, refusal: Refusal) -> bytes:
    if refusal.retry_after:
        request.setHeader(b"Retry-After", str(refusal.retry_after).encode("ascii"))
    document = {"status": "refused", "reason": refusal.reason}
    if refusal.reason != NOT_NAVIGATION:
        document.update(held=refusal.held, limit=refusal.limit, retry_after=refusal.retry_after)
    return replies.json_reply(request, _status(refusal), document)
