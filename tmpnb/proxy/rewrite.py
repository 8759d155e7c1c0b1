"""What a message looks like on the other side of the proxy, as configurable-http-proxy rewrites it.

The request head the backend gets (hop-by-hop headers out, X-Forwarded-* in, the target's path
and the route's prefix as ``--no-prepend-path``/``--no-include-prefix`` say, ``--custom-header``
and ``--change-origin``), and the response headers the visitor gets (``--auto-rewrite`` and
``--protocol-rewrite`` of a redirect's Location).
"""

from __future__ import annotations

import re

from .httphead import RequestHead, ResponseHead, end_to_end, serialize_headers
from .settings import ProxySettings
from .targets import Target
from .websocket import upgrade_headers

_HOST_PORT = re.compile(rb":(\d+)")
_REDIRECTS = frozenset({201, 301, 302, 307, 308})  # whose Location --auto-rewrite may change


class Rewriter:
    """Built once per proxy from its settings; every method runs once per exchange."""

    def __init__(self, settings: ProxySettings) -> None:
        self.scheme = settings.scheme.encode("ascii")
        self._x_forward = settings.x_forward
        self._include_prefix = settings.include_prefix
        self._prepend_path = settings.prepend_path
        self._host_routing = settings.host_routing
        self._change_origin = settings.change_origin
        self._auto_rewrite = settings.auto_rewrite
        self._protocol_rewrite = settings.protocol_rewrite.encode("ascii") if settings.protocol_rewrite else None
        self._rewrites_location = settings.auto_rewrite or bool(settings.protocol_rewrite)
        self._custom = [
            (name.strip().lower().encode("latin-1"), value.strip().encode("latin-1")) for name, value in settings.custom_headers
        ]
        # Visitor's headers the proxy sets itself (--custom-header, --change-origin).
        replaced = frozenset(name for name, _ in self._custom)
        self._replaced = replaced | {b"host"} if settings.change_origin else replaced

    def request_head(self, head: RequestHead, target: Target, route: str | None, client_ip: bytes) -> bytes:
        """The request head as the backend sees it: hop-by-hop headers out, X-Forwarded-* in."""
        replaced = self._replaced
        lines = [(name, value) for name, value in end_to_end(head.headers, head.connection_tokens) if name not in replaced]
        if self._x_forward:
            self._add_forwarded(lines, head, client_ip)
        lines.extend(self._custom)
        if self._change_origin:
            lines.append((b"host", target.netloc or b"localhost"))
        if head.chunked:
            lines.append((b"transfer-encoding", b"chunked"))
        version = b"HTTP/1.1" if head.version >= (1, 1) else b"HTTP/1.0"
        parts = [head.method, b" ", self._request_target(head, target, route), b" ", version, b"\r\n", serialize_headers(lines)]
        if head.upgrade is not None:
            parts.append(upgrade_headers(head.upgrade))
        parts.append(b"\r\n")
        return b"".join(parts)

    def _add_forwarded(self, lines: list[tuple[bytes, bytes]], head: RequestHead, client_ip: bytes) -> None:
        """X-Forwarded-* as configurable-http-proxy (node-http-proxy's ``xfwd``) sets them.

        For, Port and Proto append ``,<value>`` to what an earlier proxy sent; Host is kept if
        present (and, as there, not set at all on an upgrade).
        """
        tls = self.scheme == b"https"
        found = _HOST_PORT.search(head.host)
        values = {
            b"x-forwarded-for": client_ip,
            b"x-forwarded-port": found.group(1) if found else (b"443" if tls else b"80"),
            b"x-forwarded-proto": (b"wss" if tls else b"ws") if head.upgrade is not None else self.scheme,
        }
        if not client_ip:
            del values[b"x-forwarded-for"]  # a unix socket listener knows no address
        _merge_repeated(lines, frozenset(values))
        has_host = False
        for index, (name, value) in enumerate(lines):
            extra = values.pop(name, None)
            if extra is not None:
                lines[index] = (name, value + b"," + extra)
            elif name == b"x-forwarded-host":
                has_host = True
        lines.extend(values.items())
        if not has_host and head.upgrade is None:
            lines.append((b"x-forwarded-host", head.host))

    def _request_target(self, head: RequestHead, target: Target, route: str | None) -> bytes:
        """The request-target sent on: the target's own path first, the route's prefix kept or not."""
        sent = head.target
        if not self._include_prefix and route is not None:
            prefix = route
            if self._host_routing:
                prefix = prefix[len(head.host.split(b":", 1)[0]) + 1 :]
            # As CHP: the route's length cut off the request-target, as written.
            sent = sent[len(prefix.encode("utf-8")) :]
            if not sent.startswith(b"/"):
                sent = b"/" + sent
        if self._prepend_path:
            sent = target.prefix + sent
        return sent

    def response_headers(self, resp: ResponseHead, head: RequestHead, target: Target) -> list[tuple[bytes, bytes]]:
        """The backend's end-to-end headers, a redirect to the target itself pointed at the proxy."""
        headers = end_to_end(resp.headers, resp.connection_tokens)
        if not self._rewrites_location or resp.status not in _REDIRECTS:
            return headers
        rewritten = []
        for name, value in headers:
            if name == b"location":
                scheme, sep, rest = value.partition(b"://")
                netloc, slash, path = rest.partition(b"/")
                if sep and netloc == target.netloc:
                    if self._auto_rewrite:
                        netloc = head.host
                    if self._protocol_rewrite:
                        scheme = self._protocol_rewrite.rstrip(b":")
                    value = scheme + b"://" + netloc + slash + path
            rewritten.append((name, value))
        return rewritten


def _merge_repeated(lines: list[tuple[bytes, bytes]], names: frozenset[bytes]) -> None:
    """Each of `names` sent on several lines becomes one line, its values joined with commas in
    order (as Node's parser, under configurable-http-proxy, joins X-Forwarded-For). Otherwise the
    address appended to the first line would not be the rightmost entry: a visitor sending the
    header twice would choose the client address the backend reads (tmpnb/clients/address.py)."""
    first: dict[bytes, int] = {}
    kept: list[tuple[bytes, bytes]] = []
    for name, value in lines:
        if name in names and name in first:
            index = first[name]
            kept[index] = (name, kept[index][1] + b"," + value)
            continue
        if name in names:
            first[name] = len(kept)
        kept.append((name, value))
    lines[:] = kept
