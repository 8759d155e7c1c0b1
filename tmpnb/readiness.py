"""Is a container's notebook server up? Ask it over its unix socket.

Ready means: `GET <base_path>api/status` with the server's token answers 200. Until the
server has created its socket the connection is refused; until it is listening it may not
answer; `wait_ready` keeps asking every `interval` until `timeout`. With `warm`, the server
then renders that page (the visitor's landing page, --redirect-uri) once, so that its first
visitor does not pay the cold first render (templates compiled, handlers imported).
"""

from __future__ import annotations

import json
from typing import Any

import treq
from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.web.client import Agent
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from tmpnb.logs import quiet_connection_pool
from tmpnb.statusround import NotReady, StatusAnswers, StatusAsk, StatusRounds

__all__ = ["NotReady", "ReadinessTimeout", "server_status", "status_url", "unix_http_client", "wait_ready"]

# Any host name will do: the request never leaves the unix socket. The server is started
# with allow_remote_access, but "localhost" is accepted even without it.
HOST = "http://localhost"


class ReadinessTimeout(Exception):
    """The server was not ready in time; `last_error` says what the last attempt met."""

    def __init__(self, socket_path: str, timeout: float, last_error: BaseException | None) -> None:
        cause = f"{type(last_error).__name__}: {last_error}" if last_error else "no attempt"
        super().__init__(f"{socket_path} not ready after {timeout}s ({cause})")
        self.socket_path = socket_path
        self.last_error = last_error


@implementer(IAgentEndpointFactory)
class _UNIXEndpointFactory:
    """Every URL goes to the one socket: the Agent only picks the request's path from it."""

    def __init__(self, reactor: Any, socket_path: str) -> None:
        self._reactor = reactor
        self._socket_path = socket_path

    def endpointForURI(self, uri: Any) -> IStreamClientEndpoint:
        return UNIXClientEndpoint(self._reactor, self._socket_path)


def unix_http_client(reactor: Any, socket_path: str) -> HTTPClient:
    """A treq client whose every request goes to the server listening on `socket_path`."""
    # Not persistent: probes are few and far between, and a culled server's socket must
    # leave no pooled connection behind.
    pool = quiet_connection_pool(reactor, persistent=False)
    agent = Agent.usingEndpointFactory(reactor, _UNIXEndpointFactory(reactor, socket_path), pool)
    return HTTPClient(agent)


def status_url(base_path: str) -> str:
    return HOST + base_path.rstrip("/") + "/api/status"


def server_status(
    reactor: Any,
    socket_path: str,
    base_path: str,
    token: str,
    *,
    client: HTTPClient | None = None,
) -> Deferred[dict[str, Any]]:
    """Ask the server once; fires with its status JSON (started, last_activity,
    connections, kernels) or fails with NotReady / the connection's error.

    `client` replaces the unix-socket client (tests pass treq.testing.StubTreq); without
    it the request is a round of one (tmpnb/statusround.py): one HTTP/1.0 exchange.
    """
    if client is not None:
        return Deferred.fromCoroutine(_status(client, base_path, token))
    d = StatusRounds(reactor).ask([StatusAsk("", socket_path, base_path, token)])
    return d.addCallback(_only_answer)


def _only_answer(answers: StatusAnswers) -> dict[str, Any]:
    [answer] = answers.values()
    if isinstance(answer, Exception):
        raise answer
    return answer


async def _status(http: Any, base_path: str, token: str) -> dict[str, Any]:
    headers = {"Authorization": f"token {token}"} if token else {}
    try:
        response = await http.get(status_url(base_path), headers=headers)
        body = await treq.content(response)
    except Exception as e:
        if _was_cancelled(e):
            # The Agent reports a cancel as its own errors; say plainly that it was one,
            # so a caller's cancel stops wait_ready and a timeout reads as TimeoutError.
            raise CancelledError() from e
        raise
    if response.code != 200:
        raise NotReady(response.code, body)
    return json.loads(body)


def _was_cancelled(e: BaseException) -> bool:
    if isinstance(e, (CancelledError, ConnectingCancelledError)):
        return True
    reasons = getattr(e, "reasons", None) or []  # ResponseNeverReceived, ResponseFailed
    return any(isinstance(r, Failure) and r.check(CancelledError) for r in reasons)


def wait_ready(
    reactor: Any,
    socket_path: str,
    base_path: str,
    token: str,
    timeout: float,
    interval: float,
    *,
    client: HTTPClient | None = None,
    warm: str | None = None,
) -> Deferred[dict[str, Any]]:
    """Ask every `interval` seconds until the server answers 200 (fires with its status)
    or `timeout` seconds have passed (fails with ReadinessTimeout). Cancelling stops it.

    `warm`: a path below `base_path` (as "tree") the server then renders once, within the
    same `timeout`; whatever it answers, the server is ready."""
    http = client if client is not None else unix_http_client(reactor, socket_path)
    return Deferred.fromCoroutine(
        _wait_ready(reactor, http, socket_path, base_path, token, timeout, interval, warm)
    )


async def _wait_ready(
    reactor: Any,
    http: Any,
    socket_path: str,
    base_path: str,
    token: str,
    timeout: float,
    interval: float,
    warm: str | None = None,
) -> dict[str, Any]:
    deadline = reactor.seconds() + timeout
    last_error: BaseException | None = None
    while True:
        remaining = deadline - reactor.seconds()
        if remaining <= 0:
            raise ReadinessTimeout(socket_path, timeout, last_error)
        attempt = Deferred.fromCoroutine(_status(http, base_path, token))
        # A server that accepts but never answers must not hold us past the deadline.
        attempt.addTimeout(remaining, reactor)
        try:
            status = await attempt
            break
        except CancelledError:
            raise  # our caller gave up (the attempt's own timeout arrives as TimeoutError)
        except Exception as e:  # every way of not being ready yet: refused, 503, no answer
            last_error = e
        await deferLater(reactor, min(interval, max(0.0, deadline - reactor.seconds())))
    if warm is not None:
        await _render_once(reactor, http, base_path + warm, token, deadline - reactor.seconds())
    return status


async def _render_once(reactor: Any, http: Any, path: str, token: str, remaining: float) -> None:
    """GET the page as its visitor will (token in the URL), reading it all; an answer that
    is not 200 or comes too late leaves the server as ready as it was."""
    url = HOST + path + ("&" if "?" in path else "?") + "token=" + token
    attempt = Deferred.fromCoroutine(_page(http, url))
    attempt.addTimeout(max(remaining, 0.0), reactor)
    try:
        await attempt
    except CancelledError:
        raise
    except Exception:
        pass  # a page that does not render now will not for the visitor either: theirs to see


async def _page(http: Any, url: str) -> None:
    response = await http.get(url)
    await treq.content(response)
