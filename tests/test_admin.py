"""The admin API: what an operator with the token can do, and what nobody else can."""

from __future__ import annotations

import json

import pytest
from dataclasses import dataclass, field

from twisted.internet.task import Clock
from treq.testing import StubTreq

from tests.results import succeeded
from tests.fakedocker import FakeDocker, FakeServers
from tmpnb.admin import ADMIN_CULL_REASON, AdminResource, listed
from tmpnb.config import ContainerSpec, PoolConfig
from tmpnb.health import Health
from tmpnb.pool import Pool
from tmpnb.proxy.routes import RouteTable
from tmpnb.proxyapi import InProcessProxyAPI
from tmpnb.states import TransitionEvent


TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"token {TOKEN}"}
BASE = "http://127.0.0.1:8081"


@dataclass
class World:
    """The real pool over in-memory Docker, servers and routes, on a Clock."""

    clock: Clock = field(default_factory=Clock)

    def __post_init__(self) -> None:
        self.clock.advance(1_700_000_000)
        self.spec = ContainerSpec(instance="test-admin", socket_root="/tmp/tnb-admin")
        self.docker = FakeDocker(self.clock, self.spec)
        self.servers = FakeServers(self.docker)
        self.transitions: list[TransitionEvent] = []
        self.pool = Pool(
            self.clock,
            self.docker,
            self.servers.wait_ready,
            InProcessProxyAPI(RouteTable(self.clock)),
            self.spec,
            PoolConfig(pool_size=2, capacity=6, refill_delay=0.0),
            on_transition=self.transitions.append,
        )
        self.health = Health(self.clock)
        self.client = StubTreq(AdminResource(self.pool, self.health, TOKEN))
        self.pool.startService()
        self.answer_all()

    def answer_all(self) -> None:
        for container_id in self.servers.waiting():
            self.servers.answer(container_id)

    def visitor(self) -> str:
        d = self.pool.acquire()
        assert d is not None
        return succeeded(d).container_id

    def states(self) -> dict[str, str]:
        return {c["container"]: c["state"] for c in self.pool.containers()}

    def culls(self) -> list[tuple[str, str | None]]:
        return [(e.container, e.cause) for e in self.transitions if e.to_state == "culled"]


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def health(world: World) -> Health:
    return world.health


@pytest.fixture
def client(world: World) -> StubTreq:
    return world.client


def call(client: StubTreq, method: str, path: str, **kwargs) -> tuple[int, dict]:
    response = succeeded(client.request(method, BASE + path, **kwargs))
    body = succeeded(response.content())
    assert response.headers.getRawHeaders("content-type") == ["application/json"]
    return response.code, json.loads(body)


@pytest.mark.parametrize(
    "method, path",
    [("GET", "/api/containers"), ("DELETE", "/api/containers/{id}"), ("DELETE", "/api/pool"),
     ("POST", "/api/drain"), ("DELETE", "/api/drain")],
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
def test_every_api_call_needs_the_token(world, method, path, headers):
    before = world.states()
    code, body = call(world.client, method, path.format(id=next(iter(before))), headers=headers)
    assert code == 403
    assert body == {"error": "forbidden"}
    assert world.states() == before and world.culls() == []


def test_an_empty_configured_token_refuses_everyone(world):
    client = StubTreq(AdminResource(world.pool, world.health, ""))
    code, _ = call(client, "GET", "/api/containers", headers={"Authorization": "token "})
    assert code == 403


def test_list_containers_with_ages_and_idle_times(world):
    world.clock.advance(100)
    visited = world.visitor()
    world.answer_all()  # the replacement boots
    world.clock.advance(20)
    code, body = call(world.client, "GET", "/api/containers", headers=AUTH)
    assert code == 200
    listing = {c["id"]: c for c in body["containers"]}
    assert set(listing) == set(world.states())
    assert listing[visited] == {
        "id": visited,
        "state": "assigned",
        "path": f"/user/{visited}/",
        "age": 120.0,
        "idle": 20.0,  # no activity seen since it was handed out
        "in_state": 20.0,
        "docker_id": listing[visited]["docker_id"],
    }
    assert listing[visited]["docker_id"] in world.docker.containers
    pooled = [c for c in listing.values() if c["state"] == "pooled"]
    assert len(pooled) == 2
    assert all(c["idle"] is None for c in pooled)
    assert sorted(c["age"] for c in pooled) == [20.0, 120.0]


def test_delete_container_culls_it_for_the_admin(world):
    visited = world.visitor()
    code, body = call(world.client, "DELETE", f"/api/containers/{visited}", headers=AUTH)
    assert (code, body) == (200, {"culled": visited})
    assert world.culls() == [(visited, ADMIN_CULL_REASON)]
    assert visited not in world.states()  # culled, removed, forgotten
    assert visited not in world.docker.containers


def test_delete_unknown_or_removed_container_is_404(world):
    assert call(world.client, "DELETE", "/api/containers/nosuch", headers=AUTH)[0] == 404
    visited = world.visitor()
    call(world.client, "DELETE", f"/api/containers/{visited}", headers=AUTH)
    code, body = call(world.client, "DELETE", f"/api/containers/{visited}", headers=AUTH)
    assert (code, body) == (404, {"error": "no such container"})
    assert world.culls() == [(visited, ADMIN_CULL_REASON)]


def test_drain_pool_culls_only_the_unassigned_and_refills(world):
    visited = world.visitor()
    world.answer_all()
    pooled = {cid for cid, state in world.states().items() if state == "pooled"}
    assert len(pooled) == 2
    code, body = call(world.client, "DELETE", "/api/pool", headers=AUTH)
    assert (code, body) == (200, {"drained": 2})
    assert sorted(world.culls()) == sorted((cid, "drained") for cid in pooled)
    assert world.states()[visited] == "assigned"
    # the refill is booting, so a second drain right away finds nothing pooled
    assert sorted(world.states().values()) == ["assigned", "booting", "booting"]
    assert call(world.client, "DELETE", "/api/pool", headers=AUTH)[1] == {"drained": 0}
    world.answer_all()
    assert sorted(world.states().values()) == ["assigned", "pooled", "pooled"]


@pytest.mark.parametrize(
    "method, path, allowed",
    [
        ("POST", "/api/containers", "GET, HEAD"),
        ("GET", "/api/containers/{id}", "DELETE"),
        ("GET", "/api/pool", "DELETE"),
        ("POST", "/health", "GET, HEAD"),
    ],
)
def test_wrong_method_is_405_with_allow(world, method, path, allowed):
    before = world.states()
    url = BASE + path.format(id=next(iter(before)))
    response = succeeded(world.client.request(method, url, headers=AUTH))
    assert response.code == 405
    assert response.headers.getRawHeaders("allow") == [allowed]
    assert world.states() == before


@pytest.mark.parametrize("path", ["/", "/api", "/api/nothing", "/api/containers/a/b", "/x"])
def test_unknown_paths_are_404(client, path):
    assert call(client, "GET", path, headers=AUTH)[0] == 404


def test_health_needs_no_token_and_hides_causes_without_it(client, health):
    health.docker_unreachable("DockerUnavailable: connection refused")
    health.proxy_ok()
    code, body = call(client, "GET", "/health")
    assert code == 503
    assert body["status"] == "degraded"
    assert body["docker"]["state"] == "unreachable"
    assert "cause" not in body["docker"]

    code, body = call(client, "GET", "/health", headers=AUTH)
    assert body["docker"]["cause"] == "DockerUnavailable: connection refused"


def test_health_is_200_when_all_is_well(client, health):
    health.docker_answered()
    health.proxy_ok()
    code, body = call(client, "GET", "/health")
    assert (code, body["status"]) == (200, "ok")


def test_an_idle_container_has_been_idle_since_its_last_activity(world):
    [described, *_] = world.pool.containers()  # a real machine's describe(), then gone idle
    described = {**described, "state": "idle", "idle_since": described["created"] + 40.0}
    row = listed(described, now=described["created"] + 100.0)
    assert (row["state"], row["age"], row["idle"]) == ("idle", 100.0, 60.0)


def test_drain_and_its_end_through_the_admin_api(world):
    visited = world.visitor()
    assert call(world.client, "POST", "/api/drain", headers=AUTH) == (200, {"draining": True})
    assert world.pool.stats()["draining"] is True
    assert world.pool.acquire() is None
    assert world.states()[visited] == "assigned"
    assert call(world.client, "DELETE", "/api/drain", headers=AUTH) == (200, {"draining": False})
    assert world.pool.acquire() is not None


def test_drain_takes_only_post_and_delete(world):
    code, body = call(world.client, "GET", "/api/drain", headers=AUTH)
    assert code == 405 and world.pool.stats()["draining"] is False


def test_metrics_are_served_without_the_token_when_given(world):
    # The service passes prometheus_client.twisted.MetricsResource (which renders in a
    # thread: tests/integration/test_metrics_real.py); any resource shows the routing.
    from twisted.web.static import Data

    client = StubTreq(AdminResource(world.pool, world.health, TOKEN, metrics=Data(b"tmpnb_up 1\n", "text/plain")))
    response = succeeded(client.get(BASE + "/metrics"))
    assert response.code == 200
    assert succeeded(response.content()) == b"tmpnb_up 1\n"
    response = succeeded(client.post(BASE + "/metrics"))
    assert response.code == 405


def test_without_metrics_there_is_no_metrics_page(client):
    assert call(client, "GET", "/metrics")[0] == 404
