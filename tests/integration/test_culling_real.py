"""Culling with the real engine: `twistd -n tmpnb` with a one-second heartbeat.

A notebook nobody touches for --cull-timeout is culled: its route, its container and its
socket directory are gone, its visitor gets the friendly page, and the pool refills. A
notebook in use outlives --cull-timeout but not --cull-max. Each transition's time and
cause come from the server's own lifecycle log (--lifecycle-log).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tmpnb_process import (
    ID_LABEL,
    Launcher,
    Tmpnb,
    auth,
    call,
    container_id_of,
    is_friendly_gone_page,
    visit,
    wait_until,
)

pytestmark = pytest.mark.integration

CULL_PERIOD = 1.0
CULL_TIMEOUT = 3.0
CULL_MAX = 8.0


@pytest.fixture(scope="module")
def server(docker_client, notebook_image) -> Iterator[Tmpnb]:
    launch = Launcher(docker_client, "cull")
    tmpnb = launch("--pool-size=2", "--capacity=4", f"--cull-period={CULL_PERIOD:g}", "--client-share=1",
                   f"--cull-timeout={CULL_TIMEOUT:g}", f"--cull-max={CULL_MAX:g}")
    tmpnb.wait_available(2)
    yield tmpnb
    assert launch.close(leftovers_allowed=True) == []


def docker_has(docker_client, server: Tmpnb, container_id: str) -> bool:
    """Docker still knows a container of this instance with this tmpnb id (any state)."""
    return bool(docker_client.containers.list(
        all=True, filters={"label": [f"org.tmpnb.instance={server.instance}", f"{ID_LABEL}={container_id}"]}
    ))


def transitions(server: Tmpnb, container_id: str) -> dict[str, dict]:
    """The container's lifecycle transitions, by the state entered (the first of each)."""
    entered: dict[str, dict] = {}
    for event in server.lifecycle():
        if event["container"] == container_id:
            entered.setdefault(event["to"], event)
    return entered


def wait_until_gone(server: Tmpnb, docker_client, container_id: str, timeout: float) -> None:
    """Route, container and socket directory all gone."""
    wait_until(
        lambda: (f"/user/{container_id}" not in server.routes()
                 and not docker_has(docker_client, server, container_id)
                 and container_id not in server.socket_dirs()),
        timeout, f"route, container and socket directory of {container_id} removed",
    )


def test_an_untouched_notebook_is_culled_after_the_timeout_with_all_it_had(server, docker_client):
    server.wait_available(2)
    prefix, token, _ = visit(server.base)
    container_id = container_id_of(prefix)
    # While handed out, the three things culling must remove are there.
    assert f"/user/{container_id}" in server.routes()
    assert docker_has(docker_client, server, container_id)
    assert container_id in server.socket_dirs()

    wait_until_gone(server, docker_client, container_id, CULL_TIMEOUT + 4 * CULL_PERIOD + 10)

    entered = transitions(server, container_id)
    assert entered["culled"]["cause"].startswith("idle"), entered["culled"]
    assert entered["culled"]["time"] - entered["assigned"]["time"] >= CULL_TIMEOUT
    assert container_id not in server.containers()
    assert is_friendly_gone_page(call(server.base, "GET", prefix + "tree"))
    server.wait_available(2)  # refilled


def test_a_notebook_in_use_outlives_the_timeout_but_not_cull_max(server, docker_client):
    server.wait_available(2)
    prefix, token, _ = visit(server.base)
    container_id = container_id_of(prefix)
    answers: list[int] = []
    stop = threading.Event()

    def use_it() -> None:
        # The visitor keeps browsing their files, every half second.
        while not stop.is_set():
            answers.append(call(server.base, "GET", prefix + "api/contents", headers=auth(token)).status)
            stop.wait(0.5)

    visitor = threading.Thread(target=use_it, daemon=True)
    visitor.start()
    try:
        time.sleep(CULL_TIMEOUT + 2 * CULL_PERIOD)
        assert container_id in server.containers(), "culled while in use"
        assert set(answers) == {200}
        wait_until_gone(server, docker_client, container_id, CULL_MAX + 4 * CULL_PERIOD + 10)
    finally:
        stop.set()
        visitor.join()

    entered = transitions(server, container_id)
    assert entered["culled"]["cause"].startswith("too old"), entered["culled"]
    assert entered["culled"]["time"] - entered["assigned"]["time"] >= CULL_MAX
    assert is_friendly_gone_page(call(server.base, "GET", prefix + "tree"))


def test_a_socket_directory_that_no_container_owns_is_removed_by_the_heartbeat(server, docker_client):
    # Left by a container that vanished before any heartbeat saw it, or by a crashed run.
    stray = Path(server.socket_root, server.instance, "strayXXXXXXX")
    stray.mkdir()
    (stray / "jupyter.sock").touch()
    wait_until(lambda: not stray.exists(), 5 * CULL_PERIOD, "the stray socket directory removed")
    running = docker_client.containers.list(filters={"label": f"org.tmpnb.instance={server.instance}"})
    assert running and {c.labels[ID_LABEL] for c in running} <= server.socket_dirs()  # theirs stay
