"""The render process: started by the first render, stopped after a quiet while, started again.

The Renderer's timing is tested over a fake set of workers and a Clock; one test runs the real
child process (nbconvert) through it, and one checks that `twistd tmpnb`'s wiring starts none.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock

from results import failed, pending, succeeded
from tmpnb.config import ContainerSpec
from tmpnb.share import make_sharing
from tmpnb.share.render import DEFAULT_IDLE_STOP, RenderFailed, Renderer, RenderWorker, worker_environment
from tmpnb.share.service import ShareSettings


class FakeWorkers:
    """RenderWorkers' interface: `render` starts a 'child', `stop_idle` stops it unless busy."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.child = False
        self.busy = False

    def render(self, content: bytes, timeout: float, memory: int | None = None) -> bytes:
        if not self.child:
            self.events.append("start")
            self.child = True
        if content == b"bad":
            raise RenderFailed("nbconvert said no")
        return b"<html>" + content

    def running(self) -> int:
        return int(self.child)

    def stop_idle(self) -> int:
        if self.busy or not self.child:
            return 0
        self.events.append("stop")
        self.child = False
        return 1

    def stop(self) -> None:
        if self.child:
            self.events.append("stop")
        self.child = False


def in_thread_now(f: Any, *args: Any) -> Deferred[Any]:
    return maybeDeferred(f, *args)


class HeldThreads:
    """run_in_thread whose calls finish only when the test says so."""

    def __init__(self) -> None:
        self.calls: list[tuple[Deferred[Any], Any, tuple[Any, ...]]] = []

    def __call__(self, f: Any, *args: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.calls.append((d, f, args))
        return d

    def finish(self) -> None:
        d, f, args = self.calls.pop(0)
        maybeDeferred(f, *args).chainDeferred(d)


def renderer(clock: Clock, workers: FakeWorkers, run: Any = in_thread_now, idle: float = 60.0) -> Renderer:
    return Renderer(run, clock=clock, idle_stop=idle, workers=workers)


def test_no_child_until_the_first_render_and_none_again_after_a_quiet_while():
    clock, workers = Clock(), FakeWorkers()
    r = renderer(clock, workers)
    assert workers.events == [] and clock.getDelayedCalls() == []
    assert succeeded(r.render("h1", b"one")) == b"<html>one"
    assert workers.events == ["start"]
    clock.advance(59.9)
    assert workers.events == ["start"]
    clock.advance(0.1)
    assert workers.events == ["start", "stop"] and clock.getDelayedCalls() == []
    assert succeeded(r.render("h2", b"two")) == b"<html>two"
    assert workers.events == ["start", "stop", "start"]


def test_every_render_puts_the_stop_off_and_cached_answers_do_not_count():
    clock, workers = Clock(), FakeWorkers()
    r = renderer(clock, workers)
    succeeded(r.render("h1", b"one"))
    clock.advance(50)
    succeeded(r.render("h2", b"two"))  # a render: the quiet while starts again
    clock.advance(50)
    assert workers.events == ["start"]
    succeeded(r.render("h1", b"one"))  # from the cache: no render, the clock keeps running
    clock.advance(10)
    assert workers.events == ["start", "stop"]


def test_a_failed_render_counts_as_a_render():
    clock, workers = Clock(), FakeWorkers()
    r = renderer(clock, workers)
    failed(r.render("bad", b"bad"), RenderFailed)
    assert workers.events == ["start"]
    clock.advance(60)
    assert workers.events == ["start", "stop"]


def test_no_stop_is_scheduled_while_a_render_is_running():
    clock, workers, threads = Clock(), FakeWorkers(), HeldThreads()
    r = renderer(clock, workers, run=threads)
    first = r.render("h1", b"one")
    second = r.render("h2", b"two")
    threads.finish()
    succeeded(first)
    assert clock.getDelayedCalls() == []  # the second is still rendering
    clock.advance(600)
    pending(second)
    threads.finish()
    assert succeeded(second) == b"<html>two"
    clock.advance(60)
    assert len(threads.calls) == 1  # the stop goes to a render thread (kills block)
    threads.finish()
    assert workers.events == ["start", "stop"]


def test_a_render_that_has_the_child_when_the_stop_arrives_keeps_it():
    clock, workers = Clock(), FakeWorkers()
    r = renderer(clock, workers)
    succeeded(r.render("h1", b"one"))
    workers.busy = True  # a render thread holds the worker's lock
    clock.advance(60)
    assert workers.events == ["start"] and workers.child


def test_stop_cancels_the_pending_stop_and_ends_the_children():
    clock, workers = Clock(), FakeWorkers()
    r = renderer(clock, workers)
    succeeded(r.render("h1", b"one"))
    r.stop()
    assert workers.events == ["start", "stop"] and clock.getDelayedCalls() == []


def test_without_a_clock_the_children_live_until_stop():
    workers = FakeWorkers()
    r = Renderer(in_thread_now, workers=workers)
    succeeded(r.render("h1", b"one"))
    r.stop()
    assert workers.events == ["start", "stop"]


def test_the_real_child_starts_on_demand_stops_when_quiet_and_starts_again():
    from test_share_web import notebook

    clock = Clock()
    r = Renderer(in_thread_now, clock=clock, idle_stop=5.0)
    try:
        assert r.workers.running() == 0
        assert b"42" in succeeded(r.render("h1", notebook()))
        assert r.workers.running() == 1
        clock.advance(5.0)
        assert r.workers.running() == 0
        assert b"43" in succeeded(r.render("h2", notebook(output="43")))
        assert r.workers.running() == 1
    finally:
        r.stop()
    assert r.workers.running() == 0


def test_twistd_tmpnbs_sharing_starts_no_render_process(tmp_path):
    reactor = MemoryReactorClock()
    sharing = make_sharing(reactor, pool=None, spec=ContainerSpec(socket_root=str(tmp_path)),
                           store_where=str(tmp_path / "shares.sqlite3"), settings=ShareSettings())
    assert DEFAULT_IDLE_STOP == 60.0
    try:
        for hook, args, kwargs in reactor.whenRunningHooks:
            hook(*args, **kwargs)  # the thread pools start; nothing else may
        assert sharing.renderer.workers.running() == 0
        assert reactor.getDelayedCalls() == []
    finally:
        for f, args, kwargs in reactor.triggers.get("after", {}).get("shutdown", []):
            f(*args, **kwargs)


def test_the_render_child_knows_none_of_tmpnbs_secrets(monkeypatch):
    """It parses untrusted notebooks: its environment, read from the running child itself
    (/proc/<pid>/environ), holds no token of tmpnb's."""
    from test_share_web import notebook

    for name in ("ADMIN_AUTH_TOKEN", "CONFIGPROXY_AUTH_TOKEN", "API_AUTH_TOKEN", "SOME_OTHER_SECRET"):
        monkeypatch.setenv(name, "sekrit-" + name)
    worker = RenderWorker()
    try:
        assert b"42" in worker.render(notebook())
        with open(f"/proc/{worker._child.pid}/environ", "rb") as f:
            seen = dict(entry.split(b"=", 1) for entry in f.read().split(b"\0") if entry)
    finally:
        worker.stop()
    assert b"sekrit" not in b"".join(seen.values())
    assert set(seen) <= {b"PATH", b"LANG", b"LC_ALL", b"PYTHONPATH", b"VIRTUAL_ENV"}


def test_the_worker_environment_is_an_allow_list():
    env = worker_environment({"PYTHONPATH": "/src", "ADMIN_AUTH_TOKEN": "x", "HOME": "/root", "LD_PRELOAD": "/evil"})
    assert env == {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
                   "PYTHONPATH": "/src"}
