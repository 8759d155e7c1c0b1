"""Share and remix: a temporary notebook gets a permanent link anyone can read and remix.

- snapshot.py: a notebook's bytes → what is stored (validated, untrusted), or refused
- contents.py: reading and writing notebooks in a visitor's server (contents API, unix socket)
- store.py:    the store, SQLite or PostgreSQL behind one interface
- render.py:   HTML with nbconvert in a limited child process, cached
- service.py:  Sharing, what the web asks for
- web.py:      the resources (/api/share, /share/…, /remix/…)
`make_sharing` wires them for `twistd tmpnb` (tmpnb/tap.py).
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from tmpnb.config import ContainerSpec

log = Logger(namespace="tmpnb.share")


def make_sharing(reactor: Any, pool: Any, spec: ContainerSpec, store_where: str, settings: Any,
                 records: Any = ()) -> Any:
    """A Sharing over `pool`'s servers, its store opened now (a bad store stops the start)."""
    from twisted.internet.threads import deferToThreadPool
    from twisted.python.threadpool import ThreadPool

    from tmpnb.readiness import unix_http_client
    from tmpnb.share.render import Renderer
    from tmpnb.share.service import Sharing
    from tmpnb.share.store import open_store
    from tmpnb.sockets import socket_path

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

    renderer = Renderer(in_render_thread)
    # The render process imports nbconvert now rather than when the first reader waits for it.
    reactor.callWhenRunning(
        lambda: in_render_thread(renderer.workers.warm).addErrback(
            lambda reason: log.warn("could not start the render process: {reason}", reason=reason.getErrorMessage())))
    reactor.addSystemEventTrigger("after", "shutdown", renderer.workers.stop)
    return Sharing(
        reactor, store, in_store_thread, pool,
        lambda container_id: unix_http_client(reactor, socket_path(spec, container_id)),
        renderer, settings, records=records,
    )
