"""What a public proxy is told, as plain data: configurable-http-proxy's options and tmpnb's own.

`ProxySettings` holds every setting with its default, documented here once; the standalone
proxy reads it from CHP's command line (`settings_from_options`), the embedded one states the
few it changes. `public.public_proxy` turns settings into a listening factory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Idle keep-alive connections to a backend close after this long, as configurable-http-proxy's
# (Node >= 19's global agent: keep-alive, 5 s timeout). Reuse happens within milliseconds under
# load; held longer, a burst's connections linger: each to the in-process orchestrator costs
# two of this process's fds, and a culled container's until its container is gone.
BACKEND_IDLE_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """One proxy's settings; times in seconds, None meaning no limit.

    CHP's option for each is named in its comment; the defaults are the embedded proxy's
    where it has no CHP equivalent, and CHP's otherwise.
    """

    # Where a request without a route goes (tmpnb: the orchestrator). CHP's --default-target
    # is the route "/" instead, which its API can show and replace.
    default_target: str | None = None
    # tmpnb's own --static-dir: the notebook UI's static files, served here for every container.
    static_dir: str | None = None
    # Per flavor (tmpnb/flavors.py), (flavor, directory) pairs: a route whose "flavor" is one of
    # these gets that directory's files; a flavor not listed gets none (its container serves them).
    flavor_static_dirs: tuple[tuple[str, str], ...] = ()
    # Opening a backend connection, and waiting for a free one when a target is at its bound.
    connect_timeout: float = 5.0
    # A visitor connection between requests (--keep-alive-timeout; CHP says 5 s there).
    idle_timeout: float = 120.0
    # --timeout: a visitor connection silent this long in both directions is dropped.
    timeout: float | None = None
    # --proxy-timeout: a backend silent this long is given up on (503 if nothing was answered).
    proxy_timeout: float | None = None
    # Connections to one backend (kept alive or busy); more visitors wait for a free one.
    max_backend_connections_per_target: int = 32
    backend_idle_timeout: float = BACKEND_IDLE_TIMEOUT
    # The front door (docs/security.md). A request head must arrive whole within
    # `head_timeout` (from the connection's start for its first request, from the head's
    # first byte for later ones): not an idle timer a byte every few seconds keeps alive.
    head_timeout: float | None = 20.0
    # A request body must keep up `body_timeout` + its bytes / `body_min_rate` since its
    # start (Apache mod_reqtimeout's body=20,MinRate=500); time the proxy itself does not
    # read (a backend slow to take the body) is not counted. Responses and upgraded
    # connections have no such deadline: a download or a kernel's WebSocket may take hours.
    body_timeout: float | None = 20.0
    body_min_rate: float = 500.0
    # Connections open at once from one client address (an IPv6 /64 counts as one); at the
    # cap its oldest idle connection is closed, or the new one refused when none is idle. 0: no cap.
    max_client_connections: int = 0
    # Bodies for the default target (tmpnb's orchestrator) are read whole before a backend
    # connection is taken, so a slow body never holds one; larger ones get 413 at once. None: streamed.
    default_target_max_body: int | None = None
    # A WebSocket silent this long is closed (CHP has none: a kernel may stay quiet for hours).
    websocket_idle_timeout: float | None = None
    # How visitors reach the proxy, for X-Forwarded-Proto ("https" behind --ssl-key).
    scheme: str = "http"
    # --error-target (a server rendering 404/503 pages) or --error-path (a directory of them).
    error_target: str | None = None
    error_path: str | None = None
    # --host-routing: the Host header is the first segment of every route's path.
    host_routing: bool = False
    # Off with --no-x-forward, --no-include-prefix, --no-prepend-path.
    x_forward: bool = True
    include_prefix: bool = True
    prepend_path: bool = True
    # --custom-header name:value (repeatable), --change-origin, --auto-rewrite, --protocol-rewrite.
    custom_headers: tuple[tuple[str, str], ...] = ()
    change_origin: bool = False
    auto_rewrite: bool = False
    protocol_rewrite: str | None = None
    # --client-ssl-key/-cert/-ca and --insecure: how https targets are reached.
    client_ssl_key: str | None = None
    client_ssl_cert: str | None = None
    client_ssl_ca: str | None = None
    insecure: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "custom_headers", tuple((name, value) for name, value in self.custom_headers))


def settings_from_options(options: Mapping[str, Any]) -> ProxySettings:
    """The public listener's settings from tmpnb-proxy's (CHP's) parsed command line."""
    return ProxySettings(
        static_dir=options["static-dir"],
        idle_timeout=options["keep-alive-timeout"],
        timeout=options["timeout"],
        proxy_timeout=options["proxy-timeout"],
        scheme="https" if options["ssl-key"] else "http",
        error_target=options["error-target"],
        error_path=options["error-path"],
        host_routing=options["host-routing"],
        x_forward=not options["no-x-forward"],
        include_prefix=not options["no-include-prefix"],
        prepend_path=not options["no-prepend-path"],
        custom_headers=options["custom-header"],
        change_origin=options["change-origin"],
        auto_rewrite=options["auto-rewrite"],
        protocol_rewrite=options["protocol-rewrite"],
        client_ssl_key=options["client-ssl-key"],
        client_ssl_cert=options["client-ssl-cert"],
        client_ssl_ca=options["client-ssl-ca"],
        insecure=options["insecure"],
        head_timeout=options["head-timeout"],
        body_timeout=options["body-timeout"],
        body_min_rate=options["body-min-rate"],
        max_client_connections=options["max-client-connections"],
    )
