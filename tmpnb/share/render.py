"""A shared notebook as HTML: nbconvert's lab template, in a child process with limits.

nbconvert runs Jinja, pygments, mistune and every output's converter over untrusted input:
its cost has to be bounded. Each render is a child process (`python render.py` reading the
notebook on stdin, writing the HTML to stdout) with an address-space limit and a timeout,
started from a thread; `Renderer` keeps the results in a small cache by content hash.

This file runs as a script in the child, so it imports nothing from tmpnb at module level.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
TEMPLATE = "tmpnb_share"
DEFAULT_TIMEOUT = 30.0
DEFAULT_MEMORY = 1536 * 1024 * 1024  # address space of the child, bytes
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024


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


def _limit_memory(limit: int) -> Callable[[], None]:
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return preexec


def render_in_child(content: bytes, timeout: float = DEFAULT_TIMEOUT, memory: int = DEFAULT_MEMORY) -> bytes:
    """to_html in a child process with `memory` bytes of address space and `timeout` seconds.

    Blocks: call it in a thread. Raises RenderFailed.
    """
    try:
        done = subprocess.run(
            [sys.executable, os.path.abspath(__file__)], input=content, capture_output=True,
            timeout=timeout, preexec_fn=_limit_memory(memory), env={**os.environ, "PYTHONHASHSEED": "0"},
        )
    except subprocess.TimeoutExpired:
        raise RenderFailed(f"render took longer than {timeout:g}s") from None
    if done.returncode != 0:
        last = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        raise RenderFailed(last[0][:300])
    return done.stdout


class Renderer:
    """Renders through `run_in_thread` and caches by content hash, up to `cache_bytes`.

    Several readers asking for the same uncached notebook share one render.
    """

    def __init__(self, run_in_thread: Callable[..., Any], timeout: float = DEFAULT_TIMEOUT,
                 memory: int = DEFAULT_MEMORY, cache_bytes: int = DEFAULT_CACHE_BYTES,
                 render: Callable[[bytes, float, int], bytes] = render_in_child) -> None:
        self._run_in_thread = run_in_thread
        self._timeout = timeout
        self._memory = memory
        self._cache_bytes = cache_bytes
        self._render = render
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cached_size = 0
        self._waiting: dict[str, list[Any]] = {}

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
            if isinstance(result, bytes):
                self._keep(content_hash, result)
            for waiter in self._waiting.pop(content_hash):
                waiter.callback(result) if isinstance(result, bytes) else waiter.errback(result)

        self._run_in_thread(self._render, content, self._timeout, self._memory).addBoth(done)
        return mine

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
    sys.stdout.buffer.write(to_html(sys.stdin.buffer.read()))
