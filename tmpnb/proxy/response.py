"""The backend's answer to one request, passed to the visitor as it comes.

Its head is parsed, rewritten (see `rewrite`) and written on; interim answers (100 Continue)
go through; a 101 hands the connection to the exchange for splicing; then the body passes
until its end (see `framing`), when the exchange finishes. Whether the backend connection
can serve another request, and whether the visitor's must close, are decided here.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.interfaces import ITransport
from twisted.logger import Logger

from .framing import NONE, UNTIL_CLOSE, BodyFraming, response_framing
from .httphead import MAX_HEAD_BYTES, BadMessage, RequestHead, ResponseHead, end_to_end, parse_response_head, serialize_headers
from .rewrite import Rewriter
from .targets import Target

log = Logger(namespace="tmpnb.proxy.server")  # the name operators filter the proxy's logs by


class Exchange(Protocol):
    """The visitor connection's side of an exchange, as the relay sees it."""

    request_done: bool  # the visitor's whole request has been sent on

    def abandon(self, status: int, reason: str) -> None: ...
    def begin_splice(self, resp: ResponseHead, rest: bytes) -> None: ...
    def response_done(self) -> None: ...


class ResponseRelay:
    __slots__ = ("_exchange", "_visitor", "_request", "_target", "_rewriter", "_buffer", "_scanned", "head", "body", "reusable", "close_after")

    def __init__(self, exchange: Exchange, visitor: ITransport, request: RequestHead, target: Target, rewriter: Rewriter) -> None:
        self._exchange = exchange
        self._visitor = visitor
        self._request = request
        self._target = target
        self._rewriter = rewriter
        # The head's end is searched only in new bytes: a head sent a byte at a time costs linear time.
        self._buffer = bytearray()
        self._scanned = 0
        self.head: ResponseHead | None = None  # the final head, once it came
        self.body: BodyFraming | None = None
        self.reusable = False  # the backend connection may serve another request afterwards
        self.close_after = False  # the visitor's connection closes after this response

    @property
    def started(self) -> bool:
        """Whether any of the response has arrived."""
        return self.head is not None or bool(self._buffer)

    @property
    def until_close(self) -> bool:
        """A body that ends when the backend closes its connection."""
        return self.body is not None and self.body.mode == UNTIL_CLOSE

    def data_received(self, data: bytes) -> None:
        if self.head is None:
            self._head_received(data)
        else:
            self._body_received(data)

    def _head_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        end = buffer.find(b"\r\n\r\n", max(self._scanned - 3, 0))
        if end < 0:
            self._scanned = len(buffer)
            if len(buffer) > MAX_HEAD_BYTES:
                self._exchange.abandon(502, "backend response head too large")
            return
        self._buffer = bytearray()
        self._scanned = 0
        rest = bytes(buffer[end + 4 :])
        try:
            resp = parse_response_head(bytes(buffer[:end]))
        except BadMessage as e:
            log.warn("bad response from {target}: {reason}", target=self._target.url, reason=e.reason)
            self._exchange.abandon(502, e.reason)
            return
        request = self._request
        status = resp.status
        if status == 101:
            if request.upgrade is None:
                self._exchange.abandon(502, "101 without an upgrade request")
            else:
                self._exchange.begin_splice(resp, rest)
            return
        if status < 200:
            # Interim answers (100 Continue) go to the visitor; the real one follows.
            if request.version >= (1, 1):
                self._visitor.write(resp.status_line + b"\r\n" + serialize_headers(end_to_end(resp.headers, resp.connection_tokens)) + b"\r\n")
            if rest:
                self._head_received(rest)
            return
        self.head = resp
        body = self.body = response_framing(request.method, resp)
        until_close = body.mode == UNTIL_CLOSE
        self.reusable = (
            request.version >= (1, 1) and b"close" not in resp.connection_tokens and not until_close and request.upgrade is None
        )
        # The visitor's connection survives only if this message's end is unambiguous.
        close_after = not request.keep_alive or until_close or request.upgrade is not None
        headers = self._rewriter.response_headers(resp, request, self._target)
        if body.chunks is not None:
            headers.append((b"transfer-encoding", b"chunked"))
        if close_after or not self._exchange.request_done:
            # An early answer (say, 413 mid-upload): the rest of the body won't be read.
            close_after = True
            headers.append((b"connection", b"close"))
        self.close_after = close_after
        self._visitor.write(resp.status_line + b"\r\n" + serialize_headers(headers) + b"\r\n")
        if body.mode == NONE:
            if rest:
                self.reusable = False  # bytes after a bodiless response: broken backend
            self._exchange.response_done()
        elif rest:
            self._body_received(rest)

    def _body_received(self, data: bytes) -> None:
        try:
            end = self.body.feed(data)
        except BadMessage as e:
            log.warn("bad chunked body from {target}: {reason}", target=self._target.url, reason=e.reason)
            self._exchange.abandon(502, e.reason)
            return
        if end < 0:
            self._visitor.write(data)
            return
        if end < len(data):
            self.reusable = False  # bytes after the body's end: broken backend
            data = data[:end]
        self._visitor.write(data)
        self._exchange.response_done()
