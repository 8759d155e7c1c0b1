"""Restarts keep visitors: `twistd -n tmpnb` stopped and started again, with the real engine.

On SIGTERM tmpnb removes its pooled containers and leaves assigned ones running; the next
start adopts them: the visitor's kernel is still alive, at the same URL, with the same
token. After a hard kill (nothing removed) the pooled containers come back into the pool
too. An external configurable-http-proxy that restarted and lost its routes gets them back
on the next heartbeat, and routes that point at no container of ours are deleted.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from collections.abc import Iterator

import pytest

from tmpnb_process import (
    Launcher,
    auth,
    call,
    container_id_of,
    execute,
    start_kernel,
    visit,
    wait_until,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def launch(docker_client, notebook_image) -> Iterator[Launcher]:
    launcher = Launcher(docker_client, "restart")
    yield launcher
    assert launcher.close(leftovers_allowed=True) == []


def running_ids(launch: Launcher, server) -> set[str]:
    return {c.labels["org.tmpnb.id"] for c in launch.instance_containers(server) if c.status == "running"}


def answers(base: str, prefix: str, token: str) -> bool:
    return call(base, "GET", prefix + "api/status", headers=auth(token)).status == 200


def test_after_a_restart_the_visitor_keeps_their_kernel_at_the_same_url(launch):
    server = launch("--pool-size=1", "--capacity=3", "--cull-period=1", "--cull-timeout=120")
    server.wait_available(1)
    prefix, token, _ = visit(server.base)
    kernel = start_kernel(server.base, prefix, token)
    execute(server.base, prefix, token, kernel, "x = 41")

    assert server.stop() == -signal.SIGTERM
    # The visitor's container is left running for the next start; the pooled one is gone.
    assert running_ids(launch, server) == {container_id_of(prefix)}
    # Nothing of the token in Docker (labels, environment, command): the next start derives it
    # from the instance secret, a 0600 file of tmpnb's own.
    [container] = launch.instance_containers(server)
    container.reload()
    assert token not in json.dumps(container.attrs)
    secret = os.stat(f"{server.socket_root}/{server.instance}.secret")
    assert stat.S_IMODE(secret.st_mode) == 0o600

    server.start()  # same instance, socket root and ports
    wait_until(lambda: answers(server.base, prefix, token), 30, "the visitor's server through the restarted tmpnb")
    assert execute(server.base, prefix, token, kernel, "x + 1") == "42"
    assert server.containers()[container_id_of(prefix)]["state"] in ("assigned", "idle")
    server.wait_available(1)  # and the pool refilled beside it


def test_after_a_hard_kill_pooled_and_assigned_containers_are_adopted(launch):
    server = launch("--pool-size=1", "--capacity=3", "--cull-period=1", "--cull-timeout=120")
    server.wait_available(1)
    prefix, token, _ = visit(server.base)
    # The visitor uses their server (as the notebook UI does at once): that is how a restarted
    # tmpnb, whose embedded proxy lost its routes, tells their container from an unused one.
    assert call(server.base, "GET", prefix + "api/contents", headers=auth(token)).status == 200
    pooled = wait_until(
        lambda: {cid for cid, c in server.containers().items() if c["state"] == "pooled"}, 60, "a pooled replacement")
    assert len(pooled) == 1

    server.process.kill()  # SIGKILL to our own child: no chance to clean up
    server.process.wait()
    assert running_ids(launch, server) == pooled | {container_id_of(prefix)}

    server.start()
    server.wait_available(1)
    wait_until(lambda: answers(server.base, prefix, token), 30, "the visitor's server after the restart")
    states = {cid: c["state"] for cid, c in server.containers().items()}
    # The pooled container re-entered the pool after its readiness check: none was booted anew.
    assert set(states) == pooled | {container_id_of(prefix)}
    assert [states[cid] for cid in pooled] == ["pooled"]
    assert states[container_id_of(prefix)] in ("assigned", "idle")


@pytest.mark.chp
def test_a_restarted_external_proxy_gets_its_routes_back(launch, chp):
    server = launch("--pool-size=1", "--capacity=3", "--cull-period=1", "--cull-timeout=120",
                    f"--proxy-api-url={chp.api}", env={"CONFIGPROXY_AUTH_TOKEN": chp.token}, start=False)
    server.port = int(chp.default_target.rsplit(":", 1)[1])  # the orchestrator is CHP's default target
    server.start()
    server.wait_available(1, base=chp.base)
    prefix, token, _ = visit(chp.base)
    route = prefix.rstrip("/")
    assert route in chp.routes()

    chp.stop()
    chp.start()  # same ports and token, no routes (tmpnb's next heartbeat may already be at work)
    nowhere = "/user/nowhere0000"
    chp.add_route(nowhere, "http://127.0.0.1:9")

    wait_until(lambda: route in chp.routes() and nowhere not in chp.routes(), 60,
               "the visitor's route back and the stray route deleted")
    assert f"the proxy lost the route of {container_id_of(prefix)}; adding it again" in server.log()
    assert chp.routes()[route]["target"].startswith("http+unix://")
    assert answers(chp.base, prefix, token)


def test_a_visitor_active_just_before_a_restart_is_not_culled_by_it(launch):
    """Restart grace: the embedded proxy's record of the visitor's activity dies with the
    process; the stop keeps it with the assignment marker, and the next start reads it."""
    timeout = 30
    server = launch("--pool-size=1", "--capacity=3", "--cull-period=1", f"--cull-timeout={timeout}")
    server.wait_available(1)
    prefix, token, _ = visit(server.base)
    assigned = time.monotonic()
    # Pages (not the server's API) for 15 s: only the proxy sees this activity.
    while time.monotonic() < assigned + 15:
        assert call(server.base, "GET", prefix + "tree", headers=auth(token)).status == 200
        time.sleep(1)

    assert server.stop() == -signal.SIGTERM
    server.start()
    wait_until(lambda: answers(server.base, prefix, token), 30, "the visitor's server through the restarted tmpnb")
    # Counted from the assignment alone, the visitor would be culled at +30 s; counted from
    # their last page at +15, not before +45. Look between the two.
    time.sleep(max(0.0, assigned + timeout + 3 - time.monotonic()))
    assert server.containers()[container_id_of(prefix)]["state"] in ("assigned", "idle")
    wait_until(lambda: container_id_of(prefix) not in server.containers(), 60, "the visitor culled once idle")
