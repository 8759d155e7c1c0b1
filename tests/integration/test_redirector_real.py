"""Three tmpnb nodes on one machine behind `twistd tmpnb-redirector`, with the real engine.

The nodes n1–n3 share the host's dockerd and listen on 127.0.0.2–4 (one pooled container
each: the machine has 2 cores). Visitors spread over all three; a drained node gets no new
visitor while its visitors keep working; a node killed with SIGKILL leaves rotation within
3 × --health-period and, started again, adopts its visitors' containers.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tmpnb_process import (
    ADMIN_TOKEN,
    Launcher,
    Redirector,
    TmpnbError,
    auth,
    call,
    container_id_of,
    execute,
    logged_failures,
    start_kernel,
    visit,
    wait_until,
)

pytestmark = pytest.mark.integration

HEALTH_PERIOD = 3.0  # generous: exclusion takes about 2 periods (benchmarks/RESULTS.md)
# Every visitor here is 127.0.0.1: one address may hold a node's whole capacity (tmpnb/clients/).
# No waiting line: a node's room is then its pooled server (tmpnb/waitingline.py `room`), so
# three visitors at once land on three nodes, one each, as the spread below expects.
NODE_ARGS = ["--pool-size=1", "--capacity=4", "--cull-period=2", "--cull-timeout=600", "--client-share=1",
             "--max-waiting=0"]


@pytest.fixture(scope="module")
def launch(docker_client, notebook_image) -> Iterator[Launcher]:
    # A SIGKILLed node leaves its containers for its next start: leftovers are the subject here.
    launcher = Launcher(docker_client, "redirector", ["--cleanup-on-stop"])
    yield launcher
    assert launcher.close(leftovers_allowed=True) == []


@pytest.fixture(scope="module")
def federation(launch):
    nodes = [launch(*NODE_ARGS, host=f"127.0.0.{i + 2}", name=f"n{i + 1}", start=False) for i in range(3)]
    for node in nodes:
        node.start()
    redirector = Redirector([node.base for node in nodes], [f"--health-period={HEALTH_PERIOD}"])
    redirector.start()
    yield redirector, nodes
    redirector.stop(keep_log=True)
    failures = logged_failures(redirector.log())
    os.unlink(redirector.log_path)
    assert failures == []


def wait_all_in_rotation(redirector: Redirector, nodes) -> None:
    for node in nodes:
        node.wait_available(1)
    wait_until(lambda: all(n["up"] and n["room"] >= 1 for n in redirector.node_details()), 60,
               "every node up with room, as the redirector sees them")


def through_redirector(redirector: Redirector, path: str = "/") -> tuple[str, tuple[str, str, str]]:
    """A visitor opens the redirector: (the node base they were sent to, their visit there)."""
    reply = call(redirector.base, "GET", path)
    if reply.status != 302:
        raise TmpnbError(f"redirector: {reply.status} {reply.body[:200]!r}")
    location = urlsplit(reply.headers["location"])
    node_base = f"{location.scheme}://{location.netloc}"
    return node_base, visit(node_base, location.path + (f"?{location.query}" if location.query else ""))


def answers(base: str, prefix: str, token: str) -> bool:
    return call(base, "GET", prefix + "api/status", headers=auth(token)).status == 200


def admin(node, method: str, path: str):
    return call(node.admin_base, method, path, headers={"Authorization": f"token {ADMIN_TOKEN}"})


def test_visitors_spread_drain_and_a_killed_node(federation):
    redirector, nodes = federation
    bases = [node.base for node in nodes]
    wait_all_in_rotation(redirector, nodes)

    # Three visitors at once, one pooled container on each node: local counting sends one to each.
    visitors = [through_redirector(redirector) for _ in range(3)]
    assert sorted(base for base, _ in visitors) == sorted(bases)
    by_node = {base: visit_ for base, visit_ in visitors}

    # Drain n1: no new visitor there, while its visitor keeps working.
    n1, n2, n3 = nodes
    assert admin(n1, "POST", "/api/drain").json() == {"draining": True}
    assert n1.stats()["draining"] is True
    wait_until(lambda: redirector.nodes_by_url()[n1.base]["draining"], 30, "the redirector seeing n1 drain")
    prefix1, token1, _ = by_node[n1.base]
    kernel1 = start_kernel(n1.base, prefix1, token1)
    assert execute(n1.base, prefix1, token1, kernel1, "1+1") == "2"
    for node in (n2, n3):
        node.wait_available(1)
    wait_until(lambda: all(redirector.nodes_by_url()[n.base]["room"] >= 1 for n in (n2, n3)), 60,
               "n2 and n3 with room again")
    later = [through_redirector(redirector)[0] for _ in range(2)]
    assert sorted(later) == sorted([n2.base, n3.base])
    assert n1.stats()["total"] <= 2  # its visitor and at most the one that was booting: no refill

    # SIGKILL n2: out of rotation within 3 health periods, its visitor's container left running.
    prefix2, token2, _ = by_node[n2.base]
    n2.process.send_signal(signal.SIGKILL)  # our own child, by its PID
    killed = time.monotonic()
    wait_until(lambda: not redirector.nodes_by_url()[n2.base]["up"], 30, "n2 out of rotation", interval=0.05)
    excluded_after = time.monotonic() - killed
    assert excluded_after <= 3 * HEALTH_PERIOD, f"n2 left rotation after {excluded_after:.1f}s"
    n3.wait_available(1)
    wait_until(lambda: redirector.nodes_by_url()[n3.base]["room"] >= 1, 60, "n3 with room again")
    assert through_redirector(redirector)[0] == n3.base  # n1 drains, n2 is down

    # n2 again: it adopts its visitor's container, who keeps their server and token.
    n2.process.wait()
    n2.start()
    wait_until(lambda: answers(n2.base, prefix2, token2), 60, "n2's visitor served again after its restart")
    assert n2.containers()[container_id_of(prefix2)]["state"] in ("assigned", "idle")
    wait_until(lambda: redirector.nodes_by_url()[n2.base]["up"], 60, "n2 back in rotation")

    # The end of the drain puts n1 back in rotation.
    assert admin(n1, "DELETE", "/api/drain").json() == {"draining": False}
    n1.wait_available(1)
    wait_until(lambda: redirector.nodes_by_url()[n1.base]["room"] >= 1, 60, "n1 back in rotation")
    assert answers(n1.base, prefix1, token1)
