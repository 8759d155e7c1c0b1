"""The public listener: a lean HTTP/1.1 reverse proxy protocol.

Why not twisted.web's Site: it builds a full Request per message, buffers request bodies
(to memory or a temporary file) before a resource sees them, and has no notion of
forwarding an upgrade. Here only the message head is parsed; bodies pass through as they
come, each side throttling the other, and an upgrade becomes a plain byte pipe.

One visitor connection handles one exchange at a time (pipelined requests wait their
turn, as HTTP/1.1 requires). An exchange is: route the head, take a backend connection
from the pool, send the rewritten head and stream the body, stream the response back,
and give the backend connection back to the pool when both messages are complete.
What is not the exchange lives next door: the answers the proxy makes itself
(`answers`), the backend's response on its way back (`response`), the rewriting CHP's
options ask for (`rewrite`), where bodies end (`framing`), the connection's timer and its
deadlines (`timeouts`), how many connections a client may hold (`clients`), what
connections share (`factory`) and the settings (`settings`).

A body for the default target (tmpnb's orchestrator) is read whole first when the settings
say so (`default_target_max_body`): a client sending it slowly then holds none of the
orchestrator's connections, and one too large is refused before anything is read.
"""

from __future__ import annotations

from dataclasses import replace

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectError, ConnectionDone, TimeoutError as ConnectTimeout
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from .answers import HEALTH_PATH, Answer, error_page, health
from .clients import client_key
from .forward import BackendConnection, PoolTimeout, set_no_delay
from .framing import BodyFraming, request_framing
from .httphead import MAX_HEAD_BYTES, BadMessage, RequestHead, ResponseHead, end_to_end, parse_request_head, serialize_headers
from .phases import BUFFERING, CLOSED, CONNECTING, FORWARDING, LOCAL, READ_HEAD, SPLICED
from .response import ResponseRelay
from .targets import Target
from .timeouts import ConnectionTimer
from .websocket import Splice, Throttle, upgrade_headers

log = Logger()

# Requests safe to send again when a reused connection turns out to have been closed.
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE"})

TOUCH_INTERVAL = 1.0  # route activity is recorded at most this often per connection
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class BodyThrottle(Throttle):
    """The backend pauses the visitor's reading when it takes the body slower than it comes;
    that time is the backend's, not the visitor's: the body's clock stops meanwhile."""

    __slots__ = ("_connection",)

    def __init__(self, transport, connection: ProxyServerProtocol) -> None:
        super().__init__(transport)
        self._connection = connection

    def pauseProducing(self) -> None:
        self._connection.reading_paused()
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self._connection.reading_resumed()
        self.transport.resumeProducing()


class ProxyServerProtocol(Protocol):
    """One visitor connection."""

    # The factory is factory.ReverseProxyFactory, which imports this module: named, not imported.
    def __init__(self, factory: ReverseProxyFactory) -> None:
        self.factory = factory
        self._clock = factory.reactor
        self.phase = READ_HEAD
        # Visitor bytes not yet forwarded (head, early body, next request). A bytearray, and
        # the head's end searched only in new bytes: a head sent a byte at a time costs linear time.
        self._buffer = bytearray()
        self._scanned = 0
        self._held = False  # reading paused by us, not by back-pressure
        self.last_traffic = 0.0  # either direction on the visitor's connection
        self.backend_traffic = 0.0  # either direction on the backend's, during an exchange
        self._timer = ConnectionTimer(self._clock, factory.limits, self)
        self._throttle: Throttle | None = None
        self._client_ip = b""
        self._client_key = ""  # who the per-client cap counts this connection for
        self.head_deadline: float | None = None  # when the head under way must be whole
        self._reset_exchange()

    def _reset_exchange(self) -> None:
        self._head: RequestHead | None = None
        self._target: Target | None = None
        self._route: str | None = None
        self._touched = 0.0
        self._backend: BackendConnection | None = None
        self._pending = None  # the Deferred of a backend connection on its way
        self._retried = False
        self.request_done = True
        self._req_body: BodyFraming | None = None
        self._relay: ResponseRelay | None = None
        self._splice: Splice | None = None
        self._held_body: bytearray | None = None  # a default target's body, read whole first
        # The request body's clock: its start, bytes so far, time the proxy did not read it.
        self._body_started: float | None = None
        self._body_received = 0
        self._paused_since: float | None = None
        self._paused_for = 0.0

    # -- the visitor's side --------------------------------------------------------------

    def connectionMade(self) -> None:
        factory = self.factory
        factory.connections += 1
        # Twisted leaves Nagle on: every small reply would wait ≈40 ms for a delayed ACK.
        set_no_delay(self.transport)
        self._throttle = BodyThrottle(self.transport, self)
        # The visitor's address for X-Forwarded-For (none on a unix socket listener).
        host = getattr(self.transport.getPeer(), "host", "")
        self._client_ip = host.encode("ascii")
        self._client_key = client_key(host)
        if not factory.clients.admit(self._client_key, self):
            log.debug("refused a connection from {client}: at its cap", client=self._client_key)
            self.phase = CLOSED
            self.transport.write(error_page(503, "too many connections from your address", close=True))
            self.transport.loseConnection()
            return
        self.last_traffic = now = self._clock.seconds()
        if factory.limits.head_deadline is not None:
            # The first head's clock starts now: a connection that sends nothing is no cheaper.
            self.head_deadline = now + factory.limits.head_deadline
        self._timer.start()
        self._timer.look_by(self.head_deadline)

    @property
    def idle(self) -> bool:
        """Between requests, or nothing received yet: what the per-client cap sheds first."""
        return self.phase == READ_HEAD and not self._buffer

    def shed(self) -> None:
        log.debug("shed an idle connection of {client} at its cap", client=self._client_key)
        self._close()

    def dataReceived(self, data: bytes) -> None:
        self.factory.bytes_in += len(data)
        phase = self.phase
        self.last_traffic = now = self._clock.seconds()
        if phase == SPLICED:
            self._splice.from_client(data)
            return
        if phase == FORWARDING and not self.request_done:
            self._request_body(data)
            return
        if phase == BUFFERING:
            self._buffer_body(data)
            return
        if phase == CLOSED:
            return
        self._buffer += data
        if phase == READ_HEAD:
            if self.head_deadline is None:
                self._head_begins(now)
            self._next_request(now)
        elif len(self._buffer) > MAX_HEAD_BYTES:
            self._hold()  # a pipelined request waits; don't read more than one head ahead

    def connectionLost(self, reason: Failure = ConnectionDone) -> None:
        self.factory.connections -= 1
        self.factory.clients.leave(self._client_key, self)
        phase, self.phase = self.phase, CLOSED
        if phase == SPLICED:
            self.factory.websockets -= 1
        self._timer.stop()
        if self._pending is not None:
            self._pending.cancel()
        if phase == SPLICED:
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

    def _head_begins(self, now: float) -> None:
        limit = self.factory.limits.head_deadline
        if limit is not None:
            self.head_deadline = now + limit
            self._timer.look_by(self.head_deadline)

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
        self.head_deadline = None  # a pipelined head's clock starts when its turn comes
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
        self.phase = CLOSED
        self._buffer = bytearray()
        self.transport.loseConnection()

    def _start_exchange(self, head: RequestHead, now: float) -> None:
        factory = self.factory
        factory.requests += 1
        self._head = head
        if head.target == HEALTH_PATH and head.method == b"GET":  # CHP's liveness probe
            self._answer(health(head))
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
        if factory.answers.serves_static:
            static = factory.answers.static_file(head, data.get("flavor") if matched is not None else None)
            if static is not None:
                self._answer(static)
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
        self.request_done = not head.has_body
        self._req_body = request_framing(head)
        if matched is None and head.has_body and factory.default_target_max_body is not None:
            self._begin_buffering(head, now)
            return
        if factory.limits.exchange is not None:
            self._timer.exchange_started()
        self._connect()

    # -- a body read whole before a backend connection is taken -------------------------

    def _begin_buffering(self, head: RequestHead, now: float) -> None:
        if head.content_length is not None and head.content_length > self.factory.default_target_max_body:
            self.factory.bodies_too_large += 1
            self._refuse(413, "request body too large")  # said at once: nothing of it is read
            return
        self.phase = BUFFERING
        self._held_body = bytearray()
        if head.version >= (1, 1) and any(n == b"expect" and v.lower() == b"100-continue" for n, v in head.headers):
            # The backend will get the whole body at once: the interim answer is ours to give.
            self._head = replace(head, headers=[(n, v) for n, v in head.headers if n != b"expect"])
            if not self._buffer:
                self.transport.write(CONTINUE)
        self._body_begins(now)
        buffered, self._buffer = self._buffer, bytearray()
        if buffered:
            self._buffer_body(bytes(buffered))

    def _buffer_body(self, data: bytes) -> None:
        self._body_received += len(data)
        try:
            end = self._req_body.feed(data)
        except BadMessage as e:
            self._refuse(e.status, e.reason)
            return
        body, rest = (data, b"") if end < 0 else (data[:end], data[end:])
        held = self._held_body
        if len(held) + len(body) > self.factory.default_target_max_body:
            # Chunked bodies are counted as they come (their framing included).
            self.factory.bodies_too_large += 1
            self._refuse(413, "request body too large")
            return
        held += body
        if end < 0:
            return
        self.request_done = True
        self._body_started = None
        self._buffer = bytearray(rest)  # a pipelined request: it waits for this exchange to end
        if self.factory.limits.exchange is not None:
            self._timer.exchange_started()
        self._connect()

    # -- the request body's clock (see timeouts.py) -------------------------------------

    def _body_begins(self, now: float) -> None:
        self._body_started = now
        self._body_received = 0
        self._paused_since = None
        self._paused_for = 0.0
        self._timer.look_by(self.body_deadline())

    def body_deadline(self) -> float | None:
        limits = self.factory.limits
        if self._body_started is None or self._paused_since is not None or limits.body is None:
            return None
        rate = limits.body_rate
        allowance = self._body_received / rate if rate > 0 else 0.0
        return self._body_started + self._paused_for + limits.body + allowance

    def reading_paused(self) -> None:
        if self._paused_since is None:
            self._paused_since = self._clock.seconds()

    def reading_resumed(self) -> None:
        since, self._paused_since = self._paused_since, None
        if since is not None:
            self._paused_for += self._clock.seconds() - since
            self._timer.look_by(self.body_deadline())

    def _connect(self) -> None:
        self.phase = CONNECTING
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
        if self.phase == CONNECTING:
            self._hold()  # keep the body (and anything after it) in the kernel meanwhile

    def _log_failure(self, failure: Failure, doing: str) -> None:
        log.failure("unexpected error while {doing}", failure, doing=doing)
        if self.phase != CLOSED:
            self.transport.abortConnection()

    def _backend_failed(self, reason: Failure) -> None:
        self._pending = None
        if reason.check(CancelledError) or self.phase == CLOSED:
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
        if self.phase != CONNECTING:  # the visitor left while we connected
            self.factory.pool.release(backend, reusable=self._head is not None and self._head.upgrade is None)
            return
        head = self._head
        self.phase = FORWARDING
        self._backend = backend
        self.backend_traffic = self._clock.seconds()
        factory = self.factory
        self._relay = ResponseRelay(self, self.transport, head, self._target, factory.rewriter)
        backend.handler = self
        transport = backend.transport
        transport.write(factory.rewriter.request_head(head, self._target, self._route, self._client_ip))
        held, self._held_body = self._held_body, None
        if held:
            transport.write(bytes(held))
        elif not self.request_done:
            self._body_begins(self.backend_traffic)
        # Each side pauses the other when its own send buffer fills: streaming, not buffering.
        transport.registerProducer(self._throttle, True)
        self.transport.registerProducer(backend.throttle, True)
        buffered, self._buffer = self._buffer, bytearray()
        self._release_hold()
        if not self.request_done and buffered:
            self._request_body(bytes(buffered))
        elif buffered:
            self._buffer = buffered
            self._hold()

    def _request_body(self, data: bytes) -> None:
        try:
            end = self._req_body.feed(data)
        except BadMessage as e:
            self.abandon(e.status, e.reason)
            return
        rest = b""
        if end >= 0:
            data, rest = data[:end], data[end:]
            self.request_done = True
        if data:
            self._body_received += len(data)
            self._backend.transport.write(data)
            self.backend_traffic = self.last_traffic
        if self.request_done:
            self._body_started = None
        if self.request_done and rest:
            self._buffer = bytearray(rest)  # a pipelined request: it waits for this exchange to end
            self._hold()

    def abandon(self, status: int, reason: str) -> None:
        """Give up on an exchange in flight: answer if nothing was answered yet, and close."""
        backend, self._backend = self._backend, None
        if backend is not None:
            self.factory.pool.release(backend, reusable=False)
        if self._relay is None or self._relay.head is None:
            self.transport.write(error_page(status, reason, close=True))
        self._close()

    # -- the backend's side --------------------------------------------------------------

    def backendDataReceived(self, data: bytes) -> None:
        self.factory.bytes_out += len(data)
        now = self.last_traffic = self.backend_traffic = self._clock.seconds()
        if self._route is not None and now - self._touched >= TOUCH_INTERVAL:
            self._touched = now
            self.factory.routes.touch(self._route)
        if self._splice is not None:
            self._splice.from_backend(data)
            return
        self._relay.data_received(data)

    def response_done(self) -> None:
        """The relay passed the whole response on."""
        if not self.request_done:
            # The visitor is still sending a body the backend no longer wants: the relay set
            # close_after; finishing now closes both ends.
            self._relay.reusable = False
        self._finish_exchange()

    def _finish_exchange(self) -> None:
        backend, self._backend = self._backend, None
        relay = self._relay
        if backend is not None:
            backend.transport.unregisterProducer()
            self.transport.unregisterProducer()
            self.factory.pool.release(backend, reusable=relay is not None and relay.reusable and self.request_done)
        close = relay is not None and relay.close_after
        self._reset_exchange()
        if close:
            self._close()
            return
        self.phase = READ_HEAD
        self.transport.resumeProducing()  # the backend may have paused us
        self._held = False
        if self._buffer:
            now = self._clock.seconds()
            self._head_begins(now)  # a pipelined head: its turn, and its clock, start now
            self._next_request(now)

    def backendConnectionLost(self, reason: Failure) -> None:
        backend, self._backend = self._backend, None
        if self.phase == CLOSED:
            return
        if self._splice is not None:
            self._splice.close()
            return
        self.transport.unregisterProducer()
        relay = self._relay
        if relay is None or not relay.started:
            head = self._head
            if backend is not None and backend.reused and head.method in _IDEMPOTENT and not head.has_body and not self._retried:
                # A kept-alive connection the backend closed just as we reused it: try afresh.
                self._retried = True
                self._connect()
                return
            log.info("backend {target} closed before answering {path}", target=self._target.url, path=head.path)
            self.transport.write(error_page(502, "the backend closed the connection", close=True))
            self._close()
        elif relay.until_close:
            relay.close_after = True
            self._finish_exchange()
        else:
            self.abandon(502, "backend closed mid-response")

    # -- upgrades ------------------------------------------------------------------------

    def begin_splice(self, resp: ResponseHead, rest: bytes) -> None:
        """The backend agreed to an upgrade (101): from now on, a byte pipe."""
        backend = self._backend
        self.phase = SPLICED
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
        self._relay = None
        self._splice.start(from_client=bytes(buffered), from_backend=rest)

    def _touch_throttled(self) -> None:
        now = self.last_traffic = self._clock.seconds()
        if self._route is not None and now - self._touched >= TOUCH_INTERVAL:
            self._touched = now
            self.factory.routes.touch(self._route)

    # -- answers made here (see answers.py) -----------------------------------------------

    def _respond_locally(self, status: int, detail: str, head: RequestHead) -> None:
        """An error page for a request whose body (if any) we have not read."""
        answer = self.factory.answers.error(status, detail, head)
        if isinstance(answer, Deferred):  # from the error target
            self.phase = LOCAL
            self._hold()
            answer.addCallback(self._answer)
            answer.addErrback(self._log_failure, "answering with an error page")
            return
        self._answer(answer)

    def _answer(self, answer: Answer) -> None:
        if self.phase == CLOSED:
            return  # the visitor left while the error target answered
        self.transport.write(answer.data)
        if answer.body is None:
            self._answered(answer.close)
            return
        self.phase = LOCAL
        d = answer.body(self.transport)
        d.addCallback(lambda _: self._answered(answer.close) if self.phase == LOCAL else None)
        d.addErrback(self._log_failure, "sending a static file")

    def _answered(self, close: bool) -> None:
        if close:
            self._close()
        else:
            self._finish_exchange()

    # -- what the timer tells (see timeouts.py) -------------------------------------------

    def head_timed_out(self) -> None:
        if self._buffer:
            self.factory.heads_timed_out += 1
            self._refuse(408, "request head incomplete")
        else:
            self._close()  # an idle keep-alive connection, or one that never sent a byte

    def body_timed_out(self) -> None:
        """A request body below its minimum rate: 408 if nothing was answered yet, and close."""
        self.factory.bodies_timed_out += 1
        log.debug("closed a request body slower than its minimum rate on {path}", path=self._head.path)
        if self._backend is not None:
            self._backend.transport.unregisterProducer()
            self.transport.unregisterProducer()
        self.abandon(408, "request body too slow")

    def websocket_idle(self) -> None:
        self._splice.close()

    def visitor_silent(self, idle: float) -> None:
        """``timeout``: as Node's socket timeout in CHP, the visitor's connection just closes."""
        log.info("dropped a connection idle for {idle:.1f}s on {path}", idle=idle, path=self._head.path)
        if self._pending is not None:
            self._pending.cancel()
        backend, self._backend = self._backend, None
        if backend is not None:
            self.factory.pool.release(backend, reusable=False)
        self._close()

    def backend_silent(self, silent: float) -> None:
        """``proxy_timeout``: the backend's request is abandoned; a 503 if nothing was answered yet."""
        log.info("backend {target} silent for {silent:.1f}s on {path}", target=self._target.url, silent=silent, path=self._head.path)
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.transport.unregisterProducer()
            self.transport.unregisterProducer()
            self.factory.pool.release(backend, reusable=False)
        if self._relay is None or self._relay.head is None:
            self._respond_locally(503, "the backend did not answer in time", self._head)
        else:
            self._close()
