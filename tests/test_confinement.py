"""A container cannot hurt its host (tmpnb/confinement.py): what docker-py is asked for, and the
options that size it. The real engine's side is tests/integration/test_confinement_real.py."""

from __future__ import annotations

import pytest
from twisted.python.usage import UsageError

from tmpnb import config, sockets
from tmpnb.confinement import confinement_kwargs, memory_budget_problem, size_bytes, writable_bytes
from tmpnb.dockerrecipe import LaunchRequest, create_kwargs
from tmpnb.settings import container_spec
from tmpnb.tap import Options

MiB = 1024 * 1024


def kwargs_for(**fields: object) -> dict:
    spec = config.ContainerSpec(socket_root="/run/tmpnb-test", **fields)  # type: ignore[arg-type]
    request = LaunchRequest("abc", "t0ken", "/user/abc/", sockets.socket_dir(spec, "abc"), spec)
    return create_kwargs(request, created=0.0)


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


# -- create_kwargs ------------------------------------------------------------------------


def test_by_default_the_root_is_read_only_and_home_and_tmp_are_capped_tmpfs():
    kwargs = kwargs_for()

    assert kwargs["read_only"] is True
    assert kwargs["tmpfs"] == {
        "/home/jovyan": f"size={128 * MiB},mode=0755,nosuid,nodev,exec,uid=1000,gid=1000",
        "/tmp": f"size={64 * MiB},mode=1777,nosuid,nodev,exec",
    }
    assert kwargs["shm_size"] == 64 * MiB
    # Unchanged by the confinement: the limits the tmpfs pages are counted in.
    assert (kwargs["mem_limit"], kwargs["memswap_limit"]) == ("512m", "512m")


def test_open_files_are_limited_and_core_dumps_off():
    assert kwargs_for(nofile=300)["ulimits"] == [
        {"name": "nofile", "soft": 300, "hard": 300},
        {"name": "core", "soft": 0, "hard": 0},
    ]


def test_the_container_log_is_one_capped_json_file():
    assert kwargs_for()["log_config"] == {"type": "json-file", "config": {"max-size": str(MiB), "max-file": "1"}}
    assert "log_config" not in kwargs_for(log_max_size="0")  # dockerd's own driver and options


def test_sizes_home_and_owner_follow_the_spec():
    kwargs = kwargs_for(home_dir="/home/user", home_size="1g", tmp_size="10m", shm_size="2m", user="1234:99")

    assert kwargs["tmpfs"] == {
        "/home/user": f"size={1024 * MiB},mode=0755,nosuid,nodev,exec,uid=1234,gid=99",
        "/tmp": f"size={10 * MiB},mode=1777,nosuid,nodev,exec",
    }
    assert kwargs["shm_size"] == 2 * MiB


def test_a_size_of_zero_leaves_that_place_to_the_image_and_writable_root_turns_read_only_off():
    kwargs = kwargs_for(home_size="0", tmp_size="0", read_only_root=False)

    assert kwargs["tmpfs"] == {}
    assert kwargs["read_only"] is False


def test_a_named_user_gets_a_home_without_uid_options():
    assert kwargs_for(user="jovyan")["tmpfs"]["/home/jovyan"] == f"size={128 * MiB},mode=0755,nosuid,nodev,exec"


def test_host_directories_stay_mounted_next_to_the_tmpfs():
    kwargs = kwargs_for(host_directories=("/srv/data:/home/jovyan/data",))

    assert kwargs["volumes"]["/srv/data"] == {"bind": "/home/jovyan/data", "mode": "ro"}
    assert "/home/jovyan" in kwargs["tmpfs"]


def test_confinement_kwargs_are_what_docker_py_accepts():
    docker_types = pytest.importorskip("docker.types")
    kwargs = confinement_kwargs(config.ContainerSpec())
    host_config = docker_types.HostConfig(
        version="1.41", read_only=kwargs["read_only"], tmpfs=kwargs["tmpfs"], shm_size=kwargs["shm_size"],
        ulimits=kwargs["ulimits"], log_config=kwargs["log_config"],
    )

    assert host_config["ReadonlyRootfs"] is True
    assert host_config["Tmpfs"] == kwargs["tmpfs"]
    assert host_config["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 1024}, {"Name": "core", "Soft": 0, "Hard": 0}]
    assert host_config["LogConfig"] == {"Type": "json-file", "Config": {"max-size": str(MiB), "max-file": "1"}}


# -- sizes and the memory budget --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [("0", 0), ("", 0), ("4096", 4096), ("512b", 512), ("64k", 64 * 1024), ("128m", 128 * MiB),
     ("128M", 128 * MiB), ("1g", 1024 * MiB), ("1.5g", 1536 * MiB), ("64mb", 64 * MiB)],
)
def test_docker_sizes(text, size):
    assert size_bytes(text) == size


@pytest.mark.parametrize("text", ["zz", "-1m", "1t", "1 g b", "m", "64MiB"])
def test_nonsense_sizes_are_refused(text):
    with pytest.raises(ValueError):
        size_bytes(text)


def test_the_writable_places_count_at_their_caps_and_shm_zero_is_dockers_64m():
    assert writable_bytes(config.ContainerSpec()) == 256 * MiB
    assert writable_bytes(config.ContainerSpec(shm_size="0")) == 256 * MiB
    assert writable_bytes(config.ContainerSpec(home_size="0", tmp_size="0", shm_size="1m")) == MiB


def test_the_defaults_fit_the_memory_limit_with_room_for_a_server_and_a_kernel():
    assert memory_budget_problem(config.ContainerSpec()) is None
    assert memory_budget_problem(config.ContainerSpec(mem_limit="352m")) is None  # 256 + 96 exactly
    problem = memory_budget_problem(config.ContainerSpec(mem_limit="351m"))
    assert problem is not None and "--mem-limit" in problem
    assert memory_budget_problem(config.ContainerSpec(mem_limit="0", home_size="10g")) is None  # no limit


# -- the options ------------------------------------------------------------------------------


def test_the_options_fill_the_spec():
    spec = container_spec(parse("--home-size=200m", "--tmp-size=100m", "--shm-size=16m", "--nofile=4096",
                                "--home-dir=/home/user", "--log-max-size=10m", "--mem-limit=1g"))

    assert (spec.home_size, spec.tmp_size, spec.shm_size) == ("200m", "100m", "16m")
    assert (spec.nofile, spec.home_dir, spec.log_max_size, spec.read_only_root) == (4096, "/home/user", "10m", True)


def test_writable_root_is_a_flag():
    assert container_spec(parse("--writable-root")).read_only_root is False
    assert container_spec(parse()).read_only_root is True


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [(["--home-size=400m"], "--mem-limit"),
     (["--mem-limit=256m"], "--mem-limit"),
     (["--tmp-size=lots"], "--tmp-size"),
     (["--home-size=1t"], "--home-size"),
     (["--mem-limit=big"], "--mem-limit"),
     (["--nofile=10"], "--nofile"),
     (["--nofile=many"], "many"),
     (["--home-dir=home"], "--home-dir"),
     (["--home-dir=/tmp"], "--home-dir"),
     (["--home-size=0"], "--writable-root")],
)
def test_sizes_that_cannot_work_are_refused_at_start(argv, complaint):
    with pytest.raises(UsageError, match=complaint):
        parse(*argv)


def test_home_size_zero_works_with_a_writable_root_and_a_bigger_memory_limit_takes_bigger_caps():
    assert container_spec(parse("--home-size=0", "--writable-root")).home_size == "0"
    assert container_spec(parse("--mem-limit=2g", "--home-size=1g", "--tmp-size=512m")).home_size == "1g"
