"""A container cannot hurt its host, with the real engine and a real `twistd tmpnb`
(tmpnb/confinement.py; docs/security.md, "A container cannot hurt its host").

A hostile visitor's kernel, driven through the server's REST and websocket API as a visitor's
browser would, writes until the disk is full in every place it can write: it gets ENOSPC at
its own caps, the host's Docker filesystem keeps its free space, the container's writable layer
and log stay small, the root filesystem refuses writes, the open-file limit holds, and its own
server and a second visitor keep working (kernels, saving).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest
import websocket

from tmpnb_process import ONE_ADDRESS, Tmpnb, auth, call, container_id_of, execute, run_one_plus_one, start_kernel, visit

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
# What else may change the host's free space while a visitor writes hundreds of MiB in a
# second or two: this machine is shared with other test runs and builds.
HOST_TOLERANCE = 24 * MiB

# Runs in the visitor's kernel: `_fill` writes 1 MiB blocks to `path` until the first OSError
# and answers with what it wrote and why it stopped; `_open_all` opens files until it cannot.
FILL = """
import errno as _errno, os as _os
def _fill(path):
    written, error = 0, None
    block = b"x" * (1024 * 1024)
    try:
        with open(path, "wb") as f:
            while written < 512 * 1024 * 1024:  # 4 × the largest cap: a broken cap fails, the host survives
                f.write(block)
                f.flush()
                written += len(block)
            _os.fsync(f.fileno())
    except OSError as e:
        error = _errno.errorcode.get(e.errno, str(e.errno))
    return {"written": written, "error": error}

def _open_all():
    opened, error = [], None
    try:
        while len(opened) < 4096:
            opened.append(_os.open("/dev/null", _os.O_RDONLY))
    except OSError as e:
        error = _errno.errorcode.get(e.errno, str(e.errno))
    for fd in opened:
        _os.close(fd)
    return {"opened": len(opened), "error": error}
"""


@pytest.fixture(scope="module")
def shared_data() -> Iterator[str]:
    """A host directory every container gets read-only (--host-directories keeps working)."""
    directory = tempfile.mkdtemp(prefix="tnbdata", dir="/tmp")
    with open(os.path.join(directory, "readme.txt"), "w") as f:
        f.write("from the host")
    os.chmod(directory, 0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def server(launch, shared_data) -> Tmpnb:
    # The defaults a public service runs with: 512m memory, home 128m, /tmp 64m, /dev/shm 64m,
    # 1024 open files, a 1m log.
    # A long boot timeout: this machine's load (other suites) has held boots past the 30 s default.
    tmpnb = launch(*ONE_ADDRESS, "--pool-size=2", "--capacity=4", "--boot-timeout=120",
                   f"--host-directories={shared_data}:/home/jovyan/data")
    tmpnb.wait_available(2, timeout=300)
    return tmpnb


@pytest.fixture(scope="module")
def docker_root(docker_client) -> str:
    return docker_client.info()["DockerRootDir"]


def host_free(path: str) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def kernel_json(server: Tmpnb, visitor: tuple[str, str, str], expression: str) -> object:
    """The value of a JSON-able `expression` in the visitor's kernel."""
    prefix, token, kernel = visitor
    result = execute(server.base, prefix, token, kernel, f"import json as _j; _j.dumps({expression})")
    assert result is not None
    return json.loads(ast.literal_eval(result))  # the repr of a str


@pytest.fixture(scope="module")
def hostile(server) -> tuple[str, str, str]:
    """The hostile visitor: (prefix, token, kernel id), FILL defined in its kernel."""
    prefix, token, _ = visit(server.base, "/spawn/tree")
    kernel = start_kernel(server.base, prefix, token)
    assert execute(server.base, prefix, token, kernel, FILL) is None
    return prefix, token, kernel


def container_of(docker_client, server: Tmpnb, prefix: str):
    return docker_client.containers.get(f"tmpnb-{server.instance}-{container_id_of(prefix)}")


def fill(server, hostile, docker_root: str, path: str) -> dict:
    """The hostile visitor fills `path`; what it wrote, why it stopped and what the host lost."""
    before = host_free(docker_root)
    outcome = kernel_json(server, hostile, f"_fill({path!r})")
    outcome["host_lost"] = before - host_free(docker_root)
    return outcome


@pytest.mark.parametrize(
    ("path", "cap"),
    [("/home/jovyan/fill", 128 * MiB), ("/tmp/fill", 64 * MiB), ("/dev/shm/fill", 64 * MiB)],
)
def test_a_visitor_filling_a_writable_place_gets_enospc_at_its_cap_and_the_host_loses_nothing(
        server, hostile, docker_root, path, cap):
    outcome = fill(server, hostile, docker_root, path)

    assert outcome["error"] == "ENOSPC", outcome
    # Near the cap: the home holds the image's home content and the server's runtime files.
    assert cap - 8 * MiB <= outcome["written"] <= cap, outcome
    assert outcome["host_lost"] < HOST_TOLERANCE, outcome


def test_var_tmp_is_tmp_and_shares_its_cap(server, hostile, docker_root):
    kernel_json(server, hostile, "[__import__('subprocess').run(['rm', '-f', '/tmp/fill']), 0][1]")
    outcome = fill(server, hostile, docker_root, "/var/tmp/vfill")

    assert outcome["error"] == "ENOSPC", outcome
    assert 56 * MiB <= outcome["written"] <= 64 * MiB, outcome
    assert outcome["host_lost"] < HOST_TOLERANCE, outcome
    assert kernel_json(server, hostile, "__import__('os').path.getsize('/tmp/vfill')") == outcome["written"]


def test_the_full_disk_stayed_in_the_containers_memory_not_on_the_hosts_disk(docker_client, server, hostile):
    """What the visitor wrote is held in its memory cgroup (tmpfs), not in the container's
    writable layer: that layer, on the host's disk, stays empty, since the root is read-only."""
    container = container_of(docker_client, server, hostile[0])
    upper = container.attrs["GraphDriver"]["Data"]["UpperDir"]
    used = subprocess.run(["du", "-sb", upper], capture_output=True, text=True, check=True).stdout.split()[0]

    assert int(used) < MiB
    usage = kernel_json(server, hostile, "int(open('/sys/fs/cgroup/memory/memory.usage_in_bytes').read())")
    assert usage >= 128 * MiB  # the full home, at least, is counted in the container's memory


def test_the_socket_directory_is_sealed_the_one_host_directory_takes_nothing(server, hostile):
    """/run/tmpnb is a host directory: sealed at boot, the visitor can neither fill it nor
    replace the socket the proxy connects to, nor point it at a host socket."""
    assert kernel_json(server, hostile, "_fill('/run/tmpnb/fill')") == {"written": 0, "error": "EACCES"}
    tries = ("import os as _os\n_e = []\n"
             "for _f in (lambda: _os.unlink('/run/tmpnb/jupyter.sock'),"
             " lambda: _os.symlink('/var/run/docker.sock', '/run/tmpnb/x'),"
             " lambda: open('/run/tmpnb/token', 'a')):\n"
             "    try:\n        _f(); _e.append(0)\n    except OSError as _x:\n        _e.append(_x.errno)")
    prefix, token, kernel = hostile
    assert execute(server.base, prefix, token, kernel, tries) is None
    assert kernel_json(server, hostile, "_e") == [13, 13, 13]  # EACCES, each
    assert call(server.base, "GET", prefix + "api/status", headers=auth(token)).status == 200


@pytest.mark.parametrize("path", ["/x", "/usr/x", "/etc/x", "/opt/notebook/x", "/run/lock/x", "/home/x"])
def test_the_root_filesystem_is_read_only(server, hostile, path):
    # /run/lock is writable by everyone in the image: only the read-only mount refuses it.
    assert kernel_json(server, hostile, f"_fill({path!r})") == {"written": 0, "error": "EROFS"}


def test_the_open_file_limit_holds_and_cannot_be_raised(server, hostile):
    limits = "[__import__('resource').getrlimit(getattr(__import__('resource'), n)) for n in ('RLIMIT_NOFILE', 'RLIMIT_CORE')]"
    assert kernel_json(server, hostile, limits) == [[1024, 1024], [0, 0]]  # and no core dumps

    outcome = kernel_json(server, hostile, "_open_all()")
    assert outcome["error"] == "EMFILE" and 900 < outcome["opened"] < 1024, outcome

    prefix, token, kernel = hostile
    with pytest.raises(AssertionError, match="ValueError"):  # "not allowed to raise maximum limit"
        execute(server.base, prefix, token, kernel,
                "import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))")


def test_the_container_log_is_capped(docker_client, server, hostile):
    """A kernel writing to the server's own stdout (the container log, a file in the host's
    Docker directory) fills at most one capped file."""
    written = kernel_json(server, hostile, """(lambda os: (lambda fd: sum(
        os.write(fd, b"y" * 65535 + b"\\n") for _ in range(128)) + (os.close(fd) or 0))(
        os.open("/proc/1/fd/1", os.O_WRONLY)))(__import__('os'))""")
    assert written == 8 * MiB
    container = container_of(docker_client, server, hostile[0])
    log_dir = os.path.dirname(container.attrs["LogPath"])
    # json-file rotates by renaming and reopening: sum whatever is there at the moment.
    held = sum(size_of(os.path.join(log_dir, name)) for name in os.listdir(log_dir) if "-json.log" in name)

    assert held <= 2 * MiB


def test_the_full_visitors_server_still_answers_and_saves_once_it_frees_space(server, hostile):
    prefix, token, kernel = hostile
    assert call(server.base, "GET", prefix + "api/status", headers=auth(token)).status == 200
    assert execute(server.base, prefix, token, kernel, "1+1") == "2"
    # The image's home content was copied into the fresh home; --host-directories is mounted in it.
    listing = call(server.base, "GET", prefix + "api/contents", headers=auth(token)).json()
    assert {"Welcome.ipynb", "data"} <= {item["name"] for item in listing["content"]}
    readme = call(server.base, "GET", prefix + "api/contents/data/readme.txt", headers=auth(token)).json()
    assert readme["content"] == "from the host"

    kernel_json(server, hostile, "[_fill('/home/jovyan/fill'), 0][1]")  # the home is full again
    full = save(server, prefix, token, "Full.ipynb")
    assert full.status >= 400  # the server refuses the save (ENOSPC), and goes on
    assert call(server.base, "GET", prefix + "api/status", headers=auth(token)).status == 200

    kernel_json(server, hostile, "__import__('os').remove('/home/jovyan/fill') or 0")
    assert save(server, prefix, token, "Saved.ipynb").status in (200, 201)
    # A new kernel writes its connection file in the home: with room again, it starts.
    assert run_one_plus_one(server.base, prefix, token) == "2"
    saved = call(server.base, "GET", prefix + "api/contents/Saved.ipynb", headers=auth(token)).json()
    assert saved["content"]["cells"][0]["source"] == "print('saved')"


def test_a_second_visitor_is_unaffected(server, hostile):
    kernel_json(server, hostile, "[_fill('/home/jovyan/fill'), _fill('/tmp/fill'), _fill('/dev/shm/fill'), 0][3]")
    prefix, token, _ = visit(server.base, "/spawn/tree")
    assert prefix != hostile[0]
    kernel = start_kernel(server.base, prefix, token)
    free = f"[__import__('os').statvfs(p).f_bavail * __import__('os').statvfs(p).f_frsize for p in {['/home/jovyan', '/tmp', '/dev/shm']!r}]"
    home, tmp, shm = kernel_json(server, (prefix, token, kernel), free)

    assert home > 120 * MiB and tmp > 60 * MiB and shm > 60 * MiB
    assert save(server, prefix, token, "Mine.ipynb").status == 201
    assert run_one_plus_one(server.base, prefix, token) == "2"


def test_terminals_and_widgets_work_in_the_confined_container(server):
    prefix, token, _ = visit(server.base, "/spawn/tree")
    kernel = start_kernel(server.base, prefix, token)
    widget = "import ipywidgets as w; s = w.IntSlider(3); s.value += 1; s.value"
    assert execute(server.base, prefix, token, kernel, widget) == "4"

    terminal = call(server.base, "POST", prefix + "api/terminals", b"{}", auth(token))
    assert terminal.status == 200, terminal.body[:300]
    url = server.base.replace("http://", "ws://") + f"{prefix}terminals/websocket/{terminal.json()['name']}?token={token}"
    ws = websocket.create_connection(url, timeout=30)
    try:
        ws.send(json.dumps(["stdin", "echo from-terminal > ~/t.txt; echo $((6*7))-$(cat ~/t.txt); touch /usr/t\r"]))
        seen = ""
        while "42-from-terminal" not in seen or "Read-only file system" not in seen:
            message = json.loads(ws.recv())
            if message[0] == "stdout":
                seen += message[1]
    finally:
        ws.close()
    saved = call(server.base, "GET", prefix + "api/contents/t.txt", headers=auth(token)).json()
    assert saved["content"] == "from-terminal\n"


def size_of(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:  # rotated away between listing and looking
        return 0


def save(server: Tmpnb, prefix: str, token: str, name: str):
    notebook = {"cells": [{"cell_type": "code", "source": "print('saved')", "metadata": {}, "outputs": [],
                           "execution_count": None}],
                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    body = json.dumps({"type": "notebook", "content": notebook}).encode()
    return call(server.base, "PUT", prefix + f"api/contents/{name}", body, auth(token))
