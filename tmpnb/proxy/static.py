"""The notebook UI's static files, served once by the proxy for every container.

`python -m tmpnb.image extract-static DEST` copies them out of the image and writes
DEST/manifest.json: URL prefixes below a server's base URL ("static/", ...) mapped to
subdirectories of DEST. Any `/user/<id>/<prefix><file>` found there is answered here with
long cache headers; anything not found falls through to the container.
Extraction may replace the tree while the proxy runs, so nothing about it is cached.
"""

from __future__ import annotations

import json
import mimetypes
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from typing import BinaryIO
from email.utils import formatdate
from urllib.parse import unquote

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IConsumer
from twisted.logger import Logger
from twisted.protocols.basic import FileSender

log = Logger()

MANIFEST = "manifest.json"
# Jupyter's static_url() adds ?v=<hash>; bundlers put a content hash in the file name.
_HASHED_NAME = re.compile(r"[.\-_][0-9a-f]{8,}\.[A-Za-z0-9]+$")
_USER_PATH = re.compile(r"/user/[^/]+/(.+)\Z")
VERSIONED_CACHE = b"public, max-age=31536000, immutable"
UNVERSIONED_CACHE = b"public, max-age=3600"
SMALL_FILE = 256 * 1024  # written in one go; larger ones stream with back-pressure


@dataclass(frozen=True, slots=True)
class StaticFile:
    path: str
    size: int
    content_type: bytes
    etag: bytes
    last_modified: bytes
    immutable_name: bool

    def response_head(self, query: str, if_none_match: bytes | None, close: bool) -> tuple[bytes, bool]:
        """The response head, and whether a body follows (False for a 304)."""
        versioned = self.immutable_name or _has_version(query)
        cache = VERSIONED_CACHE if versioned else UNVERSIONED_CACHE
        not_modified = if_none_match is not None and (if_none_match == b"*" or self.etag in if_none_match)
        lines = [b"HTTP/1.1 304 Not Modified\r\n" if not_modified else b"HTTP/1.1 200 OK\r\n"]
        if not not_modified:
            lines.append(b"Content-Type: %s\r\nContent-Length: %d\r\n" % (self.content_type, self.size))
        else:
            lines.append(b"Content-Length: 0\r\n")
        lines.append(b"Cache-Control: %s\r\nETag: %s\r\nLast-Modified: %s\r\n" % (cache, self.etag, self.last_modified))
        lines.append(b"X-Content-Type-Options: nosniff\r\n")
        if close:
            lines.append(b"Connection: close\r\n")
        lines.append(b"\r\n")
        return b"".join(lines), not not_modified

    def open(self) -> BinaryIO | None:
        """The file, opened before any byte is answered; None if it went away meanwhile."""
        try:
            return open(self.path, "rb")
        except OSError:
            return None

    def send(self, f: BinaryIO, consumer: IConsumer) -> Deferred[None]:
        """Write the body to `consumer`, then close `f`; big files stream as the visitor reads."""
        if self.size <= SMALL_FILE:
            with f:
                consumer.write(f.read())
            return succeed(None)
        d = FileSender().beginFileTransfer(f, consumer)

        def close(result):
            f.close()
            return result

        return d.addBoth(close)


def _has_version(query: str) -> bool:
    return any(part.startswith("v=") and len(part) > 2 for part in query.split("&"))


class StaticFiles:
    """Looks up `/user/<id>/<prefix>...` paths in the extracted directory."""

    def __init__(self, root: str, prefixes: Mapping[str, str] | None = None) -> None:
        self.root = os.path.realpath(root)
        if prefixes is None:
            prefixes = read_manifest(self.root)
        pairs = []
        for prefix, directory in prefixes.items():
            prefix = prefix.strip("/") + "/"
            pairs.append((prefix, os.path.realpath(os.path.join(self.root, directory))))
        self._prefixes = sorted(pairs, key=lambda pair: len(pair[0]), reverse=True)

    def lookup(self, path: str) -> StaticFile | None:
        """The file for a request path (still percent-encoded, no query), or None."""
        match = _USER_PATH.match(path)
        if match is None:
            return None
        rest = match.group(1)
        for prefix, directory in self._prefixes:
            if rest.startswith(prefix):
                return _file_under(directory, rest[len(prefix) :])
        return None


def _file_under(directory: str, relative_url: str) -> StaticFile | None:
    try:
        relative = unquote(relative_url, errors="strict") if "%" in relative_url else relative_url
    except UnicodeDecodeError:
        return None
    if not relative or "\x00" in relative or "\\" in relative:
        return None
    parts = relative.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    real = os.path.realpath(os.path.join(directory, *parts))
    # realpath resolves symlinks too: nothing may lead outside the extracted directory.
    if not real.startswith(directory + os.sep):
        return None
    try:
        st = os.stat(real)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    content_type, _ = mimetypes.guess_type(real)
    content_type = content_type or "application/octet-stream"
    if content_type.startswith("text/") or content_type in ("application/javascript", "application/json"):
        content_type += "; charset=utf-8"
    return StaticFile(
        path=real,
        size=st.st_size,
        content_type=content_type.encode("ascii"),
        etag=b'"%x-%x"' % (int(st.st_mtime), st.st_size),
        last_modified=formatdate(st.st_mtime, usegmt=True).encode("ascii"),
        immutable_name=bool(_HASHED_NAME.search(parts[-1])),
    )


def read_manifest(root: str) -> dict[str, str]:
    """URL prefix → subdirectory, from DEST/manifest.json; none without one.

    Guessing a layout could answer a notebook's URL with some other file of the same name.
    """
    try:
        with open(os.path.join(root, MANIFEST)) as f:
            manifest = json.load(f)
    except FileNotFoundError:
        log.warn("no {manifest} in {root}: notebook static files are left to the containers", manifest=MANIFEST, root=root)
        return {}
    # Written by tmpnb.image.static.extract_static: {"static/notebook/": "static-notebook", ...}
    if not isinstance(manifest, dict):
        return {}
    return {str(k): v for k, v in manifest.items() if isinstance(v, str)}
