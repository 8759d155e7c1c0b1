"""Share quotas are atomic and global as well as per server; expired shares are purged.

The store's side runs against SQLite and a real PostgreSQL server (two connections standing
for two nodes); the service's side with the store calls held and let through one at a time,
the way a thread pool interleaves parallel shares.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock

from postgres_server import binaries, postgres_server
from sharefakes import NotebookServers, SharePool
from test_share_web import notebook
from tests.results import succeeded
from tmpnb.share.purge import share_purge
from tmpnb.share.render import Renderer
from tmpnb.share.service import DAY, Sharing, ShareSettings, TooMany
from tmpnb.share.store import Share, open_store


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    pytest.importorskip("psycopg", reason="the PostgreSQL store needs its extra: pip install 'tmpnb[postgresql]'")
    if binaries() is None:
        pytest.skip("PostgreSQL not installed (tools/setup --test installs it)")
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest) -> Iterator[str]:
    """Where a store lives; each test starts from empty tables."""
    if request.param == "sqlite":
        yield os.path.join(tempfile.mkdtemp(prefix="tnbq"), "shares.sqlite3")
        return
    url = request.getfixturevalue("postgres_url")
    store = open_store(url)
    with store._cursor() as cur:
        cur.execute("TRUNCATE shares, notebooks, share_attempts")
    store.close()
    yield url


def test_reserve_counts_per_server_and_in_all_within_the_hour(where):
    store = open_store(where)
    try:
        assert [store.reserve(f"a{i}", "alice", 100.0 + i, 2, 3) for i in range(3)] == [None, None, "server"]
        assert store.reserve("b0", "bob", 103.0, 2, 3) is None
        assert store.reserve("c0", "carol", 104.0, 2, 3) == "total"  # 3 in the hour, from all servers
        assert store.reserve("a9", "alice", 100.0 + 3600.5, 2, 3) is None  # alice's first two are an hour old
    finally:
        store.close()


@pytest.mark.parametrize("stores", [1, 2], ids=["one-node", "two-nodes"])
def test_parallel_reservations_over_the_quota_exactly_the_quota_pass(where, stores):
    """32 threads at once (on PostgreSQL over two connections, as two nodes): 5 per server,
    8 in all, whatever the interleaving."""
    opened = [open_store(where) for _ in range(stores)]
    results: list[Any] = []
    start = threading.Barrier(32)

    def attempt(i: int) -> None:
        start.wait()
        results.append((i % 2, opened[i % stores].reserve(f"t{i}", "alice" if i % 2 else "bob", 50.0, 5, 8)))

    try:
        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        for store in opened:
            store.close()
    passed = [server for server, over in results if over is None]
    assert len(results) == 32 and len(passed) == 8
    assert passed.count(0) <= 5 and passed.count(1) <= 5


def a_share(share_id: str, content: bytes, expires: float) -> tuple[Share, bytes]:
    return Share(share_id, hashlib.sha256(content).hexdigest(), "kh", "alice", "x.ipynb", 10.0, expires,
                 size=len(content)), content


def test_purge_removes_expired_shares_and_content_nothing_live_needs(where):
    store = open_store(where)
    try:
        for share, content in (a_share("old", b"A", 100.0), a_share("twin", b"A", 500.0),
                               a_share("alone", b"B", 100.0), a_share("new", b"C", 900.0)):
            store.add(share, content)
        store.reserve("r1", "alice", 10.0, 5, 5)
        store.reserve("r2", "alice", 3000.0, 5, 5)
        dropped = store.purge(200.0)
        assert dropped == [hashlib.sha256(b"B").hexdigest()]  # A is still needed by "twin"
        assert store.get("old") is None and store.get("alone") is None
        assert store.get("twin") is not None and store.content(hashlib.sha256(b"A").hexdigest()) == b"A"
        assert store.purge(600.0) == [hashlib.sha256(b"A").hexdigest()]
        assert store.get("new") is not None
        # The attempt an hour old is gone; the recent one still counts.
        assert store.reserve("r3", "alice", 3001.0, 2, 5) == "server"
        store.purge(3000.0 + 3600.0)
        assert store.reserve("r4", "alice", 3000.0 + 3601.0, 1, 5) is None
    finally:
        store.close()


# -- the service: parallel shares of one server, the store calls interleaved


class HeldRunner:
    """run_in_thread whose calls wait until the test lets them through, oldest first."""

    def __init__(self) -> None:
        self.held: list[tuple[Any, tuple, Deferred]] = []

    def __call__(self, f: Any, *args: Any) -> Deferred:
        d: Deferred = Deferred()
        self.held.append((f, args, d))
        return d

    def run_all(self) -> None:
        while self.held:
            f, args, d = self.held.pop(0)
            maybeDeferred(f, *args).chainDeferred(d)


def service(tmp_path: Any, settings: ShareSettings) -> tuple[Sharing, HeldRunner, SharePool, NotebookServers, Clock]:
    clock = Clock()
    clock.advance(1_800_000_000)
    servers = NotebookServers()
    pool = SharePool(servers)
    store = open_store(str(tmp_path / "shares.sqlite3"))
    runner = HeldRunner()
    sharing = Sharing(clock, store, runner, pool, lambda container_id: StubTreq(servers),
                      Renderer(maybeDeferred, render=lambda *a: b""), settings)
    return sharing, runner, pool, servers, clock


def test_parallel_shares_of_one_server_over_its_quota_exactly_the_quota_pass(tmp_path):
    sharing, runner, pool, servers, _ = service(tmp_path, ShareSettings(shares_per_hour=3))
    token = pool.add("alice", "assigned")
    servers.files[("alice", "work.ipynb")] = notebook()
    outcomes = [Deferred.fromCoroutine(sharing.share("/user/alice/notebooks/work.ipynb", token)) for _ in range(10)]
    runner.run_all()  # every share's first store call is in before any finishes
    results = [succeeded_or_failure(o) for o in outcomes]
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(results) - len(refused) == 3 and len(refused) == 7
    assert all(isinstance(e, TooMany) for e in refused)


def test_the_global_quota_holds_across_servers(tmp_path):
    sharing, runner, pool, servers, _ = service(tmp_path, ShareSettings(shares_per_hour=3, shares_per_hour_total=4))
    tokens = {}
    for name in ("alice", "bob", "carol"):
        tokens[name] = pool.add(name, "assigned")
        servers.files[(name, "work.ipynb")] = notebook()
    outcomes = [Deferred.fromCoroutine(sharing.share(f"/user/{name}/notebooks/work.ipynb", tokens[name]))
                for name in ("alice", "bob", "carol") for _ in range(3)]
    runner.run_all()
    results = [succeeded_or_failure(o) for o in outcomes]
    assert sum(not isinstance(r, Exception) for r in results) == 4
    assert any("from all servers" in str(r) for r in results if isinstance(r, TooMany))


def succeeded_or_failure(d: Deferred) -> Any:
    box: list[Any] = []
    d.addCallbacks(box.append, lambda f: box.append(f.value))
    assert box, "still waiting"
    return box[0]


def test_the_purge_service_runs_on_the_clock_and_forgets_rendered_html(tmp_path):
    sharing, runner, pool, servers, clock = service(tmp_path, ShareSettings())
    token = pool.add("alice", "assigned")
    servers.files[("alice", "work.ipynb")] = notebook()
    d = Deferred.fromCoroutine(sharing.share("/user/alice/notebooks/work.ipynb", token, expires_days=1))
    runner.run_all()
    created = succeeded(d)
    sharing.renderer._keep(created.share.content_hash, b"<p>cached</p>")
    purge = share_purge(clock, sharing, 3600.0)
    purge.startService()
    runner.run_all()  # the first purge at start: nothing expired yet
    assert sharing._store.get(created.share.id) is not None
    clock.advance(DAY + 3600.0)
    runner.run_all()
    assert sharing._store.get(created.share.id) is None
    assert created.share.content_hash not in sharing.renderer._cache
    purge.stopService()
