"""GET /metrics with the real engine: a visit and an idle cull, read back with
prometheus_client's own parser from the admin listener of `twistd -n tmpnb`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tmpnb_process import ONE_ADDRESS, Launcher, Tmpnb, TmpnbError, call, container_id_of, visit, wait_until

pytestmark = pytest.mark.integration

CULL_PERIOD = 1.0
CULL_TIMEOUT = 3.0


@pytest.fixture(scope="module")
def server(launch: Launcher) -> Iterator[Tmpnb]:
    tmpnb = launch(*ONE_ADDRESS, "--pool-size=1", "--capacity=3", f"--cull-period={CULL_PERIOD:g}",
                   f"--cull-timeout={CULL_TIMEOUT:g}")
    tmpnb.wait_available(1)
    yield tmpnb


def scrape(server: Tmpnb) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics (no token needed): (name, sorted labels) → value."""
    reply = call(server.admin_base, "GET", "/metrics")
    assert reply.status == 200, reply
    assert reply.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(reply.body.decode())
        for s in family.samples
    }


def test_a_visit_and_an_idle_cull_show_in_the_metrics(server):
    prefix, token, _ = visit(server.base)
    culled = container_id_of(prefix)
    assert call(server.base, "GET", prefix + "api/status", headers={"Authorization": f"token {token}"}).status == 200
    # Nobody touches it: the heartbeat culls it as idle, and the pool refills.
    wait_until(lambda: any(r["container"] == culled and r["to"] == "culled" for r in server.lifecycle()),
               CULL_TIMEOUT + 10 * CULL_PERIOD + 30, f"{culled} culled")

    seen: list = []

    def settled():
        # One pooled container and nothing else, the culled one removed: the pool is at rest.
        stats = server.stats()
        sampled = scrape(server)
        states = {state: sampled[("tmpnb_containers", (("state", state),))]
                  for state in ("requested", "booting", "pooled", "assigned", "idle", "culled")}
        seen[:] = [stats, states]
        if stats["states"] == {"pooled": 1} and states == {**dict.fromkeys(states, 0.0), "pooled": 1.0}:
            return stats, sampled
        return None

    try:
        stats, metrics = wait_until(settled, 120, "the pool refilled and at rest")
    except TmpnbError as e:
        raise TmpnbError(f"{e}; last seen {seen}\n{server.log()[-3000:]}") from None
    assert metrics[("tmpnb_handouts_total", ())] == 1
    assert metrics[("tmpnb_culls_total", (("reason", "idle"),))] == 1
    assert metrics[("tmpnb_containers_available", ())] == stats["available"] == 1
    assert metrics[("tmpnb_containers_left_behind", ())] == stats["left_behind"] == 0
    assert metrics[("tmpnb_capacity_containers", ())] == stats["capacity"] == 3
    assert metrics[("tmpnb_no_vacancy_total", ())] == 0
    assert metrics[("tmpnb_boot_duration_seconds_count", ())] >= 2  # the first and the refill
    assert metrics[("tmpnb_docker_call_duration_seconds_count", (("operation", "launch"),))] >= 2
    assert metrics[("tmpnb_docker_call_duration_seconds_count", (("operation", "remove"),))] >= 1
    assert metrics[("tmpnb_heartbeat_duration_seconds_count", ())] >= 1
    assert metrics[("tmpnb_dependency_up", (("dependency", "docker"),))] == 1
    assert metrics[("tmpnb_dependency_up", (("dependency", "proxy"),))] == 1
    # the visit (a redirect) and the status request went through the embedded proxy
    assert metrics[("tmpnb_proxy_requests_total", ())] >= 2
    assert metrics[("tmpnb_proxy_bytes_total", (("direction", "out"),))] > 0
    assert metrics[("tmpnb_proxy_websockets_open", ())] == 0
