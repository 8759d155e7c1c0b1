"""Docker calls in one dedicated, bounded thread pool, each with a timeout on the reactor side.

Functions named `_thd_*` run in that pool: they take plain data (a docker client is handed to
them by `DockerCalls`) and return plain data; the reactor thread never waits on Docker.

dockerd can hang (docs/design.md: `/_ping` answers while every other call blocks), so each call
has two timeouts: docker-py's own socket timeout, which eventually frees the thread, and a
reactor-side one, which frees the caller at once even while the thread is still stuck. A
call still queued behind stuck workers when its caller gave up is dropped unrun; a result
that arrives after its caller gave up goes to `late` (a launch is then removed).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import docker
import docker.errors
import requests.exceptions
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

log = Logger(namespace="tmpnb.dockerapi")  # the name operators filter docker logs by

T = TypeVar("T")


class DockerTimeout(Exception):
    """A Docker call got no answer in time (dockerd slow or hung)."""


class DockerUnavailable(Exception):
    """dockerd could not be reached (not running, socket missing, connection refused)."""


class ReactorForDocker(Protocol):
    """What DockerAPI needs of the reactor: time, thread hand-back and shutdown triggers."""

    def seconds(self) -> float: ...
    def callLater(self, delay: float, f: Callable[..., Any], *args: Any, **kw: Any) -> Any: ...
    def callFromThread(self, f: Callable[..., Any], *args: Any, **kw: Any) -> None: ...
    def addSystemEventTrigger(self, phase: str, event: str, f: Callable[..., Any]) -> Any: ...


def make_docker_threadpool(reactor: Any, max_workers: int = 4) -> ThreadPool:
    """The one bounded pool every Docker call runs in (--max-dock-workers)."""
    pool = ThreadPool(minthreads=0, maxthreads=max_workers, name="tmpnb-docker")
    reactor.callWhenRunning(pool.start)
    reactor.addSystemEventTrigger("after", "shutdown", pool.stop)
    return pool


def docker_client_factory(
    base_url: str = "unix:///var/run/docker.sock", timeout: float = 25.0, version: str = "auto"
) -> Callable[[], docker.DockerClient]:
    """A client_factory for DockerAPI; called inside a pool thread (it may talk to dockerd).

    `timeout` is docker-py's per-call socket timeout: keep it a little under DockerAPI's
    call_timeout so the thread is usually free again soon after its caller gave up.
    With version "auto", the API version is negotiated once: DockerAPI makes a client per
    call, and a /version request before each would double the calls.
    """
    negotiated: list[str] = []

    def make() -> docker.DockerClient:
        if version == "auto" and not negotiated:
            # On a client of its own, closed at once: docker-py keeps the /version connection
            # open in the client that asked, and the first client may be the events watcher's,
            # which lives until dockerd goes away.
            probe = docker.DockerClient(base_url=base_url, timeout=timeout, version="auto")
            try:
                negotiated.append(probe.api.api_version)
            finally:
                _close_quietly(probe)
        wanted = negotiated[0] if negotiated else version
        return docker.DockerClient(base_url=base_url, timeout=timeout, version=wanted)

    return make


def _close_quietly(client: Any) -> None:
    try:
        client.close()
    except Exception:
        pass  # closing is tidying up: the call's own outcome is what counts


def _translate(e: BaseException) -> BaseException:
    """docker-py's transport errors as DockerTimeout / DockerUnavailable; others unchanged."""
    if isinstance(e, docker.errors.APIError):
        return e  # dockerd answered, with an error
    cause = e.__cause__ if isinstance(e, docker.errors.DockerException) else e
    if isinstance(cause, requests.exceptions.Timeout):
        return DockerTimeout(str(e))
    if isinstance(cause, (requests.exceptions.ConnectionError, ConnectionError, FileNotFoundError)):
        return DockerUnavailable(str(e))
    return e


class _Abandoned(Exception):
    """The caller gave up before a worker picked the call up; it was not run."""


class _Call:
    """One Docker call: the flag its caller sets on giving up, read by the worker."""

    def __init__(self) -> None:
        self.abandoned = threading.Event()




class DockerCalls:
    """Runs `f(client, *args)` in the pool with a fresh client, failing with DockerTimeout
    after `call_timeout` seconds of reactor time and DockerUnavailable when dockerd is away."""

    def __init__(
        self,
        reactor: ReactorForDocker,
        threadpool: ThreadPool,
        client_factory: Callable[[], Any],
        call_timeout: float = 30.0,
    ) -> None:
        self._reactor = reactor
        self._threadpool = threadpool
        self._client_factory = client_factory
        self._call_timeout = call_timeout

    def defer(
        self,
        operation: str,
        f: Callable[..., T],
        *args: Any,
        late: Callable[[T], None] | None = None,
    ) -> Deferred[T]:
        """Run f(client, *args) in the pool; fail with DockerTimeout after call_timeout.

        `late` gets a result that arrives after the caller gave up (timeout or cancel).
        """
        call = _Call()
        timer: Any = None

        def give_up(_: Deferred[T]) -> None:  # the caller cancelled
            call.abandoned.set()
            if timer.active():
                timer.cancel()

        outer: Deferred[T] = Deferred(give_up)

        def time_out() -> None:
            call.abandoned.set()
            log.warn(
                "docker {operation} got no answer in {timeout}s",
                operation=operation,
                timeout=self._call_timeout,
            )
            outer.errback(DockerTimeout(f"docker {operation}: no answer in {self._call_timeout}s"))

        timer = self._reactor.callLater(self._call_timeout, time_out)

        def finished(result: T | Failure) -> None:
            if not outer.called:
                timer.cancel()
                if isinstance(result, Failure):
                    outer.errback(result)
                else:
                    outer.callback(result)
            elif isinstance(result, Failure):
                if not result.check(_Abandoned):
                    log.info(
                        "docker {operation} failed after its caller gave up: {cause}",
                        operation=operation,
                        cause=result.getErrorMessage(),
                    )
            elif late is not None:
                late(result)

        inner = deferToThreadPool(self._reactor, self._threadpool, self._thd_call, call, f, *args)
        inner.addBoth(finished)
        inner.addErrback(lambda failure: log.failure("handing back docker {o}", failure, o=operation))
        return outer

    def _thd_call(self, call: _Call, f: Callable[..., T], *args: Any) -> T:
        if call.abandoned.is_set():
            raise _Abandoned()  # queued behind stuck workers; its caller has moved on
        try:
            # A client per call, closed after it: docker-py opens a connection pool per URL
            # (per container id), so a long-lived client keeps dozens of sockets to dockerd.
            client = self._client_factory()
            try:
                return f(client, *args)
            finally:
                _close_quietly(client)
        except BaseException as e:
            translated = _translate(e)
            if translated is e:
                raise
            raise translated from e
