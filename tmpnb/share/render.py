"""A shared notebook as HTML: nbconvert's lab template, in a child process with limits.

nbconvert runs Jinja, pygments, mistune and every output's converter over untrusted input:
its cost has to be bounded. Renders happen in a child process (`python render.py --serve`)
with an address-space limit, kept between renders because importing nbconvert costs 1.5 s on a
quiet machine and 10 s on a busy one (a render of 1 MB well under one). The child costs ≈74 MiB,
so it starts with the first render that needs it and the `Renderer` stops it after `idle_stop`
seconds without one; the next render starts a fresh one. A render that takes longer than the
timeout gets the child killed, and the next render starts a fresh one, as does a child that died
or has rendered RECYCLE_AFTER notebooks. `RenderWorker.render` blocks: each render thread has its
own worker. `Renderer` keeps the results in a small cache by content hash.

This file runs as a script in the child, so it imports nothing from tmpnb (nor Twisted) at module
level.
"""

from __future__ import annotations

import os
import resource
import selectors
import struct
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import IO, Any

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
TEMPLATE = "tmpnb_share"
DEFAULT_TIMEOUT = 30.0
DEFAULT_MEMORY = 1536 * 1024 * 1024  # address space of the child, bytes
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
RECYCLE_AFTER = 200  # renders per child: whatever leaks or grows, does not for long
DEFAULT_IDLE_STOP = 60.0  # seconds without a render before the children are stopped
_LENGTH = struct.Struct(">Q")
_OK, _FAILED = b"0", b"1"


class RenderFailed(Exception):
    """The child ran out of time or memory, or nbconvert gave up on the notebook."""


def to_html(content: bytes) -> bytes:
    """The notebook's HTML; what the child process does."""
    import nbformat
    from nbconvert import HTMLExporter

    notebook = nbformat.reads(content.decode("utf-8"), as_version=4)
    exporter = HTMLExporter(template_name=TEMPLATE, extra_template_basedirs=[TEMPLATES])
    body, _ = exporter.from_notebook_node(notebook)
    return body.encode("utf-8")


def serve(incoming: IO[bytes], outgoing: IO[bytes]) -> None:
    """The child's loop: a length-prefixed notebook in, a status byte and length-prefixed HTML
    (or error text) out, until stdin closes."""
    import nbconvert  # noqa: F401  (paid once, before the first notebook arrives)

    while True:
        head = incoming.read(_LENGTH.size)
        if len(head) < _LENGTH.size:
            return
        content = incoming.read(_LENGTH.unpack(head)[0])
        try:
            status, body = _OK, to_html(content)
        except MemoryError:
            status, body = _FAILED, b"out of memory"
        except Exception as e:  # any failure of nbconvert on hostile input is an answer, not a crash
            status, body = _FAILED, f"{type(e).__name__}: {e}"[:300].encode("utf-8", "replace")
        outgoing.write(status + _LENGTH.pack(len(body)) + body)
        outgoing.flush()


# What the child may know of its parent's environment: where to find Python's packages and
# how to decode text. Nothing else: tmpnb's environment holds the admin, proxy-API and
# spawn-API tokens, and the child parses untrusted notebooks.
_PASSED_ON = ("PYTHONPATH", "VIRTUAL_ENV")


def worker_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The explicit, minimal environment of a render child."""
    environ = dict(os.environ) if environ is None else environ
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    env.update({name: environ[name] for name in _PASSED_ON if name in environ})
    return env


def _limit_memory(limit: int) -> Callable[[], None]:
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return preexec


class RenderWorker:
    """One child process, used by one thread at a time (a lock makes sure)."""

    def __init__(self, memory: int = DEFAULT_MEMORY) -> None:
        self._memory = memory
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self._renders = 0

    def _start(self) -> subprocess.Popen[bytes]:
        if self._child is None or self._child.poll() is not None or self._renders >= RECYCLE_AFTER:
            self.stop()
            self._child = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--serve"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, preexec_fn=_limit_memory(self._memory),
                env=worker_environment(), close_fds=True)
            self._renders = 0
        return self._child

    def stop(self) -> None:
        child, self._child = self._child, None
        if child is not None and child.poll() is None:
            child.kill()  # our own child, by its handle
        if child is not None:
            child.wait()
            for pipe in (child.stdin, child.stdout):
                if pipe is not None:
                    pipe.close()

    @property
    def running(self) -> bool:
        """Whether this worker has a live child."""
        child = self._child
        return child is not None and child.poll() is None

    def stop_if_idle(self) -> bool:
        """Stop the child unless a render is using it; whether a live child was stopped."""
        if not self._lock.acquire(blocking=False):
            return False  # rendering: not idle after all
        try:
            was_running = self.running
            self.stop()
            return was_running
        finally:
            self._lock.release()

    def render(self, content: bytes, timeout: float = DEFAULT_TIMEOUT, memory: int | None = None) -> bytes:
        """The notebook's HTML, rendered by the child within `timeout` seconds; blocks.

        Raises RenderFailed. (`memory` is fixed per worker; the argument keeps the Renderer's
        signature.)
        """
        with self._lock:
            child = self._start()
            self._renders += 1
            try:
                child.stdin.write(_LENGTH.pack(len(content)) + content)
                child.stdin.flush()
                status = self._read(child, 1, time.monotonic() + timeout)
                length = _LENGTH.unpack(self._read(child, _LENGTH.size, time.monotonic() + timeout))[0]
                body = self._read(child, length, time.monotonic() + timeout)
            except (OSError, RenderFailed) as e:
                self.stop()
                raise RenderFailed(str(e) or type(e).__name__) from None
        if status != _OK:
            raise RenderFailed(body.decode("utf-8", "replace"))
        return body

    @staticmethod
    def _read(child: subprocess.Popen[bytes], size: int, deadline: float) -> bytes:
        fd = child.stdout.fileno()
        chunks: list[bytes] = []
        wanted = size
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while wanted:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    raise RenderFailed("render timed out")
                chunk = os.read(fd, min(wanted, 1 << 20))
                if not chunk:
                    raise RenderFailed("the render process died (out of memory?)")
                chunks.append(chunk)
                wanted -= len(chunk)
        return b"".join(chunks)


class RenderWorkers:
    """A worker per render thread: `render` has the Renderer's signature and blocks."""

    def __init__(self, memory: int = DEFAULT_MEMORY) -> None:
        self._memory = memory
        self._local = threading.local()
        self._all: list[RenderWorker] = []
        self._all_lock = threading.Lock()

    def _mine(self) -> RenderWorker:
        worker = getattr(self._local, "worker", None)
        if worker is None:
            worker = self._local.worker = RenderWorker(self._memory)
            with self._all_lock:
                self._all.append(worker)
        return worker

    def render(self, content: bytes, timeout: float = DEFAULT_TIMEOUT, memory: int | None = None) -> bytes:
        return self._mine().render(content, timeout)

    def running(self) -> int:
        """How many children are alive."""
        with self._all_lock:
            return sum(worker.running for worker in self._all)

    def stop_idle(self) -> int:
        """Stop every child not rendering now; how many were stopped. Blocks for the kills."""
        with self._all_lock:
            workers = list(self._all)
        return sum(worker.stop_if_idle() for worker in workers)

    def stop(self) -> None:
        with self._all_lock:
            for worker in self._all:
                worker.stop()


class Renderer:
    """Renders through `run_in_thread` and caches by content hash, up to `cache_bytes`.

    Several readers asking for the same uncached notebook share one render. With a `clock`, the
    render children are stopped (through `run_in_thread`) once `idle_stop` seconds have passed
    without a render; without one they live until `stop`.
    """

    def __init__(self, run_in_thread: Callable[..., Any], timeout: float = DEFAULT_TIMEOUT,
                 memory: int = DEFAULT_MEMORY, cache_bytes: int = DEFAULT_CACHE_BYTES,
                 render: Callable[[bytes, float, int], bytes] | None = None,
                 clock: Any = None, idle_stop: float = DEFAULT_IDLE_STOP,
                 workers: RenderWorkers | None = None) -> None:
        self._run_in_thread = run_in_thread
        self._timeout = timeout
        self._memory = memory
        self._cache_bytes = cache_bytes
        # Each Renderer without its own `render` gets its own child processes.
        self.workers = (RenderWorkers(memory) if workers is None else workers) if render is None else None
        self._render = render if render is not None else self.workers.render
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cached_size = 0
        self._waiting: dict[str, list[Any]] = {}
        self._clock = clock  # IReactorTime
        self._idle_stop = idle_stop
        self._rendering = 0
        self._idle_call: Any = None  # IDelayedCall: the children's stop, once all is quiet

    def cached(self, content_hash: str) -> bytes | None:
        html = self._cache.get(content_hash)
        if html is not None:
            self._cache.move_to_end(content_hash)
        return html

    def render(self, content_hash: str, content: bytes) -> Any:
        """Deferred[bytes]: the HTML, from the cache or a fresh render; fails with RenderFailed."""
        from twisted.internet.defer import Deferred, succeed

        html = self.cached(content_hash)
        if html is not None:
            return succeed(html)
        waiting = self._waiting.get(content_hash)
        mine: Deferred[bytes] = Deferred()
        if waiting is not None:
            waiting.append(mine)
            return mine
        self._waiting[content_hash] = [mine]

        def done(result: Any) -> None:
            self._rendered()
            if isinstance(result, bytes):
                self._keep(content_hash, result)
            for waiter in self._waiting.pop(content_hash):
                waiter.callback(result) if isinstance(result, bytes) else waiter.errback(result)

        self._rendering += 1
        self._cancel_idle_stop()
        self._run_in_thread(self._render, content, self._timeout, self._memory).addBoth(done)
        return mine

    def _rendered(self) -> None:
        self._rendering -= 1
        if self._rendering == 0 and self._clock is not None and self.workers is not None:
            self._idle_call = self._clock.callLater(self._idle_stop, self._stop_idle)

    def _cancel_idle_stop(self) -> None:
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        self._idle_call = None

    def _stop_idle(self) -> None:
        from twisted.logger import Logger  # the child never gets here: it stays without Twisted

        log = Logger(namespace="tmpnb.share.render")
        self._idle_call = None

        def stopped(count: int) -> None:
            if count:
                log.info("stopped {count} render process(es) after {idle:.0f}s without a render",
                         count=count, idle=self._idle_stop)

        d = self._run_in_thread(self.workers.stop_idle)
        d.addCallback(stopped)
        d.addErrback(lambda reason: log.failure("could not stop the render processes", reason))

    def stop(self) -> None:
        """No more idle stops; the children stopped now (blocks for the kills)."""
        self._cancel_idle_stop()
        if self.workers is not None:
            self.workers.stop()

    def _keep(self, content_hash: str, html: bytes) -> None:
        if len(html) > self._cache_bytes:
            return
        self._cache[content_hash] = html
        self._cached_size += len(html)
        while self._cached_size > self._cache_bytes:
            _, dropped = self._cache.popitem(last=False)
            self._cached_size -= len(dropped)

    def forget(self, content_hash: str) -> None:
        """A taken-down share's HTML must not be served from memory either."""
        html = self._cache.pop(content_hash, None)
        if html is not None:
            self._cached_size -= len(html)


if __name__ == "__main__":
    # jsonschema (through nbformat) imports rfc3987_syntax when it is installed, only to check
    # "iri" string formats, which nbformat never asks for; it builds a lark grammar on import.
    # Without it (measured on a busy machine) importing nbconvert takes 3.1 s instead of 10.6 s
    # and 56 MiB instead of 74, and the HTML is the same. Only this child process goes without.
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    if sys.argv[1:] == ["--serve"]:
        serve(sys.stdin.buffer, sys.stdout.buffer)
    else:  # by hand: python render.py < notebook.ipynb > notebook.html
        sys.stdout.buffer.write(to_html(sys.stdin.buffer.read()))
