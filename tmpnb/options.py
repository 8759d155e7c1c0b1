"""What the command lines of `twistd tmpnb` and `twistd tmpnb-redirector` share: the coercers
of their option values and the environment variables that carry their secrets.

Standard library only: the redirector's tap imports this, and must not load the node's code.
"""

from __future__ import annotations

import re

# Secrets travel in the environment, never on the command line (ps shows it to everyone).
PROXY_TOKEN_VARIABLE = "CONFIGPROXY_AUTH_TOKEN"
API_TOKEN_VARIABLE = "API_AUTH_TOKEN"
ADMIN_TOKEN_VARIABLE = "ADMIN_AUTH_TOKEN"

_YES_NO = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}


def yes_no(value: str) -> bool:
    answer = _YES_NO.get(value.lower())
    if answer is None:
        raise ValueError(f"expected yes or no, got {value!r}")
    return answer


yes_no.coerceDoc = "yes or no."  # type: ignore[attr-defined]


def optional_int(value: str) -> int | None:
    return None if value in ("", "none", "None") else int(value)


def endpoint_or_port(value: str) -> str:
    """tmpnb's --admin-port took a port number: keep that working, on loopback."""
    return f"tcp:{int(value)}:interface=127.0.0.1" if value.isdigit() else value


# A flavor's name (--flavor NAME=IMAGE), as nodes accept it and the redirector believes it: short
# and plain, so that it can stand in a URL, a page, a label and a metric label unescaped.
FLAVOR_NAME = re.compile(r"[a-z0-9-]{1,32}")


def flavor_name(value: object) -> str | None:
    """`value` if it is a well-formed flavor name, else None."""
    return value if isinstance(value, str) and FLAVOR_NAME.fullmatch(value) else None
