"""tmpnb/content/ without an engine: reading a repository's Binder files and refusing what tmpnb
cannot honour (in one error, before any build step), the content hash and image name, the
generated recipe, and getting a folder or git URL onto disk (real git, local repositories only).
The builds themselves are tests/integration/test_content_real.py's."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tmpnb import cli
from tmpnb.content import builder
from tmpnb.content.binderfiles import read_binder_files
from tmpnb.content.errors import ContentError
from tmpnb.content.naming import content_hash, image_name, repository_files, slug
from tmpnb.content.recipe import ENTRYPOINT, make_recipe, uv_version, write_context
from tmpnb.content.requirements import SERVER_LOCK, server_pins, yield_to_server
from tmpnb.content.source import check_url, checked_out
from tmpnb.image import __main__ as image_main
from tmpnb.image.build import BuildError

FIXTURE = Path(__file__).parent / "fixtures" / "binder-course"
REAL = Path(__file__).parent / "fixtures" / "binder-examples-requirements"
PINS = server_pins()


def say(message: str) -> None:
    pass


def repository(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "repo"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    root.mkdir(exist_ok=True)
    return root


# -- Binder files ---------------------------------------------------------------------------


def test_the_fixture_course_is_read_from_its_binder_folder() -> None:
    binder = read_binder_files(FIXTURE)
    assert binder.config_dir == "binder"
    assert binder.apt_packages == ("figlet",)
    assert (binder.requirements, binder.post_build, binder.start) == (
        "binder/requirements.txt", "binder/postBuild", "binder/start")
    assert binder.runtime == "python-3.11"
    assert binder.notes == ()  # python-3.11 is the image's: nothing to say


def test_files_at_the_root_are_used_when_there_is_no_binder_folder(tmp_path: Path) -> None:
    root = repository(tmp_path, {"requirements.txt": "pyfiglet\n", "apt.txt": "figlet\ncowsay\n", "postBuild": "true\n"})
    binder = read_binder_files(root)
    assert (binder.config_dir, binder.requirements, binder.post_build, binder.start) == (
        "", "requirements.txt", "postBuild", None)
    assert binder.apt_packages == ("figlet", "cowsay")


def test_a_binder_folder_wins_and_the_root_files_it_hides_are_named(tmp_path: Path) -> None:
    root = repository(tmp_path, {".binder/apt.txt": "figlet\n", "requirements.txt": "x\n", "setup.py": "",
                                 "environment.yml": ""})
    binder = read_binder_files(root)
    assert binder.config_dir == ".binder" and binder.requirements is None
    assert len(binder.notes) == 1
    for name in ("requirements.txt", "setup.py", "environment.yml"):
        assert name in binder.notes[0]


def test_everything_tmpnb_cannot_honour_is_named_in_one_error(tmp_path: Path) -> None:
    root = repository(tmp_path, {
        "environment.yml": "dependencies: [numpy]\n", "Dockerfile": "FROM scratch\n", "install.R": "",
        "Project.toml": "", "Pipfile": "", "default.nix": "", "setup.py": "", "runtime.txt": "r-2020-01-01\n",
        "apt.txt": "figlet\nfiglet; rm -rf /\n-o APT::Get::AllowUnauthenticated=true\n$(reboot)\ncowsay sl\nFiglet\n",
        "requirements.txt": "pyfiglet\n-r /etc/passwd\ngit+https://example.org/x.git\n./local\n-e .\nnot a requirement !\n",
    })
    with pytest.raises(ContentError) as caught:
        read_binder_files(root)
    message = str(caught.value)
    for expected in ("environment.yml: a conda environment", "Dockerfile: a Dockerfile", "install.R", "Project.toml",
                     "Pipfile", "default.nix", "setup.py", "runtime.txt: 'r-2020-01-01'",
                     "apt.txt line 2: 'figlet; rm -rf /'", "apt.txt line 3", "apt.txt line 4: '$(reboot)'",
                     "apt.txt line 5: 'cowsay sl'", "apt.txt line 6: 'Figlet'",
                     "requirements.txt line 2: -r includes another file",
                     "requirements.txt line 3: 'git+https://example.org/x.git' needs a version control tool",
                     "requirements.txt line 4: './local' installs a path", "requirements.txt line 5: -e installs",
                     "requirements.txt line 6: not a requirement"):
        assert expected in message, expected
    assert "line 1" not in message  # the good lines are not blamed


def test_a_binder_file_that_is_a_link_is_refused(tmp_path: Path) -> None:
    """A link would make the build read a file of the host (apt.txt → /etc/passwd)."""
    root = repository(tmp_path, {"README.md": ""})
    (root / "apt.txt").symlink_to("/etc/passwd")
    with pytest.raises(ContentError, match="apt.txt: must be a regular file"):
        read_binder_files(root)


def test_both_binder_folders_are_refused_as_repo2docker_does(tmp_path: Path) -> None:
    root = repository(tmp_path, {"binder/apt.txt": "figlet\n", ".binder/apt.txt": "cowsay\n"})
    with pytest.raises(ContentError, match="both binder/ and .binder/"):
        read_binder_files(root)


@pytest.mark.parametrize("runtime, note", [
    ("python-3.11", None),
    ("python-3.11.4", None),
    ("python-3.10", "runtime.txt asks for Python 3.10; tmpnb's image has Python 3.11 only"),
    ("python-3.12", "Python 3.11 is used"),
])
def test_runtime_is_honoured_when_it_is_the_images_python(tmp_path: Path, runtime: str, note: str | None) -> None:
    notes = read_binder_files(repository(tmp_path, {"runtime.txt": runtime + "\n"})).notes
    if note is None:
        assert notes == ()
    else:
        assert len(notes) == 1 and note in notes[0]


def test_the_real_binder_repository_is_readable_with_a_note_on_its_python() -> None:
    binder = read_binder_files(REAL)
    assert binder.requirements == "requirements.txt" and binder.runtime == "python-3.10"
    assert any("Python 3.11 is used" in note for note in binder.notes)


# -- requirements next to the server's pins -------------------------------------------------


def test_the_server_lock_pins_the_server() -> None:
    assert PINS["notebook"] == "7.6.5" and PINS["jupyter-server"] == "2.21.1" and "packaging" in PINS


def test_pins_of_server_packages_the_server_cannot_take_are_left_out_and_named() -> None:
    text = (
        "pyfiglet==1.0.4\n"
        "packaging==24.2  # via matplotlib\n"
        f"packaging>={PINS['packaging']}\n"
        "Notebook<7\n"
        "python-dateutil==2.9.0.post0 \\\n    --hash=sha256:00\n"
        "numpy; python_version >= '3'\n"
        "--extra-index-url https://example.org/simple\n"
    )
    kept, notes = yield_to_server(text, PINS)
    assert kept.splitlines() == [
        "pyfiglet==1.0.4", f"packaging>={PINS['packaging']}", "numpy; python_version >= '3'",
        "--extra-index-url https://example.org/simple",
    ]
    assert [note.split(":")[0] for note in notes] == ["line 2", "line 4", "line 5"]
    assert f"the server needs packaging=={PINS['packaging']}, which is kept" in notes[0]
    assert "Notebook<7 is left out" in notes[1]


# -- hash and name --------------------------------------------------------------------------


def test_the_hash_covers_the_files_their_modes_the_base_and_the_recipe(tmp_path: Path) -> None:
    root = tmp_path / "course"
    shutil.copytree(FIXTURE, root, symlinks=True)
    recipe = {"Dockerfile": b"FROM x\n"}
    first = content_hash(root, "sha256:base", recipe)
    assert content_hash(root, "sha256:base", recipe) == first
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    assert content_hash(root, "sha256:base", recipe) == first, ".git is not content"
    assert content_hash(root, "sha256:other", recipe) != first
    assert content_hash(root, "sha256:base", {"Dockerfile": b"FROM y\n"}) != first
    (root / "binder" / "start").chmod(0o644)
    assert content_hash(root, "sha256:base", recipe) != first, "the executable bit is content"
    (root / "binder" / "start").chmod(0o755)
    (root / "notebooks" / "index.ipynb").write_text("{}")
    assert content_hash(root, "sha256:base", recipe) != first


def test_a_link_is_hashed_by_its_target_and_copied_as_a_link(tmp_path: Path) -> None:
    """A repository's link to a host file must not bring that file into the image."""
    root = repository(tmp_path, {"README.md": "x"})
    (root / "secret").symlink_to("/etc/shadow")
    assert repository_files(root) == ["README.md", "secret"]
    content_hash(root, "base", {})  # does not read /etc/shadow (it would, following the link)
    context = tmp_path / "context"
    context.mkdir()
    write_context(context, make_recipe(read_binder_files(root), PINS, ""), root)
    assert os.readlink(context / "repo" / "secret") == "/etc/shadow"


def test_a_fifo_in_the_repository_is_refused(tmp_path: Path) -> None:
    root = repository(tmp_path, {"README.md": "x"})
    os.mkfifo(root / "pipe")
    with pytest.raises(ContentError, match="not regular files: pipe"):
        repository_files(root)


def test_image_names() -> None:
    digest = "0123456789abcdef" * 4
    assert image_name("/srv/courses/Intro to Python/", digest) == "tmpnb/content-intro-to-python:0123456789ab"
    assert image_name("https://github.com/binder-examples/requirements.git", digest) == (
        "tmpnb/content-requirements:0123456789ab")
    assert image_name("git@example.org:me/Course.git", digest) == "tmpnb/content-course:0123456789ab"
    assert image_name("x", digest, "physics101") == "physics101:0123456789ab"
    assert image_name("x", digest, "school/physics-101") == "school/physics-101:0123456789ab"
    assert slug("///") == "repository"
    for bad in ("Physics", "physics:v1", "../x", "-x", "a b", ""):
        with pytest.raises(ContentError, match="not an image repository name"):
            image_name("x", digest, bad)


# -- the recipe -----------------------------------------------------------------------------


def test_the_recipe_has_a_step_for_each_binder_file_and_none_for_absent_ones(tmp_path: Path) -> None:
    full = make_recipe(read_binder_files(FIXTURE), PINS, SERVER_LOCK.read_text())
    dockerfile = full.files["Dockerfile"].decode()
    assert "RUN sh /tmp/build/install-apt" in dockerfile and "RUN sh /tmp/build/install-requirements" in dockerfile
    assert "./binder/postBuild" in dockerfile and f'ENTRYPOINT ["tini", "--", "{ENTRYPOINT}"]' in dockerfile
    assert 'CMD ["jupyter", "notebook"' in dockerfile  # ENTRYPOINT reset the base's CMD
    assert full.files["apt-packages.txt"] == b"figlet\n"
    assert b"packaging" not in full.files["requirements.txt"] and b"pyfiglet==1.0.4" in full.files["requirements.txt"]
    assert f"uv=={uv_version()}".encode() in full.files["install-requirements"]
    assert full.notes and "packaging==24.2 is left out" in full.notes[0]

    bare = make_recipe(read_binder_files(repository(tmp_path, {"notebook.ipynb": "{}"})), PINS, "")
    dockerfile = bare.files["Dockerfile"].decode()
    for absent in ("install-apt", "install-requirements", "postBuild", "ENTRYPOINT"):
        assert absent not in dockerfile
    assert "check-server.py" in dockerfile  # the server is checked whatever the repository holds


def test_uv_is_the_one_tmpnbs_image_uses() -> None:
    assert uv_version() == "0.9.30" or uv_version()[0].isdigit()
    assert f"ARG UV_VERSION={uv_version()}" in (Path(image_main.__file__).parent / "Dockerfile").read_text()


# -- sources --------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "https://github.com/binder-examples/requirements", "http://git.example.org/course.git",
    "ssh://git@example.org/course.git", "file:///srv/course.git", "git@github.com:me/course.git",
])
def test_git_urls_tmpnb_clones(url: str) -> None:
    check_url(url)


@pytest.mark.parametrize("url", [
    "ext::sh -c touch% /tmp/pwned", "--upload-pack=touch /tmp/pwned", "git://example.org/course.git",
    "ftp://example.org/course.git", "fd::17", "me@example.org:course.git", "https://example.org/a b",
])
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(ContentError, match="is not a URL tmpnb clones"):
        check_url(url)
        raise AssertionError("accepted")  # pragma: no cover


def test_a_hostile_url_given_as_source_is_refused_before_git_runs(tmp_path: Path) -> None:
    mark = tmp_path / "pwned"
    with pytest.raises(ContentError):
        with checked_out(f"ext::sh -c touch% {mark}", say=say):
            pass
    assert not mark.exists()


def make_git_repository(tmp_path: Path, source: Path = FIXTURE) -> Path:
    """A git repository holding a copy of `source`, committed."""
    work = tmp_path / "work"
    shutil.copytree(source, work, symlinks=True)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@localhost",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@localhost"}
    for argv in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "course"]):
        subprocess.run(["git", "-C", str(work), *argv], check=True, env=env)
    return work


def test_a_file_url_a_bare_repository_and_the_folder_hash_alike(tmp_path: Path) -> None:
    work = make_git_repository(tmp_path)
    bare = tmp_path / "course.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    with checked_out(str(FIXTURE), say=say) as root:
        assert root == FIXTURE.resolve()
        folder = content_hash(root, "base", {})
    for source in (work.as_uri(), str(bare), bare.as_uri()):
        with checked_out(source, say=say) as root:
            assert root != FIXTURE.resolve() and (root / "binder" / "postBuild").exists()
            assert content_hash(root, "base", {}) == folder, source
        assert not root.exists(), "the clone is removed afterwards"


def test_a_folder_that_does_not_exist_or_a_failing_clone_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ContentError, match="neither a folder nor a git URL"):
        with checked_out(str(tmp_path / "missing"), say=say):
            pass
    with pytest.raises(ContentError, match="git clone file:///.*failed"):
        with checked_out((tmp_path / "missing.git").as_uri(), say=say):
            pass


# -- the build's entry: refusals come before any build step ---------------------------------


class Untouchable:
    """A Docker client that must not be used: any attribute access fails the test."""

    def __getattr__(self, name: str):
        raise AssertionError(f"the engine was used ({name}) before the repository was checked")


def test_an_unsupported_file_stops_the_build_before_the_engine_is_asked(tmp_path: Path) -> None:
    root = repository(tmp_path, {"environment.yml": "", "requirements.txt": "pyfiglet\n"})
    with pytest.raises(ContentError, match="environment.yml: a conda environment"):
        builder.ensure_content_image(Untouchable(), str(root), say=say)
    with pytest.raises(ContentError, match="not an image repository name"):
        builder.ensure_content_image(Untouchable(), str(FIXTURE), "Bad:Name", say=say)


def test_the_error_is_a_build_error_the_command_line_prints() -> None:
    assert issubclass(ContentError, BuildError)


# -- the command line -----------------------------------------------------------------------


def test_tmpnb_run_takes_its_content_options_out() -> None:
    assert cli._content_options(["--from", "x", "--pool-size", "2", "--name=n"]) == ("x", "n", ["--pool-size", "2"])
    assert cli._content_options(["--pool-size", "2"]) == (None, None, ["--pool-size", "2"])
    assert cli._option_value(["--home-size", "1g", "--pool-size=2"], "--home-size") == "1g"
    assert cli._option_value(["--home-size=1g", "--home-size=2g"], "--home-size") == "2g"
    assert cli._option_value(["--pool-size=2"], "--home-size") is None
    with pytest.raises(SystemExit, match="--name goes with --from"):
        cli._content_options(["--name", "n"])
    with pytest.raises(SystemExit, match="leave --image out"):
        cli._content_image("x", None, ["--image=tmpnb/notebook:latest"])


def test_tmpnb_image_build_name_needs_from(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        image_main.main(["build", "--name", "x"])


# -- what the build says ---------------------------------------------------------------------


def test_a_repository_larger_than_a_home_is_warned_about(tmp_path: Path) -> None:
    root = repository(tmp_path, {"README.md": "x"})
    with open(root / "data.bin", "wb") as data:  # sparse: 129 MiB of apparent size, no disk
        data.truncate(129 * 1024**2)
    messages: list[str] = []
    builder._warn_if_larger_than_home(root, "128m", messages.append)
    assert len(messages) == 1 and messages[0].startswith("warning: the repository holds 129 MiB")
    builder._warn_if_larger_than_home(root, "256m", messages.append)  # tmpnb run --home-size 256m
    assert len(messages) == 1
    (root / "data.bin").unlink()
    builder._warn_if_larger_than_home(root, "128m", messages.append)
    assert len(messages) == 1


def test_the_build_output_is_followed_and_its_marks_read() -> None:
    messages: list[str] = []
    builder._follow([{"stream": "Step 1/2 : FROM x\n"}, {"stream": "tmpnb-content-home-bytes: 200000000\n"},
                     {"stream": "tmpnb-content-home-bytes: 1000\n"}], "128m", messages.append)
    warnings = [m for m in messages if m.startswith("warning:")]
    assert len(warnings) == 1 and "each visitor's home starts with 191 MiB" in warnings[0]

    with pytest.raises(ContentError) as caught:
        builder._follow([{"stream": "noise\n"}, {"stream": "tmpnb-content-error: retrolab needs jupyter-server<2\n"},
                         {"error": "The command returned a non-zero code: 1"}], "128m", messages.append)
    assert str(caught.value) == ("the build failed: The command returned a non-zero code: 1\n"
                                 "retrolab needs jupyter-server<2")
    with pytest.raises(ContentError, match="the build failed: boom\nline 1\nline 2"):
        builder._follow([{"stream": "line 1\nline 2\n"}, {"error": "boom"}], "128m", messages.append)


def test_a_folder_given_as_dot_is_named_after_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`tmpnb image build --from .` in the course's folder names the image after the folder."""
    course = tmp_path / "Physics 101"
    shutil.copytree(FIXTURE, course)
    monkeypatch.chdir(course)
    with pytest.raises(AssertionError, match=r"the engine was used \(images\)"):
        builder.ensure_content_image(Untouchable(), ".", say=say)  # checked, then asks the engine
    assert image_name(str(Path(".").resolve()), "ab" * 32) == "tmpnb/content-physics-101:abababababab"
