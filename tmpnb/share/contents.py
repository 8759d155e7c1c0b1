"""Reading and writing a notebook in a visitor's server with Jupyter's contents API.

The orchestrator talks to the server over its unix socket (containers have no network),
with the server's own token. A visitor controls what answers there: every exchange is read
with a cap on its size and a deadline for the whole of it (head and body), so a server that
answers slowly, or never, or without end holds nothing of the orchestrator's.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import treq
from treq.client import HTTPClient
from twisted.internet.defer import Deferred, TimeoutError as DeferredTimeout
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import IResponse

from tmpnb.readiness import HOST
from tmpnb.share.snapshot import Rejected
from tmpnb.web.paths import BadPath, notebook_path

# Where a notebook's own page lives below /user/<id>/ in notebook 7 and JupyterLab.
NOTEBOOK_PREFIXES = (("notebooks",), ("lab", "tree"), ("doc", "tree"))
# An answer that is not the file is read only this far (an error page, a save's model).
MAX_OTHER_ANSWER = 64 * 1024
DEFAULT_TIMEOUT = 20.0


class ServerRefused(Exception):
    """The visitor's server answered something other than the file."""

    def __init__(self, code: int) -> None:
        super().__init__(f"server answered {code}")
        self.code = code


class ServerTooSlow(ServerRefused):
    """The visitor's server did not finish its answer within the deadline."""

    def __init__(self, timeout: float) -> None:
        super().__init__(504)
        self.args = (f"no whole answer within {timeout:g}s",)


def parse_notebook_url(url: str) -> tuple[str, str]:
    """`/user/<id>/notebooks/<path>.ipynb` (or a full URL to it) → (id, decoded path).

    Raises Rejected for anything that is not a notebook in one visitor's server.
    """
    path = urlsplit(url).path
    segments = path.split("/")
    if len(segments) < 4 or segments[0] != "" or segments[1] != "user" or not segments[2].isalnum():
        raise Rejected('"url" must be /user/<id>/notebooks/<path>.ipynb')
    rest = segments[3:]
    for prefix in NOTEBOOK_PREFIXES:
        if tuple(rest[: len(prefix)]) == prefix:
            rest = rest[len(prefix):]
            break
    else:
        raise Rejected('"url" must be /user/<id>/notebooks/<path>.ipynb')
    try:
        encoded = notebook_path([unquote(part, errors="strict").encode("utf-8") for part in rest])
    except (BadPath, UnicodeDecodeError) as e:
        raise Rejected(f'"url" has a bad path: {e}') from None
    decoded = unquote(encoded)
    if not decoded.endswith(".ipynb") or decoded.endswith("/"):
        raise Rejected('"url" must name a .ipynb file')
    return segments[2], decoded


def contents_url(base_path: str, path: str) -> str:
    return HOST + base_path.rstrip("/") + "/api/contents/" + quote(path, safe="/")


class _CappedBody(Protocol):
    """A response body collected up to `limit` bytes; past it, or when cancelled (a deadline),
    the connection is dropped: the server's bytes stop costing us anything."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self.done: Deferred[bytes] = Deferred(lambda _: self._stop())

    def _stop(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        self._size += len(data)
        if self._size > self._limit:
            self._stop()
            self.done.errback(Rejected(f"larger than the limit of {self._limit} bytes", 413))
            return
        self._parts.append(data)

    def connectionLost(self, reason: Failure = None) -> None:
        if self.done.called:
            return
        if reason is not None and not reason.check(ResponseDone, PotentialDataLoss):
            self.done.errback(reason)
        else:
            self.done.callback(b"".join(self._parts))


def _capped_body(response: IResponse, limit: int) -> Deferred[bytes]:
    collector = _CappedBody(limit)
    response.deliverBody(collector)
    return collector.done


async def _drain(response: IResponse) -> None:
    """Read an answer we do not use, up to MAX_OTHER_ANSWER: past that, stop listening."""
    try:
        await _capped_body(response, MAX_OTHER_ANSWER)
    except Rejected:
        raise ServerRefused(response.code) from None


def _within(d: Deferred, clock: IReactorTime | None, timeout: float) -> Deferred:
    """`d`, cancelled (its connection dropped) if it has not fired within `timeout` seconds."""
    if clock is None:
        return d
    d.addTimeout(timeout, clock)

    def too_slow(reason):
        reason.trap(DeferredTimeout)
        raise ServerTooSlow(timeout)

    return d.addErrback(too_slow)


async def _read_file(client: HTTPClient, base_path: str, token: str, path: str, max_bytes: int) -> bytes:
    url = contents_url(base_path, path) + "?type=file&format=base64&content=1"
    response = await client.get(url, headers={"Authorization": f"token {token}"})
    if response.code != 200:
        await _drain(response)
        raise ServerRefused(response.code)
    # base64 is 4/3 of the file, plus the model's few fields.
    answer = await _capped_body(response, max_bytes * 4 // 3 + 4096)
    try:
        model = json.loads(answer)
        # jupyter_server wraps base64 lines (encodebytes): decode ignoring the newlines.
        return base64.b64decode(model["content"])
    except (ValueError, KeyError, TypeError):
        raise ServerRefused(response.code) from None


def read_file(client: HTTPClient, base_path: str, token: str, path: str, max_bytes: int,
              clock: IReactorTime | None = None, timeout: float = DEFAULT_TIMEOUT) -> Deferred[bytes]:
    """The bytes of `path` in the server at `base_path`; fails with Rejected (too large) or
    ServerRefused (not there, not a file, not answering as Jupyter does), or ServerTooSlow
    when the whole answer took longer than `timeout` (with a `clock`)."""
    return _within(Deferred.fromCoroutine(_read_file(client, base_path, token, path, max_bytes)), clock, timeout)


async def _write_notebook(client: HTTPClient, base_path: str, token: str, path: str, notebook: dict) -> Any:
    # Saved as a text file: the notebook was validated when it was shared, and a "notebook"
    # model makes the server validate and sign it again (2 s for 1 MB on a busy machine).
    # Unsigned, it opens untrusted, as a shared notebook must.
    text = json.dumps(notebook, indent=1, ensure_ascii=False, sort_keys=True) + "\n"
    body = json.dumps({"type": "file", "format": "text", "content": text}).encode("utf-8")
    response = await client.put(contents_url(base_path, path), data=body,
                                headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    await _drain(response)
    if response.code not in (200, 201):
        raise ServerRefused(response.code)


def write_notebook(client: HTTPClient, base_path: str, token: str, path: str, notebook: dict,
                   clock: IReactorTime | None = None, timeout: float = DEFAULT_TIMEOUT) -> Deferred[None]:
    """Save `notebook` (nbformat JSON data) as `path` in the server at `base_path`, within
    `timeout` seconds (with a `clock`)."""
    return _within(Deferred.fromCoroutine(_write_notebook(client, base_path, token, path, notebook)), clock, timeout)
