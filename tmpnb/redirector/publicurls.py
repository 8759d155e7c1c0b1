"""Which `public_url` a node may report: the redirector puts it into visitors' `Location`.

A node's /api/stats is not to be trusted blindly (a compromised or misconfigured node, or
anything answering at its address, could send every visitor elsewhere: a phishing page, a
URL with credentials in it, `javascript:`). A reported URL is used only when it is http(s),
has a host and no credentials, query or fragment, and its host is the node's own (the host
the redirector polls) or one the operator allowed (--public-host, `*.suffix` for a
wildcard). Otherwise the node gets no visitors until it reports a good one.
"""

from __future__ import annotations

from urllib.parse import urlsplit


class BadPublicURL(ValueError):
    """A node's public_url the redirector will not send visitors to."""


class PublicURLPolicy:
    def __init__(self, allowed_hosts: tuple[str, ...] = ()) -> None:
        self._exact = {h.lower() for h in allowed_hosts if not h.startswith("*.")}
        self._suffixes = tuple(h[1:].lower() for h in allowed_hosts if h.startswith("*."))

    def check(self, node_url: str, public_url: str) -> str:
        """`public_url` without a trailing slash; BadPublicURL with the reason otherwise."""
        if not public_url.isascii() or not public_url.isprintable() or any(c.isspace() for c in public_url):
            raise BadPublicURL("control, space or non-ASCII characters")
        parts = urlsplit(public_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadPublicURL("not an http(s) URL with a host")
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise BadPublicURL("credentials in the URL")
        if parts.query or parts.fragment or "\\" in public_url:
            raise BadPublicURL("a query, fragment or backslash")
        try:
            parts.port
        except ValueError:
            raise BadPublicURL("a bad port") from None
        host = parts.hostname.lower()
        if host != (urlsplit(node_url).hostname or "").lower() and not self._allowed(host):
            raise BadPublicURL(f"host {host} is neither the node's nor allowed by --public-host")
        return public_url.rstrip("/")

    def _allowed(self, host: str) -> bool:
        return host in self._exact or any(host.endswith(s) and len(host) > len(s) for s in self._suffixes)
