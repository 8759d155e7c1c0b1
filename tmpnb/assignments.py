"""Which containers were handed to a visitor, recorded on the host so a restart can tell.

A container handed out but never opened looks exactly like a pooled one from inside
(its server saw no activity), and the embedded proxy loses its routes when tmpnb restarts.
Without a record, adoption would pool it again and its first visitor's URL would reach
the next visitor's notebook. So every assignment leaves a marker file
`<socket_root>/<instance>.assigned/<id>` holding `assigned_at`; its mtime is the visitor's
latest activity tmpnb saw (the heartbeat and a stop record it). What the embedded proxy saw dies
with the process, so without it a restart would cull an active visitor as idle.

The directory is tmpnb's own (mode 0700, owned by whoever runs tmpnb) and is a sibling of
`<socket_root>/<instance>/`, never inside it: the containers' socket directories are
writable by the container user, so nothing in them can be trusted. A marker goes when its
container is removed (`MarkedRemovals`), like the container's socket directory.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from tmpnb.config import ContainerSpec

log = Logger()


def assigned_dir(spec: ContainerSpec) -> str:
    """Where this instance keeps its assignment markers."""
    return os.path.join(spec.socket_root, f"{spec.instance}.assigned")


def _valid_id(container_id: str) -> bool:
    # Ids are [a-zA-Z0-9] (tmpnb.ids); anything else is not a marker of ours.
    return bool(container_id) and container_id.isascii() and container_id.isalnum()


class AssignmentMarks:
    """The markers of one tmpnb instance.

    Reads and writes are tiny local files, done on the reactor thread: a few microseconds,
    far cheaper than a hop to the Docker thread pool, and the marker must exist before the
    visitor gets their URL, which a thread hop could not promise without waiting.
    Failures are logged, never raised: a missing marker only weakens a later adoption.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def mark(self, container_id: str, assigned_at: float) -> None:
        if not _valid_id(container_id):
            return
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            path = os.path.join(self.directory, container_id)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, repr(float(assigned_at)).encode())
                os.utime(fd, (assigned_at, assigned_at))  # no activity seen yet
            finally:
                os.close(fd)
        except OSError:
            log.failure("recording the assignment of {container}", container=container_id)

    def saw_activity(self, container_id: str, when: float) -> None:
        """Record the visitor's latest activity (the marker's mtime), if the marker exists."""
        if not _valid_id(container_id):
            return
        try:
            os.utime(os.path.join(self.directory, container_id), (when, when), follow_symlinks=False)
        except FileNotFoundError:  # not handed out by this instance's markers: nothing to keep
            pass
        except OSError:
            log.failure("recording the activity of {container}", container=container_id)

    def last_activity(self, container_id: str) -> float | None:
        """The latest activity recorded for a container, None without a marker."""
        if not _valid_id(container_id):
            return None
        try:
            return os.stat(os.path.join(self.directory, container_id), follow_symlinks=False).st_mtime
        except OSError:
            return None

    def unmark(self, container_id: str) -> None:
        if not _valid_id(container_id):
            return
        try:
            os.unlink(os.path.join(self.directory, container_id))
        except FileNotFoundError:
            pass
        except OSError:
            log.failure("removing the assignment marker of {container}", container=container_id)

    def recorded(self) -> dict[str, float | None]:
        """Every marker: container id → assigned_at (None when unreadable)."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return {}
        except OSError:
            log.failure("reading assignment markers in {directory}", directory=self.directory)
            return {}
        marks: dict[str, float | None] = {}
        for name in names:
            if _valid_id(name):
                marks[name] = self._assigned_at(name)
        return marks

    def forget_all_but(self, keep: Iterable[str]) -> None:
        """Remove the markers of containers that no longer exist."""
        kept = set(keep)
        for container_id in self.recorded():
            if container_id not in kept:
                self.unmark(container_id)

    def _assigned_at(self, container_id: str) -> float | None:
        try:
            with open(os.path.join(self.directory, container_id), "rb") as f:
                return float(f.read(64))
        except (OSError, ValueError):
            return None


class MarkedRemovals:
    """A Docker handle whose successful `remove` also drops the container's marker: the
    marker lives exactly as long as the container (a removal that fails keeps it)."""

    def __init__(self, docker: Any, marks: AssignmentMarks) -> None:
        self._docker = docker
        self._marks = marks

    def remove(self, docker_id: str, container_id: str | None = None) -> Deferred[None]:
        d: Deferred[None] = self._docker.remove(docker_id, container_id)
        if container_id:

            def removed(result: None) -> None:
                self._marks.unmark(container_id)
                return result

            d.addCallback(removed)
        return d

    def launch(self, request: Any) -> Deferred[str]:
        return self._docker.launch(request)

    def list_ours(self) -> Deferred[list[Any]]:
        return self._docker.list_ours()

    def socket_dir_ids(self) -> Deferred[list[str]]:
        return self._docker.socket_dir_ids()

    def remove_socket_dirs(self, container_ids: list[str]) -> Deferred[None]:
        return self._docker.remove_socket_dirs(container_ids)

    def watch(self, on_event: Callable[[str, str], None]) -> None:
        self._docker.watch(on_event)
