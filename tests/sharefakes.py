"""In-memory twins for the share tests: visitors' notebook servers and the pool that holds them.

`NotebookServers` answers Jupyter's contents API as jupyter_server does for what sharing uses
(GET a file as base64, PUT a notebook), for every /user/<id>/ with that server's token; the
real servers are exercised by tests/integration/test_share_real.py.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import unquote

from twisted.internet.defer import maybeDeferred, succeed
from twisted.internet.task import Clock
from twisted.web.resource import Resource
from twisted.web.server import Request
from treq.testing import StubTreq

from tests.builders import one_address_gate
from tmpnb.pool import Assignment
from tmpnb.share.render import Renderer
from tmpnb.share.service import ShareSettings, Sharing
from tmpnb.share.store import SQLiteStore
from tmpnb.share.web import sharing_extension
from tmpnb.web import WebSettings, make_resource

BASE = "http://127.0.0.1:8000"


class NotebookServers(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.tokens: dict[str, str] = {}
        self.files: dict[tuple[str, str], bytes] = {}
        self.puts: list[tuple[str, str, dict]] = []

    def render(self, request: Request) -> bytes:
        parts = request.path.decode().split("/")
        # /user/<id>/api/contents/<path>
        container, path = parts[2], unquote("/".join(parts[5:]))
        if request.getHeader(b"authorization") != f"token {self.tokens.get(container)}".encode():
            request.setResponseCode(403)
            return b'{"message": "Forbidden"}'
        if request.method == b"GET":
            if (container, path) not in self.files:
                request.setResponseCode(404)
                return b'{"message": "No such file"}'
            return json.dumps({"name": path, "path": path, "type": "file", "format": "base64",
                               "content": base64.encodebytes(self.files[(container, path)]).decode()}).encode()
        if request.method == b"PUT":
            model = json.loads(request.content.read())
            if model.get("type") != "file" or model.get("format") != "text":
                request.setResponseCode(400)
                return b'{"message": "this twin takes text files only"}'
            self.puts.append((container, path, json.loads(model["content"])))
            self.files[(container, path)] = model["content"].encode()
            request.setResponseCode(201)
            return json.dumps({"name": path, "path": path, "type": "notebook"}).encode()
        request.setResponseCode(405)
        return b""


class Machine:
    def __init__(self, state: str) -> None:
        self.state = state

    def describe(self) -> dict:
        return {"state": self.state}


class SharePool:
    """The pool as the web and sharing see it: servers in states, tokens, pooled ones to hand out."""

    def __init__(self, servers: NotebookServers, pooled: int = 2) -> None:
        self.servers = servers
        self.machines: dict[str, Machine] = {}
        self.pooled: list[Assignment] = []
        self.culls: list[tuple[str, str]] = []
        for i in range(pooled):
            self.add(f"pool{i}", "pooled")

    def add(self, container_id: str, state: str) -> str:
        token = f"tok-{container_id}"
        self.machines[container_id] = Machine(state)
        self.servers.tokens[container_id] = token
        if state == "pooled":
            self.pooled.append(Assignment(container_id, f"/user/{container_id}/", token))
        return token

    def acquire(self) -> Any:
        if not self.pooled:
            return None
        assignment = self.pooled.pop(0)
        self.machines[assignment.container_id].state = "assigned"
        return succeed(assignment)

    def stats(self) -> dict:
        return {"available": len(self.pooled), "capacity": 10}

    def room(self) -> int:
        return len(self.pooled)

    def fill(self) -> None:
        pass

    def cull(self, container_id: str, reason: str) -> bool:
        self.culls.append((container_id, reason))
        return True

    def machine(self, container_id: str) -> Machine | None:
        return self.machines.get(container_id)

    def token(self, container_id: str) -> str:
        return self.servers.tokens.get(container_id, "")


def in_thread_now(f: Any, *args: Any) -> Any:
    """Unit tests run the blocking calls at once; production runs them in thread pools."""
    return maybeDeferred(f, *args)


class World:
    """tmpnb's web tree with sharing on, over fakes of the pool and its servers, a real SQLite
    store and the real renderer."""

    def __init__(self, tmp_path: Any, settings: ShareSettings = ShareSettings(), render: Any = None) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.servers = NotebookServers()
        self.pool = SharePool(self.servers)
        self.store = SQLiteStore(str(tmp_path / "shares.sqlite3"))
        renderer = Renderer(in_thread_now) if render is None else Renderer(in_thread_now, render=render)
        self.sharing = Sharing(self.clock, self.store, in_thread_now, self.pool,
                               lambda container_id: StubTreq(self.servers), renderer, settings)
        self.http = StubTreq(make_resource(self.pool, WebSettings(), extensions=[sharing_extension(self.sharing)],
                                           gate=one_address_gate(self.clock)))

    def close(self) -> None:
        """End the render processes this world started, by their handles."""
        if self.sharing.renderer.workers is not None:
            self.sharing.renderer.workers.stop()
        self.store.close()

    def visitor(self, container_id: str = "alice", notebook: bytes | None = None, path: str = "work.ipynb") -> str:
        """A visitor's server with one notebook file; its token."""
        token = self.pool.add(container_id, "assigned")
        if notebook is not None:
            self.servers.files[(container_id, path)] = notebook
        return token
