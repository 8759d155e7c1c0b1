"""Reading and writing a notebook in a visitor's server with Jupyter's contents API.

The orchestrator talks to the server over its unix socket (containers have no network),
with the server's own token. Answers are read with a cap: a visitor's file is untrusted.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import treq
from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.web.iweb import IResponse

from tmpnb.readiness import HOST
from tmpnb.share.snapshot import Rejected
from tmpnb.web.paths import BadPath, notebook_path

# Where a notebook's own page lives below /user/<id>/ in notebook 7 and JupyterLab.
NOTEBOOK_PREFIXES = (("notebooks",), ("lab", "tree"), ("doc", "tree"))


class ServerRefused(Exception):
    """The visitor's server answered something other than the file."""

    def __init__(self, code: int) -> None:
        super().__init__(f"server answered {code}")
        self.code = code


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


async def _capped_body(response: IResponse, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0

    def collect(data: bytes) -> None:
        nonlocal size
        size += len(data)
        if size > limit:
            raise Rejected(f"larger than the limit of {limit} bytes", 413)
        parts.append(data)

    await treq.collect(response, collect)
    return b"".join(parts)


async def _read_file(client: HTTPClient, base_path: str, token: str, path: str, max_bytes: int) -> bytes:
    url = contents_url(base_path, path) + "?type=file&format=base64&content=1"
    response = await client.get(url, headers={"Authorization": f"token {token}"})
    if response.code != 200:
        await treq.content(response)
        raise ServerRefused(response.code)
    # base64 is 4/3 of the file, plus the model's few fields.
    answer = await _capped_body(response, max_bytes * 4 // 3 + 4096)
    try:
        model = json.loads(answer)
        # jupyter_server wraps base64 lines (encodebytes): decode ignoring the newlines.
        return base64.b64decode(model["content"])
    except (ValueError, KeyError, TypeError):
        raise ServerRefused(response.code) from None


def read_file(client: HTTPClient, base_path: str, token: str, path: str, max_bytes: int) -> Deferred[bytes]:
    """The bytes of `path` in the server at `base_path`; fails with Rejected (too large) or
    ServerRefused (not there, not a file, not answering as Jupyter does)."""
    return Deferred.fromCoroutine(_read_file(client, base_path, token, path, max_bytes))


async def _write_notebook(client: HTTPClient, base_path: str, token: str, path: str, notebook: dict) -> Any:
    # Saved as a text file: the notebook was validated when it was shared, and a "notebook"
    # model makes the server validate and sign it again (2 s for 1 MB on a busy machine).
    # Unsigned, it opens untrusted, as a shared notebook must.
    text = json.dumps(notebook, indent=1, ensure_ascii=False, sort_keys=True) + "\n"
    body = json.dumps({"type": "file", "format": "text", "content": text}).encode("utf-8")
    response = await client.put(contents_url(base_path, path), data=body,
                                headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    await treq.content(response)
    if response.code not in (200, 201):
        raise ServerRefused(response.code)


def write_notebook(client: HTTPClient, base_path: str, token: str, path: str, notebook: dict) -> Deferred[None]:
    """Save `notebook` (nbformat JSON data) as `path` in the server at `base_path`."""
    return Deferred.fromCoroutine(_write_notebook(client, base_path, token, path, notebook))
