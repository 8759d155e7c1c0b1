"""The one start-up warning for path mode on a public address.

In path mode every visitor's server shares tmpnb's origin: a visitor's kernel can replace its
own server with a page that reads any other visitor's notebook server in the same browser.
That is fine on a laptop; on an address others can reach it needs --subdomain-host.
"""

from __future__ import annotations

import ipaddress
import re

from twisted.logger import Logger

from tmpnb.origins import Origins, is_loopback_name

log = Logger()

WARNING = (
    "tmpnb listens on {listen}, which others can reach, without --subdomain-host: every visitor's "
    "notebook server shares one origin there, so a visitor's code can serve a page that reads and "
    "runs code in the notebook server of any other visitor who opens it. Use --subdomain-host "
    "(docs/security.md) before putting tmpnb on a public address."
)


def endpoint_interface(listen: str) -> str | None:
    """The address a tcp:/ssl: endpoint string listens on ("" for every interface); None for
    unix sockets and other kinds, which are not reachable from the network."""
    parts = re.split(r"(?<!\\):", listen)  # "\:" is a colon inside a value (IPv6)
    kind = parts[0].lower()
    if kind not in ("tcp", "tcp6", "ssl"):
        return None
    for part in parts[1:]:
        if part.startswith("interface="):
            return part[len("interface="):].replace("\\:", ":")
    return ""


def is_loopback_interface(interface: str) -> bool:
    if is_loopback_name(interface):
        return True
    try:
        return ipaddress.ip_address(interface.strip("[]")).is_loopback
    except ValueError:
        return False  # "" (every interface) or a name: reachable


def exposed(listen: str, origins: Origins) -> bool:
    """Whether path mode listens where others can reach it."""
    interface = endpoint_interface(listen)
    return not origins.subdomains and interface is not None and not is_loopback_interface(interface)


def warn_if_exposed(listen: str, origins: Origins) -> bool:
    """Log the warning once if `exposed`; says whether it did."""
    if not exposed(listen, origins):
        return False
    log.warn(WARNING, listen=listen)
    return True
