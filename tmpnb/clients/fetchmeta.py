"""Whether a request may be handed a container: a navigation or an API call, never a subresource.

Browsers say what a request is for in the `Sec-Fetch-*` headers (Fetch Metadata). Any web page
can make a visitor's browser ask for `/` as an image, a script or a stylesheet; each such
request would start a notebook server nobody sees. Only these get one:

- pages (GET /, /spawn/…, POST /remix/…): a navigation, `Sec-Fetch-Mode: navigate` (or the old
  `nested-navigate`) to a `document`, `iframe` or `frame`;
- the API (POST /api/spawn): those, or a `fetch`/XHR with CORS (`cors`, `same-origin`) whose
  destination is `empty` (thebe's call).

A client that sends no Fetch Metadata (curl, Python, an older browser) is judged by nothing and
passes; a browser that sends only one of the two headers is judged by that one. Prefetches and
prerenders (`Sec-Purpose`/`Purpose: prefetch`) are refused: nobody is looking at them yet.
"""

from __future__ import annotations

from twisted.web.iweb import IRequest

PAGE = "page"
API = "api"
# POST /api/spawn authorized with API_AUTH_TOKEN: the token's holder spawns for its own users,
# from its own address; it is trusted with the whole capacity and not counted (tmpnb/clients/gate.py).
AUTHORIZED = "authorized"

_NAVIGATION_MODES = frozenset({"navigate", "nested-navigate"})
_NAVIGATION_DESTS = frozenset({"document", "iframe", "frame"})
_API_MODES = frozenset({"cors", "same-origin"})
_API_DESTS = frozenset({"empty"})


def _header(request: IRequest, name: bytes) -> str | None:
    value = request.getHeader(name)
    return None if value is None else value.decode("latin-1").strip().lower()


def _fits(mode: str | None, dest: str | None, modes: frozenset[str], dests: frozenset[str]) -> bool:
    return (mode is None or mode in modes) and (dest is None or dest in dests)


def is_prefetch(request: IRequest) -> bool:
    purposes = " ".join(filter(None, (_header(request, b"sec-purpose"), _header(request, b"purpose"),
                                      _header(request, b"x-moz"))))
    return "prefetch" in purposes or "prerender" in purposes


def may_hand_out(request: IRequest, kind: str) -> bool:
    """Whether `request` (a `PAGE` or an `API` call) may be given a container."""
    if is_prefetch(request):
        return False
    mode = _header(request, b"sec-fetch-mode")
    dest = _header(request, b"sec-fetch-dest")
    if mode is None and dest is None:
        return True  # curl, Python, a browser without Fetch Metadata
    if _fits(mode, dest, _NAVIGATION_MODES, _NAVIGATION_DESTS):
        return True
    return kind == API and _fits(mode, dest, _API_MODES, _API_DESTS)
