"""Share and remix as a sharer, a reader, a remixer and the admin see them.

The real resource tree, Sharing, SQLite store and renderer, over in-memory twins of the pool
and of the visitors' notebook servers (tests/sharefakes.py), through treq's StubTreq.
"""

from __future__ import annotations

import json
import re

import nbformat
import pytest
from treq.testing import StubTreq

from tests.results import succeeded
from sharefakes import BASE, World
from tmpnb.admin import AdminResource
from tmpnb.health import Health
from tmpnb.share.service import DAY, ShareSettings, is_share_id



def notebook(source: str = "6 * 7", output: str = "42", trusted: bool = True) -> bytes:
    cell = nbformat.v4.new_code_cell(source, execution_count=1, outputs=[
        nbformat.v4.new_output("execute_result", data={"text/plain": output}, execution_count=1)])
    if trusted:
        cell.metadata["trusted"] = True
    return nbformat.writes(nbformat.v4.new_notebook(cells=[cell])).encode()


def post_share(world: World, token: str, url: str = "/user/alice/notebooks/work.ipynb", **more):
    body = json.dumps({"url": url, **more}).encode()
    response = succeeded(world.http.post(BASE + "/api/share", data=body,
                                    headers={"Authorization": f"token {token}", "Content-Type": "application/json"}))
    return response, succeeded(response.json()) if response.headers.getRawHeaders("content-type") == ["application/json"] else None


def get(world: World, path: str, **kwargs):
    response = succeeded(world.http.get(BASE + path, **kwargs))
    return response, succeeded(response.content())


def header(response, name: str) -> str:
    values = response.headers.getRawHeaders(name) or [""]
    return values[0]


@pytest.fixture
def world(tmp_path):
    world = World(tmp_path)
    yield world
    world.close()


def test_a_visitor_shares_with_their_token_and_gets_link_delete_link_and_expiry(world):
    token = world.visitor("alice", notebook())
    response, answer = post_share(world, token)
    assert response.code == 201
    assert is_share_id(answer["id"])
    assert answer["url"] == f"/share/{answer['id']}"
    assert answer["delete_url"].startswith(f"/share/{answer['id']}/delete/")
    assert answer["expires"].startswith("2027-")  # 30 days after the test clock's start
    raw, content = get(world, answer["url"] + ".ipynb")
    assert raw.code == 200
    shared = nbformat.reads(content.decode(), as_version=4)
    assert shared.cells[0].outputs[0].data["text/plain"] == "42"
    assert "trusted" not in shared.cells[0].metadata
    assert header(raw, "access-control-allow-origin") == "*"
    assert header(raw, "etag") == f'"{world.store.get(answer["id"]).content_hash}"'
    assert "attachment" in header(raw, "content-disposition")


def test_a_wrong_token_or_a_server_nobody_holds_is_forbidden_and_stores_nothing(world):
    world.visitor("alice", notebook())
    assert post_share(world, "tok-bob")[0].code == 403
    assert post_share(world, "")[0].code == 403
    assert post_share(world, "tok-pool0", url="/user/pool0/notebooks/work.ipynb")[0].code == 403
    assert post_share(world, "tok-nobody", url="/user/nobody/notebooks/work.ipynb")[0].code == 403
    assert world.store.count_since("alice", 0) == 0


def test_bad_requests_are_4xx(world):
    token = world.visitor("alice", notebook())
    assert post_share(world, token, url="/user/alice/notebooks/missing.ipynb")[0].code == 404
    assert post_share(world, token, url="/user/alice/files/work.ipynb")[0].code == 400
    assert post_share(world, token, url="/user/alice/notebooks/../x.ipynb")[0].code == 400
    assert post_share(world, token, expires_days=0)[0].code == 400
    assert post_share(world, token, expires_days="soon")[0].code == 400
    assert post_share(world, token, outputs="no")[0].code == 400
    response = succeeded(world.http.post(BASE + "/api/share", data=b"[", headers={"Authorization": f"token {token}"}))
    assert response.code == 400
    assert world.store.count_since("alice", 0) == 0


def test_outputs_false_strips_them_and_expires_days_is_honoured(world):
    token = world.visitor("alice", notebook())
    _, answer = post_share(world, token, outputs=False, expires_days=1)
    _, content = get(world, answer["url"] + ".ipynb")
    assert nbformat.reads(content.decode(), as_version=4).cells[0].outputs == []
    world.clock.advance(DAY + 1)
    assert get(world, answer["url"])[0].code == 410


def test_the_same_notebook_shared_twice_is_two_shares_on_one_stored_copy(world):
    token = world.visitor("alice", notebook())
    _, first = post_share(world, token)
    _, second = post_share(world, token)
    assert first["id"] != second["id"]
    assert world.store.get(first["id"]).content_hash == world.store.get(second["id"]).content_hash
    assert succeeded(world.http.delete(BASE + first["delete_url"])).code == 204
    assert get(world, second["url"] + ".ipynb")[0].code == 200


def test_the_share_page_frames_the_notebook_sandboxed_and_hides_from_robots_and_referrers(world):
    token = world.visitor("alice", notebook())
    _, answer = post_share(world, token)
    page, body = get(world, answer["url"])
    assert page.code == 200
    assert f'<iframe id="notebook" sandbox="" src="{answer["url"]}.html"'.encode() in body
    assert b"allow-same-origin" not in body
    assert f'action="/remix/{answer["id"]}"'.encode() in body
    assert f'href="{answer["url"]}.ipynb"'.encode() in body
    assert "script-src" not in header(page, "content-security-policy")  # default-src 'none' covers it
    assert "default-src 'none'" in header(page, "content-security-policy")
    assert header(page, "x-robots-tag").startswith("noindex")
    assert header(page, "referrer-policy") == "no-referrer"


def test_the_rendered_notebook_is_sandboxed_scriptless_and_cached(world):
    token = world.visitor("alice", notebook(output="<script>parent.document.title='owned'</script>"))
    _, answer = post_share(world, token)
    rendered, html = get(world, answer["url"] + ".html")
    assert rendered.code == 200
    csp = header(rendered, "content-security-policy")
    assert csp.startswith("sandbox;") and "script-src 'none'" in csp and "default-src 'none'" in csp
    assert not re.search(rb'(src|href)="?(https?:)?//|url\((https?:)?//|@import', html)  # nothing from elsewhere
    assert world.sharing.renderer.cached(world.store.get(answer["id"]).content_hash) == html
    etag = header(rendered, "etag")
    again = succeeded(world.http.get(BASE + answer["url"] + ".html", headers={"If-None-Match": etag}))
    assert again.code == 304


def test_the_delete_link_asks_on_get_and_deletes_on_post_or_delete(world):
    token = world.visitor("alice", notebook())
    _, answer = post_share(world, token)
    asked, body = get(world, answer["delete_url"])
    assert asked.code == 200 and b"Delete this share?" in body
    assert get(world, answer["url"])[0].code == 200  # a GET deletes nothing
    wrong = answer["delete_url"].rsplit("/", 1)[0] + "/not-the-key"
    assert succeeded(world.http.delete(BASE + wrong)).code == 404
    assert succeeded(world.http.post(BASE + answer["delete_url"])).code == 200
    for suffix in ("", ".ipynb", ".html"):
        gone, body = get(world, answer["url"] + suffix)
        assert gone.code == 410 and b"This share has ended" in body
    assert succeeded(world.http.delete(BASE + answer["delete_url"])).code == 410
    assert world.store.content(world.store.get(answer["id"]).content_hash) is None


def test_unknown_and_malformed_share_ids_are_404(world):
    assert get(world, "/share/AAAAAAAAAAAAAAAAAAAAAA")[0].code == 404
    assert get(world, "/share/../etc/passwd")[0].code == 404
    assert get(world, "/remix/nope")[0].code == 404


def test_remix_writes_the_notebook_untrusted_into_a_fresh_server_and_sends_the_visitor_in(world):
    token = world.visitor("alice", notebook())
    _, answer = post_share(world, token)
    page, body = get(world, f"/remix/{answer['id']}")
    assert page.code == 200 and b"Remix work.ipynb" in body
    assert world.pool.pooled  # a GET takes no server
    response = succeeded(world.http.post(BASE + f"/remix/{answer['id']}", allow_redirects=False))
    assert response.code == 302
    assert header(response, "location") == "/user/pool0/notebooks/work.ipynb?token=tok-pool0"
    [(container, path, written)] = world.servers.puts
    assert (container, path) == ("pool0", "work.ipynb")
    assert written["metadata"]["tmpnb"]["remixed_from"] == answer["id"]
    assert all("trusted" not in cell["metadata"] for cell in written["cells"])
    assert nbformat.from_dict(written).cells[0].outputs[0].data["text/plain"] in ("42", ["42"])


def test_remix_with_no_server_free_is_no_vacancy(world):
    token = world.visitor("alice", notebook())
    _, answer = post_share(world, token)
    world.pool.pooled.clear()
    assert succeeded(world.http.post(BASE + f"/remix/{answer['id']}", allow_redirects=False)).code == 503


def test_the_ended_notebook_page_offers_the_shares_made_from_that_server(world):
    token = world.visitor("alice", notebook())
    _, answer = post_share(world, token)
    gone, body = get(world, "/user/alice/notebooks/work.ipynb")
    assert gone.code == 404 and f'href="{answer["url"]}"'.encode() in body
    assert b"shared from it" not in get(world, "/user/bob/tree")[1]


def test_shares_per_server_per_hour_are_limited(tmp_path):
    world = World(tmp_path, ShareSettings(shares_per_hour=2))
    token = world.visitor("alice", notebook())
    assert [post_share(world, token)[0].code for _ in range(3)] == [201, 201, 429]
    world.clock.advance(3601)
    assert post_share(world, token)[0].code == 201


def test_uncached_renders_per_client_address_are_limited(tmp_path):
    renders = []

    def render(content, timeout, memory):
        renders.append(content)
        return b"<p>rendered</p>"

    world = World(tmp_path, ShareSettings(renders_per_minute=1), render=render)
    token = world.visitor("alice", notebook())
    _, first = post_share(world, token)
    world.servers.files[("alice", "work.ipynb")] = notebook(source="1 + 1")
    _, second = post_share(world, token)
    assert get(world, first["url"] + ".html")[0].code == 200
    assert get(world, first["url"] + ".html")[0].code == 200  # cached: not counted
    assert get(world, second["url"] + ".html")[0].code == 429
    world.clock.advance(61)
    assert get(world, second["url"] + ".html")[0].code == 200
    assert len(renders) == 2


def test_the_admin_takes_a_share_down(world):
    token = world.visitor("alice", notebook())
    _, answer = post_share(world, token)
    admin = StubTreq(AdminResource(world.pool, Health(world.clock), "admintoken", clock=world.clock,
                                   takedown=world.sharing.takedown))
    auth = {"Authorization": "token admintoken"}
    assert succeeded(admin.delete(BASE + f"/api/shares/{answer['id']}")).code == 403
    response = succeeded(admin.delete(BASE + f"/api/shares/{answer['id']}", headers=auth))
    assert response.code == 200 and succeeded(response.json()) == {"deleted": answer["id"]}
    assert get(world, answer["url"])[0].code == 410
    assert succeeded(admin.delete(BASE + f"/api/shares/{answer['id']}", headers=auth)).code == 404


def test_the_client_address_behind_tmpnbs_proxy_is_the_last_forwarded_one():
    from twisted.internet.address import IPv4Address, UNIXAddress
    from twisted.web.test.requesthelper import DummyRequest

    from tmpnb.share.limits import client_address

    behind = DummyRequest([b""])
    behind.client = UNIXAddress(b"/run/tmpnb/web.sock")
    behind.requestHeaders.setRawHeaders(b"x-forwarded-for", [b"10.9.9.9, 192.0.2.7"])
    assert client_address(behind) == "192.0.2.7"
    direct = DummyRequest([b""])
    direct.client = IPv4Address("TCP", "198.51.100.1", 5555)
    direct.requestHeaders.setRawHeaders(b"x-forwarded-for", [b"192.0.2.7"])
    assert client_address(direct) == "198.51.100.1"


def test_a_render_that_runs_out_of_time_or_memory_fails_and_the_next_one_works():
    from tmpnb.share.render import RenderFailed, RenderWorker

    worker = RenderWorker()
    try:
        with pytest.raises(RenderFailed):
            worker.render(notebook(), timeout=0.001)  # the child is killed
        with pytest.raises(RenderFailed):
            worker.render(b"not a notebook", timeout=120)  # nbconvert's error, the child lives on
        assert b"42" in worker.render(notebook(), timeout=120)
    finally:
        worker.stop()
    starved = RenderWorker(memory=64 * 1024 * 1024)  # too little even to import nbconvert
    try:
        with pytest.raises(RenderFailed):
            starved.render(notebook(), timeout=120)
    finally:
        starved.stop()


def test_a_server_that_went_away_is_a_502_and_a_warning_not_a_crash(world):
    from twisted.internet.defer import fail
    from twisted.internet.error import ConnectionRefusedError

    token = world.visitor("alice", notebook())

    class Gone:
        def get(self, *args, **kwargs):
            return fail(ConnectionRefusedError("socket gone"))

    world.sharing._client_for = lambda container_id: Gone()
    response, answer = post_share(world, token)
    assert response.code == 502 and answer == {"status": "the notebook server did not answer"}
    assert world.store.count_since("alice", 0) == 0
