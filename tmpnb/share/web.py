"""The web side of sharing: POST /api/share, /share/<id>[.html|.ipynb|/delete/<key>], /remix/<id>.

A shared notebook is untrusted content served from tmpnb's origin, next to every visitor's
live server. Its HTML (/share/<id>.html) goes out with a CSP `sandbox` (an opaque origin,
no scripts, no forms) and `script-src 'none'`, and the page around it (/share/<id>) shows it
in an <iframe sandbox> without allow-same-origin: whatever the notebook holds cannot act
on tmpnb's origin. Nothing is loaded from elsewhere; nothing is indexed or given a referrer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from datetime import datetime, timezone
from html import escape
from typing import Any
from urllib.parse import quote

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from tmpnb.clients import Refusal
from tmpnb.clients.answers import refused_page
from tmpnb.faults import cause_of, is_expected, log_fault
from tmpnb.flavors import Flavor
from tmpnb.http import replies
from tmpnb.http.auth import given_token
from tmpnb.http.methods import OnlyAllowed
from tmpnb.http.replies import departure
from tmpnb.origins import Origins
from tmpnb.pages import render_document, render_page
from tmpnb.share.contents import ServerRefused
from tmpnb.share.limits import RateLimit, client_address
from tmpnb.share.render import RenderFailed
from tmpnb.share.service import Forbidden, Sharing, TooMany, delete_url, iso, share_url
from tmpnb.share.snapshot import Rejected
from tmpnb.share.store import Share
from tmpnb.web import Tree, TreeExtension
from tmpnb.web.gone import GonePage
from tmpnb.web.handout import HandOut

log = Logger(namespace="tmpnb.share")

MAX_BODY = 4096
REMIX_HOLD = 30.0  # seconds a remix waits for the container the line is readying for it
IPYNB_TYPE = b"application/x-ipynb+json"


def untrusted_csp(frame_ancestors: str) -> bytes:
    """For the notebook's own HTML: sandboxed (opaque origin, no scripts), nothing from elsewhere."""
    ancestors = " ".join(dict.fromkeys(["'self'", *frame_ancestors.split()]))
    return (
        "sandbox; default-src 'none'; script-src 'none'; style-src 'unsafe-inline'; "
        f"img-src data:; font-src data:; form-action 'none'; frame-ancestors {ancestors}"
    ).encode("latin-1")


def page_csp(frame_ancestors: str, visitor_source: str = "") -> bytes:
    """For tmpnb's own page around it: no scripts at all, frames and forms to ourselves only.
    The Remix form redirects to the new server: in subdomain mode that is on a visitor's host
    (`visitor_source`, tmpnb.origins.Origins), which form-action must allow too."""
    forms = " ".join(["'self'", visitor_source]).strip()
    return (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-src 'self'; "
        f"form-action {forms}; frame-ancestors {frame_ancestors}"
    ).encode("latin-1")


def private(request: Request) -> None:
    """Shares are unlisted: found only by those given the link."""
    request.setHeader(b"X-Robots-Tag", b"noindex, nofollow")
    request.setHeader(b"Referrer-Policy", b"no-referrer")


def answer_later(request: Request, work: Coroutine[Any, Any, bytes], what: str) -> int:
    """Run `work` (it sets the code and headers and returns the body) and finish the request."""
    left = departure(request)

    def failed(reason: Any) -> bytes:
        # A server that went away mid-request is expected (a warning); anything else is a bug.
        log_fault(log, reason, "{what}", what=what)
        code = 503 if is_expected(reason) else 500
        return replies.html(request, code, render_page("share_limit", "Something went wrong",
                                                        what="Something went wrong on our side."))

    d = Deferred.fromCoroutine(work)
    d.addErrback(failed)
    d.addCallback(lambda body: replies.finish(request, left, body))
    d.addErrback(lambda reason: log.failure("finishing {what} failed", reason, what=what))
    return NOT_DONE_YET


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def ended_page(request: Request, share: Share) -> bytes:
    why = "was deleted" if share.deleted is not None else "has expired"
    page = render_page("share_gone", "This share has ended", path=share_url(share.id), why=why)
    return replies.html(request, http.GONE, page)


def not_found(request: Request) -> bytes:
    page = render_page("notfound", "Nothing here", path=request.path.decode("utf-8", "replace"))
    return replies.html(request, http.NOT_FOUND, page)


def _token_of(request: Request) -> str:
    given = given_token(request)
    return "" if given is None else given.decode("ascii")  # visible ASCII only


class ShareAPI(OnlyAllowed):
    """POST /api/share {"url", "expires_days"?, "outputs"?} with the server's token → 201."""

    isLeaf = True

    def __init__(self, sharing: Sharing, origins: Origins = Origins()) -> None:
        super().__init__()
        self._sharing = sharing
        # Subdomain mode: the Share button posts from a visitor's subdomain; its links must
        # lead to the bare host, so they are absolute.
        self._origins = origins

    def render_POST(self, request: Request) -> int | bytes:
        body = request.content.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            return replies.json_reply(request, 413, {"status": "body too large"})
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            return replies.json_reply(request, 400, {"status": "bad request", "reason": "body is not JSON"})
        if not isinstance(document, dict):
            return replies.json_reply(request, 400, {"status": "bad request", "reason": "body is not an object"})
        return answer_later(request, self._share(request, document), "sharing")

    async def _share(self, request: Request, document: dict) -> bytes:
        outputs = document.get("outputs", True)
        if not isinstance(outputs, bool):
            return replies.json_reply(request, 400, {"status": "bad request", "reason": '"outputs" must be true or false'})
        try:
            created = await self._sharing.share(document.get("url"), _token_of(request),
                                                document.get("expires_days"), outputs)
        except Rejected as e:
            return replies.json_reply(request, e.code, {"status": "rejected", "reason": str(e)})
        except Forbidden:
            return replies.json_reply(request, 403, {"status": "forbidden"})
        except TooMany as e:
            request.setHeader(b"Retry-After", b"600")
            return replies.json_reply(request, 429, {"status": "too many shares", "reason": str(e)})
        except ServerRefused as e:
            if e.code == 404:
                return replies.json_reply(request, 404, {"status": "no such notebook"})
            log.warn("a server refused to give its notebook for a share: {code}", code=e.code)
            return replies.json_reply(request, 502, {"status": "the notebook server did not answer"})
        except Exception as e:
            reason = Failure(e)
            if not is_expected(reason):
                raise
            log.warn("sharing from a server failed: {cause}", cause=cause_of(reason))
            return replies.json_reply(request, 502, {"status": "the notebook server did not answer"})
        share = created.share
        return replies.json_reply(request, 201, {
            "id": share.id,
            "url": self._origins.orchestrator_url(share_url(share.id)),
            "delete_url": self._origins.orchestrator_url(delete_url(share.id, created.delete_key)),
            "expires": iso(share.expires),
        })


class ShareBranch(Resource):
    """/share/<id>, /share/<id>.html, /share/<id>.ipynb, /share/<id>/delete/<key>."""

    isLeaf = True

    def __init__(self, sharing: Sharing, render_limit: RateLimit, frame_ancestors: str,
                 visitor_source: str = "") -> None:
        super().__init__()
        self._sharing = sharing
        self._render_limit = render_limit
        self._frame_ancestors = frame_ancestors
        self._visitor_source = visitor_source

    def render(self, request: Request) -> int | bytes:
        private(request)
        parts = [p.decode("utf-8", "replace") for p in request.postpath]
        if len(parts) == 1 and request.method in (b"GET", b"HEAD"):
            name = parts[0]
            for suffix, kind in ((".ipynb", "raw"), (".html", "html")):
                if name.endswith(suffix):
                    return answer_later(request, self._read(request, name[: -len(suffix)], kind), "reading a share")
            return answer_later(request, self._read(request, name, "page"), "reading a share")
        if len(parts) == 3 and parts[1] == "delete" and request.method in (b"GET", b"HEAD", b"POST", b"DELETE"):
            return answer_later(request, self._delete(request, parts[0], parts[2]), "deleting a share")
        if len(parts) == 1 or (len(parts) == 3 and parts[1] == "delete"):
            request.setHeader(b"Allow", b"GET, HEAD" if len(parts) == 1 else b"GET, POST, DELETE")
            return replies.json_reply(request, 405, {"status": "method not allowed"})
        return not_found(request)

    async def _read(self, request: Request, share_id: str, kind: str) -> bytes:
        share = await self._sharing.get(share_id)
        if share is None:
            return not_found(request)
        if not self._sharing.live(share):
            return ended_page(request, share)
        if kind == "page":
            request.setHeader(b"Content-Security-Policy", page_csp(self._frame_ancestors, self._visitor_source))
            page = render_document("share_view", id=share.id, notebook=share.name,
                                   created=_when(share.created), expires=_when(share.expires))
            return replies.html(request, 200, page)
        etag = f'"{share.content_hash}"'.encode("ascii")
        if kind == "html":
            # The HTML depends on the renderer as well as the notebook.
            etag = f'"{share.content_hash}-html"'.encode("ascii")
        request.setHeader(b"Cache-Control", b"no-cache")
        request.setHeader(b"Content-Security-Policy", untrusted_csp(self._frame_ancestors))
        if request.setETag(etag) == http.CACHED:
            return b""
        content = await self._sharing.content(share)
        if content is None:  # deleted between the two reads
            return ended_page(request, share)
        if kind == "raw":
            request.setHeader(b"Content-Type", IPYNB_TYPE)
            request.setHeader(b"Access-Control-Allow-Origin", b"*")
            request.setHeader(b"Content-Disposition",
                              f"attachment; filename*=UTF-8''{quote(share.name, safe='')}".encode("ascii"))
            return content
        if (self._sharing.renderer.cached(share.content_hash) is None
                and not self._render_limit.allow(client_address(request))):
            request.setHeader(b"Retry-After", b"60")
            page = render_page("share_limit", "Slow down", what="You opened many shared notebooks in a minute.")
            return replies.html(request, 429, page)
        try:
            html = await self._sharing.html(share, content)
        except RenderFailed as e:
            log.warn("could not render share {share}: {reason}", share=share.id, reason=str(e))
            page = render_page("share_limit", "Cannot show this notebook",
                               what="This notebook is too large or too complex to show here; download it instead.")
            return replies.html(request, 503, page)
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        return html

    async def _delete(self, request: Request, share_id: str, key: str) -> bytes:
        share = await self._sharing.get(share_id)
        if share is None:
            return not_found(request)
        if request.method in (b"GET", b"HEAD"):
            # Link previewers fetch GETs: a GET only asks.
            if not self._sharing.live(share):
                return ended_page(request, share)
            page = render_page("share_delete", "Delete this share?", id=share.id, notebook=share.name)
            return replies.html(request, 200, page)
        if share.deleted is not None:
            return ended_page(request, share)
        if not await self._sharing.delete(share_id, key):
            return not_found(request)
        if request.method == b"DELETE":
            request.setResponseCode(204)
            return b""
        return replies.html(request, 200, render_page("share_deleted", "Share deleted", id=share.id))


class RemixPage(OnlyAllowed):
    """GET /remix/<id>: a page with a button; POST: a fresh server holding the notebook."""

    isLeaf = True

    def __init__(self, sharing: Sharing, handout: HandOut, retry_after: int) -> None:
        super().__init__()
        self._sharing = sharing
        self._handout = handout
        self._retry_after = retry_after

    def _share_id(self, request: Request) -> str:
        return request.postpath[0].decode("utf-8", "replace") if len(request.postpath) == 1 else ""

    def render_GET(self, request: Request) -> int:
        private(request)
        return answer_later(request, self._ask(request, self._share_id(request)), "a remix page")

    def render_POST(self, request: Request) -> int:
        private(request)
        return answer_later(request, self._remix(request, self._share_id(request)), "remixing")

    async def _ask(self, request: Request, share_id: str) -> bytes:
        share = await self._sharing.get(share_id)
        if share is None:
            return not_found(request)
        if not self._sharing.live(share):
            return ended_page(request, share)
        flavor, served = self._flavor(share)
        note = "" if served else (f'<p class="quiet">This notebook was made in the flavor "{escape(share.flavor or "")}",'
                                  " which this server does not offer: it opens in the default one.</p>")
        return replies.html(request, 200, render_page("share_remix", f"Remix {share.name}", markup={"note": note},
                                                      id=share.id, notebook=share.name))

    def _flavor(self, share: Share) -> tuple[Flavor | None, bool]:
        """The flavor to remix `share` into (None: the node's default), and whether that is the
        flavor it was shared from. A share older than flavors (no flavor) is the default's."""
        if share.flavor is None:
            return None, True
        flavor = self._handout.flavors.get(share.flavor)
        return flavor, flavor is not None

    async def _remix(self, request: Request, share_id: str) -> bytes:
        share = await self._sharing.get(share_id)
        if share is None:
            return not_found(request)
        if not self._sharing.live(share):
            return ended_page(request, share)
        content = await self._sharing.content(share)
        if content is None:
            return ended_page(request, share)
        # A pooled container of the flavor it was shared from (the default when this node lacks
        # it: the remix page said so), through the same line /spawn uses; a remix does not queue.
        flavor, _ = self._flavor(share)
        ticket = self._handout.take(request, "notebooks/" + quote(share.name, safe=""), join=False, flavor=flavor)
        if isinstance(ticket, Refusal):  # not a navigation, or over the client's share
            return refused_page(request, ticket)
        if ticket is None:
            return replies.no_vacancy(request, self._retry_after)
        left = departure(request)
        try:
            assignment = await ticket.wait(REMIX_HOLD)
        except Exception as e:  # its route could not be added: the proxy is away
            log.warn("remixing {share}: no container: {reason}", share=share.id, reason=repr(e))
            return replies.no_vacancy(request, self._retry_after)
        if assignment is None or ticket.state != "ready":
            ticket.leave()
            return replies.no_vacancy(request, self._retry_after)
        url = self._handout.url(ticket)  # the container is this visitor's from now on
        try:
            await self._sharing.prepare_remix(share, content)(assignment)
        except Exception as e:  # the server went away, or refused the notebook
            log.warn("remixing {share} into {container} failed: {reason}", share=share.id,
                     container=assignment.container_id, reason=repr(e))
            self._sharing.discard(assignment.container_id)
            return replies.no_vacancy(request, self._retry_after)
        if left:
            self._sharing.discard(assignment.container_id)
            return b""  # nobody to send in
        return replies.redirect(request, url)


def shares_lister(sharing: Sharing) -> Callable[[str], Deferred[list[tuple[str, str]]]]:
    """For the "This notebook has ended" page: the live shares of one old server."""

    def listing(container_id: str) -> Deferred[list[tuple[str, str]]]:
        async def shares() -> list[tuple[str, str]]:
            return [(share_url(s.id), s.name) for s in await sharing.from_container(container_id)]

        return Deferred.fromCoroutine(shares())

    return listing


def mount(root: Resource, api: Resource, sharing: Sharing, handout: HandOut, frame_ancestors: str,
          retry_after: int, origins: Origins = Origins()) -> None:
    """Put sharing's resources into the orchestrator's tree."""
    limit = RateLimit(sharing.clock, sharing.settings.renders_per_minute, 60.0)
    api.putChild(b"share", ShareAPI(sharing, origins))
    root.putChild(b"share", ShareBranch(sharing, limit, frame_ancestors, origins.visitor_source))
    root.putChild(b"remix", RemixPage(sharing, handout, retry_after))


def sharing_extension(sharing: Sharing) -> TreeExtension:
    """Share and remix in the orchestrator's tree (make_resource's `extensions`), and the shares
    of an ended server on its "This notebook has ended" page."""

    def extend(tree: Tree) -> None:
        mount(tree.root, tree.api, sharing, tree.handout, tree.settings.frame_ancestors,
              tree.settings.retry_after, tree.settings.origins)
        tree.root.putChild(b"user", GonePage(shares_lister(sharing)))

    return extend
