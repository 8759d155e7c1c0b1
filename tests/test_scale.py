"""The control plane at 1,000 tracked containers over a simulated engine (tests/scalerig.py;
benchmarks/scale.py times the same at 1k/5k/20k): every hand-out routed, the numbers of
/api/stats and /metrics consistent with what is there, the heartbeat in stretches, and
nothing left behind once every visitor's container is culled. Correctness, not timing."""

from __future__ import annotations

import gc
import json
import weakref

import pytest
from prometheus_client import generate_latest
from twisted.web.resource import getChildForRequest
from twisted.web.test.requesthelper import DummyRequest

from tests.scalerig import ScaleRig, build_scale
from tmpnb import sockets
from tmpnb.web import WebSettings, make_resource

N = 1000
POOL = 10


@pytest.fixture(scope="module")
def grown() -> ScaleRig:
    rig = build_scale(capacity=N + POOL, pool_size=POOL)
    rig.grow(N)
    return rig


def stats_page(rig: ScaleRig) -> dict:
    root = make_resource(rig.pool, WebSettings(), rig.line)
    request = DummyRequest([b"api", b"stats"])
    request.method = b"GET"
    return json.loads(getChildForRequest(root, request).render(request))


def metric(rig: ScaleRig, line_start: str) -> float:
    text = generate_latest(rig.metrics.registry).decode()
    return float(next(line for line in text.splitlines() if line.startswith(line_start)).split()[-1])


def test_every_hand_out_is_routed_to_its_own_server(grown: ScaleRig) -> None:
    rig = grown
    assert len(rig.handed) == len(set(rig.handed)) == N
    running = rig.docker.running()
    for container_id in rig.handed:
        route = rig.routes.get(f"/user/{container_id}")
        assert route is not None, container_id
        assert route["target"] == sockets.proxy_target(sockets.socket_path(rig.spec, container_id))
        assert route["container"] == container_id
        assert container_id in running
        assert rig.urls[container_id].startswith(f"/user/{container_id}/")
        matched = rig.routes.match(f"/user/{container_id}/api/kernels")
        assert matched is not None and matched[1]["container"] == container_id


def test_stats_and_metrics_add_up(grown: ScaleRig) -> None:
    rig = grown
    stats = stats_page(rig)
    assert stats["states"] == {"pooled": POOL, "assigned": N}
    assert stats["total"] == sum(stats["states"].values()) == N + POOL
    assert stats["available"] == POOL and stats["capacity"] == N + POOL
    assert metric(rig, 'tmpnb_containers{state="assigned"}') == N
    assert metric(rig, "tmpnb_handouts_total") == N
    assert len(rig.routes) == N
    assert len(rig.docker.running()) == N + POOL


def test_a_heartbeat_over_everyone_yields_to_the_reactor_and_culls_nobody_active(grown: ScaleRig) -> None:
    rig = grown
    clock = rig.clock
    clock.reset_slices()
    done: list[object] = []
    clock.callLater(0, lambda: rig.pool.sweep().addBoth(done.append))
    clock.advance(0)
    assert done == [None]
    assert clock.slices_run > 3  # in stretches, not one call
    assert rig.handed_out_now() == N


def test_culling_everyone_leaves_nothing_behind(grown: ScaleRig) -> None:
    rig = grown
    clock = rig.clock
    machines = [weakref.ref(rig.pool.machine(cid)) for cid in rig.handed[:50]]
    clock.advance(rig.config.cull_timeout + rig.config.cull_period)
    clock.run_until_idle()
    assert rig.handed_out_now() == 0
    stats = stats_page(rig)
    assert stats["states"] == {"pooled": POOL} and stats["total"] == POOL
    assert len(rig.routes) == 0
    running = rig.docker.running()
    assert len(running) == POOL and all(rig.pool.machine(cid) is not None for cid in running)
    assert rig.docker.socket_dirs == {sockets.socket_dir(rig.spec, cid) for cid in running}
    assert not any(rig.pool.owns(cid) for cid in rig.handed)
    assert metric(rig, 'tmpnb_culls_total{reason="idle"}') == N
    # Nothing pending but the next heartbeat and deadlines of boots long done.
    clock.advance(rig.config.boot_timeout)
    assert clock.pending() == 1
    gc.collect()
    assert all(ref() is None for ref in machines)  # the culled machines are gone from memory
