"""Share and remix: what the web resources ask for, over the store, the servers and the renderer.

Blocking work (the store's database calls, validating a notebook, rendering) runs through
`run_in_thread`; the rest is Deferreds on the reactor. Every share, deletion and remix is
a lifecycle event (tmpnb/lifecycle/ writes them to --lifecycle-log next to transitions).
"""

from __future__ import annotations

import hashlib
import hmac
import posixpath
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from tmpnb.share import contents
from tmpnb.share.render import Renderer
from tmpnb.share.snapshot import DEFAULT_MAX_BYTES, Rejected, for_remix, snapshot
from tmpnb.share.store import Share, ShareStore

log = Logger(namespace="tmpnb.share")

# States in which a server has a visitor who may share from it.
HANDED_OUT = ("assigned", "idle")
SHARE_ID_BYTES = 16  # 128 bits: ids can be neither guessed nor walked
DAY = 86400.0


class Forbidden(Exception):
    """The token is not that server's, or the server is not a visitor's."""


class TooMany(Exception):
    """A limit was reached; try later."""


@dataclass(frozen=True)
class ShareSettings:
    max_bytes: int = DEFAULT_MAX_BYTES
    expires_days: float = 30.0
    max_expires_days: float = 365.0
    shares_per_hour: int = 30  # per server
    shares_per_hour_total: int = 600  # all servers of the store together (every node on PostgreSQL)
    renders_per_minute: int = 30  # per client address; only renders the cache cannot answer
    read_timeout: float = 20.0  # seconds to read a notebook from (or write one to) a visitor's server


@dataclass(frozen=True)
class Created:
    share: Share
    delete_key: str


class Servers(Protocol):
    """The part of tmpnb.pool.Pool sharing uses."""

    def machine(self, container_id: str) -> Any: ...

    def token(self, container_id: str) -> str: ...

    def cull(self, container_id: str, reason: str) -> bool: ...


def new_share_id() -> str:
    return secrets.token_urlsafe(SHARE_ID_BYTES)


def is_share_id(text: str) -> bool:
    return len(text) == 22 and all(c.isascii() and (c.isalnum() or c in "-_") for c in text)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def iso(when: float | None) -> str | None:
    return None if when is None else datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="seconds")


def base_path(container_id: str) -> str:
    return f"/user/{container_id}/"


def share_url(share_id: str) -> str:
    return f"/share/{share_id}"


def delete_url(share_id: str, key: str) -> str:
    return f"/share/{share_id}/delete/{key}"


class Sharing:
    def __init__(
        self,
        clock: IReactorTime,
        store: ShareStore,
        run_in_thread: Callable[..., Deferred[Any]],
        servers: Servers,
        client_for: Callable[[str], HTTPClient],
        renderer: Renderer,
        settings: ShareSettings = ShareSettings(),
        new_id: Callable[[], str] = new_share_id,
        records: Sequence[Callable[[dict[str, Any]], None]] = (),
    ) -> None:
        self.clock = clock
        self.settings = settings
        self.renderer = renderer
        self._store = store
        self._run = run_in_thread
        self._servers = servers
        self._client_for = client_for
        self._new_id = new_id
        self._records = list(records)  # takers of every share event (the --lifecycle-log file)

    # -- sharing

    def _server(self, container_id: str) -> tuple[str | None, str | None]:
        """The token of a visitor's server (None: no visitor's server) and its flavor."""
        machine = self._servers.machine(container_id)
        if machine is None:
            return None, None
        described = machine.describe()
        if described["state"] not in HANDED_OUT:
            return None, None
        return self._servers.token(container_id) or None, described.get("flavor")

    def expiry(self, expires_days: Any) -> float:
        """Seconds from now until a share expires; Rejected for a nonsense request."""
        if expires_days is None:
            return self.settings.expires_days * DAY
        if isinstance(expires_days, bool) or not isinstance(expires_days, (int, float)):
            raise Rejected('"expires_days" must be a number')
        if not 0 < expires_days <= self.settings.max_expires_days:
            raise Rejected(f'"expires_days" must be more than 0 and at most {self.settings.max_expires_days:g}')
        return float(expires_days) * DAY

    async def share(self, url: Any, token: str, expires_days: Any = None, outputs: bool = True) -> Created:
        """Snapshot the notebook at `url` (a /user/<id>/notebooks/… path) for whoever holds `token`.

        Raises Rejected (4xx with its code), Forbidden, TooMany, contents.ServerRefused.
        """
        if not isinstance(url, str):
            raise Rejected('"url" must be a string')
        container_id, path = contents.parse_notebook_url(url)
        lifetime = self.expiry(expires_days)
        expected, flavor = self._server(container_id)
        if expected is None or not hmac.compare_digest(expected.encode(), token.encode()):
            raise Forbidden(container_id)
        now = self.clock.seconds()
        # Checked and recorded at once, before any await that lets a parallel share in; an
        # attempt counts whether or not it ends in a share (each one reads the server).
        over = await self._run(self._store.reserve, secrets.token_hex(12), container_id, now,
                               self.settings.shares_per_hour, self.settings.shares_per_hour_total)
        if over == "server":
            raise TooMany(f"{self.settings.shares_per_hour} shares from this server in the last hour")
        if over is not None:
            raise TooMany(f"{self.settings.shares_per_hour_total} shares in the last hour, from all servers")
        raw = await contents.read_file(self._client_for(container_id), base_path(container_id), expected, path,
                                       self.settings.max_bytes, self.clock, self.settings.read_timeout)
        snap = await self._run(snapshot, raw, self.settings.max_bytes, outputs)
        key = secrets.token_urlsafe(24)
        share = Share(self._new_id(), snap.content_hash, key_hash(key), container_id, posixpath.basename(path),
                      now, now + lifetime, size=len(snap.content), flavor=flavor)
        await self._run(self._store.add, share, snap.content)
        self._event("shared", share, bytes=share.size, outputs=outputs)
        return Created(share, key)

    # -- reading

    async def get(self, share_id: str) -> Share | None:
        """The share, live or not; None when the id is not one."""
        if not is_share_id(share_id):
            return None
        return await self._run(self._store.get, share_id)

    def live(self, share: Share | None) -> bool:
        return share is not None and share.live(self.clock.seconds())

    async def content(self, share: Share) -> bytes | None:
        return await self._run(self._store.content, share.content_hash)

    async def html(self, share: Share, content: bytes) -> bytes:
        return await self.renderer.render(share.content_hash, content)

    # -- deleting

    async def delete(self, share_id: str, key: str) -> bool:
        """Delete with the key the sharer got; False for a wrong key or a gone share."""
        share = await self.get(share_id)
        if share is None or not hmac.compare_digest(share.delete_key_hash, key_hash(key)):
            return False
        return await self._delete(share, "deleted")

    async def takedown(self, share_id: str) -> bool:
        """The admin's delete, no key needed."""
        share = await self.get(share_id)
        if share is None:
            return False
        return await self._delete(share, "taken down")

    async def _delete(self, share: Share, how: str) -> bool:
        deleted = await self._run(self._store.delete, share.id, self.clock.seconds())
        if deleted:
            self.renderer.forget(share.content_hash)
            self._event(how, share)
        return deleted

    async def purge(self) -> int:
        """Remove expired shares (and content nothing live needs) now; how many notebooks' bytes went."""
        dropped = await self._run(self._store.purge, self.clock.seconds())
        for content_hash in dropped:
            self.renderer.forget(content_hash)
        if dropped:
            log.info("purged the content of {count} expired shares", count=len(dropped))
        return len(dropped)

    def purge_now(self) -> Deferred[int]:
        """`purge` for a TimerService: a Deferred that logs its failure and never fails."""
        d = Deferred.fromCoroutine(self.purge())
        d.addErrback(lambda f: log.failure("purging expired shares", f))
        return d

    async def from_container(self, container_id: str) -> list[Share]:
        return await self._run(self._store.from_container, container_id, self.clock.seconds())

    # -- remixing

    def prepare_remix(self, share: Share, content: bytes) -> Callable[[Any], Deferred[None]]:
        """What to do with a fresh server before the remixer is sent into it: write the notebook."""

        def write(assignment: Any) -> Deferred[None]:
            notebook = for_remix(content, share.id)
            d = contents.write_notebook(self._client_for(assignment.container_id), assignment.path,
                                        assignment.token, share.name, notebook, self.clock, self.settings.read_timeout)

            def written(_: Any) -> None:
                self._event("remixed", share, into=assignment.container_id)

            return d.addCallback(written)

        return write

    def discard(self, container_id: str) -> None:
        """A server a remix could not be completed in: nobody will use it."""
        self._servers.cull(container_id, "remix failed")

    def _event(self, what: str, share: Share, **more: Any) -> None:
        record = share_record(what, share, self.clock.seconds(), into=more.pop("into", None))
        log.info("share {share} {share_event} (from {container})", share=share.id, share_event=what,
                 container=share.container, into=record.get("into"), **more)
        for take in self._records:
            take(record)


def share_record(what: str, share: Share, when: float, into: str | None = None) -> dict[str, Any]:
    """A share event for the lifecycle record: shared, deleted, taken down, remixed (`into`)."""
    record = {"kind": "share", "event": what, "share": share.id, "container": share.container,
              "time": when, "iso": datetime.fromtimestamp(when, timezone.utc).isoformat()}
    if into is not None:
        record["into"] = into
    return record
