"""Strict, small HTTP/1.1 message-head parsing for the proxy's hot path.

The proxy never builds a full request object: it parses the head, decides where the
message goes and how its body is framed, and passes body bytes through untouched.
Anything malformed or hostile raises `BadMessage` carrying the 4xx/5xx status to answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

MAX_HEAD_BYTES = 64 * 1024
MAX_REQUEST_LINE = 8 * 1024
MAX_HEADERS = 100

# RFC 9110 token characters, for methods and header names.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
# A request-target in origin-form: visible ASCII only, starting with "/".
_ORIGIN_FORM = re.compile(rb"/[\x21-\x7e]*\Z")
_BAD_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
# Header values may hold HTAB, visible ASCII, spaces and obs-text; never other controls.
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_VERSIONS = {b"HTTP/1.1": (1, 1), b"HTTP/1.0": (1, 0)}

# Hop-by-hop headers (RFC 9110 §7.6.1) plus the legacy ones proxies still see.
# Transfer-Encoding is handled apart: chunked bodies pass through with their framing.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)


class BadMessage(Exception):
    """A message the proxy refuses; `status` is the answer to give."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason


@dataclass(slots=True)
class RequestHead:
    method: bytes
    target: bytes  # the raw request-target, forwarded as received
    path: str  # the path part of target (still percent-encoded), for routing
    version: tuple[int, int]
    headers: list[tuple[bytes, bytes]]  # (lower-case name, value), in order
    connection_tokens: frozenset[bytes]
    content_length: int | None
    chunked: bool
    host: bytes

    @property
    def keep_alive(self) -> bool:
        if self.version < (1, 1):
            return False  # HTTP/1.0 clients get one request per connection
        return b"close" not in self.connection_tokens

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    @property
    def upgrade(self) -> bytes | None:
        """The Upgrade header's value when the client asks to switch protocols."""
        if b"upgrade" not in self.connection_tokens:
            return None
        for name, value in self.headers:
            if name == b"upgrade":
                return value
        return None


@dataclass(slots=True)
class ResponseHead:
    status: int
    status_line: bytes  # forwarded verbatim, without CRLF
    headers: list[tuple[bytes, bytes]]
    connection_tokens: frozenset[bytes]
    content_length: int | None
    chunked: bool


def _split_lines(head: bytes) -> list[bytes]:
    lines = head.split(b"\r\n")
    for line in lines:
        if b"\n" in line or b"\r" in line:
            raise BadMessage(400, "bare CR or LF in head")
    return lines


def _parse_headers(lines: list[bytes]) -> list[tuple[bytes, bytes]]:
    if len(lines) > MAX_HEADERS:
        raise BadMessage(431, "too many header fields")
    headers = []
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon:
            raise BadMessage(400, "header line without colon")
        # Rejects obs-fold and whitespace before the colon (RFC 9112 §5.1): smuggling vectors.
        if not _TOKEN.match(name):
            raise BadMessage(400, "bad header name")
        value = value.strip(b" \t")
        if _BAD_VALUE.search(value):
            raise BadMessage(400, "control character in header value")
        headers.append((name.lower(), value))
    return headers


def _connection_tokens(headers: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    tokens: set[bytes] = set()
    for name, value in headers:
        if name in (b"connection", b"proxy-connection"):
            tokens.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return frozenset(tokens)


def _framing(headers: list[tuple[bytes, bytes]], status_for_bad: int) -> tuple[int | None, bool]:
    """(content_length, chunked) from the headers; conflicting framing is refused."""
    lengths = set()
    codings: list[bytes] = []
    for name, value in headers:
        if name == b"content-length":
            for part in value.split(b","):
                part = part.strip()
                if not part.isdigit() or len(part) > 18:
                    raise BadMessage(status_for_bad, "bad Content-Length")
                lengths.add(int(part))
        elif name == b"transfer-encoding":
            codings.extend(c.strip().lower() for c in value.split(b",") if c.strip())
    if len(lengths) > 1:
        raise BadMessage(status_for_bad, "conflicting Content-Length")
    if codings:
        if lengths:
            raise BadMessage(status_for_bad, "both Transfer-Encoding and Content-Length")
        if codings != [b"chunked"]:
            # Only chunked is ever forwarded: other codings are a request-smuggling tool.
            raise BadMessage(status_for_bad, "unsupported Transfer-Encoding")
        return None, True
    return (lengths.pop() if lengths else None), False


def check_path(path: bytes) -> None:
    """Refuse paths a browser never sends: bad percent-encoding and dot segments.

    Browsers resolve dot segments before sending, so refusing them costs nobody anything
    and means no prefix can be escaped, whatever the backend does with the raw path.
    """
    if _BAD_PERCENT.search(path):
        raise BadMessage(400, "bad percent-encoding")
    decoded = unquote_to_bytes(path) if b"%" in path else path
    if b"\x00" in decoded or b"\\" in decoded:
        raise BadMessage(400, "NUL or backslash in path")
    for segment in decoded.split(b"/"):
        if segment in (b".", b".."):
            raise BadMessage(400, "dot segment in path")


def parse_request_head(head: bytes) -> RequestHead:
    """Parse a request head (without its final blank line)."""
    if len(head) > MAX_HEAD_BYTES:
        raise BadMessage(431, "request head too large")
    request_line, _, rest = head.partition(b"\r\n")
    if len(request_line) > MAX_REQUEST_LINE:
        raise BadMessage(414, "request line too long")
    parts = request_line.split(b" ")
    if len(parts) != 3:
        raise BadMessage(400, "malformed request line")
    method, target, version_text = parts
    version = _VERSIONS.get(version_text)
    if version is None:
        # HTTP/2 and later never arrive as a text request line: garbage either way.
        raise BadMessage(400, "unsupported HTTP version")
    if not _TOKEN.match(method):
        raise BadMessage(400, "bad method")
    if not _ORIGIN_FORM.match(target):
        raise BadMessage(400, "request-target must be a path")
    raw_path = target.partition(b"?")[0].partition(b"#")[0]
    check_path(raw_path)
    headers = _parse_headers(_split_lines(rest) if rest else [])
    content_length, chunked = _framing(headers, 400)
    if chunked and version < (1, 1):
        raise BadMessage(400, "chunked body in HTTP/1.0")
    hosts = [value for name, value in headers if name == b"host"]
    if len(hosts) > 1 or (version >= (1, 1) and not hosts):
        raise BadMessage(400, "exactly one Host header is required")
    return RequestHead(
        method=method,
        target=target,
        path=raw_path.decode("ascii"),
        version=version,
        headers=headers,
        connection_tokens=_connection_tokens(headers),
        content_length=content_length,
        chunked=chunked,
        host=hosts[0] if hosts else b"",
    )


def parse_response_head(head: bytes) -> ResponseHead:
    """Parse a backend's response head; anything malformed is the backend's fault (502)."""
    try:
        status_line, _, rest = head.partition(b"\r\n")
        version, _, status_rest = status_line.partition(b" ")
        if version not in _VERSIONS:
            raise BadMessage(502, "bad status line from backend")
        status_text = status_rest[:3]
        if len(status_text) != 3 or not status_text.isdigit() or status_rest[3:4] not in (b"", b" "):
            raise BadMessage(502, "bad status code from backend")
        headers = _parse_headers(_split_lines(rest) if rest else [])
        content_length, chunked = _framing(headers, 502)
    except BadMessage as e:
        raise BadMessage(502, e.reason) from None
    return ResponseHead(
        status=int(status_text),
        status_line=status_line,
        headers=headers,
        connection_tokens=_connection_tokens(headers),
        content_length=content_length,
        chunked=chunked,
    )


def end_to_end(headers: list[tuple[bytes, bytes]], connection_tokens: frozenset[bytes]) -> list[tuple[bytes, bytes]]:
    """The headers a proxy passes on: hop-by-hop ones and those named in Connection go."""
    return [(n, v) for n, v in headers if n not in HOP_BY_HOP and n not in connection_tokens]


def serialize_headers(headers: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(b"%s: %s\r\n" % pair for pair in headers)
