"""`twistd tmpnb`'s option values (tmpnb/tap.py's Options) turned into the settings each part takes.

Plain functions over the parsed options, so tests check them without building a service.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tmpnb.config import ContainerSpec, PoolConfig
from tmpnb.http.headers import CorsPolicy
from tmpnb.options import API_TOKEN_VARIABLE
from tmpnb.web import WebSettings

ParsedOptions = Mapping[str, Any]  # tmpnb.tap.Options after parseOptions


def container_spec(options: ParsedOptions) -> ContainerSpec:
    return ContainerSpec(
        instance=options["instance"],
        image=options["image"],
        command=options["command"],
        socket_root=options["socket-root"],
        mem_limit=options["mem-limit"],
        cpu_quota=options["cpu-quota"],
        cpu_shares=options["cpu-shares"],
        host_network=options["host-network"],
        container_ip=options["container-ip"],
        container_port=options["container-port"],
        host_directories=options["host-directories"],
        allow_origin=options["allow-origin"],
        frame_ancestors=options["frame-ancestors"],
    )


def pool_config(options: ParsedOptions) -> PoolConfig:
    return PoolConfig(
        pool_size=options["pool-size"],
        capacity=options["capacity"],
        user_length=options["user-length"],
        boot_attempts=options["boot-attempts"],
        boot_timeout=options["boot-timeout"],
        max_booting=options["max-booting"],
        cull_period=options["cull-period"],
        cull_timeout=options["cull-timeout"],
        cull_max=options["cull-max"],
        refill_delay=options["refill-delay"],
    )


def restarts(options: ParsedOptions) -> dict[str, bool]:
    """What the pool does with this instance's containers at start and stop."""
    return {"adopt": not options["cleanup-on-start"], "keep_assigned": not options["cleanup-on-stop"]}


def web_settings(options: ParsedOptions, environ: dict[str, str]) -> WebSettings:
    return WebSettings(
        redirect_uri=options["redirect-uri"],
        api_token=environ.get(API_TOKEN_VARIABLE) or None,
        container_image=options["image"],
        frame_ancestors=options["frame-ancestors"],
        node=options["instance"],
        public_url=options["public-url"],
        cors=CorsPolicy(
            allow_origin=options["allow-origin"],
            allow_credentials=options["allow-credentials"],
            allow_methods=options["allow-methods"],
            allow_headers=options["allow-headers"],
            expose_headers=options["expose-headers"],
            max_age=options["max-age"],
        ),
    )
