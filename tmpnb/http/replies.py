"""Small helpers that finish a request with a page or a JSON document, now or later."""

from __future__ import annotations

import json

from twisted.web.server import Request

from tmpnb.pages import render_page


def no_store(request: Request) -> None:
    # A cached 302 or page would send the next visitor into someone else's notebook.
    request.setHeader(b"Cache-Control", b"no-store")


def html(request: Request, code: int, body: bytes) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
    no_store(request)
    return body


# twisted.web has no reason phrase for 429 and would send "Unknown Status".
_REASONS = {429: b"Too Many Requests"}


def json_reply(request: Request, code: int, document: dict) -> bytes:
    request.setResponseCode(code, _REASONS.get(code))
    request.setHeader(b"Content-Type", b"application/json")
    no_store(request)
    return json.dumps(document).encode("utf-8")


def no_vacancy(request: Request, retry_after: int) -> bytes:
    """503 with Retry-After; the page reloads itself, so the visitor retries unattended."""
    request.setHeader(b"Retry-After", str(retry_after).encode("ascii"))
    refresh = f'<meta http-equiv="refresh" content="{retry_after}">'
    page = render_page("full", "No vacancy", head=refresh, retry_after=retry_after)
    return html(request, 503, page)


def redirect(request: Request, url: str) -> bytes:
    request.redirect(url.encode("utf-8"))
    return html(request, 302, render_page("redirect", "Your notebook is ready", url=url))


def departure(request: Request) -> list[bool]:
    """A flag that turns true if the visitor hangs up before we answer.

    Writing to a request whose connection is gone raises, and a container handed
    to nobody would sit assigned until culled as idle.
    """
    left: list[bool] = []
    request.notifyFinish().addErrback(lambda _: left.append(True))
    return left


def finish(request: Request, left: list[bool], body: bytes) -> None:
    """Write and finish a deferred answer; nothing if the visitor already left."""
    if left:
        return
    request.write(body)
    request.finish()
