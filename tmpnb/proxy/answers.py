"""Answers the proxy makes itself, without a backend: error pages, its health probe, static files.

Each is an `Answer`: the bytes to write, whether the connection closes after them, and for a
static file the body still to stream. With an error target (CHP's ``--error-target`` or
``--error-path``), 404 and 503 pages come from there, later: a Deferred of an Answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer

from .errorpages import ErrorPage, ErrorPages
from .httphead import RequestHead, serialize_headers
from .static import StaticFiles

REASONS = {
    400: b"Bad Request",
    404: b"Not Found",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
    505: b"HTTP Version Not Supported",
}
_EXPLANATIONS = {
    502: "The notebook server behind this address answered in a way the proxy cannot pass on.",
    503: "The notebook server behind this address is not running or not answering. "
    "If you just started it, wait a second and reload; otherwise it may have been shut down.",
    504: "The notebook server behind this address took too long to answer.",
}
# Statuses configurable-http-proxy hands to --error-target / --error-path.
ERROR_TARGET_STATUSES = frozenset({404, 503})
HEALTH_PATH = b"/_chp_healthz"


@dataclass(frozen=True, slots=True)
class Answer:
    data: bytes  # the head, and the whole body unless `body` streams it
    close: bool  # the connection closes once it is sent
    body: Callable[[IConsumer], Deferred[None]] | None = None


def error_page(status: int, detail: str, close: bool, page: ErrorPage | None = None) -> bytes:
    """A whole error response: the proxy's own page, or one from the error target."""
    reason = REASONS.get(status, b"Error")
    if page is not None:
        body = page.body
        head = b"HTTP/1.1 %d %s\r\n" % (status, reason) + serialize_headers(list(page.headers))
        head += b"Content-Length: %d\r\nCache-Control: no-store\r\n" % len(body)
        if close:
            head += b"Connection: close\r\n"
        return head + b"\r\n" + body
    explanation = _EXPLANATIONS.get(status, detail)
    body = (
        "<!DOCTYPE html><html><head><title>{code} {reason}</title></head>"
        "<body><h1>{code} {reason}</h1><p>{text}</p></body></html>\n"
    ).format(code=status, reason=reason.decode(), text=_html_escape(explanation)).encode()
    head = b"HTTP/1.1 %d %s\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: %d\r\nCache-Control: no-store\r\n" % (
        status,
        reason,
        len(body),
    )
    if close:
        head += b"Connection: close\r\n"
    return head + b"\r\n" + body


def _html_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def health(head: RequestHead) -> Answer:
    """The answer to CHP's liveness probe, GET HEALTH_PATH on the public port (Kubernetes
    deployments point at it)."""
    close = not head.keep_alive or head.has_body
    return Answer(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n"
        + (b"Connection: close\r\n" if close else b"")
        + b'\r\n{"status":"OK"}',
        close,
    )


class LocalAnswers:
    """The answers that depend on configuration: static files and error pages."""

    def __init__(self, static: StaticFiles | None = None, error_pages: ErrorPages | None = None,
                 by_flavor: Mapping[str, StaticFiles] | None = None) -> None:
        self.static = static
        self.error_pages = error_pages
        # Each flavor's image's files (tmpnb/flavors.py): its servers get those, never another's.
        self.by_flavor = dict(by_flavor or {})
        self.serves_static = static is not None or bool(self.by_flavor)

    def static_for(self, flavor: str | None) -> StaticFiles | None:
        """The files for a route of `flavor` (None: no route, or a route without one): that
        flavor's if any flavor has its own, else --static-dir's."""
        if flavor is not None and self.by_flavor:
            return self.by_flavor.get(flavor)
        return self.static

    def static_file(self, head: RequestHead, flavor: str | None = None) -> Answer | None:
        """A notebook UI file for a GET or HEAD under ``/user/<id>/``, if it is one we hold for
        the route's `flavor`."""
        static = self.static_for(flavor)
        if static is None or head.method not in (b"GET", b"HEAD") or head.upgrade is not None:
            return None
        found = static.lookup(head.path)
        opened = found.open() if found is not None else None
        if opened is None:
            return None
        query = head.target.partition(b"?")[2].decode("ascii")
        inm = next((v for n, v in head.headers if n == b"if-none-match"), None)
        close = not head.keep_alive or head.has_body
        response_head, has_body = found.response_head(query, inm, close)
        if head.method == b"HEAD" or not has_body:
            opened.close()
            return Answer(response_head, close)
        return Answer(response_head, close, partial(found.send, opened))

    def error(self, status: int, detail: str, head: RequestHead) -> Answer | Deferred[Answer]:
        """An error page for a request whose body (if any) was not read: the connection
        closes after it unless nothing more could follow on it."""
        close = not head.keep_alive or head.has_body or head.upgrade is not None
        pages = self.error_pages
        if pages is not None and status in ERROR_TARGET_STATUSES and head.upgrade is None:
            d = pages.page(status, head.target)
            d.addCallback(lambda page: Answer(error_page(status, detail, close, page), close))
            return d
        return Answer(error_page(status, detail, close), close)
