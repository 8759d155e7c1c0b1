"""`Authorization: token <T>` checked on bytes, whatever a client sends.

Every listener with a token (admin, spawn API, share API, redirector admin, proxy API) reads
the header through here: a value with non-ASCII or control bytes, another scheme, an empty
one or none at all is simply not the token. Nothing is decoded, so nothing can raise
(`hmac.compare_digest` raises TypeError on non-ASCII str; a UTF-8 decode on stray bytes).
"""

from __future__ import annotations

import hmac
import re

from twisted.web.server import Request

# A token is one run of visible ASCII; the scheme is case-insensitive (RFC 9110, 11.1).
_TOKEN_SCHEME = re.compile(rb"^[Tt][Oo][Kk][Ee][Nn][ \t]+([\x21-\x7e]+)[ \t]*$")
# configurable-http-proxy takes the first "token <T>" anywhere in the header.
_CHP_TOKEN = re.compile(rb"token\s+([\x21-\x7e]+)")


def given_token(request: Request, anywhere: bool = False) -> bytes | None:
    """The token of a `token <T>` Authorization header; None for anything else. `anywhere`:
    CHP's reading, the first `token <T>` in the header."""
    header = request.getHeader(b"authorization")
    if not header:
        return None
    found = (_CHP_TOKEN.search if anywhere else _TOKEN_SCHEME.match)(header)
    return found.group(1) if found else None


def has_token(request: Request, expected: str | bytes | None, anywhere: bool = False) -> bool:
    """Whether the request carries `expected` (False when nothing is expected)."""
    if not expected:
        return False
    if isinstance(expected, str):
        expected = expected.encode("utf-8")
    given = given_token(request, anywhere)
    return given is not None and hmac.compare_digest(given, expected)
