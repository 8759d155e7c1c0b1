"""The orchestrator's web app, as a visitor and an API client see it.

Runs the real resource tree through treq's StubTreq (a real Agent and Site in
memory) over FakePool, an in-memory twin of tmpnb.pool.Pool's web-facing side.
"""

from __future__ import annotations

import json
import re

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.server import Site
from treq.testing import StubTreq

import tmpnb
from tests.builders import cookieless, one_address_gate
from tests.results import pending, succeeded
from tmpnb.http.headers import CorsPolicy
from tmpnb.web import WebSettings, make_resource
from tmpnb.web.paths import BadPath, below_from_redirect_uri, notebook_path, path_from_text, with_token

from tmpnb.pool import Assignment

BASE = "http://127.0.0.1:8000"


class FakePool:
    """Web-facing twin of tmpnb.pool.Pool: acquire() hands out each pooled container once.

    `hold=True` makes acquire() return a Deferred the test fires later, as the real pool
    does while the proxy adds the route.
    """

    def __init__(self, pooled: int = 3, capacity: int = 10, hold: bool = False) -> None:
        self.pooled = [Assignment(f"c{i:02d}", f"/user/c{i:02d}/", f"tok{i:02d}") for i in range(pooled)]
        self.assigned: list[Assignment] = []
        self.capacity = capacity
        self.hold = hold
        self.held: list[tuple[Deferred, Assignment]] = []
        self.culls: list[tuple[str, str]] = []

    def acquire(self) -> Deferred | None:
        if not self.pooled:
            return None
        assignment = self.pooled.pop(0)
        self.assigned.append(assignment)
        if self.hold:
            d: Deferred = Deferred()
            self.held.append((d, assignment))
            return d
        return succeed(assignment)

    def finish_route(self) -> None:
        d, assignment = self.held.pop(0)
        d.callback(assignment)

    def stats(self) -> dict:
        return {
            "available": len(self.pooled),
            "capacity": self.capacity,
            "pool_size": 3,
            "total": len(self.pooled) + len(self.assigned),
            "states": {"pooled": len(self.pooled), "assigned": len(self.assigned)},
        }

    def cull(self, container_id: str, reason: str) -> bool:
        self.culls.append((container_id, reason))
        return True


def client(pool: FakePool, **settings) -> StubTreq:
    return cookieless(StubTreq(make_resource(pool, WebSettings(**settings), gate=one_address_gate())))


def exchange(treq: StubTreq, answer):
    treq.flush()
    response = succeeded(answer)
    content = response.content()
    treq.flush()
    return response, succeeded(content)


def get(treq: StubTreq, path: str, **kw):
    return exchange(treq, treq.get(BASE + path, allow_redirects=False, **kw))


def post(treq: StubTreq, path: str, body: bytes = b"", **kw):
    return exchange(treq, treq.post(BASE + path, data=body, **kw))


def header(response, name: str) -> str | None:
    values = response.headers.getRawHeaders(name)
    return values[0] if values else None


# -- GET / and /spawn/<path> -------------------------------------------------------


def test_front_page_redirects_to_a_pooled_notebook_with_its_token():
    pool = FakePool()
    response, _ = get(client(pool), "/")
    assert response.code == 302
    assert header(response, "Location") == "/user/c00/tree?token=tok00"
    assert header(response, "Cache-Control") == "no-store"
    assert [a.container_id for a in pool.assigned] == ["c00"]


def test_two_visitors_get_two_containers():
    pool = FakePool()
    treq = client(pool)
    first, _ = get(treq, "/")
    second, _ = get(treq, "/")
    assert header(first, "Location") != header(second, "Location")
    assert len({a.container_id for a in pool.assigned}) == 2


def test_redirect_uri_and_no_tokens():
    response, _ = get(client(FakePool(), redirect_uri="/notebooks/Welcome.ipynb", use_tokens=False), "/")
    assert header(response, "Location") == "/user/c00/notebooks/Welcome.ipynb"


def test_spawn_path_is_kept_below_the_users_directory():
    treq = client(FakePool())
    response, _ = get(treq, "/spawn/notebooks/Intro%20to%20Python.ipynb")
    assert header(response, "Location") == "/user/c00/notebooks/Intro%20to%20Python.ipynb?token=tok00"
    response, _ = get(treq, "/spawn/tree/data/")
    assert header(response, "Location") == "/user/c01/tree/data/?token=tok01"


def test_tmpnbs_spawn_links_to_an_old_user_path_open_that_path_in_a_fresh_server():
    response, _ = get(client(FakePool()), "/spawn/user/OldId123/notebooks/a.ipynb")
    assert header(response, "Location") == "/user/c00/notebooks/a.ipynb?token=tok00"


@pytest.mark.parametrize("path", ["/spawn", "/spawn/", "/spawn//", "/spawn/user/OldId123/"])
def test_spawn_without_a_path_goes_to_the_redirect_uri(path):
    response, _ = get(client(FakePool()), path)
    assert header(response, "Location") == "/user/c00/tree?token=tok00"


@pytest.mark.parametrize(
    "path",
    ["/spawn/../etc/passwd", "/spawn/tree/../../x", "/spawn/%2e%2e/x", "/spawn/a%2F..%2Fb",
     "/spawn/a%5C..", "/spawn/x%00y", "/spawn/%ff%fe", "/spawn/./tree", "/spawn/" + "a/" * 600],
)
def test_a_spawn_path_that_would_leave_the_directory_is_refused_without_taking_a_container(path):
    pool = FakePool()
    response, body = get(client(pool), path)
    assert response.code == 400
    assert b"cannot be opened" in body
    assert pool.assigned == []


def test_full_pool_shows_no_vacancy_which_retries_by_itself():
    response, body = get(client(FakePool(pooled=0), retry_after=7), "/spawn/tree")
    assert response.code == 503
    assert header(response, "Retry-After") == "7"
    assert b"No vacancy" in body
    assert b'<meta http-equiv="refresh" content="7">' in body


def test_redirect_waits_for_the_route():
    pool = FakePool(hold=True)
    treq = client(pool)
    answer = treq.get(BASE + "/", allow_redirects=False)
    treq.flush()
    pending(answer)
    pool.finish_route()
    treq.flush()
    assert header(succeeded(answer), "Location") == "/user/c00/tree?token=tok00"


def test_a_failed_hand_out_shows_no_vacancy_and_is_logged(logged):
    pool = FakePool()
    pool.acquire = lambda: fail(RuntimeError("proxy API down"))
    response, body = get(client(pool), "/")
    assert response.code == 503
    assert b"No vacancy" in body
    assert any(e.get("log_format") == "handing out a notebook" and "log_failure" in e for e in logged)


def test_head_does_not_take_a_container():
    pool = FakePool()
    response = succeeded(client(pool).head(BASE + "/"))
    assert response.code == 200
    assert pool.assigned == []


def raw_exchange(site: Site, request: bytes, hang_up: bool = False) -> bytes:
    """Send raw bytes through a real HTTPChannel; optionally hang up before the answer."""
    channel = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(request)
    if hang_up:
        channel.connectionLost(Failure(ConnectionDone()))
    return transport.value()


def test_a_visitor_who_leaves_before_the_route_is_in_gives_the_container_back():
    pool = FakePool(hold=True)
    site = Site(make_resource(pool, WebSettings(), gate=one_address_gate()))
    written = raw_exchange(site, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", hang_up=True)
    pool.finish_route()
    assert written == b""
    assert pool.culls == [("c00", "visitor left")]


# -- JSON API ----------------------------------------------------------------------


def test_api_spawn_returns_the_url_with_token():
    response, body = post(client(FakePool()), "/api/spawn")
    assert response.code == 200
    assert header(response, "Content-Type") == "application/json"
    assert json.loads(body) == {"url": "/user/c00/?token=tok00"}


def test_api_spawn_takes_an_optional_path():
    treq = client(FakePool())
    _, body = post(treq, "/api/spawn/", json.dumps({"path": "notebooks/a b.ipynb"}).encode())
    assert json.loads(body) == {"url": "/user/c00/notebooks/a%20b.ipynb?token=tok00"}


@pytest.mark.parametrize(
    "body",
    [b"{", b"[1, 2]", b'"path"', b'{"path": 3}', b'{"path": "../x"}', b'{"path": "a/../../b"}',
     b'{"path": "\\ud800"}', b"\xff\xfe", b"[" * 4000],
    ids=["open", "list", "string", "number-path", "dotdot", "deep-dotdot", "surrogate", "not-utf8", "deep-nesting"],
)
def test_api_spawn_refuses_junk_without_taking_a_container(body):
    pool = FakePool()
    response, answer = post(client(pool), "/api/spawn", body)
    assert response.code == 400
    assert json.loads(answer)["status"] == "bad request"
    assert pool.assigned == []


def test_api_spawn_refuses_a_large_body():
    pool = FakePool()
    response, _ = post(client(pool), "/api/spawn", b" " * 5000)
    assert response.code == 413
    assert pool.assigned == []


def test_api_spawn_when_full_is_429():
    response, body = post(client(FakePool(pooled=0)), "/api/spawn")
    assert response.code == 429
    assert response.phrase == b"Too Many Requests"
    assert json.loads(body) == {"status": "full"}


def test_api_token_guards_spawn_and_closes_the_front_door():
    pool = FakePool()
    treq = client(pool, api_token="sekrit")
    assert post(treq, "/api/spawn")[0].code == 401
    assert post(treq, "/api/spawn", headers={"Authorization": "token wrong"})[0].code == 401
    assert pool.assigned == []
    response, body = post(treq, "/api/spawn", headers={"Authorization": "token sekrit"})
    assert response.code == 200
    assert json.loads(body)["url"].startswith("/user/c00/")
    assert get(treq, "/")[0].code == 404
    assert get(treq, "/spawn/tree")[0].code == 404
    assert len(pool.assigned) == 1


def test_api_spawn_is_post_only():
    pool = FakePool()
    assert get(client(pool), "/api/spawn")[0].code == 405
    assert pool.assigned == []


@pytest.mark.parametrize("method, path", [("PUT", "/"), ("DELETE", "/spawn/tree"), ("PATCH", "/api/stats"),
                                          ("PUT", "/robots.txt"), ("HEAD", "/api/spawn")])
def test_a_method_a_resource_does_not_take_is_405_not_5xx(method, path):
    pool = FakePool()
    treq = client(pool)
    response, _ = exchange(treq, treq.request(method, BASE + path))
    assert response.code == 405
    assert header(response, "Allow")
    assert pool.assigned == []


def test_stats_has_tmpnbs_keys_and_the_breakdown():
    pool = FakePool(pooled=3, capacity=10)
    treq = client(pool, container_image="tmpnb/notebook:test")
    get(treq, "/")
    response, body = get(treq, "/api/stats")
    stats = json.loads(body)
    assert response.code == 200
    assert stats["available"] == 2
    assert stats["capacity"] == 10
    assert stats["version"] == tmpnb.__version__
    assert stats["container_image"] == "tmpnb/notebook:test"
    assert stats["states"] == {"pooled": 2, "assigned": 1}


def test_stats_redirects_to_the_api():
    response, _ = get(client(FakePool()), "/stats")
    assert response.code in (301, 302)
    assert header(response, "Location") == "/api/stats"


def test_unknown_api_path_is_json_404():
    response, body = get(client(FakePool()), "/api/nope")
    assert response.code == 404
    assert json.loads(body) == {"status": "not found"}


# -- the pages around it -----------------------------------------------------------


def test_an_ended_notebook_offers_a_fresh_one_at_the_same_path():
    pool = FakePool()
    response, body = get(client(pool), "/user/OldId123/notebooks/Lesson%201.ipynb")
    assert response.code == 404
    assert b"This notebook has ended" in body
    assert b'href="/spawn/notebooks/Lesson%201.ipynb"' in body
    assert pool.assigned == []


@pytest.mark.parametrize("path", ["/user/OldId123/api/kernels", "/user/OldId123/", "/user/x/%2e%2e/y", "/user"])
def test_ended_notebook_api_or_odd_paths_offer_the_default_page(path):
    response, body = get(client(FakePool()), path)
    assert response.code == 404
    assert b'href="/spawn/"' in body


def test_the_ended_page_escapes_the_path_it_shows():
    _, body = get(client(FakePool()), "/user/x/%3Cscript%3Ealert(1)%3C/script%3E")
    assert b"<script>alert" not in body


def test_unknown_paths_get_a_page_not_a_bare_404():
    response, body = get(client(FakePool()), "/favicon.ico")
    assert response.code == 404
    assert b"Get a notebook" in body


def test_robots_keep_crawlers_off_user_and_spawn():
    response, body = get(client(FakePool()), "/robots.txt")
    assert response.code == 200
    lines = body.decode().splitlines()
    assert "Disallow: /user/" in lines
    assert "Disallow: /spawn/" in lines
    assert "Disallow: /wait/" in lines


def test_cors_headers_as_configured_and_preflight():
    cors = CorsPolicy(allow_origin="https://course.example", allow_credentials=True,
                      allow_methods="GET, POST", allow_headers="Authorization", expose_headers="Location",
                      max_age=600)
    pool = FakePool()
    treq = client(pool, cors=cors)
    response = succeeded(treq.request("OPTIONS", BASE + "/api/spawn"))
    assert response.code == 204
    assert header(response, "Access-Control-Allow-Origin") == "https://course.example"
    assert header(response, "Access-Control-Allow-Credentials") == "true"
    assert header(response, "Access-Control-Allow-Methods") == "GET, POST"
    assert header(response, "Access-Control-Allow-Headers") == "Authorization"
    assert header(response, "Access-Control-Expose-Headers") == "Location"
    assert header(response, "Access-Control-Max-Age") == "600"
    assert pool.assigned == []
    assert header(post(treq, "/api/spawn")[0], "Access-Control-Allow-Origin") == "https://course.example"


def test_an_allowed_origin_alone_may_post_json_with_a_token():
    """The browser's preflight of `POST /api/spawn` with a JSON body asks for Content-Type
    (and Authorization when API_AUTH_TOKEN is set): --allow-origin alone must let it through."""
    treq = client(FakePool(), cors=CorsPolicy(allow_origin="https://article.example"))
    response = succeeded(treq.request("OPTIONS", BASE + "/api/spawn", headers={
        "Origin": "https://article.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,authorization"}))
    assert response.code == 204
    assert header(response, "Access-Control-Allow-Origin") == "https://article.example"
    allowed = {h.strip().lower() for h in header(response, "Access-Control-Allow-Headers").split(",")}
    assert {"content-type", "authorization"} <= allowed


def test_no_cors_headers_unless_asked():
    response, _ = get(client(FakePool()), "/api/stats")
    assert header(response, "Access-Control-Allow-Origin") is None


def test_frame_ancestors_lets_the_configured_site_embed_the_pages():
    response, _ = get(client(FakePool(pooled=0), frame_ancestors="'self' https://journal.example"), "/")
    assert header(response, "Content-Security-Policy") == "frame-ancestors 'self' https://journal.example"


# -- the path rules on their own ---------------------------------------------------


def test_notebook_path_rules():
    assert notebook_path([]) == ""
    assert notebook_path([b""]) == ""
    assert notebook_path([b"a", b"", b"b"]) == "a/b"
    assert notebook_path([b"tree", b""]) == "tree/"
    assert notebook_path(["é x".encode()]) == "%C3%A9%20x"
    assert notebook_path([b"a?b#c"]) == "a%3Fb%23c"
    for bad in ([b".."], [b"."], [b"a/b"], [b"a\\b"], [b"\n"], [b"\xff"]):
        with pytest.raises(BadPath):
            notebook_path(bad)


def test_path_from_text_and_redirect_uri():
    assert path_from_text("/notebooks/x.ipynb") == "notebooks/x.ipynb"
    assert below_from_redirect_uri("/tree") == "tree"
    assert below_from_redirect_uri("/lab?reset") == "lab?reset"
    for bad in ("https://evil.example/", "//evil.example/x", "/tree/../../x", "/a#b"):
        with pytest.raises(ValueError):
            below_from_redirect_uri(bad)


def test_with_token():
    assert with_token("/user/a/tree", "t") == "/user/a/tree?token=t"
    assert with_token("/user/a/lab?reset", "t") == "/user/a/lab?reset&token=t"
    assert with_token("/user/a/tree", None) == "/user/a/tree"
    assert re.fullmatch(r"/user/a/\?token=a%2Bb", with_token("/user/a/", "a+b"))
