"""Where `twistd tmpnb`'s own listeners go, as endpoint strings, and how the proxy reaches them."""

from __future__ import annotations

import os

from twisted.internet.endpoints import quoteStringArgument
from twisted.python import usage

from tmpnb.config import ContainerSpec
from tmpnb.sockets import proxy_target

DEFAULT_INSTANCE = ContainerSpec().instance


def default_proxy_api_listen(instance: str, socket_root: str) -> str:
    """CHP's API port for the default instance; for any other a socket named after it, so two
    nodes on one host differ only in --instance and --listen."""
    if instance == DEFAULT_INSTANCE:
        return "tcp:8001:interface=127.0.0.1"
    path = os.path.join(socket_root, f"{instance}.proxy-api.sock")
    return f"unix:{quoteStringArgument(path)}:mode=600:lockfile=1"


def web_socket_path(spec: ContainerSpec) -> str:
    """The orchestrator's socket for the embedded proxy: next to, not inside, the containers' dirs."""
    return os.path.join(spec.socket_root, f"{spec.instance}.web.sock")


def target_of(endpoint: str) -> str:
    """The proxy target URL for an orchestrator endpoint string (tcp or unix)."""
    kind, _, rest = endpoint.partition(":")
    args = rest.split(":")
    if kind == "unix":
        return proxy_target(args[0])
    if kind in ("tcp", "tcp6"):
        interface = next((a.split("=", 1)[1] for a in args[1:] if a.startswith("interface=")), "127.0.0.1")
        host = f"[{interface}]" if ":" in interface else interface
        return f"http://{host}:{int(args[0])}"
    raise usage.UsageError(f"--web-listen must be a tcp: or unix: endpoint, got {endpoint!r}")


def orchestrator_endpoint(web_listen: str | None, spec: ContainerSpec, max_waiting: int) -> tuple[str, str]:
    """The orchestrator's listener behind the embedded proxy, and the proxy's target for it:
    --web-listen if given, else a unix socket in --socket-root (which must exist)."""
    if web_listen:
        return web_listen, target_of(web_listen)
    path = web_socket_path(spec)
    # lockfile: a socket file left by a crashed run is replaced, a live one is not.
    # A spike opens a proxy connection per visitor at once (those in line hold theirs):
    # a full backlog refuses a unix connect at once (EAGAIN), which the proxy answers 503.
    backlog = 128 + max_waiting
    return f"unix:{quoteStringArgument(path)}:mode=600:lockfile=1:backlog={backlog}", proxy_target(path)
