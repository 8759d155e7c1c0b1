"""A server's socket directory is sealed the moment the server first answers: root's, so its
visitor (uid 1000 in the container, where it is mounted) can neither fill it nor replace or
re-point the socket the proxy connects to."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent

from tests.results import failed, succeeded
from tmpnb.sockets import make_socket_dir, seal_socket_dir, sealed_when_ready, write_token_file

VISITOR = 1000

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sealing chowns: needs root")


@pytest.fixture
def socket_root() -> Iterator[Path]:
    """A socket root the visitor's uid can reach (pytest's tmp_path is root's alone)."""
    root = Path(tempfile.mkdtemp(prefix="tnb-seal-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def booted_dir(root: Path) -> str:
    """A socket directory as a booted server leaves it: its socket, its token file."""
    path = str(root / "abc")
    make_socket_dir(path, VISITOR, VISITOR)
    write_token_file(path, "f00", VISITOR, VISITOR)
    server = socket.socket(socket.AF_UNIX)
    server.bind(os.path.join(path, "jupyter.sock"))
    os.chown(os.path.join(path, "jupyter.sock"), VISITOR, VISITOR)
    server.close()
    return path


def as_visitor(action) -> int:
    """Run `action` in a child as the visitor's uid; its errno (0: it worked)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgid(VISITOR)
            os.setuid(VISITOR)
            action()
            os._exit(0)
        except OSError as e:
            os._exit(e.errno or 1)
        except BaseException:
            os._exit(99)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_a_sealed_directory_takes_nothing_from_its_visitor(socket_root):
    path = booted_dir(socket_root)
    assert as_visitor(lambda: open(os.path.join(path, "before"), "w").close()) == 0  # unsealed: a visitor writes
    os.unlink(os.path.join(path, "before"))
    seal_socket_dir(path)
    info = os.stat(path)
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o755)
    assert os.stat(os.path.join(path, "token")).st_uid == 0
    assert os.stat(os.path.join(path, "jupyter.sock")).st_uid == VISITOR  # the server's own socket stays
    EACCES = 13
    assert as_visitor(lambda: open(os.path.join(path, "fill"), "w").close()) == EACCES
    assert as_visitor(lambda: os.unlink(os.path.join(path, "jupyter.sock"))) == EACCES
    assert as_visitor(lambda: os.symlink("/var/run/docker.sock", os.path.join(path, "x"))) == EACCES
    assert as_visitor(lambda: open(os.path.join(path, "token"), "a").write("more")) == EACCES


def test_the_directory_is_sealed_when_the_server_first_answers_and_not_before(socket_root):
    path = booted_dir(socket_root)
    answer: Deferred = Deferred()
    calls = []

    def wait_ready(reactor, socket_path, *args, **kwargs):
        calls.append((socket_path, args, kwargs))
        return answer

    ready = sealed_when_ready(wait_ready)(Clock(), os.path.join(path, "jupyter.sock"), "/user/abc/", "f00", 30, 0.1,
                                          warm="tree")
    assert os.stat(path).st_uid == VISITOR  # still booting: the server may still write there
    answer.callback({"started": "now"})
    assert succeeded(ready) == {"started": "now"}
    assert os.stat(path).st_uid == 0
    assert calls == [(os.path.join(path, "jupyter.sock"), ("/user/abc/", "f00", 30, 0.1), {"warm": "tree"})]


def test_a_server_that_never_answered_leaves_its_directory_to_the_retry(socket_root):
    path = booted_dir(socket_root)
    ready = sealed_when_ready(lambda *a, **k: fail(TimeoutError("not ready")))(
        Clock(), os.path.join(path, "jupyter.sock"))
    failed(ready, TimeoutError)
    assert os.stat(path).st_uid == VISITOR


def test_a_directory_gone_meanwhile_is_a_warning_not_a_failed_boot(socket_root, logged):
    ready = sealed_when_ready(lambda *a, **k: succeed({}))(Clock(), str(socket_root / "gone" / "jupyter.sock"))
    assert succeeded(ready) == {}
    warnings = [formatEvent(e) for e in logged if e.get("log_level") == LogLevel.warn]
    assert len(warnings) == 1 and "not sealed" in warnings[0]
