"""Each visitor its own origin: `--subdomain-host` (JupyterHub's name for it).

With `--subdomain-host https://nb.example.org` a visitor's server is
`https://<id>.nb.example.org/user/<id>/`, while the orchestrator's pages, `/api/*` and
`/share/*` stay on the bare host. Without it (path mode, the default for a laptop) every
visitor's server is `/user/<id>/` on tmpnb's one origin, where one visitor's page can read
another's server (docs/security.md).

This package holds what follows from that one setting:
- `Origins` (here): where a visitor's server lives, as URLs and hosts;
- `ids`: container ids that survive a browser lower-casing the host;
- `routing`: the proxy's routes keyed by host (configurable-http-proxy's --host-routing);
- `cookies`: the notebook servers' host-locked (`__Host-`) cookies;
- `gate`: the orchestrator answering on the bare host only;
- `exposure`: the one start-up warning for a public address without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["Origins", "SubdomainHostError", "is_loopback_name", "parse_subdomain_host"]

# DNS: a label is at most 63 characters (RFC 1035), a name at most 253.
MAX_LABEL = 63
MAX_NAME = 253


class SubdomainHostError(ValueError):
    """--subdomain-host is not a URL tmpnb can give every visitor a subdomain of."""


def is_loopback_name(host: str) -> bool:
    """`localhost` and `*.localhost`: browsers resolve them to loopback (RFC 6761) and treat
    them as secure contexts, so `__Host-` cookies work there over plain http."""
    return host == "localhost" or host.endswith(".localhost")


@dataclass(frozen=True)
class Origins:
    """Where visitors' servers live. `host` None: path mode, every server on tmpnb's origin."""

    scheme: str = "http"
    host: str | None = None  # lower-case, no port: "nb.example.org"
    port: int | None = None  # as written in --subdomain-host; None: the scheme's default

    @property
    def subdomains(self) -> bool:
        return self.host is not None

    @property
    def _port_suffix(self) -> str:
        return "" if self.port is None else f":{self.port}"

    @property
    def bare_origin(self) -> str:
        """`https://nb.example.org`: the orchestrator's pages, /api/*, /share/*; "" in path mode
        (relative URLs, as before)."""
        if self.host is None:
            return ""
        return f"{self.scheme}://{self.host}{self._port_suffix}"

    def visitor_host(self, container_id: str) -> str:
        """`<id>.nb.example.org`, no port: the host part of the container's route."""
        if self.host is None:
            raise ValueError("path mode has no visitor hosts")
        return f"{container_id}.{self.host}"

    def visitor_origin(self, container_id: str) -> str:
        """`https://<id>.nb.example.org`; "" in path mode."""
        if self.host is None:
            return ""
        return f"{self.scheme}://{self.visitor_host(container_id)}{self._port_suffix}"

    @property
    def visitor_source(self) -> str:
        """Every visitor's origin as a CSP source, `https://*.nb.example.org`; "" in path mode."""
        if self.host is None:
            return ""
        return f"{self.scheme}://*.{self.host}{self._port_suffix}"

    def server_url(self, container_id: str, path: str) -> str:
        """Where to send a visitor for `path` (`/user/<id>/…`) on their server: the path itself
        in path mode, an absolute URL on the visitor's own subdomain otherwise."""
        return self.visitor_origin(container_id) + path

    def orchestrator_url(self, path: str) -> str:
        """`path` (`/share/…`) on the bare host: absolute in subdomain mode, so a page on a
        visitor's subdomain (the Share button's dialog) links to tmpnb, not to itself."""
        return self.bare_origin + path

    def container_of_host(self, host: str) -> str | None:
        """The container id a request's Host (port cut off, any case) names; None for the bare
        host and any other."""
        if self.host is None:
            return None
        name = host.split(":", 1)[0].lower() if not host.startswith("[") else ""
        suffix = "." + self.host
        if not name.endswith(suffix):
            return None
        label = name[: -len(suffix)]
        return label if label and "." not in label else None


def parse_subdomain_host(url: str | None) -> Origins:
    """`--subdomain-host` as `Origins`; None or "": path mode.

    Must be `https://host[:port]`, or `http://` for `localhost` and `*.localhost` only: over
    plain http to any other host browsers refuse the `Secure` cookies that keep one visitor's
    server from another's (docs/security.md). No path, query, user or fragment.
    """
    if not url:
        return Origins()
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise SubdomainHostError(f"--subdomain-host must start with https:// (got {url!r})")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise SubdomainHostError(f"--subdomain-host is a scheme, a host and a port, nothing more (got {url!r})")
    try:
        port = parts.port
    except ValueError:
        raise SubdomainHostError(f"--subdomain-host has a bad port (got {url!r})") from None
    host = (parts.hostname or "").rstrip(".")
    if not host or host.startswith("[") or ":" in host or all(c.isdigit() or c == "." for c in host):
        raise SubdomainHostError(f"--subdomain-host needs a DNS name, not an address (got {url!r})")
    if len(host) > MAX_NAME - MAX_LABEL - 1 or any(not label or len(label) > MAX_LABEL for label in host.split(".")):
        raise SubdomainHostError(f"--subdomain-host is not a valid DNS name (got {url!r})")
    if parts.scheme == "http" and not is_loopback_name(host):
        raise SubdomainHostError(
            "--subdomain-host must be https:// (plain http is for localhost and *.localhost only: "
            f"browsers refuse the Secure cookies that keep visitors apart; got {url!r})")
    default = 443 if parts.scheme == "https" else 80
    return Origins(parts.scheme, host.lower(), None if port in (None, default) else port)
