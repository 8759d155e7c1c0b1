"""The notebook servers' cookies, host-locked in subdomain mode.

Sibling subdomains are one site: a page on `a.nb.example.org` can set a cookie with
`Domain=nb.example.org` that every other visitor's server receives ("cookie tossing",
JupyterHub advisory GHSA-7r3h-4ph8-w38g). jupyter_server's login cookie (`username-<host>`) and
tornado's `_xsrf` cookie would take a tossed one: tornado's XSRF check only compares the
`_xsrf` cookie with the `_xsrf` form field, both of which the attacker then chose.

A cookie whose name starts with `__Host-` is accepted by browsers only with `Secure`,
`Path=/` and no `Domain`: set by the host itself, never by a sibling. In subdomain mode each
server has a host of its own, so both cookies take that prefix and `Path=/`. Browsers accept
`Secure` cookies over https, and over plain http on `localhost` and `*.localhost` (secure
contexts); `--subdomain-host` allows http for those names only.

Path mode keeps jupyter_server's defaults: every server shares one host there, and `Path=/`
would make them overwrite one another's cookies.
"""

from __future__ import annotations

LOGIN_COOKIE = "__Host-tmpnb-login"
XSRF_COOKIE = "__Host-tmpnb-xsrf"
_LOCKED = {"path": "/", "secure": True}


def xsrf_tornado_settings(host_locked: bool) -> dict:
    """What --ServerApp.tornado_settings adds for tornado's XSRF cookie."""
    if not host_locked:
        return {}
    return {"xsrf_cookie_name": XSRF_COOKIE, "xsrf_cookie_kwargs": dict(_LOCKED)}


def login_cookie_arguments(host_locked: bool) -> list[str]:
    """The server command's extra arguments for jupyter_server's login cookie."""
    if not host_locked:
        return []
    return [f"--IdentityProvider.cookie_name={LOGIN_COOKIE}",
            f"--IdentityProvider.cookie_options={_LOCKED!r}",
            "--IdentityProvider.secure_cookie=True"]
