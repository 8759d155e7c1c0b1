"""The notebook image: its recipe hash, the base's mirror, and (with Docker) the built image."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tmpnb.config import DEFAULT_IMAGE

from tmpnb.image import build, static
from tmpnb.image.build import RECIPE_DIR, recipe_files, recipe_hash
from tmpnb.image.node import ensure_node_image


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    """A copy of the image recipe that a test may change."""
    copy = tmp_path / "recipe"
    for name in recipe_files():
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(RECIPE_DIR / name, copy / name)
    return copy


# -- the recipe hash ---------------------------------------------------------------------------


def test_the_recipe_is_the_dockerfile_the_lock_the_welcome_notebook_and_the_support_files():
    names = recipe_files()
    assert {"Dockerfile", "requirements.txt", "Welcome.ipynb"} <= set(names)
    assert "files/jupyter_server_config.py" in names
    assert all((RECIPE_DIR / name).is_file() for name in names)


def test_the_hash_depends_on_contents_not_on_where_the_recipe_lies(recipe):
    assert recipe_hash(recipe) == recipe_hash(RECIPE_DIR)
    assert recipe_hash(recipe) == recipe_hash(recipe)
    assert len(recipe_hash(recipe)) == 64
    int(recipe_hash(recipe), 16)


@pytest.mark.parametrize("name", recipe_files())
def test_changing_any_recipe_file_changes_the_hash(recipe, name):
    before = recipe_hash(recipe)
    with open(recipe / name, "ab") as f:
        f.write(b"\n")
    assert recipe_hash(recipe) != before


def test_adding_or_renaming_a_support_file_changes_the_hash(recipe):
    before = recipe_hash(recipe)
    (recipe / "files" / "extra.json").write_text("{}")
    added = recipe_hash(recipe)
    (recipe / "files" / "extra.json").rename(recipe / "files" / "other.json")
    renamed = recipe_hash(recipe)
    assert len({before, added, renamed}) == 3


def test_moving_bytes_from_one_file_to_the_next_changes_the_hash(recipe):
    names = recipe_files(recipe)
    first, second = recipe / names[0], recipe / names[1]
    before = recipe_hash(recipe)
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(a + b[:1])
    second.write_bytes(b[1:])
    assert recipe_hash(recipe) != before


def test_files_outside_the_recipe_do_not_change_the_hash(recipe):
    before = recipe_hash(recipe)
    (recipe / "requirements.in").write_text("anything==1\n")
    (recipe / "build.py").write_text("# not part of the image\n")
    (recipe / "files" / "__pycache__").mkdir()
    (recipe / "files" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert recipe_hash(recipe) == before


def test_changing_what_debootstrap_installs_changes_both_hashes(recipe, monkeypatch):
    base_before, before = build.base_recipe_hash(), recipe_hash(recipe)
    monkeypatch.setattr(
        build, "DEBOOTSTRAP_ARGS", ("--variant=minbase", "--include=python3,tini", "bookworm")
    )
    assert build.base_recipe_hash() != base_before
    assert recipe_hash(recipe) != before


def test_the_lock_pins_every_package_and_leaves_out_nothing_the_issue_names():
    lines = [
        line.split("#")[0].strip()
        for line in (RECIPE_DIR / "requirements.txt").read_text().splitlines()
    ]
    pins = dict(line.split("==") for line in lines if line)
    assert all(version for version in pins.values())
    assert pins["jupyter-server"].startswith("2.")
    assert pins["notebook"].startswith("7.")
    assert {"ipykernel", "ipywidgets"} <= set(pins)


def test_the_welcome_notebook_is_a_valid_notebook_with_a_widget_example():
    notebook = json.loads((RECIPE_DIR / "Welcome.ipynb").read_text())
    assert notebook["nbformat"] == 4
    code = ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert any("ipywidgets" in source for source in code)
    assert all(cell["outputs"] == [] for cell in notebook["cells"] if cell["cell_type"] == "code")


# -- where the base comes from -----------------------------------------------------------------


def test_the_mirror_is_read_from_deb822_sources_skipping_the_security_archive(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n"
    )
    assert build.debian_mirror(tmp_path) == "http://mirror.example/debian"


def test_the_mirror_is_read_from_one_line_sources(tmp_path):
    (tmp_path / "sources.list").write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb [arch=amd64] http://ftp.example/debian bookworm main\n"
    )
    assert build.debian_mirror(tmp_path) == "http://ftp.example/debian"


def test_without_a_debian_source_the_mirror_is_deb_debian_org(tmp_path):
    (tmp_path / "sources.list").write_text("deb https://packages.example/apt stable main\n")
    assert build.debian_mirror(tmp_path) == "http://deb.debian.org/debian"


# -- the static files manifest -----------------------------------------------------------------


def test_each_url_prefix_gets_its_own_directory():
    assert static.subdirectory_for("static/") == "static"
    assert static.subdirectory_for("static/notebook/") == "static-notebook"
    assert static.subdirectory_for("lab/api/themes/") == "lab-api-themes"


def test_the_layout_lists_the_longest_prefix_first(tmp_path):
    manifest = {"static/": "static", "static/notebook/": "static-notebook", "lab/extensions/": "x"}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    layout = static.load_static_layout(tmp_path)
    assert [prefix for prefix, _ in layout] == ["static/notebook/", "lab/extensions/", "static/"]
    assert dict(layout)["static/"] == tmp_path / "static"


# -- the built image (real Docker engine) ------------------------------------------------------
# Own fixtures: tests/integration/conftest.py does not reach this directory.


def _unavailable(reason: str) -> None:
    if os.environ.get("TMPNB_REQUIRE_DOCKER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def docker_client():
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as error:  # no engine here, whatever the reason
        _unavailable(f"Docker engine not reachable: {error}")
    yield client
    client.close()


@pytest.fixture(scope="module")
def notebook_image(docker_client) -> str:
    from docker.errors import ImageNotFound

    name = os.environ.get("TMPNB_TEST_IMAGE", DEFAULT_IMAGE)
    try:
        docker_client.images.get(name)
    except ImageNotFound:
        _unavailable(f"image {name} not built (python -m tmpnb.image build)")
    return name


@pytest.fixture
def instance(docker_client) -> Iterator[str]:
    """A unique instance label; its containers are removed afterwards, whatever happened."""
    name = "test-image-" + secrets.token_hex(4)
    yield name
    for container in docker_client.containers.list(
        all=True, filters={"label": f"org.tmpnb.instance={name}"}
    ):
        container.remove(force=True)


def run_in_image(docker_client, image: str, instance: str, what: str, command: list[str]) -> str:
    """What `command` prints in a container of `image`, with tmpnb's network mode and labels."""
    output = docker_client.containers.run(
        image,
        command,
        name=f"tmpnb-{instance}-{what}",
        labels={"org.tmpnb.instance": instance},
        network_mode="none",
        remove=True,
    )
    return output.decode()


@pytest.mark.integration
def test_ensure_image_returns_at_once_when_the_image_is_present(docker_client, notebook_image):
    if notebook_image != DEFAULT_IMAGE:
        pytest.skip("ensure_image would tag tmpnb's recipe as the image under test")
    first = build.ensure_image(docker_client, notebook_image)  # builds only if the recipe changed
    started = time.monotonic()
    said: list[str] = []
    again = build.ensure_image(docker_client, notebook_image, say=said.append)
    assert time.monotonic() - started < 5
    assert again == first
    assert said == [f"{notebook_image} is up to date (recipe {recipe_hash()[:12]}): {first}"]
    labels = docker_client.images.get(notebook_image).labels
    assert labels[build.RECIPE_LABEL] == recipe_hash()


@pytest.mark.integration
def test_a_container_runs_as_jovyan_under_tini_without_lark(
    docker_client, notebook_image, instance
):
    script = (
        "id -u; cat /proc/1/comm; pwd; echo $(ls ~); "
        "python -c \"import importlib.util as u; print(u.find_spec('lark'), "
        "u.find_spec('rfc3987_syntax'))\"; "
        "jupyter server extension list 2>&1 | grep -E '^ +notebook .*enabled'"
    )
    output = run_in_image(docker_client, notebook_image, instance, "probe", ["sh", "-c", script])
    uid, pid1, home, listing, missing, notebook = output.splitlines()
    assert uid == "1000"
    assert pid1 == "tini"
    assert home == "/home/jovyan"
    assert "Welcome.ipynb" in listing
    assert missing == "None None"
    assert "notebook" in notebook


@pytest.mark.integration
def test_extract_static_copies_the_files_the_ui_loads(docker_client, notebook_image, tmp_path):
    manifest = static.extract_static(docker_client, tmp_path, notebook_image)
    assert {"static/", "static/notebook/", "static/lab/", "lab/extensions/"} <= set(manifest)
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    for subdirectory in manifest.values():
        assert any((tmp_path / subdirectory).iterdir())
    # The page /user/<id>/tree loads static/notebook/main.<hash>.js and the widgets' entry point.
    assert list((tmp_path / "static-notebook").glob("main.*.js"))
    widgets = tmp_path / "lab-extensions" / "@jupyter-widgets" / "jupyterlab-manager" / "static"
    assert list(widgets.glob("remoteEntry.*.js"))
    assert (tmp_path / "static" / "favicons" / "favicon.ico").is_file()
    leftovers = docker_client.containers.list(all=True, filters={"label": static.EXTRACT_LABEL})
    assert leftovers == []
    # Extracting again replaces the tree in place.
    assert static.extract_static(docker_client, tmp_path, notebook_image) == manifest
    left = sorted(path.name for path in tmp_path.iterdir())
    assert left == sorted([*manifest.values(), "manifest.json"])


@pytest.mark.integration
def test_extract_static_refuses_an_image_that_does_not_say_where_its_files_are(
    docker_client, tmp_path
):
    from docker.errors import ImageNotFound

    try:
        docker_client.images.get(build.BASE_IMAGE)
    except ImageNotFound:
        pytest.skip(f"{build.BASE_IMAGE} not built")
    with pytest.raises(static.NoStaticLayout):
        static.extract_static(docker_client, tmp_path / "dest", build.BASE_IMAGE)
    assert not (tmp_path / "dest" / "manifest.json").exists()
    leftovers = docker_client.containers.list(all=True, filters={"label": static.EXTRACT_LABEL})
    assert leftovers == []


# What every start costs: the image keeps the server's imports to what a visitor uses.
# Optional extras of jsonschema that only check string formats in jupyter-events' schemas.
FORMAT_EXTRAS = "rfc3987_syntax lark arrow isoduration webcolors uri_template fqdn jsonpointer"
SERVER_START_PROBE = """
OPTIONAL='%s'
PYTHONPROFILEIMPORTTIME=1 jupyter notebook --no-browser --ServerApp.base_url=/user/probe/ \
    --ServerApp.sock=/tmp/probe.sock --IdentityProvider.token=probe 2> /tmp/server.log &
for i in $(seq 300); do [ -S /tmp/probe.sock ] && break; sleep 0.1; done
sleep 1; kill $!; wait
echo socket $(test -S /tmp/probe.sock && echo yes || echo no)
python -c "import importlib.util as u; print('installed', *(m for m in '$OPTIONAL'.split() if u.find_spec(m)))"
grep -v '^import time:' /tmp/server.log | grep -o '[a-z_]* | extension was successfully loaded'
grep '^import time:' /tmp/server.log | grep -oE '[|] +[A-Za-z_]+$' | tr -d '| ' | sort -u
""" % FORMAT_EXTRAS


@pytest.mark.integration
def test_a_server_start_loads_only_what_a_visitor_uses(docker_client, notebook_image, instance):
    command = ["sh", "-c", SERVER_START_PROBE]
    lines = run_in_image(docker_client, notebook_image, instance, "imports", command).splitlines()
    assert lines[0] == "socket yes"
    assert lines[1] == "installed"  # none of FORMAT_EXTRAS
    loaded = {line.split(" | ")[0] for line in lines if "successfully loaded" in line}
    assert loaded == {"jupyterlab", "notebook", "jupyter_server_terminals"}
    imported = set(lines) - set(line for line in lines if " " in line)
    assert {"jupyter_server", "notebook", "jupyterlab", "tornado", "zmq"} <= imported
    # IPython belongs in the kernel; the server pulled it in only to look in ~/.ipython.
    # jupyter_lsp has no language server to serve here.
    assert not imported & {"IPython", "jupyter_lsp"}
    # requests (for extension allow-lists from URLs) and websocket-client (for a remote kernel
    # gateway) are deferred until touched: what requests would import is not there.
    assert not imported & {"urllib3", "charset_normalizer", "certifi"}


DEFERRED_PROBE = """
import sys
sys.path.insert(0, "/opt/notebook/share/tmpnb")
import notebook_server
sys.meta_path.insert(0, notebook_server.DeferredImports())
import requests, websocket
print("before", "urllib3" in sys.modules, "websocket._core" in sys.modules)
print("touched", requests.Session.__name__, websocket.create_connection.__name__)
print("after", "urllib3" in sys.modules, "websocket._core" in sys.modules)
"""


@pytest.mark.integration
def test_deferred_imports_load_in_full_the_moment_they_are_touched(
    docker_client, notebook_image, instance
):
    command = ["/opt/notebook/bin/python", "-c", DEFERRED_PROBE]
    output = run_in_image(docker_client, notebook_image, instance, "deferred", command)
    assert output.splitlines() == [
        "before False False",
        "touched Session create_connection",
        "after True True",
    ]


@pytest.mark.integration
def test_jupyter_notebook_starts_the_server_directly_and_other_subcommands_still_work(
    docker_client, notebook_image, instance
):
    script = "jupyter notebook --version; jupyter --paths | head -1; jupyter kernelspec list"
    output = run_in_image(docker_client, notebook_image, instance, "jupyter", ["sh", "-c", script])
    version, paths, *kernelspecs = output.splitlines()
    assert re.fullmatch(r"7\.\d+\.\d+", version)
    assert paths == "config:"
    assert any(line.split()[:1] == ["python3"] for line in kernelspecs)


def test_a_node_image_built_under_another_name_is_tagged_not_built_again():
    """The swarm test and the Nature benchmark name the node image differently: the same
    source is built once, then tagged."""
    class Image:
        id, tags, tagged = "sha256:feed", ["tmpnb/node:swarm-test"], []

        def tag(self, repository: str, tag: str) -> None:
            self.tagged.append((repository, tag))

    class Images:
        def list(self, filters):
            return [Image()]

    class Client:
        images = Images()

    assert ensure_node_image(Client(), "tmpnb/node:nature") == "sha256:feed"
    assert Image.tagged == [("tmpnb/node", "nature")]
