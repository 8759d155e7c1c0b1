"""The proxy's route table: path prefix → target data, with each route's last activity.

Shared by the forwarding proxy (``match`` and ``touch`` on every request) and the REST API
(``add``, ``remove``, ``get``, ``all``). Paths are kept as configurable-http-proxy keeps them:
a leading ``/``, no trailing ``/``, ``/`` alone being the root route.
"""

from __future__ import annotations

import time
from urllib.parse import unquote

from twisted.internet.interfaces import IReactorTime


def normalize_route_path(path: str) -> str:
    """The table's key for a route path, as CHP's ``trimPrefix``: a leading ``/``, one trailing ``/`` off.

    ``/user/abc/`` and ``user/abc`` both give ``/user/abc``; ``/user//abc`` stays as it is
    (CHP keeps the empty segment, and so does JupyterHub's route for a user named ``""``).
    """
    if not path.startswith("/"):
        path = "/" + path
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path


def resolve_request_path(raw_path: str | bytes) -> str | None:
    """A request path decoded once and free of dot segments, or None if it climbs above ``/``.

    The query string is dropped; a trailing ``/`` is kept since the backend may care about it.
    Leading slashes collapse into one; empty segments inside stay, as CHP's route trie keeps them.
    Percent-decoding happens once, after splitting off the query, so ``%2e%2e`` is resolved
    like ``..`` and ``%252e`` stays the literal text ``%2e``.
    """
    if isinstance(raw_path, bytes):
        raw_path = raw_path.decode("utf-8", "surrogateescape")
    raw_path = raw_path.split("?", 1)[0].split("#", 1)[0]
    decoded = unquote(raw_path, errors="surrogateescape")
    if "\x00" in decoded:
        return None
    resolved: list[str] = []
    segments = decoded.split("/")
    for index, segment in enumerate(segments):
        if segment == "." or (segment == "" and (not resolved or index == len(segments) - 1)):
            continue
        if segment == "..":
            if not resolved:
                return None  # would escape the root: refuse rather than clamp
            resolved.pop()
        else:
            resolved.append(segment)
    while resolved and resolved[-1] == "":
        resolved.pop()  # "/a//" is "/a/"
    trailing = "/" if resolved and segments[-1] in ("", ".", "..") else ""
    return "/" + "/".join(resolved) + trailing


def to_millis(timestamp: float) -> int:
    """A clock reading at CHP's resolution: JavaScript dates are whole milliseconds."""
    return round(timestamp * 1000)


def format_activity(timestamp: float) -> str:
    """A time as JavaScript's ``Date.toISOString`` writes it, which is what CHP returns."""
    seconds, millis = divmod(to_millis(timestamp), 1000)
    # gmtime and %-formatting: half the time of datetime's strftime, and every listing of
    # the routes (each heartbeat) formats every route's (benchmarks/scale.py).
    t = time.gmtime(seconds)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (
        t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, millis
    )


class _Route:
    __slots__ = ("data", "last_activity", "shown")

    def __init__(self, data: dict, last_activity: int) -> None:
        self.data = data
        # whole milliseconds, so that what `all` compares is exactly what `get` shows
        self.last_activity = last_activity
        # (last_activity, as formatted): every heartbeat lists every route, and most have
        # not moved since the last listing (benchmarks/scale.py)
        self.shown: tuple[int, str] | None = None


class RouteTable:
    """Routes by path prefix; every lookup is a handful of dict probes."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._routes: dict[str, _Route] = {}

    def __len__(self) -> int:
        return len(self._routes)

    def add(self, path: str, data: dict) -> None:
        """Add or replace a route; like CHP, replacing resets its last activity to now."""
        stored = dict(data)
        stored.pop("last_activity", None)  # ours to keep, not the caller's to set
        self._routes[normalize_route_path(path)] = _Route(stored, to_millis(self._clock.seconds()))

    def remove(self, path: str) -> bool:
        """Forget a route; False when there was none."""
        return self._routes.pop(normalize_route_path(path), None) is not None

    def get(self, path: str) -> dict | None:
        route = self._routes.get(normalize_route_path(path))
        return None if route is None else self._render(route)

    def match(self, request_path: str | bytes) -> tuple[str, dict] | None:
        """The longest route that is a prefix of the request path, on ``/`` boundaries.

        Returns the route's path and its stored data (not a copy, and without
        ``last_activity``: this runs on every request; callers must not mutate it).
        """
        resolved = resolve_request_path(request_path)
        if resolved is None:
            return None
        candidate = resolved.rstrip("/") or "/"
        routes = self._routes
        while True:
            route = routes.get(candidate)
            if route is not None:
                return candidate, route.data
            if candidate == "/":
                return None
            cut = candidate.rfind("/")
            candidate = candidate[:cut] if cut > 0 else "/"

    def touch(self, path: str) -> None:
        """Record activity on a route now; ``path`` is the one ``match`` returned."""
        route = self._routes.get(path)
        if route is not None:
            route.last_activity = to_millis(self._clock.seconds())

    def all(self, inactive_since: float | None = None) -> dict[str, dict]:
        """Every route, or (as CHP) only those whose last activity is before ``inactive_since``.

        ``inactive_since`` is in seconds, compared at millisecond resolution as CHP does.
        """
        cutoff = None if inactive_since is None else to_millis(inactive_since)
        return {
            path: self._render(route)
            for path, route in self._routes.items()
            if cutoff is None or route.last_activity < cutoff
        }

    def paths(self) -> list[str]:
        """Every route's path, as a list (a snapshot: the table may change after)."""
        return list(self._routes)

    def last_activity(self, path: str) -> float | None:
        """A route's last activity as a timestamp of the injected clock."""
        route = self._routes.get(normalize_route_path(path))
        return None if route is None else route.last_activity / 1000

    def listed(self, path: str, cutoff: int | None = None) -> dict | None:
        """One route as `all(inactive_since)` lists it (None if gone, or active since
        `cutoff`, in milliseconds): one lookup, for a listing made a stretch at a time."""
        route = self._routes.get(path)
        if route is None or (cutoff is not None and route.last_activity >= cutoff):
            return None
        return self._render(route)

    @staticmethod
    def _render(route: _Route) -> dict:
        shown = route.shown
        if shown is None or shown[0] != route.last_activity:
            shown = route.shown = (route.last_activity, format_activity(route.last_activity / 1000))
        return {**route.data, "last_activity": shown[1]}
