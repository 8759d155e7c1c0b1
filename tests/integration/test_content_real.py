"""Images built from Binder-style repositories (tmpnb/content/), with the real engine, served by
tmpnb (`tmpnb run --from`) and their notebooks run cell by cell in the visitor's container.

- tests/fixtures/binder-course/: written here, every Binder file tmpnb honours; every cell's
  output must be the one the notebook recorded. Runs in CI.
- tests/fixtures/binder-examples-requirements/: binder-examples/requirements as it is on GitHub
  (numpy, scipy, pandas, matplotlib, seaborn: a few hundred MB to download and a few minutes to
  build), marked `binder_real` so that a run can leave it out (`-m "not binder_real"`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from notebook_cells import run_notebook, text_of
from tmpnb.content.builder import CONTENT_LABEL, ensure_content_image
from tmpnb.content.errors import ContentError
from tmpnb_process import execute, start_kernel, visit

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
COURSE = FIXTURES / "binder-course"
REAL = FIXTURES / "binder-examples-requirements"
BUILD_TIMEOUT = 900  # seconds between two lines of a build's output (a large wheel downloading)


@pytest.fixture(scope="module")
def build_client(docker_client: docker.DockerClient) -> Iterator[docker.DockerClient]:
    """A client whose reads wait as long as a build may stay silent."""
    client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=BUILD_TIMEOUT)
    yield client
    client.close()


@pytest.fixture(scope="module")
def course_image(build_client: docker.DockerClient, notebook_image: str) -> tuple[str, list[str]]:
    """The fixture course's image (built now unless it is already there), and the build's messages."""
    messages: list[str] = []
    return ensure_content_image(build_client, str(COURSE), say=messages.append), messages


def test_the_course_image_is_named_by_its_content(course_image: tuple[str, list[str]],
                                                  docker_client: docker.DockerClient) -> None:
    name, messages = course_image
    repository, _, tag = name.partition(":")
    assert repository == "tmpnb/content-binder-course" and len(tag) == 12
    assert docker_client.images.get(name).labels[CONTENT_LABEL].startswith(tag)
    assert any("packaging==24.2 is left out" in message for message in messages), messages


def test_a_second_build_of_the_same_content_is_instant(course_image: tuple[str, list[str]],
                                                       build_client: docker.DockerClient) -> None:
    name, _ = course_image
    messages: list[str] = []
    started = time.monotonic()
    assert ensure_content_image(build_client, str(COURSE), say=messages.append) == name
    elapsed = time.monotonic() - started
    assert any(message.startswith(f"{name} is up to date") for message in messages), messages
    assert not any(message.startswith("docker build") for message in messages), messages
    print(f"cached build: {elapsed:.2f} s")


def test_tmpnb_image_build_from_prints_the_name_last(tmp_path: Path, course_image: tuple[str, list[str]]) -> None:
    """The command a teacher types: progress on stderr, the image's name alone and last on stdout;
    `tmpnb run --from` a repository tmpnb cannot honour says why and serves nothing."""
    name, _ = course_image
    done = subprocess.run([sys.executable, "-m", "tmpnb.cli", "image", "build", "--from", str(COURSE)],
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{name}\n"
    assert f"{name} is up to date" in done.stderr

    conda = tmp_path / "conda-course"
    conda.mkdir()
    (conda / "environment.yml").write_text("dependencies: [numpy]\n")
    refused = subprocess.run([sys.executable, "-m", "tmpnb.cli", "run", "--from", str(conda), "--pool-size=1"],
                             cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                             text=True, timeout=300)
    assert (refused.returncode, refused.stdout) == (1, ""), refused
    assert refused.stderr.startswith("error: tmpnb cannot build this repository as it is"), refused.stderr
    assert "environment.yml: a conda environment" in refused.stderr


def test_a_git_url_of_the_same_content_is_the_same_image(tmp_path: Path, course_image: tuple[str, list[str]],
                                                         build_client: docker.DockerClient) -> None:
    """Cloned with `git clone --depth 1 file://…` (no network), hashed alike: no second build."""
    name, _ = course_image
    work = tmp_path / "course"
    shutil.copytree(COURSE, work)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@localhost",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@localhost"}
    for argv in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "course"]):
        subprocess.run(["git", "-C", str(work), *argv], check=True, env=env)
    messages: list[str] = []
    again = ensure_content_image(build_client, work.as_uri(), "tmpnb/content-binder-course", say=messages.append)
    assert again == name
    assert any(message.startswith(f"git clone --depth 1 {work.as_uri()}") for message in messages)
    assert any(message.startswith(f"{name} is up to date") for message in messages), messages


def test_every_cell_of_the_course_runs_in_its_container(launch, course_image: tuple[str, list[str]]) -> None:
    """`tmpnb run --from FOLDER` serves the course; a visitor's server runs notebooks/index.ipynb,
    read from the visitor's home, and every cell prints what the notebook recorded: pyfiglet
    (requirements.txt), figlet (apt.txt), postBuild's mark, start's variable, Python 3.11 with the
    server's own packaging, the repository in the home."""
    name, _ = course_image
    server = launch("--from", str(COURSE), "--pool-size=1", launcher="tmpnb-run")
    server.wait_available(1, timeout=180)
    assert server.stats()["container_image"] == name
    assert f"serving {name}" in server.log()
    prefix, token, location = visit(server.base, "/spawn/notebooks/index.ipynb")
    assert location.startswith(f"{prefix}notebooks/index.ipynb?")
    runs = run_notebook(server.base, prefix, token, "notebooks/index.ipynb")
    assert len(runs) == 6, [run.source for run in runs]
    for run in runs:
        assert run.error() is None, (run.source, run.outputs)
        assert text_of(run.outputs) == text_of(run.recorded), run.source
    # The visitor's copy is theirs to change; the image's copy (uid 1000's, on the read-only
    # root) and the wrapper every container starts with (root's) are not.
    probe = (
        "import errno, os\n"
        "def attempt(path):\n"
        "    try:\n"
        "        open(path, 'a').close(); return 'written'\n"
        "    except OSError as e:\n"
        "        return errno.errorcode[e.errno]\n"
        "[attempt(os.path.expanduser('~/binder/start')), attempt('/opt/notebook/share/tmpnb/home/binder/start'),"
        " attempt('/opt/notebook/share/tmpnb/content-start')]"
    )
    assert execute(server.base, prefix, token, start_kernel(server.base, prefix, token), probe) == (
        "['written', 'EROFS', 'EACCES']")


def test_a_package_that_needs_another_server_is_one_build_error_naming_it(
        tmp_path: Path, build_client: docker.DockerClient, notebook_image: str) -> None:
    """retrolab 0.3 (notebook 7's forerunner) needs jupyter-server < 2; the server is 2.21's.
    uv refuses to resolve it against the server's pins: the build stops with uv's reason."""
    repository = tmp_path / "old-course"
    repository.mkdir()
    (repository / "requirements.txt").write_text("pyfiglet==1.0.4\nretrolab==0.3.21\n")
    with pytest.raises(ContentError) as caught:
        ensure_content_image(build_client, str(repository), say=lambda message: None)
    message = str(caught.value)
    assert "requirements.txt cannot be installed next to tmpnb's server packages" in message
    assert "retrolab==0.3.21 depends on jupyter-server" in message, message
    assert not build_client.images.list(filters={"label": CONTENT_LABEL, "reference": "tmpnb/content-old-course"})


@pytest.mark.binder_real
def test_a_real_binder_repository_builds_and_its_notebook_runs(launch, build_client: docker.DockerClient,
                                                               notebook_image: str) -> None:
    """binder-examples/requirements, vendored as it is: its pip-compile lock pins packaging,
    python-dateutil and tzdata too (the server's versions are kept), its runtime.txt asks for
    Python 3.10 (3.11 is used); every cell of index.ipynb runs, and both plots are drawn."""
    messages: list[str] = []
    started = time.monotonic()
    name = ensure_content_image(build_client, str(REAL), say=messages.append)
    print(f"built or found {name} in {time.monotonic() - started:.0f} s")
    assert name.startswith("tmpnb/content-binder-examples-requirements:")
    assert any("Python 3.11 is used" in message for message in messages), messages

    server = launch("--from", str(REAL), "--pool-size=1", launcher="tmpnb-run")
    server.wait_available(1, timeout=180)
    prefix, token, _ = visit(server.base, "/")
    runs = run_notebook(server.base, prefix, token, "index.ipynb", timeout=300)
    assert len(runs) == 4, [run.source for run in runs]
    for run in runs:
        assert run.error() is None, (run.source, run.outputs)
    plots = [run for run in runs if any("image/png" in o.get("data", {}) for o in run.outputs)]
    assert [run.source.split("\n")[-1] for run in plots] == ["sns.lineplot(data=x.T,dashes=False,legend=None);",
                                                             "sns.heatmap(mat);"]
