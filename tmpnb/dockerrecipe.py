"""The container recipe: what docker-py is asked to create for one visitor, and how tmpnb reads
a container back (labels, mounts, limits, command), as plain data and pure functions.

Nothing here talks to dockerd; `dockerapi` runs these in its thread pool.
"""

from __future__ import annotations

import ast
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tmpnb import config
from tmpnb.origins.cookies import login_cookie_arguments, xsrf_tornado_settings
from tmpnb.confinement import confinement_kwargs

INSTANCE_LABEL = "org.tmpnb.instance"
ID_LABEL = "org.tmpnb.id"
# Read only: earlier versions put each server's token in this label, where every `docker
# inspect` and Docker event showed it. Their containers are still adopted by it; new ones carry
# no token anywhere in Docker (tmpnb/servertokens.py derives it).
TOKEN_LABEL = "org.tmpnb.token"
CREATED_LABEL = "org.tmpnb.created"
FLAVOR_LABEL = "org.tmpnb.flavor"  # which of the node's flavors (tmpnb/flavors.py)

CPU_PERIOD = 100_000  # microseconds; spec.cpu_quota is per this period


@dataclass(frozen=True)
class LaunchRequest:
    """Everything the thread needs to create and start one container."""

    container_id: str
    token: str
    base_path: str  # "/user/<id>/"
    socket_dir: str  # host path
    spec: config.ContainerSpec


@dataclass(frozen=True)
class ContainerRecord:
    """What tmpnb knows about one of its containers, as Docker reports it."""

    docker_id: str
    container_id: str  # org.tmpnb.id
    token: str
    created: float
    running: bool
    status: str  # docker's State.Status
    labels: dict[str, str]


def tornado_settings(frame_ancestors: str, host_locked_cookies: bool = False) -> str:
    """The Python literal for --ServerApp.tornado_settings: lets the notebook sit in iframes
    of `frame_ancestors` (e.g. a journal's page) and nowhere else, and work there.

    In another site's iframe the browser does not send the server's cookies (SameSite, and
    third-party cookies blocked or partitioned), so the front end must authenticate with the
    token every page already holds in its page config: its HTTP calls send `Authorization:
    token …` (which also exempts them from the XSRF check), and `appendToken` makes it add
    `?token=` to its websockets too, which it otherwise does only for a server on another
    host. The token stays inside the iframe's own origin: the embedding page cannot read it.

    `host_locked_cookies` (subdomain mode): the XSRF cookie is `__Host-` prefixed
    (tmpnb/origins/cookies.py), so a sibling subdomain cannot toss one in.
    """
    settings = {
        "headers": {"Content-Security-Policy": f"frame-ancestors {frame_ancestors}"},
        "page_config_data": {"appendToken": "true"},
        **xsrf_tornado_settings(host_locked_cookies),
    }
    literal = repr(settings)
    assert ast.literal_eval(literal) == settings  # traitlets parses it back this way
    return literal


def server_command(request: LaunchRequest) -> list[str]:
    """spec.command with its placeholders filled in, as an argv list.

    Every value is shell-quoted before it is put in the template, so that shlex.split gives
    each value back whole, whatever quotes or spaces it holds.
    """
    spec = request.spec
    values = {
        "base_path": request.base_path,
        "sock": f"{config.SOCKET_MOUNT}/{config.SOCKET_NAME}",
        "token": request.token,
        "port": spec.container_port,
        "ip": spec.container_ip,
        "allow_origin": spec.allow_origin,
        "tornado_settings": tornado_settings(spec.frame_ancestors, spec.host_locked_cookies),
    }
    quoted = {name: shlex.quote(str(value)) for name, value in values.items()}
    # Subdomain mode: the login cookie host-locked too (tmpnb/origins/cookies.py).
    return shlex.split(spec.command.format(**quoted)) + login_cookie_arguments(spec.host_locked_cookies)


def host_directory_binds(entries: Iterable[str]) -> dict[str, dict[str, str]]:
    """--host-directories entries ("host[:container[:mode]]") as docker-py volume binds.

    Read-only unless an entry says "rw" explicitly.
    """
    binds: dict[str, dict[str, str]] = {}
    for entry in entries:
        parts = entry.split(":")
        host = parts[0]
        bind = parts[1] if len(parts) > 1 and parts[1] else host
        mode = parts[2] if len(parts) > 2 and parts[2] in ("ro", "rw") else "ro"
        binds[host] = {"bind": bind, "mode": mode}
    return binds


def container_labels(request: LaunchRequest, created: float) -> dict[str, str]:
    # Never a token label, whatever --extra labels say: labels are public on the host.
    labels = {k: v for k, v in request.spec.extra_labels.items() if k != TOKEN_LABEL}
    # Ours last, so extra labels can never claim another instance or id.
    labels.update(
        {
            INSTANCE_LABEL: request.spec.instance,
            ID_LABEL: request.container_id,
            CREATED_LABEL: repr(created),
        }
    )
    # A container without the label is of the flavor "default" (a node without --flavor).
    labels.pop(FLAVOR_LABEL, None)
    if request.spec.flavor != "default":
        labels[FLAVOR_LABEL] = request.spec.flavor
    return labels


def container_name(instance: str, container_id: str) -> str:
    return f"tmpnb-{instance}-{container_id}"


def create_kwargs(request: LaunchRequest, created: float) -> dict[str, Any]:
    """The keyword arguments for docker-py's `containers.create`: sandboxed and limited."""
    spec = request.spec
    volumes = {request.socket_dir: {"bind": config.SOCKET_MOUNT, "mode": "rw"}}
    volumes.update(host_directory_binds(spec.host_directories))
    kwargs: dict[str, Any] = {
        "image": spec.image,
        "command": server_command(request),
        # Only where to read the token: the token itself is in a 0600 file of the socket
        # directory (tmpnb.sockets.write_token_file), so neither `docker inspect` (which shows
        # the environment) nor `ps` (argv) shows it.
        "environment": {config.TOKEN_FILE_VARIABLE: f"{config.SOCKET_MOUNT}/{config.TOKEN_FILE_NAME}"},
        "name": container_name(spec.instance, request.container_id),
        "labels": container_labels(request, created),
        "network_mode": "host" if spec.host_network else "none",
        "volumes": volumes,
        "user": spec.user,
        "mem_limit": spec.mem_limit,
        "memswap_limit": spec.mem_limit,  # equal: no swap on top of the memory limit
        "cpu_period": CPU_PERIOD,
        "cpu_quota": spec.cpu_quota,
        "pids_limit": spec.pids_limit,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "detach": True,
        "auto_remove": False,  # tmpnb removes it, after reading why it died
    }
    if spec.cpu_shares is not None:
        kwargs["cpu_shares"] = spec.cpu_shares
    # Read-only root, size-capped home and /tmp, open-file limit, capped log.
    kwargs.update(confinement_kwargs(spec))
    return kwargs


def record_of(attrs: dict[str, Any]) -> ContainerRecord:
    """A ContainerRecord from either an inspect answer or a (sparse) list entry."""
    if isinstance(attrs.get("State"), dict):  # inspect
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        status = attrs["State"].get("Status", "")
        running = bool(attrs["State"].get("Running"))
    else:  # list: State is the status string
        labels = attrs.get("Labels") or {}
        status = attrs.get("State") or ""
        running = status == "running"
    try:
        created = float(labels.get(CREATED_LABEL, ""))
    except ValueError:
        created = float(attrs["Created"]) if isinstance(attrs.get("Created"), int) else 0.0
    return ContainerRecord(
        docker_id=attrs["Id"],
        container_id=labels.get(ID_LABEL, ""),
        token=labels.get(TOKEN_LABEL, ""),
        created=created,
        running=running,
        status=status,
        labels=dict(labels),
    )




def is_ours(attrs: dict[str, Any], instance: str) -> bool:
    """Whether a container (inspect or list attributes) carries this instance's label."""
    return record_of(attrs).labels.get(INSTANCE_LABEL) == instance
