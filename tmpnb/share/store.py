"""Where shares live: one interface, SQLite (embedded default) and PostgreSQL (many nodes).

Every method blocks: the service calls them through `Shares` (tmpnb/share/service.py),
which runs them in a thread pool, never on the reactor. A notebook's bytes are stored once
per content hash; each share is a row of its own with a random id, so two shares of equal
notebooks are two shares, and deleting one leaves the other (and the bytes it needs).
"""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import threading
from dataclasses import dataclass
from typing import Any, Protocol

HOUR = 3600.0  # the quotas' window

DEFAULT_SQLITE_PATH = "/var/lib/tmpnb/shares.sqlite3"


@dataclass(frozen=True)
class Share:
    id: str
    content_hash: str
    delete_key_hash: str  # sha256 of the delete key: a leaked database deletes nothing
    container: str  # the tmpnb id of the server it was shared from
    name: str  # the notebook's file name, for downloads and remixes
    created: float
    expires: float | None
    deleted: float | None = None
    size: int = 0
    flavor: str | None = None  # the flavor of the server it was shared from; None: shared before flavors

    def live(self, now: float) -> bool:
        return self.deleted is None and (self.expires is None or now < self.expires)


class ShareStore(Protocol):
    def add(self, share: Share, content: bytes) -> None:
        """Store a new share and, unless a share already holds the same bytes, its content."""

    def get(self, share_id: str) -> Share | None:
        """The share (live, expired or deleted), or None if there never was one."""

    def content(self, content_hash: str) -> bytes | None: ...

    def delete(self, share_id: str, when: float) -> bool:
        """Mark it deleted and drop content no live share needs; False if already gone."""

    def from_container(self, container: str, now: float) -> list[Share]:
        """The live shares made from one server, newest first."""

    def count_since(self, container: str, since: float) -> int:
        """How many shares a server made since `since` (deleted ones count too)."""

    def reserve(self, attempt: str, container: str, now: float, per_server: int, total: int) -> str | None:
        """Record a share attempt of `container` unless the last hour already holds `per_server`
        of its attempts or `total` of all; checked and recorded in one transaction that no
        other reserve (another thread, another node on PostgreSQL) interleaves with. None if
        recorded, else which limit was reached ("server" or "total")."""

    def purge(self, now: float) -> list[str]:
        """Remove the shares expired by `now`, the content no remaining live share needs, and
        quota records older than an hour; the content hashes removed."""

    def close(self) -> None: ...


_COLUMNS = "id, content_hash, delete_key_hash, container, name, created, expires, deleted, size, flavor"


def _share(row: Any) -> Share:
    return Share(*row)


class _SQLStore:
    """What SQLite and PostgreSQL share: the schema and the queries, in standard SQL.

    Subclasses give `_param` (the driver's placeholder), `_blob` and `_cursor()`, a context
    manager yielding a cursor inside one transaction.
    """

    _param = "?"
    _blob = "BLOB"

    def _schema(self) -> list[str]:
        return [
            f"CREATE TABLE IF NOT EXISTS notebooks (hash TEXT PRIMARY KEY, content {self._blob} NOT NULL)",
            "CREATE TABLE IF NOT EXISTS shares (id TEXT PRIMARY KEY, content_hash TEXT NOT NULL,"
            " delete_key_hash TEXT NOT NULL, container TEXT NOT NULL, name TEXT NOT NULL,"
            " created DOUBLE PRECISION NOT NULL, expires DOUBLE PRECISION, deleted DOUBLE PRECISION,"
            " size INTEGER NOT NULL, flavor TEXT)",
            "CREATE INDEX IF NOT EXISTS shares_by_container ON shares (container, created)",
            "CREATE INDEX IF NOT EXISTS shares_by_hash ON shares (content_hash)",
            # One row per share attempt in the last hour: the quotas count these.
            "CREATE TABLE IF NOT EXISTS share_attempts (id TEXT PRIMARY KEY, container TEXT NOT NULL,"
            " at DOUBLE PRECISION NOT NULL)",
            "CREATE INDEX IF NOT EXISTS share_attempts_by_container ON share_attempts (container, at)",
            "CREATE INDEX IF NOT EXISTS share_attempts_by_time ON share_attempts (at)",
        ]

    def _add_missing_columns(self, cur: Any) -> None:
        """Bring a database made by an older tmpnb up to this schema (its rows kept)."""

    def _create(self, cur: Any) -> None:
        for statement in self._schema():
            cur.execute(statement)
        self._add_missing_columns(cur)

    def _q(self, sql: str) -> str:
        return sql.replace("?", self._param)

    def add(self, share: Share, content: bytes) -> None:
        with self._cursor() as cur:
            cur.execute(self._q("INSERT INTO notebooks (hash, content) VALUES (?, ?) ON CONFLICT (hash) DO NOTHING"),
                        (share.content_hash, content))
            cur.execute(self._q(f"INSERT INTO shares ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                        (share.id, share.content_hash, share.delete_key_hash, share.container, share.name,
                         share.created, share.expires, share.deleted, share.size, share.flavor))

    def get(self, share_id: str) -> Share | None:
        with self._cursor() as cur:
            cur.execute(self._q(f"SELECT {_COLUMNS} FROM shares WHERE id = ?"), (share_id,))
            row = cur.fetchone()
        return _share(row) if row else None

    def content(self, content_hash: str) -> bytes | None:
        with self._cursor() as cur:
            cur.execute(self._q("SELECT content FROM notebooks WHERE hash = ?"), (content_hash,))
            row = cur.fetchone()
        return bytes(row[0]) if row else None

    def delete(self, share_id: str, when: float) -> bool:
        with self._cursor() as cur:
            cur.execute(self._q("UPDATE shares SET deleted = ? WHERE id = ? AND deleted IS NULL RETURNING content_hash"),
                        (when, share_id))
            row = cur.fetchone()
            if row is None:
                return False
            # A taken-down notebook must not linger: drop its bytes unless another share lives on them.
            cur.execute(self._q("DELETE FROM notebooks WHERE hash = ? AND NOT EXISTS"
                                " (SELECT 1 FROM shares WHERE content_hash = ? AND deleted IS NULL)"),
                        (row[0], row[0]))
        return True

    def from_container(self, container: str, now: float) -> list[Share]:
        with self._cursor() as cur:
            cur.execute(self._q(f"SELECT {_COLUMNS} FROM shares WHERE container = ? AND deleted IS NULL"
                                " AND (expires IS NULL OR expires > ?) ORDER BY created DESC"),
                        (container, now))
            return [_share(row) for row in cur.fetchall()]

    def count_since(self, container: str, since: float) -> int:
        with self._cursor() as cur:
            cur.execute(self._q("SELECT COUNT(*) FROM shares WHERE container = ? AND created >= ?"),
                        (container, since))
            return int(cur.fetchone()[0])

    def _serialize_quota(self, cur: Any) -> None:
        """Make this transaction the only one reserving until it ends."""

    def reserve(self, attempt: str, container: str, now: float, per_server: int, total: int) -> str | None:
        since = now - HOUR
        with self._cursor() as cur:
            self._serialize_quota(cur)
            cur.execute(self._q("SELECT COUNT(*), COALESCE(SUM(CASE WHEN container = ? THEN 1 ELSE 0 END), 0)"
                                " FROM share_attempts WHERE at > ?"), (container, since))
            everyone, this_server = (int(n) for n in cur.fetchone())
            if this_server >= per_server:
                return "server"
            if everyone >= total:
                return "total"
            cur.execute(self._q("INSERT INTO share_attempts (id, container, at) VALUES (?, ?, ?)"),
                        (attempt, container, now))
        return None

    def purge(self, now: float) -> list[str]:
        with self._cursor() as cur:
            cur.execute(self._q("DELETE FROM share_attempts WHERE at <= ?"), (now - HOUR,))
            cur.execute(self._q("DELETE FROM shares WHERE expires IS NOT NULL AND expires <= ? RETURNING content_hash"),
                        (now,))
            hashes = sorted({row[0] for row in cur.fetchall()})
            dropped = []
            for content_hash in hashes:
                # Bytes another live share still points at stay.
                cur.execute(self._q("DELETE FROM notebooks WHERE hash = ? AND NOT EXISTS"
                                    " (SELECT 1 FROM shares WHERE content_hash = ? AND deleted IS NULL)"
                                    " RETURNING hash"), (content_hash, content_hash))
                dropped.extend(row[0] for row in cur.fetchall())
        return dropped


class _Transaction:
    def __init__(self, lock: threading.Lock, connection: Any) -> None:
        self._lock = lock
        self._connection = connection

    def __enter__(self) -> Any:
        self._lock.acquire()
        self._cursor = self._connection.cursor()
        return self._cursor

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        try:
            if kind is None:
                self._connection.commit()
            else:
                self._connection.rollback()
        finally:
            self._cursor.close()
            self._lock.release()


class SQLiteStore(_SQLStore):
    """One file; one connection used by one thread at a time (the lock)."""

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._connection = sqlite3.connect(path, check_same_thread=False, timeout=30)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._lock = threading.Lock()
        with self._cursor() as cur:
            self._create(cur)

    def _cursor(self) -> _Transaction:
        return _Transaction(self._lock, self._connection)

    def _add_missing_columns(self, cur: Any) -> None:
        # SQLite has no ADD COLUMN IF NOT EXISTS: look first.
        cur.execute("PRAGMA table_info(shares)")
        if "flavor" not in {row[1] for row in cur.fetchall()}:
            cur.execute("ALTER TABLE shares ADD COLUMN flavor TEXT")

    def _serialize_quota(self, cur: Any) -> None:
        # The write lock now, not at the INSERT: another process on the same file waits here.
        cur.execute("BEGIN IMMEDIATE")

    def close(self) -> None:
        with self._lock:
            self._connection.close()


class PostgresStore(_SQLStore):
    """A PostgreSQL database (a libpq URL) that every node behind a redirector shares."""

    _param = "%s"
    _blob = "BYTEA"

    def __init__(self, url: str) -> None:
        try:
            import psycopg  # only when configured: the embedded default needs no driver
        except ImportError:
            raise StoreDriverMissing(missing_driver_message()) from None

        self._psycopg = psycopg
        self._url = url
        self._lock = threading.Lock()
        self._connection = psycopg.connect(url)
        with self._cursor() as cur:
            # Two nodes starting at once must not race on CREATE TABLE.
            cur.execute("SELECT pg_advisory_xact_lock(7281)")
            self._create(cur)

    def _cursor(self) -> _Transaction:
        if self._connection.closed or self._connection.broken:
            # The server restarted, or a network blip: the next call gets a fresh connection.
            self._connection = self._psycopg.connect(self._url)
        return _Transaction(self._lock, self._connection)

    def _add_missing_columns(self, cur: Any) -> None:
        cur.execute("ALTER TABLE shares ADD COLUMN IF NOT EXISTS flavor TEXT")

    def _serialize_quota(self, cur: Any) -> None:
        # Every node's reservations, one at a time (READ COMMITTED alone lets two counts pass).
        cur.execute("SELECT pg_advisory_xact_lock(7282)")

    def close(self) -> None:
        with self._lock:
            self._connection.close()


class StoreDriverMissing(Exception):
    """The store asked for needs a database driver that is not installed."""


POSTGRESQL_EXTRA = "pip install 'tmpnb[postgresql]'"


def missing_driver_message() -> str:
    return f"--share-store on PostgreSQL needs the psycopg driver: {POSTGRESQL_EXTRA}"


def is_postgresql(where: str) -> bool:
    """`--share-store` names a PostgreSQL database (a URL or a libpq connection string)."""
    return where.startswith(("postgresql://", "postgres://", "dbname="))


def check_driver(where: str) -> None:
    """At option time: fail with StoreDriverMissing, one line naming the extra to install,
    if `where` needs a driver that is not installed (found without importing it)."""
    if is_postgresql(where) and importlib.util.find_spec("psycopg") is None:
        raise StoreDriverMissing(missing_driver_message())


def open_store(where: str) -> ShareStore:
    """`--share-store`: a postgresql:// URL, or a SQLite file path. Without the driver a
    PostgreSQL store fails with StoreDriverMissing (see check_driver)."""
    if is_postgresql(where):
        return PostgresStore(where)
    return SQLiteStore(where)
