"""The cookie that sends a visitor who reloads `/` back to the server they already have.

When a page hands a visitor their container, the orchestrator sets a host-locked cookie on its
own host naming that container: `<container id>.<HMAC of it under a secret of this process>`.
Nobody can make one for a container they were not handed: the HMAC is unforgeable. A reload of
`/` (or a `/spawn/…` link) with a valid cookie for a container that lives is redirected into it,
*without* the token: the visitor's browser is logged in to their server by the server's own
login cookie, set on their first visit. So a cookie that leaks (in path mode every server on the
shared origin receives it) or is tossed onto a victim from a sibling subdomain logs nobody into a
server that is not already theirs; at worst the victim sees a login page instead of a new server.

`cookie_name` is the one place the name is chosen: `__Host-` over https (no Domain, Path=/,
Secure: a sibling subdomain cannot set or overwrite it), the bare name over plain http, where
browsers refuse the prefix.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from twisted.web.iweb import IRequest

COOKIE = "tmpnb-server"
_VALUE = re.compile(r"^([A-Za-z0-9_-]{1,64})\.([0-9a-f]{32})$")


def cookie_name(secure: bool) -> bytes:
    """The cookie's name: host-locked with `__Host-` over https."""
    return ("__Host-" + COOKIE if secure else COOKIE).encode("ascii")


class ServerCookies:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, container_id: str) -> str:
        return hmac.new(self._secret, b"tmpnb-server:" + container_id.encode("ascii"), hashlib.sha256).hexdigest()[:32]

    def value(self, container_id: str) -> str:
        return f"{container_id}.{self._mac(container_id)}"

    def container(self, value: str) -> str | None:
        """The container a cookie value names, if this process made it; None else."""
        found = _VALUE.match(value)
        if found is None:
            return None
        container_id, mac = found.groups()
        return container_id if hmac.compare_digest(mac, self._mac(container_id)) else None

    def set(self, request: IRequest, container_id: str, secure: bool) -> None:
        """Give the visitor the cookie for their container (a session cookie on our host)."""
        request.addCookie(cookie_name(secure), self.value(container_id).encode("ascii"), path=b"/",
                          secure=secure, httpOnly=True, sameSite="lax")

    def read(self, request: IRequest, secure: bool) -> str | None:
        """The container the request's cookie names, if valid."""
        value = request.getCookie(cookie_name(secure))
        if value is None:
            return None
        return self.container(value.decode("latin-1"))
