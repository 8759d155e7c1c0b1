"""Two flavors on one node, with the real engine: the notebook image and a second one built here
from a tiny Dockerfile (tests/integration/flavor_image.py: a marker file and a notebook in the
home). Each visitor gets the image they asked for, checked from inside their kernel; the pools
refill independently; the capacity is shared: filled by one flavor, the other is refused; an
unknown flavor is a 404 listing the flavors."""

from __future__ import annotations

import json

import pytest

from flavor_image import MARKER_NAME, STATIC_NAME
from tmpnb.image.static import extract_static
from tmpnb_process import ONE_ADDRESS, call, container_id_of, execute, start_kernel, visit, wait_until

pytestmark = pytest.mark.integration

HAS_MARKER = f"__import__('os').path.exists(__import__('os').path.expanduser('~/{MARKER_NAME}'))"


def flavor_stats(tmpnb) -> dict:
    return tmpnb.stats()["flavors"]


def wait_pooled(tmpnb, alpha: int, beta: int) -> dict:
    def ready():
        tmpnb.check_alive()
        flavors = flavor_stats(tmpnb)
        return flavors if (flavors["alpha"]["available"], flavors["beta"]["available"]) == (alpha, beta) else None
    return wait_until(ready, 120, f"alpha {alpha} and beta {beta} pooled")


def in_kernel(tmpnb, prefix: str, token: str, code: str) -> str | None:
    return execute(tmpnb.base, prefix, token, start_kernel(tmpnb.base, prefix, token), code)


def spawn(tmpnb, flavor: str | None, wait: float = 0):
    body = {"wait": wait, **({"flavor": flavor} if flavor else {})}
    return call(tmpnb.base, "POST", "/api/spawn", json.dumps(body).encode(), {"Content-Type": "application/json"},
                timeout=wait + 60)


def test_two_flavors_each_visitor_gets_theirs_pools_refill_apart_and_share_the_capacity(
        launch, docker_client, notebook_image, beta_image):
    tmpnb = launch(*ONE_ADDRESS, f"--flavor=alpha={notebook_image},pool-size=1",
                   f"--flavor=beta={beta_image},pool-size=1,landing=notebooks/index.ipynb", "--capacity=4",
                   "--refill-delay=0")
    wait_pooled(tmpnb, 1, 1)
    stats = tmpnb.stats()
    assert stats["default_flavor"] == "alpha"
    assert {name: f["image"] for name, f in stats["flavors"].items()} == {"alpha": notebook_image, "beta": beta_image}

    # Each visitor gets the image they asked for, seen from inside their kernel.
    beta_prefix, beta_token, landed = visit(tmpnb.base, "/?flavor=beta")
    assert landed.startswith(beta_prefix + "notebooks/index.ipynb?token=")  # beta's landing page
    alpha_prefix, alpha_token, landed = visit(tmpnb.base, "/")
    assert landed.startswith(alpha_prefix + "tree?token=")  # the node's --redirect-uri
    assert in_kernel(tmpnb, beta_prefix, beta_token, HAS_MARKER) == "True"
    assert in_kernel(tmpnb, beta_prefix, beta_token, f"open('{MARKER_NAME}').read().strip()") == "'beta'"
    assert in_kernel(tmpnb, alpha_prefix, alpha_token, HAS_MARKER) == "False"
    containers = {c.labels["org.tmpnb.id"]: c for c in docker_client.containers.list(
        filters={"label": f"org.tmpnb.instance={tmpnb.instance}"})}
    assert containers[container_id_of(beta_prefix)].labels["org.tmpnb.flavor"] == "beta"
    assert containers[container_id_of(beta_prefix)].image.tags == [beta_image]

    # The pools refill independently: each flavor boots its own replacement.
    wait_pooled(tmpnb, 1, 1)
    booted = [r for r in tmpnb.lifecycle() if r["to"] == "pooled"]
    assert sorted(r.get("flavor", "default") for r in booted) == ["alpha", "alpha", "beta", "beta"]

    # The capacity is shared: 2 handed out, 2 pooled. An alpha burst takes alpha's pooled one,
    # then beta's spare is culled to boot alpha for the next; beta's visitors are refused then.
    assert spawn(tmpnb, "alpha").status == 200
    waited = spawn(tmpnb, "alpha", wait=90)
    assert waited.status == 200, waited.body
    url = waited.json()["url"]
    prefix, token = "/user/" + container_id_of(url) + "/", url.split("?token=")[1]
    assert in_kernel(tmpnb, prefix, token, HAS_MARKER) == "False"
    assert spawn(tmpnb, "beta").status == 429
    assert spawn(tmpnb, "beta", wait=5).status == 429  # no place in line: the capacity is all visitors'
    assert len(docker_client.containers.list(all=True, filters={"label": f"org.tmpnb.instance={tmpnb.instance}"})) <= 4
    flavors = flavor_stats(tmpnb)
    assert flavors["alpha"]["room"] == 0 and flavors["beta"]["room"] == 0
    assert any(r.get("flavor") == "beta" and r.get("detail") == "room for another flavor" or
               r.get("cause") == "room for another flavor" for r in tmpnb.lifecycle())

    # An unknown flavor: 404 with the list, never a server.
    missing = call(tmpnb.base, "GET", "/?flavor=gamma")
    assert missing.status == 404 and b"alpha, beta" in missing.body
    api = spawn(tmpnb, "gamma")
    assert api.status == 404 and api.json()["flavors"] == ["alpha", "beta"]


def test_each_flavors_servers_get_the_static_files_of_its_own_image(launch, docker_client, notebook_image, beta_image,
                                                                     tmp_path):
    """Each image's static files extracted (tmpnb.image extract-static), then marked in the
    extracted copy only: what a visitor of each flavor gets is its own image's copy, served by
    the proxy, never the other's."""
    dirs = {}
    for flavor, image in (("alpha", notebook_image), ("beta", beta_image)):
        dest = tmp_path / flavor
        manifest = extract_static(docker_client, dest, image)
        lab = dest / manifest["static/lab/"]
        assert (lab / STATIC_NAME).exists() == (flavor == "beta")  # only beta's image has it
        (lab / STATIC_NAME).write_text(f"{flavor} static, served centrally\n")
        dirs[flavor] = dest
    tmpnb = launch(*ONE_ADDRESS, f"--flavor=alpha={notebook_image},pool-size=1,static-dir={dirs['alpha']}",
                   f"--flavor=beta={beta_image},pool-size=1,static-dir={dirs['beta']}", "--capacity=3")
    wait_pooled(tmpnb, 1, 1)
    for flavor in ("alpha", "beta"):
        prefix, _, _ = visit(tmpnb.base, f"/?flavor={flavor}")
        reply = call(tmpnb.base, "GET", f"{prefix}static/lab/{STATIC_NAME}")
        assert reply.status == 200 and reply.body == f"{flavor} static, served centrally\n".encode()
