"""The proxy's REST API, as configurable-http-proxy 5.3 answers it.

``GET /api/routes[?inactive_since=ISO8601]``, ``GET|POST|DELETE /api/routes/<path>``, guarded
by ``Authorization: token <T>``. Status codes, bodies and content types mirror CHP's
``lib/configproxy.js``, so a client written for one works with the other.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import unquote

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from tmpnb.http.auth import has_token
from tmpnb.proxy.routes import RouteTable, normalize_route_path
from tmpnb.proxy.targets import is_unix_target, parse_target, socket_under

log = Logger()

_API_PATH = re.compile(rb"^/api/routes(/.*)?$", re.DOTALL)


class BadRequest(Exception):
    """A request CHP answers with 400 and this text."""


def parse_inactive_since(text: str) -> float:
    """A time as a timestamp, in the forms JavaScript's ``Date.parse`` (CHP's parser) reads.

    ISO 8601 (without an offset: UTC), RFC 1123 / RFC 2822 (``Tue, 01 Dec 2026 00:00:00 GMT``,
    what HTTP dates and ``Date.toUTCString`` look like), RFC 850, C's asctime, and
    ``Date.toString``'s ``Tue Dec 01 2026 00:00:00 GMT+0000 (…)``.
    """
    moment = _parse_date(text.strip())
    if moment is None:
        raise BadRequest(f"Invalid datestamp '{text}' must be ISO8601.")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


_JS_DATE_STRING = re.compile(r"^(\w{3} \w{3} \d{1,2} \d{4} \d{2}:\d{2}:\d{2}) GMT([+-]\d{4})(?: \(.*\))?$")
_OTHER_FORMS = ("%A, %d-%b-%y %H:%M:%S GMT", "%a %b %d %H:%M:%S %Y")  # RFC 850, asctime


def _parse_date(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    found = _JS_DATE_STRING.match(text)
    if found:
        try:
            return datetime.strptime(f"{found.group(1)} {found.group(2)}", "%a %b %d %Y %H:%M:%S %z")
        except ValueError:
            return None
    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        pass
    for form in _OTHER_FORMS:
        try:
            return datetime.strptime(" ".join(text.split()), form)
        except ValueError:
            continue
    return None


class ProxyAPIResource(Resource):
    """The whole API as one leaf: route paths may hold any character, ``/`` included."""

    isLeaf = True

    def __init__(self, routes: RouteTable, token: str | None, host_routing: bool = False,
                 unix_root: str | None = None) -> None:
        """`unix_root`: the directory every `http+unix://` target must lie under (None: no
        unix targets at all through the API)."""
        super().__init__()
        self._routes = routes
        self._token = token
        self._host_routing = host_routing
        self._unix_root = unix_root

    def render(self, request: Request) -> bytes:
        # CHP sends no content type except on JSON answers.
        request.defaultContentType = None
        found = _API_PATH.match(request.path)
        if found is None:
            return _answer(request, 404, b"Not Found")
        method = request.method.decode("ascii", "replace").upper()
        if method not in ("GET", "POST", "DELETE"):
            return _answer(request, 405, b"Method not supported")
        if not self._authorized(request):
            log.debug("rejected API request without the right token")
            return _answer(request, 403)
        try:
            path = unquote(found.group(1).decode("utf-8"), errors="strict") if found.group(1) else None
        except UnicodeDecodeError:
            return _answer(request, 400, b"Path is not valid UTF-8")
        try:
            if method == "GET":
                return self._get(request, path)
            if method == "POST":
                return self._post(request, path or "/")
            return self._delete(request, path or "/")
        except BadRequest as error:
            return _answer(request, 400, str(error).encode("utf-8"))

    def _authorized(self, request: Request) -> bool:
        if not self._token:
            return True  # as CHP: no token configured, no check
        return has_token(request, self._token, anywhere=True)

    def _get(self, request: Request, path: str | None) -> bytes:
        if path and path != "/":
            route = self._routes.get(path)
            if route is None:
                return _answer(request, 404)
            return _json(request, route)
        inactive_since = None
        # CHP reads the camelCase name first, then the old snake_case one.
        for name in (b"inactiveSince", b"inactive_since"):
            given = request.args.get(name)
            if given and given[0]:
                inactive_since = parse_inactive_since(given[0].decode("utf-8", "replace"))
                break
        return _json(request, self._routes.all(inactive_since))

    def _post(self, request: Request, path: str) -> bytes:
        body = request.content.read() if request.content is not None else b""
        try:
            data = json.loads(body) or {}
        except ValueError as error:
            raise BadRequest(f"Body not valid JSON: {error}") from None
        if not isinstance(data, dict) or not isinstance(data.get("target"), str):
            raise BadRequest("Must specify 'target' as string")
        self._check_unix_target(data["target"])
        if self._host_routing and normalize_route_path(path) != "/":
            data["host"] = normalize_route_path(path).split("/")[1]  # as CHP records it
        self._routes.add(path, data)
        log.info("added route {path} -> {target}", path=path, target=data["target"])
        return _answer(request, 201)

    def _check_unix_target(self, target: str) -> None:
        """A unix socket target must lie under the socket root: any other socket of the host
        (dockerd's is root on the host) is refused."""
        if not is_unix_target(target):
            return
        try:
            socket_path = parse_target(target).socket_path
        except ValueError as error:
            raise BadRequest(str(error)) from None
        if self._unix_root is None or not socket_under(self._unix_root, socket_path):
            log.warn("refused a route to the unix socket {socket}, outside {root}", socket=socket_path,
                     root=self._unix_root)
            raise BadRequest(f"unix socket targets must lie under {self._unix_root or '(no socket root configured)'}")

    def _delete(self, request: Request, path: str) -> bytes:
        if not self._routes.remove(path):
            return _answer(request, 404)
        log.info("removed route {path}", path=path)
        return _answer(request, 204)


def _answer(request: Request, code: int, body: bytes = b"") -> bytes:
    request.setResponseCode(code)
    return body


def _json(request: Request, value: object) -> bytes:
    request.setResponseCode(200)
    request.setHeader(b"content-type", b"application/json")
    # JSON.stringify's compact form
    return json.dumps(value, separators=(",", ":")).encode("utf-8")
