"""twisted.web, stricter: header values with control bytes and request targets that climb
(`..`), hold NUL or run overlong are refused before any resource sees them.

RFC 9110 (5.5) allows visible ASCII, spaces, tabs and obs-text in a field value; Twisted
refuses only NUL, CR and LF. The rest (ESC, DEL, \\x01…) has no business in a header: some
log viewers and terminals act on them, and a value that means different things to different
parsers is how requests get smuggled. Browsers remove dot segments before they send a URL,
so a `..` (or `%2e%2e`) segment only ever comes from a client probing for a way out of a
route; a leaf resource that ignores the rest of its path would otherwise answer it 200.
Every twisted.web listener of tmpnb uses these (QuietSite by default, `strict` for the rest).
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from twisted.web.http import HTTPChannel
from twisted.web.server import Request, Site

_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_DOT_SEGMENT = re.compile(rb"(?:^|[/\\])\.{1,2}(?:$|[/\\])")
_NOT_URI = re.compile(rb"[^\x21-\x7e]")
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
MAX_TARGET_BYTES = 8192  # nginx's default large_client_header_buffers line; no tmpnb URL comes near


def refused_target(target: bytes) -> int | None:
    """The 4xx status for a request target no tmpnb listener serves; None if it is fine."""
    if len(target) > MAX_TARGET_BYTES:
        return 414
    # RFC 3986: visible ASCII only (browsers percent-encode the rest), `%` + two hex digits.
    if _NOT_URI.search(target) or _BAD_ESCAPE.search(target):
        return 400
    path = target.split(b"?", 1)[0]
    try:
        unquote_to_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        return 400  # no tmpnb path (ids, notebook paths) is anything but UTF-8
    for segment in path.split(b"/"):
        decoded = unquote_to_bytes(segment)
        # An encoded `/` or `\` inside a segment (`..%2f..`, `a%5c..`) means one thing to a
        # layer that decodes it and another to one that does not: no tmpnb path needs one.
        if _CONTROL.search(decoded) or b"/" in decoded or b"\\" in decoded or _DOT_SEGMENT.search(decoded):
            return 400
    return None


class StrictRequest(Request):
    def process(self) -> None:
        status = refused_target(self.uri)
        if status is None:
            super().process()
            return
        self.site = self.channel.site
        body = b"URI Too Long\n" if status == 414 else b"Bad request path\n"
        self.setResponseCode(status)
        self.setHeader(b"content-type", b"text/plain; charset=utf-8")
        self.setHeader(b"content-length", str(len(body)).encode("ascii"))
        self.write(body)
        self.finish()


class StrictHTTPChannel(HTTPChannel):
    def headerReceived(self, line: bytes) -> bool:
        _, _, value = line.partition(b":")
        if _CONTROL.search(value):
            self._respondToBadRequestAndDisconnect()
            return False
        return super().headerReceived(line)


def strict(site: Site) -> Site:
    """`site`, speaking HTTP/1.x through StrictHTTPChannel and StrictRequest."""
    site.protocol = StrictHTTPChannel
    site.requestFactory = StrictRequest
    return site
