"""Shared fixtures for tests that use the real Docker engine and the real notebook image.

Every test gets its own tmpnb instance name, so it only ever sees (and cleans up) its own
containers, and a short socket root under /tmp: unix socket paths must stay under ~100 bytes.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator

import docker
import docker.errors
import pytest

from flavor_image import build_marked_image, remove_image
from tmpnb import config
from tmpnb_process import CHP, Chp, Launcher, free_port

INSTANCE_LABEL = "org.tmpnb.instance"

# tools/test sets this: there a missing engine or image is a failure, not a reason to skip.
REQUIRED = os.environ.get("TMPNB_REQUIRE_DOCKER") == "1"


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A docker-py client to the local engine; skips the test when dockerd is not there."""
    try:
        client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=60)
        client.ping()
    except Exception as e:  # any failure to reach dockerd means: no Docker here
        _unavailable(f"Docker engine not reachable: {e}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def notebook_image(docker_client: docker.DockerClient) -> str:
    """The notebook image name; skips the test until the image has been built."""
    name = os.environ.get("TMPNB_TEST_IMAGE", config.DEFAULT_IMAGE)
    try:
        docker_client.images.get(name)
    except docker.errors.ImageNotFound:
        _unavailable(f"image {name} not built (python -m tmpnb.image build)")
    return name


@pytest.fixture(scope="module")
def beta_image(docker_client: docker.DockerClient, notebook_image: str) -> Iterator[str]:
    """A second notebook image, marked "beta" (flavor_image.py), for the flavor tests of one
    module; removed after them."""
    tag = build_marked_image(docker_client, notebook_image, "beta")
    yield tag
    remove_image(docker_client, tag)


@pytest.fixture
def socket_root() -> Iterator[str]:
    """A short, fresh directory under /tmp for the socket directories of one test."""
    path = tempfile.mkdtemp(prefix="tnb", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def instance(docker_client: docker.DockerClient, socket_root: str) -> Iterator[str]:
    """A unique tmpnb instance name; afterwards every container labelled with it is removed."""
    name = "test-" + secrets.token_hex(4)
    yield name
    remove_instance_containers(docker_client, name)
    shutil.rmtree(os.path.join(socket_root, name), ignore_errors=True)


@pytest.fixture
def container_spec(instance: str, notebook_image: str, socket_root: str) -> config.ContainerSpec:
    """The default ContainerSpec, pointed at this test's instance, image and socket root."""
    return config.ContainerSpec(instance=instance, image=notebook_image, socket_root=socket_root)


def remove_instance_containers(client: docker.DockerClient, instance: str) -> None:
    """Force-remove every container (any state) whose instance label is `instance`."""
    containers = client.containers.list(
        all=True, filters={"label": f"{INSTANCE_LABEL}={instance}"}
    )
    for container in containers:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass


# -- tmpnb as a subprocess (tmpnb_process.py) ------------------------------------------------


@pytest.fixture(scope="module")
def launch(request: pytest.FixtureRequest, docker_client: docker.DockerClient, notebook_image: str) -> Iterator[Launcher]:
    """Starts `twistd -n tmpnb` servers for one module; afterwards stops each and fails unless
    each stopped cleanly on SIGTERM and left no container behind. Modules about restarts,
    where a stop keeps the visitors' containers, define their own `launch`."""
    # These servers must leave nothing when stopped; keeping visitors across a restart
    # (the default) is tests/integration/test_restart_real.py's subject.
    launcher = Launcher(docker_client, request.module.__name__.removeprefix("test_"), ["--cleanup-on-stop"])
    yield launcher
    assert launcher.close() == []


@pytest.fixture
def chp() -> Iterator[Chp]:
    """configurable-http-proxy 5.3 on loopback, its default target a free port for tmpnb
    (`chp.default_port`); skips the test where it is not installed."""
    if not os.path.exists(CHP):
        pytest.skip("configurable-http-proxy 5.3 not installed (npm install --prefix /opt/chp configurable-http-proxy@5.3.0)")
    proxy = Chp(default_target=f"http://127.0.0.1:{free_port()}")
    proxy.start()
    yield proxy
    if proxy.process.poll() is None:
        proxy.stop()
