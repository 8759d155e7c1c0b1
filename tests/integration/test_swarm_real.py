"""tmpnb on a real three-host Docker Swarm (tests/integration/swarm_hosts.py builds it in network
namespaces): deploy/stack.yml deployed as written, the node image loaded on every host.

Visitors in a namespace of their own reach notebooks on all three hosts through the redirector;
a node process killed is restarted by Swarm, and the new node adopts its visitor, whose kernel
keeps its state. Needs root, iproute2, nsenter/unshare and the notebook image; about 2 minutes.
"""

from __future__ import annotations

import os
import signal
import secrets
import shutil
from pathlib import Path

import docker as docker_py
import pytest

import swarm_hosts
from swarm_hosts import HOSTS, client, wait_for
from tmpnb_process import ONE_ADDRESS

pytestmark = [pytest.mark.integration, pytest.mark.swarm]

REPO = Path(__file__).resolve().parents[2]
STACK = "tnbsw"
NODE_PORT = 8000
REDIRECTOR = f"http://{HOSTS[0].address}:8080"
NODE_IMAGE = "tmpnb/node:swarm-test"


@pytest.fixture(scope="module")
def swarm(notebook_image):
    if os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("ip", "nsenter", "unshare", "docker")):
        reason = "needs root, iproute2, nsenter, unshare and the docker CLI"
        # tools/test sets TMPNB_REQUIRE_DOCKER: there a missing piece is a failure, not a skip.
        pytest.fail(reason) if os.environ.get("TMPNB_REQUIRE_DOCKER") == "1" else pytest.skip(reason)
    from tmpnb.image.node import ensure_node_image

    host_docker = docker_py.from_env(timeout=600)
    ensure_node_image(host_docker, NODE_IMAGE)
    host_links = swarm_hosts.host_links()
    try:
        swarm_hosts.setup()
        swarm_hosts.load_images(notebook_image, NODE_IMAGE)
        (swarm_hosts.ETC / "nodes").write_text("".join(f"http://{h.address}:{NODE_PORT}\n" for h in HOSTS))
        swarm_hosts.deploy(REPO / "deploy" / "stack.yml", STACK, {
            "TMPNB_NODE_IMAGE": NODE_IMAGE,
            "TMPNB_IMAGE": notebook_image,
            # Each host's own dockerd: Swarm fills in the hostname, which names the host here.
            "TMPNB_DOCKER_SOCKET": str(swarm_hosts.RUN / "{{.Node.Hostname}}.sock"),
            "TMPNB_SOCKET_ROOT": str(swarm_hosts.SOCKET_ROOT),
            "TMPNB_NODES_DIR": str(swarm_hosts.ETC),
            "TMPNB_NODE_PORT": str(NODE_PORT),
            "TMPNB_REDIRECTOR_PORT": "8080",
            "TMPNB_HEALTH_PERIOD": "1",
            "TMPNB_POOL_SIZE": "1",
            "TMPNB_CAPACITY": "3",
            # The visitors all come from the client namespace's one address: the nodes give it
            # their whole capacity. Without a waiting line a node's room is its pooled server,
            # so three visitors at once land on the three hosts, one each.
            "TMPNB_NODE_ARGS": " ".join(("--max-waiting=0", *ONE_ADDRESS)),
            "ADMIN_AUTH_TOKEN": secrets.token_hex(8),
        })
        yield host_links
    finally:
        swarm_hosts.teardown()
    assert swarm_hosts.our_namespaces() == []


def redirector_stats() -> dict:
    return client("get-json", f"{REDIRECTOR}/api/stats", timeout=30)


def every_node_has_room() -> bool:
    # Node details are on the redirector's admin listener (loopback of its host): ask the
    # redirector how many are up, and each node its own room.
    if redirector_stats()["up"] != 3:
        return False
    return all(client("get-json", f"http://{h.address}:{NODE_PORT}/api/stats", timeout=30)["available"] >= 1
               for h in HOSTS)


def answers(visitor: dict) -> bool:
    return client("answers", visitor["node"], visitor["prefix"], visitor["token"], timeout=30)


def test_visitors_reach_all_three_hosts_and_a_killed_node_is_restarted_and_adopts(swarm):
    wait_for(every_node_has_room, 240, "three nodes up with room behind the redirector", interval=1)
    # The swarm's bridges (docker_gwbridge, ingress) and veths exist only inside the namespaces.
    assert swarm_hosts.host_links() == swarm

    # One pooled container on each host: three visitors at once land on all three.
    visitors = [client("visit", REDIRECTOR) for _ in range(3)]
    assert sorted(v["node"] for v in visitors) == sorted(f"http://{h.address}:{NODE_PORT}" for h in HOSTS)
    assert all(answers(v) for v in visitors)

    # The visitor on host b starts a kernel; then the node process on b is killed.
    host_b = HOSTS[1]
    visitor = next(v for v in visitors if v["node"] == f"http://{host_b.address}:{NODE_PORT}")
    kernel = client("kernel", visitor["node"], visitor["prefix"], visitor["token"])
    assert client("execute", visitor["node"], visitor["prefix"], visitor["token"], kernel, "x = 41") is None
    [node_process] = swarm_hosts.service_containers(host_b, f"{STACK}_node")
    os.kill(node_process["pid"], signal.SIGKILL)  # the node container's init, which this test deployed

    # Swarm starts a new node container on b; the new node adopts the visitor's container.
    wait_for(lambda: [c for c in swarm_hosts.service_containers(host_b, f"{STACK}_node") if c["id"] != node_process["id"]],
             120, "Swarm restarting the node on host b", interval=1)
    wait_for(lambda: answers(visitor), 120, "the visitor served again by the restarted node", interval=1)
    assert client("execute", visitor["node"], visitor["prefix"], visitor["token"], kernel, "x + 1") == "42"
    wait_for(every_node_has_room, 120, "host b back in rotation", interval=1)
