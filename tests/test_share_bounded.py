"""Every read from a visitor's server is bounded in time and size (tmpnb/share/contents.py):
a visitor controls what answers on their server's socket, and Share reads from it."""

from __future__ import annotations

import json

import pytest
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from sharefakes import BASE, World
from tests.results import failed, pending, succeeded
from tmpnb.share import contents
from tmpnb.share.service import ShareSettings


class Dripping(Resource):
    """A server that answers 200 at once and then sends its body a byte at a time, for ever."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list = []
        self.gone: list = []

    def render(self, request):
        request.setHeader(b"content-type", b"application/json")
        request.write(b'{"content": "')
        request.notifyFinish().addErrback(self.gone.append)
        self.requests.append(request)
        return NOT_DONE_YET


class Flooding(Resource):
    """A server that answers 404 with a body far larger than any error page."""

    isLeaf = True

    def render(self, request):
        request.setResponseCode(404)
        return b"x" * (4 * 1024 * 1024)


def test_a_server_that_drips_its_answer_is_given_up_on_at_the_deadline():
    clock = Clock()
    server = Dripping()
    stub = StubTreq(server)
    d = contents.read_file(stub, "/user/a/", "t", "x.ipynb", 10_000_000, clock, timeout=20)
    for _ in range(19):
        server.requests[0].write(b"A")
        stub.flush()
        clock.advance(1)
    pending(d)
    clock.advance(1)
    stub.flush()
    failure = failed(d, contents.ServerTooSlow)
    assert failure.value.code == 504
    assert len(server.gone) == 1  # its connection was dropped, not left open


def test_a_remix_write_to_a_server_that_never_answers_is_given_up_on_too():
    clock = Clock()
    server = Dripping()
    d = contents.write_notebook(StubTreq(server), "/user/a/", "t", "x.ipynb", {"cells": []}, clock, timeout=20)
    clock.advance(20)
    failed(d, contents.ServerTooSlow)


def test_an_error_answer_is_read_only_so_far():
    d = contents.read_file(StubTreq(Flooding()), "/user/a/", "t", "x.ipynb", 10_000_000)
    failure = failed(d, contents.ServerRefused)
    assert failure.value.code == 404


@pytest.fixture
def world(tmp_path):
    world = World(tmp_path, ShareSettings(read_timeout=15))
    yield world
    world.close()


def test_a_share_from_a_server_that_never_finishes_is_a_502_after_the_read_timeout(world):
    token = world.visitor("alice", b"{}")
    server = Dripping()
    world.sharing._client_for = lambda container_id: StubTreq(server)
    body = json.dumps({"url": "/user/alice/notebooks/work.ipynb"}).encode()
    d = world.http.post(BASE + "/api/share", data=body, headers={"Authorization": f"token {token}"})
    pending(d)
    world.clock.advance(15)
    world.http.flush()
    response = succeeded(d)
    assert response.code == 502
    assert succeeded(response.json()) == {"status": "the notebook server did not answer"}
    assert world.store.count_since("alice", 0) == 0
