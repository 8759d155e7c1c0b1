"""`twistd tmpnb`'s option values (tmpnb/tap.py's Options) turned into the settings each part takes.

Plain functions over the parsed options, so tests check them without building a service.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tmpnb.clients import SharePolicy
from tmpnb.clients.address import TrustedProxies
from tmpnb.config import ContainerSpec, PoolConfig
from tmpnb.confinement import memory_budget_problem, size_bytes
from tmpnb.flavors import FlavorError, Flavors, flavors_from_options
from tmpnb.http.guard import RequestLimits
from tmpnb.http.headers import CorsPolicy
from tmpnb.options import API_TOKEN_VARIABLE
from tmpnb.origins import Origins
from tmpnb.origins.ids import subdomain_id_length
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
        host_locked_cookies=origins_of(options).subdomains,
        read_only_root=not options["writable-root"],
        home_dir=options["home-dir"],
        home_size=options["home-size"],
        tmp_size=options["tmp-size"],
        shm_size=options["shm-size"],
        nofile=options["nofile"],
        log_max_size=options["log-max-size"],
    )


def node_flavors(options: ParsedOptions, defaults: Mapping[str, Any]) -> Flavors:
    """The node's flavors (tmpnb/flavors.py) from --flavor, --default-flavor, or --image and
    --pool-size; `defaults`: the options' default values (a mix of --flavor with an --image,
    --pool-size or --static-dir of its own is refused). Raises FlavorError."""
    unset = [name for name in ("image", "pool-size", "static-dir") if options[name] == defaults.get(name)]
    flavors = flavors_from_options(options, unset)
    for flavor in flavors:
        if flavor.pool_size > options["capacity"]:
            raise FlavorError(f"--flavor {flavor.name}: pool-size {flavor.pool_size} is more than --capacity")
    return flavors


def flavors_of(options: ParsedOptions) -> Flavors:
    """The flavors postOptions made (or, for options made without it, those of --image)."""
    return options.get("flavors") or flavors_from_options(options)


def confinement_problem(options: ParsedOptions) -> str | None:
    """What is wrong with the sizes and limits a visitor's container gets, or None."""
    for name in ("mem-limit", "home-size", "tmp-size", "shm-size", "log-max-size"):
        try:
            size_bytes(options[name])
        except ValueError as e:
            return f"--{name}: {e}"
    if options["nofile"] < 64:
        return "--nofile must be at least 64 (the server and a kernel hold dozens of files)"
    if not options["home-dir"].startswith("/") or options["home-dir"].rstrip("/") in ("", "/tmp"):
        return "--home-dir must be an absolute path other than / and /tmp"
    if not options["writable-root"] and not size_bytes(options["home-size"]):
        return "--home-size 0 keeps the image's home, which a read-only root makes unwritable: add --writable-root"
    return memory_budget_problem(container_spec(options))


def pool_config(options: ParsedOptions) -> PoolConfig:
    return PoolConfig(
        pool_size=options["pool-size"],
        capacity=options["capacity"],
        user_length=id_length(options),
        boot_attempts=options["boot-attempts"],
        boot_timeout=options["boot-timeout"],
        max_booting=options["max-booting"],
        cull_period=options["cull-period"],
        cull_timeout=options["cull-timeout"],
        cull_max=options["cull-max"],
        refill_delay=options["refill-delay"],
    )


def origins_of(options: ParsedOptions) -> Origins:
    """--subdomain-host, parsed by tmpnb.tap.Options (path mode without it)."""
    return options.get("origins") or Origins()


def id_length(options: ParsedOptions) -> int:
    """--user-length, lengthened in subdomain mode where ids are [a-z0-9] only (same entropy)."""
    if origins_of(options).subdomains:
        return subdomain_id_length(options["user-length"])
    return options["user-length"]


def public_url(options: ParsedOptions) -> str | None:
    """--public-url; in subdomain mode its bare host by default (a redirector sends visitors there)."""
    return options["public-url"] or origins_of(options).bare_origin or None


def restarts(options: ParsedOptions) -> dict[str, bool]:
    """What the pool does with this instance's containers at start and stop."""
    return {"adopt": not options["cleanup-on-start"], "keep_assigned": not options["cleanup-on-stop"]}


def web_settings(options: ParsedOptions, environ: dict[str, str]) -> WebSettings:
    return WebSettings(
        redirect_uri=options["redirect-uri"],
        api_token=environ.get(API_TOKEN_VARIABLE) or None,
        container_image=flavors_of(options).get(None).image,  # type: ignore[union-attr]
        flavors=flavors_of(options),
        frame_ancestors=options["frame-ancestors"],
        node=options["instance"],
        public_url=public_url(options),
        origins=origins_of(options),
        cors=CorsPolicy(
            allow_origin=options["allow-origin"],
            allow_credentials=options["allow-credentials"],
            allow_methods=options["allow-methods"],
            allow_headers=options["allow-headers"],
            expose_headers=options["expose-headers"],
            max_age=options["max-age"],
        ),
    )


def client_policy(options: ParsedOptions) -> SharePolicy:
    """How much one client address may hold and how fast it may spawn (tmpnb/clients/)."""
    return SharePolicy(share=options["client-share"], spawns_per_minute=options["client-spawn-rate"],
                       burst=options["client-spawn-burst"])


def trusted_proxies(options: ParsedOptions) -> TrustedProxies:
    """Whose X-Forwarded-For names the client: --trusted-proxy, and the orchestrator's own proxy."""
    return TrustedProxies.parse(options["trusted-proxy"])
def _limit(value: float) -> float | None:
    return value or None  # 0 turns a limit off


def request_limits(options: ParsedOptions) -> RequestLimits:
    """The orchestrator's own deadlines and body limit (tmpnb/http/guard.py)."""
    return RequestLimits(
        head_timeout=_limit(options["head-timeout"]),
        body_timeout=_limit(options["body-timeout"]),
        body_min_rate=options["body-min-rate"],
        max_body=_limit(options["web-max-body"]),
    )


def front_door(options: ParsedOptions) -> dict[str, Any]:
    """The embedded proxy's front door, as `ProxySettings` keywords: the same deadlines, the
    per-client cap, and the orchestrator's bodies read whole first."""
    return {
        "head_timeout": _limit(options["head-timeout"]),
        "body_timeout": _limit(options["body-timeout"]),
        "body_min_rate": options["body-min-rate"],
        "max_client_connections": options["max-client-connections"],
        "default_target_max_body": _limit(options["web-max-body"]),
    }
