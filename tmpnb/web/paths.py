"""Turning what a visitor typed after /spawn/ into a safe path below /user/<id>/."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote, urlsplit

# Characters RFC 3986 allows unencoded in a path segment, besides unreserved ones.
_SEGMENT_SAFE = "!$&'()*+,;=:@~"
MAX_PATH_LENGTH = 1024


class BadPath(ValueError):
    """The path would leave the visitor's directory, or cannot be a path at all."""


def notebook_path(segments: Sequence[bytes]) -> str:
    """The percent-encoded path below /user/<id>/ for these decoded URL segments.

    `segments` are what twisted.web leaves in `request.postpath` (already
    percent-decoded). Empty segments collapse; a trailing slash is kept, since
    Jupyter tells directories from files by it. Raises BadPath for `.` and `..`
    (traversal), a decoded `/` or `\\` inside a segment, control characters,
    bytes that are not UTF-8, or a path longer than MAX_PATH_LENGTH.
    """
    names = []
    for raw in segments:
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadPath("not UTF-8") from None
        if name in (".", ".."):
            raise BadPath("dot segment")
        if "/" in name or "\\" in name or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
            raise BadPath("separator or control character in a segment")
        names.append(name)
    kept = [name for name in names if name]
    if not kept:
        return ""
    path = "/".join(quote(name, safe=_SEGMENT_SAFE) for name in kept)
    if names[-1] == "":
        path += "/"
    if len(path) > MAX_PATH_LENGTH:
        raise BadPath("too long")
    return path


def path_from_text(text: str) -> str:
    """notebook_path for a path given as text (the JSON API's "path"), `/`-separated."""
    return notebook_path([part.encode("utf-8", "surrogatepass") for part in text.split("/")])


def below_from_redirect_uri(redirect_uri: str) -> str:
    """The part of --redirect-uri that goes after /user/<id>/ ("/tree" -> "tree").

    Raises ValueError for anything that is not a plain relative path: a redirect
    must never leave the visitor's own server.
    """
    parts = urlsplit(redirect_uri)
    if parts.scheme or parts.netloc or redirect_uri.startswith("//") or parts.fragment:
        raise ValueError(f"--redirect-uri must be a path, got {redirect_uri!r}")
    below = path_from_text(parts.path.lstrip("/"))
    return below + ("?" + parts.query if parts.query else "")


def with_token(url: str, token: str | None) -> str:
    """`url` with ?token=… (or &token=…) added, so the visitor is logged in."""
    if not token:
        return url
    return url + ("&" if "?" in url else "?") + "token=" + quote(token, safe="")
