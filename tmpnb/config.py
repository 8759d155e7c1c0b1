"""Plain settings shared by the pool, the Docker layer and the orchestrator.

`tmpnb/settings.py` turns `twistd tmpnb`'s options into these; tests build them directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_IMAGE = "tmpnb/notebook:latest"

# The server listens on a unix socket in a bind-mounted directory; the container has no network.
# {base_path} ends with "/"; {sock} is the socket path as seen inside the container.
# The token is not here: the server reads it from a 0600 file in its socket directory
# (TOKEN_FILE_VARIABLE names it), where neither the process list nor `docker inspect` shows it.
# {token} still works in a --command, at that cost.
DEFAULT_COMMAND = (
    "jupyter notebook --no-browser"
    " --ServerApp.base_url={base_path}"
    " --ServerApp.sock={sock} --ServerApp.sock_mode=0o660"
    " --ServerApp.allow_remote_access=True"
    " --ServerApp.allow_origin={allow_origin}"
    " --ServerApp.tornado_settings={tornado_settings}"
)

# jupyter_server's IdentityProvider reads its token from the file this variable names
# (jupyter_server >= 1.x; JUPYTER_TOKEN, the token itself, would show in `docker inspect`).
TOKEN_FILE_VARIABLE = "JUPYTER_TOKEN_FILE"
TOKEN_FILE_NAME = "token"

# Where a container's socket directory is mounted inside it.
SOCKET_MOUNT = "/run/tmpnb"
SOCKET_NAME = "jupyter.sock"


@dataclass(frozen=True)
class ContainerSpec:
    """How every container of this tmpnb instance is made."""

    instance: str = "tmpnb"
    image: str = DEFAULT_IMAGE
    command: str = DEFAULT_COMMAND
    socket_root: str = "/run/tmpnb"
    mem_limit: str = "512m"
    cpu_quota: int = 100_000  # microseconds per 100 ms period: one core
    cpu_shares: int | None = None
    pids_limit: int = 256
    user: str = "1000:1000"
    host_network: bool = False
    container_ip: str = "127.0.0.1"
    container_port: int = 8888
    host_directories: tuple[str, ...] = ()
    allow_origin: str = ""
    frame_ancestors: str = "'self'"
    # Subdomain mode (--subdomain-host): the servers' cookies are `__Host-` prefixed.
    host_locked_cookies: bool = False
    # What keeps a container from hurting its host (tmpnb/confinement.py): the image's root
    # filesystem read-only; home, /tmp and /dev/shm memory with a cap each (Docker sizes,
    # "0": home or /tmp stay on the image's filesystem); the container log capped ("0": dockerd's).
    read_only_root: bool = True
    home_dir: str = "/home/jovyan"
    home_size: str = "128m"
    tmp_size: str = "64m"
    shm_size: str = "64m"
    # Open files per process: the server, its kernels' ZMQ sockets and the visitors' websockets
    # need a few hundred; 1024 is Linux's usual soft limit (Docker's default is 1048576).
    nofile: int = 1024
    log_max_size: str = "1m"
    extra_labels: dict[str, str] = field(default_factory=dict)
    # Which of the node's flavors (tmpnb/flavors.py) its containers are: a label on each.
    flavor: str = "default"


@dataclass(frozen=True)
class PoolConfig:
    """How many containers, and how long they may live."""

    pool_size: int = 3
    capacity: int = 20
    # Booting is CPU-bound (about 1.1 CPU-seconds a server): on 2 cores, 50 at once come up
    # slower in all than a few at a time (benchmarks/RESULTS.md); the rest wait their turn.
    max_booting: int = 6
    user_length: int = 12
    boot_attempts: int = 3
    boot_timeout: float = 30.0
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    ready_poll_interval: float = 0.05
    # Seconds after a hand-out before its replacement boots (0: at once); see Pool.acquire.
    refill_delay: float = 1.0
    cull_period: float = 60.0
    cull_timeout: float = 600.0
    cull_max: float = 14400.0
