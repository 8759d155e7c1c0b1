"""The public listener: a lean HTTP/1.1 reverse proxy protocol.

Why not twisted.web's Site: it builds a full Request per message, buffers request bodies
(to memory or a temporary file) before a resource sees them, and has no notion of
forwarding an upgrade. Here only the message head is parsed; bodies pass through as they
come, each side throttling the other, and an upgrade becomes a plain byte pipe.

One visitor connection handles one exchange at a time (pipelined requests wait their
turn, as HTTP/1.1 requires). An exchange is: route the head, take a backend connection
from the pool, send the rewritten head and stream the body, stream the response back,
and give the backend connection back to the pool when both messages are complete.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, BinaryIO

from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectError, ConnectionDone, TimeoutError as ConnectTimeout
from twisted.internet.interfaces import IProtocolNegotiationFactory
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .errorpages import ErrorPage, ErrorPages
from .forward import BackendConnection, BackendPool, PoolTimeout, set_no_delay
from .httphead import (
    MAX_HEAD_BYTES,
    BadMessage,
    ChunkedTracker,
    RequestHead,
    ResponseHead,
    end_to_end,
    parse_request_head,
    parse_response_head,
    serialize_headers,
)
from .routes import RouteTable
from .static import StaticFile, StaticFiles
from .targets import ClientTLS, Target, parse_target
from .websocket import Splice, Throttle, upgrade_headers

log = Logger()

_REASONS = {
    400: b"Bad Request",
    404: b"Not Found",
    408: b"Request Timeout",
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

# How a body is delimited.
_NONE, _LENGTH, _CHUNKED, _UNTIL_CLOSE = range(4)
# Where a visitor connection is.
READ_HEAD, CONNECTING, FORWARDING, STATIC, SPLICED, ERROR_PAGE, CLOSED = range(7)

# Requests safe to send again when a reused connection turns out to have been closed.
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE"})

TOUCH_INTERVAL = 1.0  # route activity is recorded at most this often per connection

# Idle keep-alive connections to a backend close after this long, as configurable-http-proxy's
# (Node >= 19's global agent: keep-alive, 5 s timeout). Reuse happens within milliseconds under
# load; held longer, a burst's connections linger: each to the in-process orchestrator costs
# two of this process's fds, and a culled container's until its container is gone.
BACKEND_IDLE_TIMEOUT = 5.0

# Statuses configurable-http-proxy hands to --error-target / --error-path.
_ERROR_TARGET_STATUSES = frozenset({404, 503})
_HOST_PORT = re.compile(rb":(\d+)")
_REDIRECTS = frozenset({201, 301, 302, 307, 308})  # whose Location --auto-rewrite may change


def error_page(status: int, detail: str, close: bool, page: ErrorPage | None = None) -> bytes:
    """A whole error response: the proxy's own page, or one from the error target."""
    reason = _REASONS.get(status, b"Error")
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


class ProxyServerProtocol(Protocol):
    """One visitor connection."""

    def __init__(self, factory: ReverseProxyFactory) -> None:
        self.factory = factory
        self._clock = factory.reactor
        self._state = READ_HEAD
        # Visitor bytes not yet forwarded (head, early body, next request). A bytearray, and
        # the head's end searched only in new bytes: a head sent a byte at a time costs linear time.
        self._buffer = bytearray()
        self._scanned = 0
        self._held = False  # reading paused by us, not by back-pressure
        self._last_traffic = 0.0  # either direction on the visitor's connection
        self._backend_traffic = 0.0  # either direction on the backend's, during an exchange
        self._timer = None
        self._throttle: Throttle | None = None
        self._client_ip = b""
        self._reset_exchange()

    def _reset_exchange(self) -> None:
        self._head: RequestHead | None = None
        self._target: Target | None = None
        self._route: str | None = None
        self._touched = 0.0
        self._backend: BackendConnection | None = None
        self._pending = None  # the Deferred of a backend connection on its way
        self._retried = False
        self._req_done = True
        self._req_remaining = 0
        self._req_chunks: ChunkedTracker | None = None
        self._resp_buffer = bytearray()
        self._resp_scanned = 0
        self._resp: ResponseHead | None = None
        self._resp_mode = _NONE
        self._resp_remaining = 0
        self._resp_chunks: ChunkedTracker | None = None
        self._backend_reusable = False
        self._close_after = False
        self._splice: Splice | None = None

    # -- the visitor's side --------------------------------------------------------------

    def connectionMade(self) -> None:
        # Twisted leaves Nagle on: every small reply would wait ≈40 ms for a delayed ACK.
        set_no_delay(self.transport)
        self._throttle = Throttle(self.transport)
        # The visitor's address for X-Forwarded-For (none on a unix socket listener).
        self._client_ip = getattr(self.transport.getPeer(), "host", "").encode("ascii")
        self._last_traffic = self._clock.seconds()
        self._timer = self._clock.callLater(self.factory.idle_timeout, self._check_timeout)
        self.factory.connections += 1

    def dataReceived(self, data: bytes) -> None:
        self.factory.bytes_in += len(data)
        state = self._state
        self._last_traffic = now = self._clock.seconds()
        if state == SPLICED:
            self._splice.from_client(data)
            return
        if state == FORWARDING and not self._req_done:
            self._request_body(data)
            return
        if state == CLOSED:
            return
        self._buffer += data
        if state == READ_HEAD:
            self._next_request(now)
        elif len(self._buffer) > MAX_HEAD_BYTES:
            self._hold()  # a pipelined request waits; don't read more than one head ahead

    def connectionLost(self, reason: Failure = ConnectionDone) -> None:
        self.factory.connections -= 1
        state, self._state = self._state, CLOSED
        if state == SPLICED:
            self.factory.websockets -= 1
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._pending is not None:
            self._pending.cancel()
        if state == SPLICED:
            self._splice.close()
        elif self._backend is not None:
            backend, self._backend = self._backend, None
            # Mid-exchange: the backend's answer has nowhere to go; it cannot be reused.
            self.factory.pool.release(backend, reusable=False)

    def _hold(self) -> None:
        if not self._held:
            self._held = True
            self.transport.pauseProducing()

    def _release_hold(self) -> None:
        if self._held:
            self._held = False
            self.transport.resumeProducing()

    def _next_request(self, now: float) -> None:
        buffer = self._buffer
        if buffer[:2] == b"\r\n":  # RFC 9112 §2.2: ignore empty lines before a request
            buffer = self._buffer = buffer.lstrip(b"\r\n")
        end = buffer.find(b"\r\n\r\n", max(self._scanned - 3, 0))
        if end < 0:
            self._scanned = len(buffer)
            if len(buffer) > MAX_HEAD_BYTES:
                self._refuse(431, "request head too large")
            return
        self._buffer = buffer[end + 4 :]
        self._scanned = 0
        try:
            head = parse_request_head(bytes(buffer[:end]))
        except BadMessage as e:
            self._refuse(e.status, e.reason)
            return
        self._start_exchange(head, now)

    def _refuse(self, status: int, reason: str) -> None:
        """Answer a request we will not forward, and close: its framing can't be trusted."""
        log.debug("refused a request: {status} {reason}", status=status, reason=reason)
        self.transport.write(error_page(status, reason, close=True))
        self._close()

    def _close(self) -> None:
        self._state = CLOSED
        self._buffer = bytearray()
        self.transport.loseConnection()

    def _start_exchange(self, head: RequestHead, now: float) -> None:
        factory = self.factory
        factory.requests += 1
        self._head = head
        if head.target == b"/_chp_healthz" and head.method == b"GET":
            self._answer_health(head)
            return
        if factory.host_routing:
            # CHP: the Host header, port cut off, is the first segment of the route's path.
            matched = factory.routes.match("/" + head.host.split(b":", 1)[0].decode("latin-1") + head.path)
        else:
            matched = factory.routes.match(head.path)
        if matched is not None:
            self._route, data = matched
            factory.routes.touch(self._route)
            self._touched = now
            target_url = data.get("target")
        else:
            target_url = factory.default_target
        static = factory.static
        if static is not None and head.method in (b"GET", b"HEAD") and head.upgrade is None:
            found = static.lookup(head.path)
            opened = found.open() if found is not None else None
            if opened is not None:
                self._serve_static(head, found, opened)
                return
        if not target_url:
            self._respond_locally(404, "no route", head)
            return
        try:
            self._target = factory.target(target_url)
        except ValueError as e:
            log.error("route {route} has an unusable target: {error}", route=self._route, error=str(e))
            self._respond_locally(502, str(e), head)
            return
        self._req_done = not head.has_body
        if factory.exchange_limit is not None:
            self._tighten_timer(factory.exchange_limit)
        if head.content_length:
            self._req_remaining = head.content_length
        elif head.chunked:
            self._req_chunks = ChunkedTracker()
        self._connect()

    def _connect(self) -> None:
        self._state = CONNECTING
        pool = self.factory.pool
        if self._head.upgrade is not None:
            d = pool.connect_dedicated(self._target)
        else:
            idle = pool.take_idle(self._target)
            if idle is not None:
                self._backend_ready(idle)
                return
            d = pool.acquire(self._target)
        self._pending = d
        d.addCallbacks(self._backend_ready, self._backend_failed)
        d.addErrback(self._log_failure, "forwarding a request")
        if self._state == CONNECTING:
            self._hold()  # keep the body (and anything after it) in the kernel meanwhile

    def _log_failure(self, failure: Failure, doing: str) -> None:
        log.failure("unexpected error while {doing}", failure, doing=doing)
        if self._state != CLOSED:
            self.transport.abortConnection()

    def _backend_failed(self, reason: Failure) -> None:
        self._pending = None
        if reason.check(CancelledError) or self._state == CLOSED:
            return
        if reason.check(PoolTimeout, ConnectError, ConnectTimeout, OSError):
            log.info(
                "backend {target} unreachable for {path}: {error}",
                target=self._target.url,
                path=self._head.path,
                error=reason.getErrorMessage(),
            )
        else:
            log.failure("connecting to backend {target}", reason, target=self._target.url)
        self._respond_locally(503, reason.getErrorMessage(), self._head)

    def _backend_ready(self, backend: BackendConnection) -> None:
        self._pending = None
        if self._state != CONNECTING:  # the visitor left while we connected
            self.factory.pool.release(backend, reusable=self._head is not None and self._head.upgrade is None)
            return
        head = self._head
        self._state = FORWARDING
        self._backend = backend
        self._backend_traffic = self._clock.seconds()
        backend.handler = self
        transport = backend.transport
        transport.write(self._backend_head(head))
        # Each side pauses the other when its own send buffer fills: streaming, not buffering.
        transport.registerProducer(self._throttle, True)
        self.transport.registerProducer(backend.throttle, True)
        buffered, self._buffer = self._buffer, bytearray()
        self._release_hold()
        if not self._req_done and buffered:
            self._request_body(bytes(buffered))
        elif buffered:
            self._buffer = buffered
            self._hold()

    def _backend_head(self, head: RequestHead) -> bytes:
        """The request head as the backend sees it: hop-by-hop headers out, X-Forwarded-* in."""
        factory = self.factory
        replaced = factory.replaced_headers(self._target)
        lines = [(name, value) for name, value in end_to_end(head.headers, head.connection_tokens) if name not in replaced]
        if factory.x_forward:
            self._add_forwarded(lines, head)
        lines.extend(factory.header_values(self._target))
        if head.chunked:
            lines.append((b"transfer-encoding", b"chunked"))
        version = b"HTTP/1.1" if head.version >= (1, 1) else b"HTTP/1.0"
        parts = [head.method, b" ", self._backend_target(head), b" ", version, b"\r\n", serialize_headers(lines)]
        if head.upgrade is not None:
            parts.append(upgrade_headers(head.upgrade))
        parts.append(b"\r\n")
        return b"".join(parts)

    def _add_forwarded(self, lines: list[tuple[bytes, bytes]], head: RequestHead) -> None:
        """X-Forwarded-* as configurable-http-proxy (node-http-proxy's ``xfwd``) sets them.

        For, Port and Proto append ``,<value>`` to what an earlier proxy sent; Host is kept if
        present (and, as there, not set at all on an upgrade).
        """
        tls = self.factory.scheme == b"https"
        found = _HOST_PORT.search(head.host)
        values = {
            b"x-forwarded-for": self._client_ip,
            b"x-forwarded-port": found.group(1) if found else (b"443" if tls else b"80"),
            b"x-forwarded-proto": (b"wss" if tls else b"ws") if head.upgrade is not None else self.factory.scheme,
        }
        if not self._client_ip:
            del values[b"x-forwarded-for"]  # a unix socket listener knows no address
        has_host = False
        for index, (name, value) in enumerate(lines):
            extra = values.pop(name, None)
            if extra is not None:
                lines[index] = (name, value + b"," + extra)
            elif name == b"x-forwarded-host":
                has_host = True
        lines.extend(values.items())
        if not has_host and head.upgrade is None:
            lines.append((b"x-forwarded-host", head.host))

    def _backend_target(self, head: RequestHead) -> bytes:
        """The request-target sent on: the target's own path first, the route's prefix kept or not."""
        factory = self.factory
        target = head.target
        if not factory.include_prefix and self._route is not None:
            prefix = self._route
            if factory.host_routing:
                prefix = prefix[len(head.host.split(b":", 1)[0]) + 1 :]
            # As CHP: the route's length cut off the request-target, as written.
            target = target[len(prefix.encode("utf-8")) :]
            if not target.startswith(b"/"):
                target = b"/" + target
        if factory.prepend_path:
            target = self._target.prefix + target
        return target

    def _request_body(self, data: bytes) -> None:
        rest = b""
        if self._req_chunks is not None:
            try:
                end = self._req_chunks.feed(data)
            except BadMessage as e:
                self._abandon(e.status, e.reason)
                return
            if end >= 0:
                data, rest = data[:end], data[end:]
                self._req_done = True
        else:
            remaining = self._req_remaining
            if len(data) >= remaining:
                data, rest = data[:remaining], data[remaining:]
                self._req_done = True
            self._req_remaining = remaining - len(data)
        if data:
            self._backend.transport.write(data)
            self._backend_traffic = self._last_traffic
        if self._req_done and rest:
            self._buffer = bytearray(rest)  # a pipelined request: it waits for this exchange to end
            self._hold()

    def _abandon(self, status: int, reason: str) -> None:
        """Give up on an exchange in flight: answer if nothing was answered yet, and close."""
        backend, self._backend = self._backend, None
        if backend is not None:
            self.factory.pool.release(backend, reusable=False)
        if self._resp is None:
            self.transport.write(error_page(status, reason, close=True))
        self._close()

    # -- the backend's side --------------------------------------------------------------

    def backendDataReceived(self, data: bytes) -> None:
        self.factory.bytes_out += len(data)
        now = self._last_traffic = self._backend_traffic = self._clock.seconds()
        if self._route is not None and now - self._touched >= TOUCH_INTERVAL:
            self._touched = now
            self.factory.routes.touch(self._route)
        if self._splice is not None:
            self._splice.from_backend(data)
            return
        if self._resp is None:
            self._response_head(data)
            return
        self._response_body(data)

    def _response_head(self, data: bytes) -> None:
        buffer = self._resp_buffer
        buffer += data
        end = buffer.find(b"\r\n\r\n", max(self._resp_scanned - 3, 0))
        if end < 0:
            self._resp_scanned = len(buffer)
            if len(buffer) > MAX_HEAD_BYTES:
                self._abandon(502, "backend response head too large")
            return
        self._resp_buffer = bytearray()
        self._resp_scanned = 0
        rest = bytes(buffer[end + 4 :])
        try:
            resp = parse_response_head(bytes(buffer[:end]))
        except BadMessage as e:
            log.warn("bad response from {target}: {reason}", target=self._target.url, reason=e.reason)
            self._abandon(502, e.reason)
            return
        head = self._head
        status = resp.status
        if status == 101:
            if head.upgrade is None:
                self._abandon(502, "101 without an upgrade request")
            else:
                self._begin_splice(resp, rest)
            return
        if status < 200:
            # Interim answers (100 Continue) go to the visitor; the real one follows.
            if head.version >= (1, 1):
                self.transport.write(resp.status_line + b"\r\n" + serialize_headers(end_to_end(resp.headers, resp.connection_tokens)) + b"\r\n")
            if rest:
                self._response_head(rest)
            return
        self._resp = resp
        if head.method == b"HEAD" or status in (204, 304):
            mode = _NONE
        elif resp.chunked:
            mode = _CHUNKED
            self._resp_chunks = ChunkedTracker()
        elif resp.content_length is not None:
            mode = _LENGTH if resp.content_length else _NONE
            self._resp_remaining = resp.content_length
        else:
            mode = _UNTIL_CLOSE
        self._resp_mode = mode
        self._backend_reusable = (
            head.version >= (1, 1) and b"close" not in resp.connection_tokens and mode != _UNTIL_CLOSE and head.upgrade is None
        )
        # The visitor's connection survives only if this message's end is unambiguous.
        self._close_after = not head.keep_alive or mode == _UNTIL_CLOSE or head.upgrade is not None
        headers = end_to_end(resp.headers, resp.connection_tokens)
        if self.factory.rewrites_location and status in _REDIRECTS:
            headers = self._rewrite_location(headers, head)
        if mode == _CHUNKED:
            headers.append((b"transfer-encoding", b"chunked"))
        if self._close_after or not self._req_done:
            # An early answer (say, 413 mid-upload): the rest of the body won't be read.
            self._close_after = True
            headers.append((b"connection", b"close"))
        self.transport.write(resp.status_line + b"\r\n" + serialize_headers(headers) + b"\r\n")
        if mode == _NONE:
            if rest:
                self._backend_reusable = False  # bytes after a bodiless response: broken backend
            self._response_done()
        elif rest:
            self._response_body(rest)

    def _rewrite_location(self, headers: list[tuple[bytes, bytes]], head: RequestHead) -> list[tuple[bytes, bytes]]:
        """``--auto-rewrite`` / ``--protocol-rewrite``: a redirect to the target itself points at the proxy."""
        factory = self.factory
        rewritten = []
        for name, value in headers:
            if name == b"location":
                scheme, sep, rest = value.partition(b"://")
                netloc, slash, path = rest.partition(b"/")
                if sep and netloc == self._target.netloc:
                    if factory.auto_rewrite:
                        netloc = head.host
                    if factory.protocol_rewrite:
                        scheme = factory.protocol_rewrite.rstrip(b":")
                    value = scheme + b"://" + netloc + slash + path
            rewritten.append((name, value))
        return rewritten

    def _response_body(self, data: bytes) -> None:
        mode = self._resp_mode
        if mode == _LENGTH:
            remaining = self._resp_remaining
            if len(data) >= remaining:
                if len(data) > remaining:
                    self._backend_reusable = False
                    data = data[:remaining]
                self.transport.write(data)
                self._resp_remaining = 0
                self._response_done()
                return
            self._resp_remaining = remaining - len(data)
            self.transport.write(data)
        elif mode == _CHUNKED:
            try:
                end = self._resp_chunks.feed(data)
            except BadMessage as e:
                log.warn("bad chunked body from {target}: {reason}", target=self._target.url, reason=e.reason)
                self._abandon(502, e.reason)
                return
            if end < 0:
                self.transport.write(data)
                return
            if end < len(data):
                self._backend_reusable = False
            self.transport.write(data[:end])
            self._response_done()
        elif mode == _UNTIL_CLOSE:
            self.transport.write(data)
        else:
            self._backend_reusable = False

    def _response_done(self) -> None:
        if self._req_done:
            self._finish_exchange()
        # Otherwise the visitor is still sending a body the backend no longer wants:
        # _close_after is set; finishing now closes both ends.
        else:
            self._backend_reusable = False
            self._finish_exchange()

    def _finish_exchange(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.transport.unregisterProducer()
            self.transport.unregisterProducer()
            self.factory.pool.release(backend, reusable=self._backend_reusable and self._req_done)
        close = self._close_after
        self._reset_exchange()
        if close:
            self._close()
            return
        self._state = READ_HEAD
        self.transport.resumeProducing()  # the backend may have paused us
        self._held = False
        if self._buffer:
            self._next_request(self._clock.seconds())

    def backendConnectionLost(self, reason: Failure) -> None:
        backend, self._backend = self._backend, None
        if self._state == CLOSED:
            return
        if self._splice is not None:
            self._splice.close()
            return
        self.transport.unregisterProducer()
        if self._resp is None and not self._resp_buffer:
            head = self._head
            if backend is not None and backend.reused and head.method in _IDEMPOTENT and not head.has_body and not self._retried:
                # A kept-alive connection the backend closed just as we reused it: try afresh.
                self._retried = True
                self._connect()
                return
            log.info("backend {target} closed before answering {path}", target=self._target.url, path=head.path)
            self.transport.write(error_page(502, "the backend closed the connection", close=True))
            self._close()
        elif self._resp_mode == _UNTIL_CLOSE:
            self._close_after = True
            self._finish_exchange()
        else:
            self._abandon(502, "backend closed mid-response")

    # -- upgrades ------------------------------------------------------------------------

    def _begin_splice(self, resp: ResponseHead, rest: bytes) -> None:
        backend = self._backend
        self._state = SPLICED
        self.factory.websockets += 1
        backend.transport.unregisterProducer()
        self.transport.unregisterProducer()
        headers = end_to_end(resp.headers, resp.connection_tokens)
        self.transport.write(
            resp.status_line + b"\r\n" + serialize_headers(headers) + upgrade_headers(self._head.upgrade) + b"\r\n"
        )
        self._splice = Splice(self.transport, backend.transport, self._touch_throttled)
        buffered, self._buffer = self._buffer, bytearray()
        self._held = False
        self._head = None  # a WebSocket may live for hours: keep only what the pipe needs
        self._resp_buffer = bytearray()
        self._splice.start(from_client=bytes(buffered), from_backend=rest)

    def _touch_throttled(self) -> None:
        now = self._last_traffic = self._clock.seconds()
        if self._route is not None and now - self._touched >= TOUCH_INTERVAL:
            self._touched = now
            self.factory.routes.touch(self._route)

    # -- answers made here ---------------------------------------------------------------

    def _respond_locally(self, status: int, detail: str, head: RequestHead) -> None:
        """An error page for a request whose body (if any) we have not read: then close.

        With an error target (CHP's ``--error-target``), a 404 or 503 page comes from there.
        """
        pages = self.factory.error_pages
        if pages is not None and status in _ERROR_TARGET_STATUSES and head.upgrade is None:
            self._state = ERROR_PAGE
            self._hold()
            d = pages.page(status, head.target)
            d.addCallback(self._send_error_page, status, detail, head)
            d.addErrback(self._log_failure, "answering with an error page")
            return
        self._send_error_page(None, status, detail, head)

    def _send_error_page(self, page: ErrorPage | None, status: int, detail: str, head: RequestHead) -> None:
        if self._state == CLOSED:
            return  # the visitor left while the error target answered
        close = not head.keep_alive or head.has_body or head.upgrade is not None
        self.transport.write(error_page(status, detail, close=close, page=page))
        if close:
            self._close()
        else:
            self._finish_exchange()

    def _answer_health(self, head: RequestHead) -> None:
        """CHP's liveness probe on the public port (Kubernetes deployments point at it)."""
        close = not head.keep_alive or head.has_body
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n"
            + (b"Connection: close\r\n" if close else b"")
            + b'\r\n{"status":"OK"}'
        )
        if close:
            self._close()
        else:
            self._finish_exchange()

    def _serve_static(self, head: RequestHead, found: StaticFile, opened: BinaryIO) -> None:
        self._state = STATIC
        query = head.target.partition(b"?")[2].decode("ascii")
        inm = next((v for n, v in head.headers if n == b"if-none-match"), None)
        close = not head.keep_alive or head.has_body
        response_head, has_body = found.response_head(query, inm, close)
        self._close_after = close
        self.transport.write(response_head)
        if head.method == b"HEAD" or not has_body:
            opened.close()
            self._finish_exchange()
            return
        d = found.send(opened, self.transport)
        d.addCallback(lambda _: self._finish_exchange() if self._state == STATIC else None)
        d.addErrback(self._log_failure, "sending a static file")

    # -- timeouts ------------------------------------------------------------------------

    def _check_timeout(self) -> None:
        """A lazy timer: re-armed for the nearest deadline instead of reset on every packet.

        Between requests (and while a head arrives) the connection may idle ``idle_timeout``.
        During an exchange nothing limits how long a backend may think unless asked, as in
        configurable-http-proxy: ``timeout`` drops a visitor's connection silent that long
        in both directions, ``proxy_timeout`` gives up on a backend silent that long.
        """
        self._timer = None
        state = self._state
        if state == CLOSED:
            return
        factory = self.factory
        now = self._clock.seconds()
        wait = factory.idle_timeout  # outside an exchange's limits, look again this often
        if state == SPLICED:
            limit = factory.websocket_idle_timeout
            if limit is None:
                return
            idle = now - self._last_traffic
            if idle >= limit:
                self._splice.close()
                return
            wait = limit - idle
        elif state == READ_HEAD:
            limit = factory.idle_timeout if factory.timeout is None else min(factory.idle_timeout, factory.timeout)
            idle = now - self._last_traffic
            if idle >= limit:
                if self._buffer:
                    self._refuse(408, "request head incomplete")
                else:
                    self._close()  # an idle keep-alive connection
                return
            wait = limit - idle
        elif state in (CONNECTING, FORWARDING):
            if factory.timeout is not None:
                idle = now - self._last_traffic
                if idle >= factory.timeout:
                    self._drop(idle)
                    return
                wait = factory.timeout - idle
            if state == FORWARDING and factory.proxy_timeout is not None:
                silent = now - self._backend_traffic
                if silent >= factory.proxy_timeout:
                    self._backend_timed_out(silent)
                    return
                wait = min(wait, factory.proxy_timeout - silent)
        self._timer = self._clock.callLater(wait, self._check_timeout)

    def _tighten_timer(self, limit: float) -> None:
        """Look again within ``limit``: the lazy timer may be set for the longer idle timeout."""
        timer = self._timer
        if timer is not None and timer.active() and timer.getTime() > self._clock.seconds() + limit:
            timer.reset(limit)

    def _drop(self, idle: float) -> None:
        """``timeout``: as Node's socket timeout in CHP, the visitor's connection just closes."""
        log.info("dropped a connection idle for {idle:.1f}s on {path}", idle=idle, path=self._head.path)
        if self._pending is not None:
            self._pending.cancel()
        backend, self._backend = self._backend, None
        if backend is not None:
            self.factory.pool.release(backend, reusable=False)
        self._close()

    def _backend_timed_out(self, silent: float) -> None:
        """``proxy_timeout``: the backend's request is abandoned; a 503 if nothing was answered yet."""
        log.info("backend {target} silent for {silent:.1f}s on {path}", target=self._target.url, silent=silent, path=self._head.path)
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.transport.unregisterProducer()
            self.transport.unregisterProducer()
            self.factory.pool.release(backend, reusable=False)
        if self._resp is None:
            head = self._head
            self._respond_locally(503, "the backend did not answer in time", head)
        else:
            self._close()


@implementer(IProtocolNegotiationFactory)
class ReverseProxyFactory(Factory):
    """Builds visitor connections; holds what they share: routes, pool, static files."""

    protocol = ProxyServerProtocol

    def __init__(
        self,
        reactor: Any,
        routes: RouteTable,
        default_target: str | None = None,
        static_dir: str | None = None,
        connect_timeout: float = 5.0,
        idle_timeout: float = 120.0,
        timeout: float | None = None,
        proxy_timeout: float | None = None,
        max_backend_connections_per_target: int = 32,
        backend_idle_timeout: float = BACKEND_IDLE_TIMEOUT,
        websocket_idle_timeout: float | None = None,
        scheme: str = "http",
        static: StaticFiles | None = None,
        error_pages: ErrorPages | None = None,
        host_routing: bool = False,
        x_forward: bool = True,
        include_prefix: bool = True,
        prepend_path: bool = True,
        custom_headers: Sequence[tuple[str, str]] = (),
        change_origin: bool = False,
        auto_rewrite: bool = False,
        protocol_rewrite: str | None = None,
        client_tls: ClientTLS | None = None,
    ) -> None:
        """A proxy; the options after ``static`` are configurable-http-proxy's (see ``options.py``).

        ``idle_timeout``: a connection between requests; ``timeout`` and ``proxy_timeout``
        (None: no limit) as CHP's ``--timeout`` and ``--proxy-timeout``, in seconds.
        ``error_pages``: an ``ErrorTarget`` or ``ErrorDirectory`` for 404 and 503 answers.
        """
        self.reactor = reactor
        self.routes = routes
        self.default_target = default_target
        self.static = static if static is not None else (StaticFiles(static_dir) if static_dir else None)
        self.idle_timeout = idle_timeout
        self.timeout = timeout
        self.proxy_timeout = proxy_timeout
        limits = [limit for limit in (timeout, proxy_timeout) if limit is not None]
        self.exchange_limit = min(limits) if limits else None  # the shortest limit on an exchange
        self.websocket_idle_timeout = websocket_idle_timeout
        self.scheme = scheme.encode("ascii")
        self.error_pages = error_pages
        self.host_routing = host_routing
        self.x_forward = x_forward
        self.include_prefix = include_prefix
        self.prepend_path = prepend_path
        self.change_origin = change_origin
        self.auto_rewrite = auto_rewrite
        self.protocol_rewrite = protocol_rewrite.encode("ascii") if protocol_rewrite else None
        self.rewrites_location = auto_rewrite or bool(protocol_rewrite)
        self._custom = [(name.strip().lower().encode("latin-1"), value.strip().encode("latin-1")) for name, value in custom_headers]
        self._replaced = frozenset(name for name, _ in self._custom)
        self.pool = BackendPool(reactor, connect_timeout, max_backend_connections_per_target, backend_idle_timeout, client_tls)
        self.connections = 0
        # Counted for tmpnb.metrics: requests, bytes from visitors (in) and from backends
        # (out), WebSockets spliced and still open.
        self.requests = self.bytes_in = self.bytes_out = self.websockets = 0
        self._targets: dict[str, Target] = {}

    def buildProtocol(self, addr) -> ProxyServerProtocol:
        return ProxyServerProtocol(self)

    def acceptableProtocols(self) -> list[bytes]:
        """What we speak, for ALPN on an `ssl:` listener. Twisted answers every client that
        offers ALPN (browsers, curl) from this list, and fails the handshake when it is empty."""
        return [b"http/1.1"]

    def target(self, url: str) -> Target:
        """A parsed target, cached: the same few URLs are looked up on every request."""
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) > 10_000:
                self._targets.clear()
            target = self._targets[url] = parse_target(url)
        return target

    def replaced_headers(self, target: Target) -> frozenset[bytes]:
        """Visitor's headers the proxy sets itself (``--custom-header``, ``--change-origin``)."""
        if self.change_origin:
            return self._replaced | {b"host"}
        return self._replaced

    def header_values(self, target: Target) -> list[tuple[bytes, bytes]]:
        headers = list(self._custom)
        if self.change_origin:
            headers.append((b"host", target.netloc or b"localhost"))
        return headers

    def stopFactory(self) -> None:
        self.pool.close_all()
