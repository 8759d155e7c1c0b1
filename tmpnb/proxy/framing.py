"""Where a message body ends, while its bytes pass through unchanged.

The proxy never rebuilds a body: it only needs to know where one ends, to give the
connection to the next message (or to close it when the end cannot be known).
"""

from __future__ import annotations

import re

from .httphead import MAX_HEAD_BYTES, BadMessage, RequestHead, ResponseHead

# How a body is delimited.
NONE, LENGTH, CHUNKED, UNTIL_CLOSE = range(4)


class BodyFraming:
    """One body's end, found as its bytes pass: `feed(data)` is -1 while it continues,
    else the index in `data` just after its end (what follows is the next message's)."""

    __slots__ = ("mode", "remaining", "chunks")

    def __init__(self, mode: int, length: int = 0) -> None:
        self.mode = mode
        self.remaining = length
        self.chunks = ChunkedTracker() if mode == CHUNKED else None

    def feed(self, data: bytes) -> int:
        """Raises BadMessage (400) for a malformed chunked body."""
        mode = self.mode
        if mode == LENGTH:
            remaining = self.remaining
            if len(data) >= remaining:
                self.remaining = 0
                return remaining
            self.remaining = remaining - len(data)
            return -1
        if mode == CHUNKED:
            return self.chunks.feed(data)
        if mode == UNTIL_CLOSE:
            return -1
        return 0


def request_framing(head: RequestHead) -> BodyFraming | None:
    """How the visitor's body is framed; None when there is none."""
    if head.content_length:
        return BodyFraming(LENGTH, head.content_length)
    if head.chunked:
        return BodyFraming(CHUNKED)
    return None


def response_framing(method: bytes, resp: ResponseHead) -> BodyFraming:
    """How the backend's body is framed (RFC 9112 §6.3): none after HEAD, 204 and 304."""
    if method == b"HEAD" or resp.status in (204, 304):
        return BodyFraming(NONE)
    if resp.chunked:
        return BodyFraming(CHUNKED)
    if resp.content_length is not None:
        return BodyFraming(LENGTH if resp.content_length else NONE, resp.content_length)
    return BodyFraming(UNTIL_CLOSE)


class ChunkedTracker:
    """Finds where a chunked body ends while its bytes pass through unchanged.

    `feed(data)` returns -1 while the body continues, else the index in `data` just after
    its end (anything after belongs to the next message).
    """

    _SIZE, _DATA, _DATA_CRLF, _TRAILER = range(4)
    MAX_LINE = 4096

    def __init__(self) -> None:
        self._state = self._SIZE
        self._line = b""
        self._remaining = 0
        self._trailer_bytes = 0

    def feed(self, data: bytes) -> int:
        pos = 0
        end = len(data)
        while pos < end:
            if self._state == self._DATA:
                take = min(self._remaining, end - pos)
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = self._DATA_CRLF
                    self._line = b""
                continue
            nl = data.find(b"\n", pos)
            if nl < 0:
                self._line += data[pos:]
                if len(self._line) > self.MAX_LINE:
                    raise BadMessage(400, "chunk line too long")
                return -1
            line = self._line + data[pos:nl]
            self._line = b""
            pos = nl + 1
            if not line.endswith(b"\r"):
                raise BadMessage(400, "chunk line without CRLF")
            line = line[:-1]
            if self._state == self._SIZE:
                size_text = line.partition(b";")[0].strip()
                if not size_text or len(size_text) > 15 or not re.fullmatch(rb"[0-9A-Fa-f]+", size_text):
                    raise BadMessage(400, "bad chunk size")
                self._remaining = int(size_text, 16)
                self._state = self._DATA if self._remaining else self._TRAILER
            elif self._state == self._DATA_CRLF:
                if line:
                    raise BadMessage(400, "chunk data longer than its size")
                self._state = self._SIZE
            else:  # trailer section: ends with an empty line
                if not line:
                    return pos
                self._trailer_bytes += len(line)
                if self._trailer_bytes > MAX_HEAD_BYTES:
                    raise BadMessage(400, "trailers too large")
        return -1
