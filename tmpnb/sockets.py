"""Where a container's unix socket lives on the host, and how the proxy names it.

Layout (docs/contracts.md): `<socket_root>/<instance>/<id>/` on the host, mounted at
`config.SOCKET_MOUNT` in the container; the server listens on `config.SOCKET_NAME` in it.
`make_socket_dir` and `remove_socket_dir` touch the filesystem and run in the Docker
thread pool as part of launch/remove; the rest are pure naming functions.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from tmpnb import config

log = Logger()

# Linux's sun_path is 108 bytes, and some tools count the terminating NUL; stay well under.
MAX_SOCKET_PATH = 100


def socket_dir(spec: config.ContainerSpec, container_id: str) -> str:
    """The host directory that holds one container's socket."""
    return os.path.join(spec.socket_root, spec.instance, container_id)


def socket_path(spec: config.ContainerSpec, container_id: str) -> str:
    """The host path of one container's server socket."""
    return os.path.join(socket_dir(spec, container_id), config.SOCKET_NAME)


def socket_path_in(directory: str) -> str:
    """The server socket inside an already known socket directory."""
    return os.path.join(directory, config.SOCKET_NAME)


def proxy_target(path: str) -> str:
    """The proxy route target for a socket: CHP 5.3's percent-encoded `http+unix://` form."""
    return "http+unix://" + quote(path, safe="")


def make_socket_dir(path: str, uid: int, gid: int) -> None:
    """Create a fresh socket directory owned by the container user (mode 0o770).

    A leftover directory of the same name (a previous tmpnb run that crashed) is emptied
    first, so a stale socket file never answers for the new container.
    """
    if len(socket_path_in(path).encode()) >= MAX_SOCKET_PATH:
        raise ValueError(f"socket path too long for a unix socket: {path!r}")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    os.mkdir(path, mode=0o770)
    # mkdir's mode is filtered by the umask; chmod makes it exact.
    os.chmod(path, 0o770)
    os.chown(path, uid, gid)


def write_token_file(directory: str, token: str, uid: int, gid: int) -> None:
    """The server's token, for it alone: `<directory>/token`, mode 0600, owned by the
    container user (the server reads it at start through config.TOKEN_FILE_VARIABLE)."""
    path = os.path.join(directory, config.TOKEN_FILE_NAME)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.fchown(fd, uid, gid)
        os.write(fd, token.encode("ascii"))
    finally:
        os.close(fd)


def seal_socket_dir(path: str) -> None:
    """Make a socket directory root's once its server listens (0755, its files root's too;
    the socket itself stays the server's). It is the one host directory mounted writable in
    the container: unsealed, a visitor could fill the filesystem under --socket-root (every
    other visitor's next server needs room there), or replace the socket the proxy connects
    to with one of their own or with a symlink to a host socket."""
    for name in os.listdir(path):
        entry = os.path.join(path, name)
        if not stat.S_ISSOCK(os.lstat(entry).st_mode):
            os.lchown(entry, 0, 0)
    os.chown(path, 0, 0)
    os.chmod(path, 0o755)


def sealed_when_ready(wait_ready: Callable[..., Deferred]) -> Callable[..., Deferred]:
    """`wait_ready` (tmpnb/readiness.py, called as `wait_ready(reactor, socket_path, …)`) that
    seals the server's socket directory the moment the server first answers, before any
    visitor has it. A directory that cannot be sealed (tmpnb not running as root) is a warning."""

    def ready(reactor: Any, socket_path: str, *args: Any, **kwargs: Any) -> Deferred:
        def seal(status: Any) -> Any:
            try:
                seal_socket_dir(os.path.dirname(socket_path))
            except OSError as e:
                log.warn("socket directory of {path} not sealed: {error}", path=socket_path, error=e)
            return status

        return wait_ready(reactor, socket_path, *args, **kwargs).addCallback(seal)

    return ready


def remove_socket_dir(path: str) -> None:
    """Remove a socket directory and whatever is in it; already gone is fine."""
    try:
        shutil.rmtree(path)
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise


def socket_dir_ids(spec: config.ContainerSpec) -> list[str]:
    """The container ids that have a socket directory under this instance's part of the root."""
    try:
        with os.scandir(os.path.join(spec.socket_root, spec.instance)) as entries:
            return [entry.name for entry in entries if entry.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def parse_user(user: str) -> tuple[int, int]:
    """`"1000:1000"` or `"1000"` → (uid, gid); the directory owner for a numeric container user."""
    uid, _, gid = user.partition(":")
    return int(uid), int(gid or uid)
