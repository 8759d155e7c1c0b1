"""The admin API: what an operator with the token can do, and what nobody else can."""

from __future__ import annotations

import json

import pytest
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from treq.testing import StubTreq

from tmpnb.admin import ADMIN_CULL_REASON, AdminResource
from tmpnb.health import Health

TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"token {TOKEN}"}
BASE = "http://127.0.0.1:8081"


class FakePool:
    """In-memory twin of the admin side of tmpnb.pool.Pool (docs/contracts.md).

    cull() answers False for an id it does not hold; drain() culls every pooled container
    and, like the real pool, starts a booting replacement for each.
    """

    def __init__(self, states: dict[str, str]) -> None:
        self.states = dict(states)
        self.culls: list[tuple[str, str]] = []
        self._next = 0

    def containers(self) -> list[dict]:
        return [
            {"id": cid, "state": state, "age": 10.0, "idle": 0.0, "path": f"/user/{cid}/"}
            for cid, state in self.states.items()
            if state != "culled"
        ]

    def cull(self, container_id: str, reason: str) -> bool:
        if self.states.get(container_id, "culled") == "culled":
            return False
        self.states[container_id] = "culled"
        self.culls.append((container_id, reason))
        return True

    def drain(self) -> int:
        pooled = [cid for cid, state in self.states.items() if state == "pooled"]
        for cid in pooled:
            self.cull(cid, "drained")
            self._next += 1
            self.states[f"refill{self._next}"] = "booting"
        return len(pooled)


@pytest.fixture
def pool() -> FakePool:
    return FakePool({"aaa": "pooled", "bbb": "pooled", "ccc": "assigned", "ddd": "idle"})


@pytest.fixture
def health() -> Health:
    return Health(Clock())


@pytest.fixture
def client(pool: FakePool, health: Health) -> StubTreq:
    return StubTreq(AdminResource(pool, health, TOKEN))


def call(client: StubTreq, method: str, path: str, **kwargs) -> tuple[int, dict]:
    t = SynchronousTestCase()
    response = t.successResultOf(client.request(method, BASE + path, **kwargs))
    body = t.successResultOf(response.content())
    assert response.headers.getRawHeaders("content-type") == ["application/json"]
    return response.code, json.loads(body)


@pytest.mark.parametrize(
    "method, path",
    [("GET", "/api/containers"), ("DELETE", "/api/containers/aaa"), ("DELETE", "/api/pool")],
)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "token wrong"},
        {"Authorization": TOKEN},  # the bare token, without the "token " scheme
        {"Authorization": f"Bearer {TOKEN}"},
        {"Authorization": f"token {TOKEN}x"},
    ],
)
def test_every_api_call_needs_the_token(client, pool, method, path, headers):
    code, body = call(client, method, path, headers=headers)
    assert code == 403
    assert body == {"error": "forbidden"}
    assert pool.culls == []


def test_an_empty_configured_token_refuses_everyone(pool, health):
    client = StubTreq(AdminResource(pool, health, ""))
    code, _ = call(client, "GET", "/api/containers", headers={"Authorization": "token "})
    assert code == 403


def test_list_containers(client, pool):
    code, body = call(client, "GET", "/api/containers", headers=AUTH)
    assert code == 200
    assert body == {"containers": pool.containers()}
    assert {c["id"] for c in body["containers"]} == {"aaa", "bbb", "ccc", "ddd"}
    assert set(body["containers"][0]) == {"id", "state", "age", "idle", "path"}


def test_delete_container_culls_it_for_the_admin(client, pool):
    code, body = call(client, "DELETE", "/api/containers/ccc", headers=AUTH)
    assert (code, body) == (200, {"culled": "ccc"})
    assert pool.culls == [("ccc", ADMIN_CULL_REASON)]
    _, listing = call(client, "GET", "/api/containers", headers=AUTH)
    assert "ccc" not in {c["id"] for c in listing["containers"]}


def test_delete_unknown_or_already_culled_container_is_404(client, pool):
    assert call(client, "DELETE", "/api/containers/nosuch", headers=AUTH)[0] == 404
    call(client, "DELETE", "/api/containers/aaa", headers=AUTH)
    code, body = call(client, "DELETE", "/api/containers/aaa", headers=AUTH)
    assert (code, body) == (404, {"error": "no such container"})
    assert pool.culls == [("aaa", ADMIN_CULL_REASON)]


def test_drain_pool_culls_only_the_unassigned_and_counts_them(client, pool):
    code, body = call(client, "DELETE", "/api/pool", headers=AUTH)
    assert (code, body) == (200, {"drained": 2})
    assert sorted(pool.culls) == [("aaa", "drained"), ("bbb", "drained")]
    assert pool.states["ccc"] == "assigned" and pool.states["ddd"] == "idle"
    # the refill is booting, so a second drain right away finds nothing pooled
    assert call(client, "DELETE", "/api/pool", headers=AUTH)[1] == {"drained": 0}


@pytest.mark.parametrize(
    "method, path, allowed",
    [
        ("POST", "/api/containers", "GET, HEAD"),
        ("GET", "/api/containers/aaa", "DELETE"),
        ("GET", "/api/pool", "DELETE"),
        ("POST", "/health", "GET, HEAD"),
    ],
)
def test_wrong_method_is_405_with_allow(client, pool, method, path, allowed):
    t = SynchronousTestCase()
    response = t.successResultOf(client.request(method, BASE + path, headers=AUTH))
    assert response.code == 405
    assert response.headers.getRawHeaders("allow") == [allowed]
    assert pool.culls == []


@pytest.mark.parametrize("path", ["/", "/api", "/api/nothing", "/api/containers/a/b", "/x"])
def test_unknown_paths_are_404(client, path):
    assert call(client, "GET", path, headers=AUTH)[0] == 404


def test_health_needs_no_token_and_hides_causes_without_it(client, health):
    health.docker_unreachable("ConnectionRefusedError: /var/run/docker.sock")
    health.proxy_ok()
    code, body = call(client, "GET", "/health")
    assert code == 503
    assert body["status"] == "degraded"
    assert body["docker"]["state"] == "unreachable"
    assert "cause" not in body["docker"]

    code, body = call(client, "GET", "/health", headers=AUTH)
    assert body["docker"]["cause"] == "ConnectionRefusedError: /var/run/docker.sock"


def test_health_is_200_when_all_is_well(client, health):
    health.docker_answered()
    health.proxy_ok()
    code, body = call(client, "GET", "/health")
    assert (code, body["status"]) == (200, "ok")
