"""The JSON API: POST /api/spawn and GET /api/stats, as tmpnb had them."""

from __future__ import annotations

import json

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.error import UnsupportedMethod
from twisted.web.server import NOT_DONE_YET, Request

import tmpnb
from tmpnb.clients import Refusal
from tmpnb.clients.answers import refused_json
from tmpnb.clients.fetchmeta import API, AUTHORIZED
from tmpnb.faults import log_fault
from tmpnb.http import replies
from tmpnb.http.auth import has_token
from tmpnb.http.methods import OnlyAllowed
from tmpnb.http.replies import departure
from tmpnb.web.flavorchoice import unknown_flavor_json
from tmpnb.web.handout import HandOut, Spawner
from tmpnb.web.paths import BadPath, path_from_text

log = Logger()

MAX_BODY = 4096
# Longest a POST /api/spawn may wait in line ({"wait": seconds}).
MAX_API_WAIT = 60.0


class BadRequest(ValueError):
    pass


def _document(body: bytes) -> dict:
    if not body.strip():
        return {}
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest("body is not JSON") from None
    if not isinstance(document, dict):
        raise BadRequest("body is not a JSON object")
    return document


def requested_wait(body: bytes) -> float:
    """Seconds a POST /api/spawn body is willing to wait in line ("wait"), at most
    MAX_API_WAIT; 0 without it. Raises BadRequest for anything but a number >= 0."""
    wait = _document(body).get("wait", 0)
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait < float("inf"):
        raise BadRequest('"wait" is not a number of seconds')
    return min(float(wait), MAX_API_WAIT)


def requested_below(body: bytes) -> str | None:
    """The notebook path a POST /api/spawn body asks for; None for an empty body.

    The body is optional; if present it is a JSON object whose optional "path"
    is a notebook path below /user/<id>/ and whose optional "wait" is how long
    the caller waits in line (requested_wait). Raises BadRequest for anything else.
    """
    path = _document(body).get("path")
    if path is None:
        return None
    if not isinstance(path, str):
        raise BadRequest('"path" is not a string')
    try:
        return path_from_text(path)
    except BadPath as e:
        raise BadRequest(f'"path" is not allowed: {e}') from None


def requested_flavor(body: bytes) -> object:
    """The "flavor" a POST /api/spawn body names (tmpnb/flavors.py); None without one. Any
    other value than a string is no flavor's name: the caller answers it 404 with the list,
    as the redirector does (tmpnb/redirector/web.py), whichever of the two is asked."""
    return _document(body).get("flavor")


class SpawnAPI(OnlyAllowed):
    """POST /api/spawn -> {"url": "/user/<id>/?token=…"}; 429 {"status": "full"}.

    With {"wait": seconds} the caller waits in line (at most that long) when no container
    is pooled; without it, "full" comes at once, as tmpnb answered.

    With API_AUTH_TOKEN set, callers must send `Authorization: token <it>`.
    """

    isLeaf = True

    def __init__(self, handout: HandOut, api_token: str | None, retry_after: int) -> None:
        super().__init__()
        self._handout = handout
        self._api_token = api_token.encode("utf-8") if api_token else None
        self._retry_after = retry_after

    def _authorized(self, request: Request) -> bool:
        if self._api_token is None:
            return True
        return has_token(request, self._api_token)

    def render_POST(self, request: Request) -> bytes | int:
        if not self._authorized(request):
            request.setHeader(b"WWW-Authenticate", b"token")
            return replies.json_reply(request, 401, {"status": "unauthorized"})
        body = request.content.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            return replies.json_reply(request, 413, {"status": "body too large"})
        try:
            asked = requested_flavor(body)
        except BadRequest as e:
            return replies.json_reply(request, 400, {"status": "bad request", "reason": str(e)})
        # The flavor first, as the redirector judges it: an unknown one is a 404 whatever else is wrong.
        flavors = self._handout.flavors
        flavor = flavors.get(asked) if asked is None or isinstance(asked, str) else None
        if flavor is None:  # never a server of another flavor
            return unknown_flavor_json(request, flavors, asked)
        try:
            below = requested_below(body)
            wait = requested_wait(body)
        except BadRequest as e:
            return replies.json_reply(request, 400, {"status": "bad request", "reason": str(e)})
        if below is None:  # no "path": the flavor's landing page, if it has one
            below = flavor.landing or ""
        # The token's holder spawns for its own users: trusted with the whole capacity.
        kind = API if self._api_token is None else AUTHORIZED
        ticket = self._handout.take(request, below, join=wait > 0, kind=kind, flavor=flavor)  # not willing to wait: "full"
        if isinstance(ticket, Refusal):  # not an API call, or over the client's share
            return refused_json(request, ticket)
        if ticket is None:
            request.setHeader(b"Retry-After", str(self._retry_after).encode("ascii"))
            return replies.json_reply(request, 429, {"status": "full"})
        left = departure(request)
        request.notifyFinish().addErrback(lambda _: ticket.leave())

        def answer(assignment: object) -> None:
            if left:
                return
            if assignment is None or ticket.state != "ready":
                ticket.leave("expired")  # waited as long as asked
                request.setHeader(b"Retry-After", str(self._retry_after).encode("ascii"))
                replies.finish(request, left, replies.json_reply(request, 429, {"status": "full"}))
                return
            url = self._handout.url(ticket)
            replies.finish(request, left, replies.json_reply(request, 200, {"url": url}))

        def failed(reason: Failure) -> None:
            log_fault(log, reason, "handing out a notebook through the API")
            request.setHeader(b"Retry-After", str(self._retry_after).encode("ascii"))
            replies.finish(request, left, replies.json_reply(request, 503, {"status": "unavailable"}))

        # A ticket served at once waits for its route however long that takes, as before.
        timeout = wait if ticket.state == "waiting" else MAX_API_WAIT
        ticket.wait(timeout).addCallbacks(answer, failed).addErrback(
            lambda reason: log.failure("answering an API spawn failed", reason)
        )
        return NOT_DONE_YET

    def render_HEAD(self, request: Request) -> bytes:
        # twisted.web's default HEAD calls render_GET, which this resource has not got.
        raise UnsupportedMethod((b"POST", b"OPTIONS"))


class StatsAPI(OnlyAllowed):
    """GET /api/stats: tmpnb's four keys, plus the pool's own breakdown by state."""

    isLeaf = True

    def __init__(self, pool: Spawner, container_image: str, node: dict | None = None) -> None:
        super().__init__()
        self._pool = pool
        self._container_image = container_image
        self._node = node or {}  # who this node is, for a redirector: "node", "public_url"

    def render_GET(self, request: Request) -> bytes:
        stats = dict(self._pool.stats())
        stats["version"] = tmpnb.__version__
        stats["container_image"] = self._container_image
        stats.update(self._node)
        return replies.json_reply(request, 200, stats)
