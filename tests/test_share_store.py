"""The share store's contract, run against SQLite and a real PostgreSQL server alike."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace

import pytest

from postgres_server import binaries, postgres_server
from tmpnb.share.store import (
    Share,
    ShareStore,
    SQLiteStore,
    StoreDriverMissing,
    check_driver,
    open_store,
)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    pytest.importorskip("psycopg", reason="the PostgreSQL store needs its extra: pip install 'tmpnb[postgresql]'")
    if binaries() is None:
        pytest.skip("PostgreSQL not installed (tools/setup --test installs it)")
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> Iterator[ShareStore]:
    if request.param == "sqlite":
        directory = tempfile.mkdtemp(prefix="tnbsq")
        opened = open_store(os.path.join(directory, "shares.sqlite3"))
        assert isinstance(opened, SQLiteStore)
    else:
        url = request.getfixturevalue("postgres_url")
        opened = open_store(url)
        # Each test starts from empty tables on the module's one server.
        with opened._cursor() as cur:
            cur.execute("TRUNCATE shares, notebooks")
    yield opened
    opened.close()


def a_share(share_id: str, content: bytes, container: str = "abc", created: float = 100.0,
            expires: float | None = 1000.0) -> tuple[Share, bytes]:
    digest = hashlib.sha256(content).hexdigest()
    return Share(share_id, digest, "keyhash-" + share_id, container, "x.ipynb", created, expires,
                 size=len(content)), content


def test_a_share_reads_back_with_its_content(store):
    share, content = a_share("s1", b'{"cells": []}')
    store.add(share, content)
    assert store.get("s1") == share
    assert store.content(share.content_hash) == content
    assert store.get("nope") is None
    assert store.content("0" * 64) is None


def test_equal_notebooks_are_two_shares_stored_once_and_deleting_one_keeps_the_other(store):
    first, content = a_share("s1", b"same bytes")
    second, _ = a_share("s2", b"same bytes")
    store.add(first, content)
    store.add(second, content)
    assert store.delete("s1", when=200.0)
    assert store.get("s1").deleted == 200.0
    assert not store.get("s1").live(201.0)
    assert store.get("s2").live(201.0)
    assert store.content(second.content_hash) == content


def test_deleting_the_last_share_drops_the_content_and_twice_is_false(store):
    share, content = a_share("s1", b"only once")
    store.add(share, content)
    assert store.delete("s1", when=200.0)
    assert store.content(share.content_hash) is None
    assert not store.delete("s1", when=300.0)
    assert store.get("s1").deleted == 200.0
    assert not store.delete("never", when=300.0)


def test_shares_from_a_container_are_the_live_ones_newest_first(store):
    for number, (created, expires) in enumerate([(100.0, 1000.0), (200.0, 1000.0), (300.0, 400.0)]):
        share, content = a_share(f"s{number}", b"n%d" % number, created=created, expires=expires)
        store.add(share, content)
    store.add(*a_share("other", b"o", container="xyz"))
    store.add(*a_share("forever", b"f", created=50.0, expires=None))
    store.delete("s0", when=500.0)
    assert [s.id for s in store.from_container("abc", now=500.0)] == ["s1", "forever"]


def test_counting_shares_since_includes_deleted_ones(store):
    store.add(*a_share("s1", b"1", created=100.0))
    store.add(*a_share("s2", b"2", created=200.0))
    store.delete("s2", when=250.0)
    assert store.count_since("abc", 150.0) == 1
    assert store.count_since("abc", 0.0) == 2
    assert store.count_since("xyz", 0.0) == 0


def test_a_reopened_store_keeps_its_shares():
    directory = tempfile.mkdtemp(prefix="tnbsq")
    path = os.path.join(directory, "deeper", "shares.sqlite3")
    first = open_store(path)
    first.add(*a_share("s1", b"kept"))
    first.close()
    again = open_store(path)
    assert again.get("s1").name == "x.ipynb"
    again.close()


def test_a_share_keeps_the_flavor_it_was_made_in_and_an_unknown_one_is_none(store):
    share, content = a_share("s1", b"course")
    store.add(replace(share, flavor="beta"), content)
    store.add(*a_share("s2", b"old", created=50.0))
    assert store.get("s1").flavor == "beta"
    assert store.get("s2").flavor is None
    assert [s.flavor for s in store.from_container("abc", now=150.0)] == ["beta", None]


# What a tmpnb before flavors made: the shares table without its flavor column.
OLD_SHARES_TABLE = (
    "CREATE TABLE shares (id TEXT PRIMARY KEY, content_hash TEXT NOT NULL,"
    " delete_key_hash TEXT NOT NULL, container TEXT NOT NULL, name TEXT NOT NULL,"
    " created DOUBLE PRECISION NOT NULL, expires DOUBLE PRECISION, deleted DOUBLE PRECISION,"
    " size INTEGER NOT NULL)"
)
OLD_ROW = ("old1", "h" * 64, "keyhash-old1", "abc", "old.ipynb", 100.0, 1000.0, None, 3)


def old_sqlite_database() -> str:
    path = os.path.join(tempfile.mkdtemp(prefix="tnbsq"), "shares.sqlite3")
    connection = sqlite3.connect(path)
    connection.execute(OLD_SHARES_TABLE)
    connection.execute("CREATE TABLE notebooks (hash TEXT PRIMARY KEY, content BLOB NOT NULL)")
    connection.execute("INSERT INTO shares VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", OLD_ROW)
    connection.execute("INSERT INTO notebooks VALUES (?, ?)", ("h" * 64, b"old"))
    connection.commit()
    connection.close()
    return path


def old_postgres_database(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as connection:
        connection.execute("DROP TABLE IF EXISTS shares, notebooks")
        connection.execute(OLD_SHARES_TABLE)
        connection.execute("CREATE TABLE notebooks (hash TEXT PRIMARY KEY, content BYTEA NOT NULL)")
        connection.execute("INSERT INTO shares VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)", OLD_ROW)
        connection.execute("INSERT INTO notebooks VALUES (%s, %s)", ("h" * 64, b"old"))
    return url


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_an_old_database_gains_the_flavor_column_at_start_and_keeps_its_shares(request, kind):
    if kind == "sqlite":
        where = old_sqlite_database()
    else:
        where = old_postgres_database(request.getfixturevalue("postgres_url"))
    for round in range(2):  # and starting again on the upgraded database changes nothing
        store = open_store(where)
        try:
            old = store.get("old1")
            assert old == Share(*OLD_ROW) and old.flavor is None
            assert store.content("h" * 64) == b"old"
            share, content = a_share(f"new{round}", b"new")
            store.add(replace(share, flavor="beta"), content)
            assert store.get(f"new{round}").flavor == "beta"
        finally:
            store.close()


# -- without the driver -------------------------------------------------------------------


@pytest.fixture
def no_psycopg(monkeypatch: pytest.MonkeyPatch) -> None:
    """psycopg is not installed (None in sys.modules: importing it fails, and finding it
    answers None)."""
    monkeypatch.setitem(sys.modules, "psycopg", None)


@pytest.mark.parametrize("where", ["postgresql://tmpnb@db/shares", "postgres://db/shares", "dbname=shares"])
def test_without_psycopg_a_postgresql_store_says_which_extra_to_install(no_psycopg: None, where: str) -> None:
    for attempt in (lambda: check_driver(where), lambda: open_store(where)):
        with pytest.raises(StoreDriverMissing) as raised:
            attempt()
        message = str(raised.value)
        assert "\n" not in message
        assert "pip install 'tmpnb[postgresql]'" in message


def test_without_psycopg_a_sqlite_store_needs_nothing(no_psycopg: None, tmp_path) -> None:
    where = str(tmp_path / "shares.sqlite3")
    check_driver(where)
    open_store(where).close()
