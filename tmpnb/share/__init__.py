"""Share and remix: a temporary notebook gets a permanent link anyone can read and remix.

- snapshot.py: a notebook's bytes → what is stored (validated, untrusted), or refused
- contents.py: reading and writing notebooks in a visitor's server (contents API, unix socket)
- store.py:    the store, SQLite or PostgreSQL behind one interface
- render.py:   HTML with nbconvert in a limited child process (started by the first render,
               stopped after a quiet minute), cached
- service.py:  Sharing, what the web asks for
- web.py:      the resources (/api/share, /share/…, /remix/…)
`make_sharing` wires them for `twistd tmpnb` (tmpnb/tap.py). Nothing heavy is imported here:
nbformat waits for the first share (snapshot.py), nbconvert lives in the render child only.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from tmpnb.config import ContainerSpec
from tmpnb.readiness import unix_http_client
from tmpnb.share.render import DEFAULT_IDLE_STOP, Renderer
from tmpnb.share.service import Sharing
from tmpnb.share.store import open_store
from tmpnb.sockets import socket_path


def make_sharing(reactor: Any, pool: Any, spec: ContainerSpec, store_where: str, settings: Any,
                 records: Any = (), render_idle_stop: float = DEFAULT_IDLE_STOP) -> Any:
    """A Sharing over `pool`'s servers, its store opened now (a bad store stops the start).

    The render process starts with the first uncached render and stops after
    `render_idle_stop` seconds without one.
    """
    store = open_store(store_where)
    # Database calls and renders each get threads of their own: a slow render must not hold
    # up a share or a page that only reads the store.
    store_threads = ThreadPool(1, 2, "share-store")
    render_threads = ThreadPool(1, 2, "share-render")
    for threads in (store_threads, render_threads):
        reactor.callWhenRunning(threads.start)
        reactor.addSystemEventTrigger("after", "shutdown", threads.stop)
    reactor.addSystemEventTrigger("after", "shutdown", store.close)

    def in_store_thread(f: Any, *args: Any) -> Any:
        return deferToThreadPool(reactor, store_threads, f, *args)

    def in_render_thread(f: Any, *args: Any) -> Any:
        return deferToThreadPool(reactor, render_threads, f, *args)

    # No render process until someone reads a share: it costs ≈74 MiB idle, and most nodes
    # go hours without a render. Its first reader waits for nbconvert's import (1.5–10 s).
    renderer = Renderer(in_render_thread, clock=reactor, idle_stop=render_idle_stop)
    reactor.addSystemEventTrigger("after", "shutdown", renderer.stop)
    return Sharing(
        reactor, store, in_store_thread, pool,
        lambda container_id: unix_http_client(reactor, socket_path(spec, container_id)),
        renderer, settings, records=records,
    )
