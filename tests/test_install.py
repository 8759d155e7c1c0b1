"""Every way of installing tmpnb gives the same commands: `twistd tmpnb`, `twistd tmpnb-proxy`
and `tmpnb`, whether installed as a package (`pip install .`) or for development
(`pip install -e .`, where Twisted must still find twisted/plugins/).

Each test makes a fresh virtual environment and installs a copy of this checkout into it,
offline: the dependencies come from the wheels `tools/setup --test` collected.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.install

REPO = Path(__file__).resolve().parents[1]
WHEELHOUSE = Path(os.environ.get("TMPNB_WHEELHOUSE", "/var/cache/tmpnb/wheels"))
# What a checkout holds besides the project: never copied into the source being installed.
NOT_SOURCE = shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", "test-artifacts", ".venv*")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A copy of this checkout: building in place would leave build/ and *.egg-info in it."""
    if not any(WHEELHOUSE.glob("twisted-*.whl")):
        if os.environ.get("TMPNB_REQUIRE_DOCKER") == "1":  # tools/test: everything is required
            pytest.fail(f"no wheels in {WHEELHOUSE}: run tools/setup --test")
        pytest.skip(f"no wheels in {WHEELHOUSE}: run tools/setup --test")
    copy = tmp_path / "src"
    shutil.copytree(REPO, copy, ignore=NOT_SOURCE)
    return copy


def fresh_venv(where: Path) -> Path:
    """A new virtual environment that sees nothing of this interpreter's packages; its bin/."""
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(where)
    return where / "bin"


def pip_install(bin_dir: Path, *args: str) -> None:
    subprocess.run(
        [bin_dir / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "--no-index", "--find-links", WHEELHOUSE, *args],
        check=True, capture_output=True, timeout=600,
    )


def output(bin_dir: Path, *command: str) -> str:
    """What a command of the environment prints, run from / so that nothing of the checkout's
    directory leaks onto its path."""
    done = subprocess.run(
        [bin_dir / command[0], *command[1:]], cwd="/", capture_output=True, text=True, timeout=120,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")},
    )
    assert done.returncode == 0, (command, done.stdout, done.stderr)
    return done.stdout


def assert_commands_work(bin_dir: Path) -> None:
    plugins = output(bin_dir, "twistd", "--help")
    assert "tmpnb " in plugins and "tmpnb-proxy " in plugins, plugins
    assert "--pool-size" in output(bin_dir, "twistd", "tmpnb", "--help")
    assert "--api-port" in output(bin_dir, "twistd", "tmpnb-proxy", "--help")
    assert "--error-target" in output(bin_dir, "tmpnb-proxy", "--help")  # what JupyterHub runs
    usage = output(bin_dir, "tmpnb", "--help")
    assert "tmpnb run" in usage and "tmpnb report" in usage and "tmpnb image" in usage
    assert "--pool-size" in output(bin_dir, "tmpnb", "run", "--help")
    assert "build" in output(bin_dir, "tmpnb", "image", "--help")


def test_a_package_install_gives_every_command(source: Path, tmp_path: Path):
    bin_dir = fresh_venv(tmp_path / "venv")
    pip_install(bin_dir, str(source))

    assert_commands_work(bin_dir)
    # Installed, not pointing back at the source.
    shutil.rmtree(source)
    assert_commands_work(bin_dir)


def test_a_development_install_gives_every_command_and_follows_the_source(source: Path, tmp_path: Path):
    bin_dir = fresh_venv(tmp_path / "venv")
    pip_install(bin_dir, "-e", str(source))

    assert_commands_work(bin_dir)
    # Editable: a change to the source is what runs.
    cli = source / "tmpnb" / "cli.py"
    cli.write_text(cli.read_text().replace("one command for what an operator", "EDITED: one command for what an operator"))
    assert "EDITED" in output(bin_dir, "python", "-c", "import tmpnb.cli; print(tmpnb.cli.__doc__)")


def test_the_console_command_without_arguments_says_how_to_use_it():
    done = subprocess.run([sys.executable, "-m", "tmpnb.cli"], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2
    assert "tmpnb run" in done.stderr


def test_run_chooses_twistds_logger_from_log_format():
    from tmpnb.cli import _log_format

    assert _log_format(["--pool-size", "3"]) == ("tmpnb.logs.text_observer", ["--pool-size", "3"])
    assert _log_format(["--log-format", "json", "--pool-size", "3"]) == ("tmpnb.logs.json_observer", ["--pool-size", "3"])
    assert _log_format(["--log-format=json"]) == ("tmpnb.logs.json_observer", [])
    with pytest.raises(SystemExit):
        _log_format(["--log-format", "xml"])
