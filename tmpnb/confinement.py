"""What keeps a visitor's container from hurting its host: a read-only root filesystem, writable
places that are size-capped tmpfs mounts (memory, counted in the container's memory limit), an
open-file limit, no core dumps and a capped container log.

Pure functions over `config.ContainerSpec`: `dockerrecipe.create_kwargs` adds
`confinement_kwargs(spec)` to what it asks docker-py for; `twistd tmpnb` checks
`memory_budget_problem` at start. docs/security.md, "A container cannot hurt its host", says why.
"""

from __future__ import annotations

import re
from typing import Any

from tmpnb import config

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([bkmg]?)b?\s*", re.IGNORECASE)

# What the writable places must leave of the memory limit: an idle server (≈42 MiB) and one
# kernel (≈40 MiB), rounded up (docs/image.md, measured on this machine).
SERVER_AND_KERNEL = 96 * 1024**2

# Docker's /dev/shm when shm_size is not given.
DOCKER_DEFAULT_SHM = 64 * 1024**2


def size_bytes(size: str | int) -> int:
    """A Docker-style size ("128m", "1g", "65536", "64MiB" is not one) in bytes; 0 for "" or "0".

    Raises ValueError for anything else, so a typo fails at start, not at the first boot."""
    if isinstance(size, int):
        if size < 0:
            raise ValueError(f"negative size: {size}")
        return size
    if size.strip() == "":
        return 0
    match = _SIZE.fullmatch(size)
    if match is None:
        raise ValueError(f"not a size: {size!r} (a number with an optional b, k, m or g)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def writable_bytes(spec: config.ContainerSpec) -> int:
    """Memory the visitor can fill with files: home, /tmp and /dev/shm, at their caps."""
    return size_bytes(spec.home_size) + size_bytes(spec.tmp_size) + _shm_bytes(spec)


def _shm_bytes(spec: config.ContainerSpec) -> int:
    return size_bytes(spec.shm_size) or DOCKER_DEFAULT_SHM


def memory_budget_problem(spec: config.ContainerSpec) -> str | None:
    """Why the writable places do not fit in the memory limit, or None when they do.

    tmpfs pages are charged to the memory cgroup of the container that writes them and, with
    no swap (memswap_limit = mem_limit), cannot leave it: a visitor who fills every writable
    place holds that much of the limit. If the caps do not leave room for the server and a
    kernel, a full disk becomes an out-of-memory kill instead of ENOSPC."""
    limit = size_bytes(spec.mem_limit) if spec.mem_limit else 0
    if limit == 0:  # no memory limit: nothing to fit into (docs advise against it)
        return None
    writable = writable_bytes(spec)
    if writable + SERVER_AND_KERNEL <= limit:
        return None
    return (
        f"home ({spec.home_size}) + /tmp ({spec.tmp_size}) + /dev/shm ({spec.shm_size}) are memory and "
        f"count in --mem-limit ({spec.mem_limit}): together they must leave at least "
        f"{SERVER_AND_KERNEL // 1024**2} MiB of it for the server and a kernel"
    )


def _tmpfs_options(size: str, mode: str, owner: tuple[int, int] | None) -> str:
    # nosuid, nodev: nothing on it is a device or gains privileges. exec stays: a visitor's
    # scripts and `pip install --user` console scripts run from home (their code runs anyway).
    options = [f"size={size_bytes(size)}", f"mode={mode}", "nosuid", "nodev", "exec"]
    if owner is not None:
        options += [f"uid={owner[0]}", f"gid={owner[1]}"]
    return ",".join(options)


def _numeric_user(user: str) -> tuple[int, int] | None:
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or not (gid or uid).isdigit():
        return None  # a user name: Docker resolves it inside the image; the mount stays root's
    return int(uid), int(gid or uid)


def tmpfs_mounts(spec: config.ContainerSpec) -> dict[str, str]:
    """docker-py `tmpfs`: home (owned by the container's user) and /tmp, each with its cap.

    A size of 0 leaves that place to the image's own filesystem (writable only with
    `read_only_root` off)."""
    mounts: dict[str, str] = {}
    if size_bytes(spec.home_size):
        mounts[spec.home_dir] = _tmpfs_options(spec.home_size, "0755", _numeric_user(spec.user))
    if size_bytes(spec.tmp_size):
        mounts["/tmp"] = _tmpfs_options(spec.tmp_size, "1777", None)
    return mounts


def confinement_kwargs(spec: config.ContainerSpec) -> dict[str, Any]:
    """The part of docker-py's `containers.create` arguments that confines the filesystem,
    open files, core dumps and the log. Plain data (docker-py turns the dicts into its types)."""
    kwargs: dict[str, Any] = {
        "read_only": spec.read_only_root,
        "tmpfs": tmpfs_mounts(spec),
        "shm_size": _shm_bytes(spec),
        "ulimits": [
            {"name": "nofile", "soft": spec.nofile, "hard": spec.nofile},
            # A crashing kernel must not write its memory image anywhere.
            {"name": "core", "soft": 0, "hard": 0},
        ],
    }
    if size_bytes(spec.log_max_size):
        # The server's output, and anything a visitor writes to it (a kernel can open
        # /proc/1/fd/1), is the container's log in the host's Docker directory: one capped file.
        kwargs["log_config"] = {
            "type": "json-file",
            "config": {"max-size": str(size_bytes(spec.log_max_size)), "max-file": "1"},
        }
    return kwargs
