"""Share and remix end to end, with the real engine and the real image.

A visitor runs a cell and shares the notebook; their server is culled and tmpnb restarted;
the share still reads, with the cell's output; a remix gives a stranger a new server holding
the notebook, whose kernel runs it; the delete link ends the share. The store is SQLite in the
test's socket root, or PostgreSQL (a real server started by the test) for the second run.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from collections.abc import Iterator

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/postgres_server.py, shared with unit tests
from postgres_server import binaries, postgres_server  # noqa: E402
from tmpnb_process import auth, call, container_id_of, execute, start_kernel, visit, wait_until

pytestmark = pytest.mark.integration

CODE = "'shared-' + str(6 * 7)"
OUTPUT = "'shared-42'"


def a_visitor_runs_a_cell_and_saves(base: str) -> tuple[str, str]:
    """A visitor's server with analysis.ipynb holding one executed cell; (prefix, token)."""
    prefix, token, _ = visit(base)
    kernel = start_kernel(base, prefix, token)
    assert execute(base, prefix, token, kernel, CODE) == OUTPUT
    cell = nbformat.v4.new_code_cell(CODE, execution_count=1, metadata={"trusted": True}, outputs=[
        nbformat.v4.new_output("execute_result", data={"text/plain": OUTPUT}, execution_count=1)])
    notebook = json.loads(nbformat.writes(nbformat.v4.new_notebook(cells=[cell])))
    saved = call(base, "PUT", prefix + "api/contents/analysis.ipynb",
                 json.dumps({"type": "notebook", "format": "json", "content": notebook}).encode(), auth(token))
    assert saved.status in (200, 201), saved
    return prefix, token


def share(base: str, prefix: str, token: str, **more) -> tuple[int, dict]:
    body = json.dumps({"url": prefix + "notebooks/analysis.ipynb", **more}).encode()
    reply = call(base, "POST", "/api/share", body, auth(token))
    return reply.status, reply.json()


def share_events(server) -> list[tuple[str, str]]:
    return [(r["event"], r["share"]) for r in server.lifecycle() if r.get("kind") == "share"]


@pytest.fixture(params=["sqlite", "postgresql"])
def share_store(request, socket_root) -> Iterator[str]:
    if request.param == "sqlite":
        yield os.path.join(socket_root, "shares.sqlite3")
        return
    if binaries() is None:
        pytest.skip("PostgreSQL not installed (tools/setup --test installs it)")
    with postgres_server() as url:
        yield url


def test_a_share_outlives_its_server_and_a_restart_and_remixes_into_a_live_notebook(launch, share_store):
    server = launch("--pool-size=1", "--capacity=3", f"--share-store={share_store}", "--client-share=1")
    server.wait_available(1)
    prefix, token = a_visitor_runs_a_cell_and_saves(server.base)
    old_id = container_id_of(prefix)

    assert share(server.base, prefix, "not-" + token)[0] == 403
    status, shared = share(server.base, prefix, token)
    assert status == 201, shared
    share_id, delete_url = shared["id"], shared["delete_url"]

    # The author's server is culled, and tmpnb restarts.
    assert server.admin("DELETE", f"/api/containers/{old_id}").status == 200
    wait_until(lambda: old_id not in server.containers(), 60, "the author's server culled")
    server.stop()
    server.start()
    server.wait_available(1)

    page = call(server.base, "GET", shared["url"])
    assert page.status == 200 and b'sandbox=""' in page.body
    rendered = call(server.base, "GET", shared["url"] + ".html", timeout=120)
    assert rendered.status == 200 and b"shared-42" in rendered.body
    assert rendered.headers["content-security-policy"].startswith("sandbox;")
    gone = call(server.base, "GET", prefix + "notebooks/analysis.ipynb")
    assert gone.status == 404 and shared["url"].encode() in gone.body

    # A stranger remixes it: a new server, logged in, holding the notebook.
    assert call(server.base, "GET", f"/remix/{share_id}").status == 200
    remix = call(server.base, "POST", f"/remix/{share_id}")
    assert remix.status == 302, remix
    match = re.fullmatch(r"(/user/[A-Za-z0-9]+/)notebooks/analysis\.ipynb\?token=([0-9a-f]+)", remix.headers["location"])
    assert match, remix.headers["location"]
    new_prefix, new_token = match.groups()
    assert new_prefix != prefix
    opened = call(server.base, "GET", remix.headers["location"])
    assert opened.status == 200  # the notebook page, logged in by the token
    model = call(server.base, "GET", new_prefix + "api/contents/analysis.ipynb", headers=auth(new_token)).json()
    notebook = model["content"]
    assert notebook["metadata"]["tmpnb"]["remixed_from"] == share_id
    assert notebook["cells"][0]["metadata"].get("trusted") is not True  # the server marks it untrusted
    source = notebook["cells"][0]["source"]
    kernel = start_kernel(server.base, new_prefix, new_token)
    assert execute(server.base, new_prefix, new_token, kernel, source) == OUTPUT

    # The delete link ends the share for everyone.
    assert call(server.base, "DELETE", delete_url).status == 204
    assert call(server.base, "GET", shared["url"]).status == 410
    assert call(server.base, "GET", shared["url"] + ".ipynb").status == 410
    assert call(server.base, "POST", f"/remix/{share_id}").status == 410
    events = share_events(server)
    assert [event for event, sid in events if sid == share_id] == ["shared", "remixed", "deleted"]
