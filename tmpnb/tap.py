"""``twistd tmpnb``: the pool, the orchestrator and the proxy in one process.

    python -m tmpnb.image build
    twistd -n tmpnb --pool-size 5 --listen tcp:8000:interface=127.0.0.1

By default the embedded proxy takes the public listener (--listen), sends /user/<id>/ to
each container's unix socket and everything else to the orchestrator, which listens on
its own unix socket (--web-listen). With --proxy-api-url tmpnb drives an external
configurable-http-proxy instead and --listen is the orchestrator's own listener, which
that proxy's --default-target must point at. Option names follow tmpnb's.
"""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Callable
from typing import Any

from twisted.application import strports
from twisted.application.internet import TimerService
from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import quoteStringArgument
from twisted.logger import Logger, globalLogPublisher
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.web.server import Site

from tmpnb.config import DEFAULT_COMMAND, DEFAULT_IMAGE, ContainerSpec, PoolConfig
from tmpnb.logs import QuietSite
from tmpnb.web import CorsPolicy, WebSettings, make_resource
from tmpnb.web.paths import below_from_redirect_uri

log = Logger()

PROXY_TOKEN_VARIABLE = "CONFIGPROXY_AUTH_TOKEN"
API_TOKEN_VARIABLE = "API_AUTH_TOKEN"
ADMIN_TOKEN_VARIABLE = "ADMIN_AUTH_TOKEN"
HEALTH_CHECK_PERIOD = 10.0

_SPEC = ContainerSpec()
_POOL = PoolConfig()


def _yes_no(value: str) -> bool:
    answer = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}.get(value.lower())
    if answer is None:
        raise ValueError(f"expected yes or no, got {value!r}")
    return answer


_yes_no.coerceDoc = "yes or no."  # type: ignore[attr-defined]


def _optional_int(value: str) -> int | None:
    return None if value in ("", "none", "None") else int(value)


def _endpoint_or_port(value: str) -> str:
    """tmpnb's --admin-port took a port number: keep that working, on loopback."""
    return f"tcp:{int(value)}:interface=127.0.0.1" if value.isdigit() else value


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = __doc__

    optFlags = [
        ["host-network", None, "Containers share the host's network (their code can reach it); the server still answers on its unix socket."],
        ["no-tokens", None, "Do not protect notebook servers with a token (--use-tokens is the default)."],
        ["use-tokens", None, "Protect each notebook server with its own token (default)."],
        # Restarts: by default visitors keep their containers across a restart.
        ["cleanup-on-start", None, "Remove this instance's leftover containers at start instead of adopting them."],
        ["cleanup-on-stop", None, "Remove the visitors' containers too when stopping (default: leave them for the next start)."],
    ]
    optParameters = [
        # The pool
        ["pool-size", None, _POOL.pool_size, "Containers kept booted and waiting for visitors.", int],
        ["capacity", None, _POOL.capacity, "Most containers at once, in every state.", int],
        ["cull-period", None, _POOL.cull_period, "Seconds between sweeps for idle containers.", float],
        ["cull-timeout", None, _POOL.cull_timeout, "Seconds without activity before a container is culled.", float],
        ["cull-max", None, _POOL.cull_max, "Seconds a container may live, however active.", float],
        ["user-length", None, _POOL.user_length, "Length of the random id in /user/<id>/.", int],
        ["boot-attempts", None, _POOL.boot_attempts, "Tries to boot a container before giving up.", int],
        ["boot-timeout", None, _POOL.boot_timeout, "Seconds a container may take to answer.", float],
        ["max-booting", None, _POOL.max_booting, "Most containers booting at once (booting is CPU-bound).", int],
        ["max-waiting", None, 200, "Most visitors waiting in line for a container (0: none wait, No vacancy at once).", int],
        ["refill-delay", None, _POOL.refill_delay,
         "Seconds after the last of a burst of hand-outs before their replacements boot (0: at once).", float],
        # The containers
        ["image", None, DEFAULT_IMAGE, "Notebook image (must exist locally: python -m tmpnb.image build)."],
        ["command", None, DEFAULT_COMMAND,
         "Server command; {base_path} {sock} {port} {ip} {token} {allow_origin} {tornado_settings} are filled in."],
        ["mem-limit", None, _SPEC.mem_limit, "Memory limit per container."],
        ["cpu-shares", None, _SPEC.cpu_shares, "CPU shares per container.", _optional_int],
        ["cpu-quota", None, _SPEC.cpu_quota, "CPU microseconds per 100 ms per container.", int],
        ["container-ip", None, _SPEC.container_ip, "{ip} in --command (the same for every container)."],
        ["container-port", None, _SPEC.container_port, "{port} in --command (the same for every container).", int],
        ["host-directories", None, "", "Comma-separated host:container[:ro|rw] mounts for every container."],
        ["instance", None, _SPEC.instance, "Name of this tmpnb: labels its containers; one never touches another's."],
        ["socket-root", None, _SPEC.socket_root, "Host directory for the containers' socket directories."],
        ["max-dock-workers", None, 4, "Threads for Docker calls.", int],
        ["docker-url", None, "unix:///var/run/docker.sock", "dockerd's API."],
        # The web side
        ["redirect-uri", None, "/tree", "Where a new visitor lands in their server."],
        ["allow-origin", None, "", "Access-Control-Allow-Origin, for the API and the notebook servers."],
        ["allow-credentials", None, False, "Access-Control-Allow-Credentials.", _yes_no],
        ["allow-methods", None, "", "Access-Control-Allow-Methods."],
        ["allow-headers", None, "", "Access-Control-Allow-Headers."],
        ["expose-headers", None, "", "Access-Control-Expose-Headers."],
        ["max-age", None, None, "Access-Control-Max-Age.", _optional_int],
        ["frame-ancestors", None, _SPEC.frame_ancestors,
         "CSP frame-ancestors: the sites that may show the notebooks in an iframe."],
        ["static-dir", None, None, "Notebook static files extracted by `python -m tmpnb.image extract-static`, served centrally by the embedded proxy."],
        ["lifecycle-log", None, None, "Append every container transition to this file as JSON lines."],
        # Listeners
        ["listen", None, "tcp:8000:interface=127.0.0.1", "Public endpoint (the orchestrator's own with --proxy-api-url)."],
        ["web-listen", None, None, "Embedded proxy only: the orchestrator's endpoint (default: a unix socket in --socket-root)."],
        ["proxy-api-url", None, None, f"Use this external configurable-http-proxy API (token in ${PROXY_TOKEN_VARIABLE})."],
        ["proxy-api-listen", None, None,
         "Embedded proxy's REST API endpoint ('none': off; default tcp:8001 on loopback for the instance "
         "'tmpnb', a unix socket <socket-root>/<instance>.proxy-api.sock for any other)."],
        ["admin-port", None, None, f"Admin API port or endpoint, on loopback (token in ${ADMIN_TOKEN_VARIABLE})."],
        # Share and remix (tmpnb/share/)
        ["share-store", None, "/var/lib/tmpnb/shares.sqlite3",
         "Where shares are kept: a SQLite file, or a postgresql:// URL for many nodes; 'none': no sharing."],
        ["share-max-bytes", None, 10_000_000, "Largest notebook that can be shared, in bytes.", int],
        ["share-expires-days", None, 30.0, "Days a share lives unless its sharer asks for fewer.", float],
        ["shares-per-hour", None, 30, "Shares one notebook server may make in an hour.", int],
        ["share-renders-per-minute", None, 30, "Uncached share renders one client address may ask for in a minute.", int],
        ["public-url", None, None, "The URL visitors reach this node at, told to a tmpnb-redirector in /api/stats."],
    ]

    def postOptions(self) -> None:
        if self["no-tokens"] and self["use-tokens"]:
            raise usage.UsageError("--use-tokens and --no-tokens contradict each other")
        if self["pool-size"] < 0 or self["capacity"] < 1 or self["pool-size"] > self["capacity"]:
            raise usage.UsageError("need 0 <= --pool-size <= --capacity and --capacity >= 1")
        if not 1 <= self["user-length"] <= 64:
            raise usage.UsageError("--user-length must be between 1 and 64")
        try:
            below_from_redirect_uri(self["redirect-uri"])
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        if self["max-waiting"] < 0 or self["refill-delay"] < 0:
            raise usage.UsageError("--max-waiting and --refill-delay cannot be negative")
        if self["max-booting"] < 1:
            raise usage.UsageError("--max-booting must be at least 1")
        if self["proxy-api-url"] and not os.environ.get(PROXY_TOKEN_VARIABLE):
            raise usage.UsageError(f"--proxy-api-url needs ${PROXY_TOKEN_VARIABLE}")
        if self["admin-port"] is not None:
            self["admin-port"] = _endpoint_or_port(self["admin-port"])
        if self["proxy-api-listen"] is None:
            self["proxy-api-listen"] = default_proxy_api_listen(self["instance"], self["socket-root"])
        self["host-directories"] = tuple(d for d in self["host-directories"].split(",") if d)


def default_proxy_api_listen(instance: str, socket_root: str) -> str:
    """CHP's API port for the default instance; for any other a socket named after it, so two
    nodes on one host differ only in --instance and --listen."""
    if instance == _SPEC.instance:
        return "tcp:8001:interface=127.0.0.1"
    path = os.path.join(socket_root, f"{instance}.proxy-api.sock")
    return f"unix:{quoteStringArgument(path)}:mode=600:lockfile=1"


def container_spec(options: Options) -> ContainerSpec:
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
        use_tokens=not options["no-tokens"],
    )


def pool_config(options: Options) -> PoolConfig:
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


def restarts(options: Options) -> dict[str, bool]:
    """What the pool does with this instance's containers at start and stop."""
    return {"adopt": not options["cleanup-on-start"], "keep_assigned": not options["cleanup-on-stop"]}


def web_settings(options: Options, environ: dict[str, str]) -> WebSettings:
    return WebSettings(
        redirect_uri=options["redirect-uri"],
        use_tokens=not options["no-tokens"],
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


def web_socket_path(spec: ContainerSpec) -> str:
    """The orchestrator's socket for the embedded proxy: next to, not inside, the containers' dirs."""
    return os.path.join(spec.socket_root, f"{spec.instance}.web.sock")


class ObservedDocker:
    """DockerAPI with the outcome of every call reported to Health (a hung dockerd shows),
    and its latency to the metrics (tmpnb/metrics.py), if any."""

    def __init__(self, docker: Any, health: Any, metrics: Any = None) -> None:
        self._docker = docker
        self._health = health
        self._metrics = metrics

    def _timed(self, operation: str, d: Deferred[Any]) -> Deferred[Any]:
        return d if self._metrics is None else self._metrics.observe_docker_call(operation, d)

    def launch(self, request: Any) -> Deferred[str]:
        return self._health.observe_docker_call(self._timed("launch", self._docker.launch(request)))

    def remove(self, docker_id: str, container_id: str | None = None) -> Deferred[None]:
        return self._health.observe_docker_call(self._timed("remove", self._docker.remove(docker_id, container_id)))

    def inspect(self, docker_id: str) -> Deferred[Any]:
        return self._health.observe_docker_call(self._timed("inspect", self._docker.inspect(docker_id)))

    def list_ours(self) -> Deferred[list[Any]]:
        return self._health.observe_docker_call(self._timed("list", self._docker.list_ours()))

    def ping(self) -> Deferred[bool]:
        return self._timed("ping", self._docker.ping())

    # The socket directories are the host's filesystem: their outcome says nothing of dockerd.
    def socket_dir_ids(self) -> Deferred[list[str]]:
        return self._docker.socket_dir_ids()

    def remove_socket_dirs(self, container_ids: list[str]) -> Deferred[None]:
        return self._docker.remove_socket_dirs(container_ids)

    def watch(self, on_event: Callable[[str, str], None]) -> None:
        self._docker.watch(on_event)


class ObservedProxy:
    """A ProxyAPI whose successes and failures are reported to Health."""

    def __init__(self, proxy: Any, health: Any) -> None:
        self._proxy = proxy
        self._health = health

    def _observe(self, d: Deferred[Any]) -> Deferred[Any]:
        def ok(result: Any) -> Any:
            self._health.proxy_ok()
            return result

        def failed(reason: Failure) -> Failure:
            self._health.proxy_failed(f"{reason.type.__name__}: {reason.getErrorMessage()}")
            return reason

        return d.addCallbacks(ok, failed)

    def add_route(self, path: str, target: str, **data: Any) -> Deferred[None]:
        return self._observe(self._proxy.add_route(path, target, **data))

    def delete_route(self, path: str) -> Deferred[None]:
        return self._observe(self._proxy.delete_route(path))

    def get_route(self, path: str) -> Deferred[dict | None]:
        return self._observe(self._proxy.get_route(path))

    def list_routes(self, inactive_since: Any = None) -> Deferred[dict[str, dict]]:
        return self._observe(self._proxy.list_routes(inactive_since))


def health_check(docker: ObservedDocker, proxy: ObservedProxy, health: Any) -> Callable[[], Deferred[Any]]:
    """One round of the periodic check: ping dockerd, list the proxy's routes."""
    from tmpnb.faults import log_fault

    def check() -> Deferred[Any]:
        pinged = docker.ping().addCallback(lambda answered: health.docker_ping(answered))
        pinged.addErrback(lambda f: log_fault(log, f, "docker health check"))
        listed = proxy.list_routes().addErrback(lambda f: None)  # ObservedProxy recorded it
        return pinged.addCallback(lambda _: listed)

    return check


def makeService(options: Options, reactor: Any = None, environ: dict[str, str] | None = None) -> IService:
    """Everything `twistd tmpnb` runs; touches neither Docker nor the network until started."""
    if reactor is None:
        from twisted.internet import reactor
    environ = dict(os.environ) if environ is None else environ

    # Imported here so that `twistd --help` and option parsing stay light.
    from tmpnb.admin import AdminResource
    from tmpnb.assignments import AssignmentMarks, assigned_dir
    from tmpnb.dockerapi import DockerAPI, docker_client_factory, make_docker_threadpool
    from tmpnb.health import Health
    from tmpnb.lifecycle import LifecycleRecorder, lifecycle_log_observer
    from tmpnb.metrics import Metrics
    from tmpnb.pool import Pool
    from tmpnb.readiness import wait_ready
    from tmpnb.waitingline import WaitingLine

    spec = container_spec(options)
    config = pool_config(options)
    top = MultiService()
    health = Health(reactor)
    metrics = Metrics(reactor)
    metrics.watch_health(health)

    threadpool = make_docker_threadpool(reactor, options["max-dock-workers"])
    docker = ObservedDocker(
        DockerAPI(reactor, threadpool, docker_client_factory(options["docker-url"]), spec), health, metrics
    )

    if options["proxy-api-url"]:
        from tmpnb.proxyapi import make_chp_client

        proxy_api: Any = make_chp_client(reactor, options["proxy-api-url"], environ[PROXY_TOKEN_VARIABLE])
        routes = None
    else:
        from tmpnb.proxy.routes import RouteTable
        from tmpnb.proxyapi import InProcessProxyAPI

        routes = RouteTable(reactor)
        proxy_api = InProcessProxyAPI(routes)
    proxy = ObservedProxy(proxy_api, health)

    records: list[Callable[[dict], None]] = [metrics.record]  # every transition goes to each
    if options["lifecycle-log"]:
        observer = lifecycle_log_observer(options["lifecycle-log"])
        records.append(observer.write)
        # After shutdown: the pool's last culls happen while the reactor shuts down.
        reactor.addSystemEventTrigger("after", "shutdown", observer.close)

    # A pooled server has rendered its landing page once: no visitor pays the cold render.
    warm_ready = functools.partial(wait_ready, warm=below_from_redirect_uri(options["redirect-uri"]))
    pool = Pool(
        reactor, docker, warm_ready, proxy, spec, config,
        on_transition=LifecycleRecorder(records=records),
        # Restarts keep visitors (docs/lifecycle.md, Restarts); the markers make adoption
        # safe with the embedded proxy, whose routes die with this process.
        **restarts(options),
        assignment_marks=AssignmentMarks(assigned_dir(spec)),
    )
    pool.setName("pool")
    pool.setServiceParent(top)
    metrics.watch_pool(pool)
    heartbeats = metrics.heartbeat_observer()
    globalLogPublisher.addObserver(heartbeats)
    reactor.addSystemEventTrigger("after", "shutdown", globalLogPublisher.removeObserver, heartbeats)

    # The line's records go to the lifecycle file; the metrics take transitions only.
    line_records = [write for write in records if write != metrics.record]
    line = WaitingLine(reactor, pool, options["max-waiting"], records=line_records,
                       on_turned_away=metrics.no_vacancy.inc)
    line.follow(pool)  # the pool publishes its pooled containers and stats; the line takes
    sharing = None
    if options["share-store"] not in ("none", ""):
        from tmpnb.share import make_sharing
        from tmpnb.share.service import ShareSettings

        sharing = make_sharing(reactor, pool, spec, options["share-store"], ShareSettings(
            max_bytes=options["share-max-bytes"], expires_days=options["share-expires-days"],
            shares_per_hour=options["shares-per-hour"], renders_per_minute=options["share-renders-per-minute"]),
            records=[observer.write] if options["lifecycle-log"] else [])
    web = QuietSite(make_resource(pool, web_settings(options, environ), line, sharing), reactor=reactor,
                    name="orchestrator")
    web.displayTracebacks = False
    if routes is None:
        _named(strports.service(options["listen"], web, reactor=reactor), "web").setServiceParent(top)
        log.info("orchestrator on {listen}, routes in {proxy}", listen=options["listen"], proxy=options["proxy-api-url"])
    else:
        for service in _embedded_proxy(reactor, options, spec, routes, web, environ, metrics):
            service.setServiceParent(top)

    if options["admin-port"]:
        from prometheus_client.twisted import MetricsResource

        takedown = None if sharing is None else sharing.takedown
        admin = QuietSite(AdminResource(pool, health, environ.get(ADMIN_TOKEN_VARIABLE, ""),
                                        metrics=MetricsResource(metrics.registry), takedown=takedown),
                          reactor=reactor, name="admin")
        admin.displayTracebacks = False
        _named(strports.service(options["admin-port"], admin, reactor=reactor), "admin").setServiceParent(top)

    checks = TimerService(HEALTH_CHECK_PERIOD, health_check(docker, proxy, health))
    checks.clock = reactor
    _named(checks, "health-check").setServiceParent(top)
    return top


def _embedded_proxy(reactor: Any, options: Options, spec: ContainerSpec, routes: Any, web: Site,
                    environ: dict[str, str], metrics: Any = None) -> list[IService]:
    """The orchestrator's own listener, the public proxy and the proxy's REST API."""
    from tmpnb.proxy.api import ProxyAPIResource
    from tmpnb.proxy.server import ReverseProxyFactory
    from tmpnb.sockets import proxy_target

    services = []
    os.makedirs(spec.socket_root, exist_ok=True)  # the sockets derived from the instance live there
    if options["web-listen"]:
        web_listen = options["web-listen"]
        web_target = _target_of(web_listen)
    else:
        path = web_socket_path(spec)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # lockfile: a socket file left by a crashed run is replaced, a live one is not.
        # A spike opens a proxy connection per visitor at once (those in line hold theirs):
        # a full backlog refuses a unix connect at once (EAGAIN), which the proxy answers 503.
        backlog = 128 + options["max-waiting"]
        web_listen = f"unix:{quoteStringArgument(path)}:mode=600:lockfile=1:backlog={backlog}"
        web_target = proxy_target(path)
    services.append(_named(strports.service(web_listen, web, reactor=reactor), "web"))

    # Behind `ssl:` the servers are told their visitors came over https (X-Forwarded-Proto).
    scheme = "https" if options["listen"].startswith("ssl:") else "http"
    # Each visitor in the waiting line holds a request open at the orchestrator (a long poll):
    # the proxy's bound on connections to one backend must leave room for all of them.
    public = ReverseProxyFactory(reactor, routes, default_target=web_target, static_dir=options["static-dir"],
                                 scheme=scheme, max_backend_connections_per_target=32 + options["max-waiting"])
    public.noisy = False
    if metrics is not None:
        metrics.watch_proxy(public)
    services.append(_named(strports.service(options["listen"], public, reactor=reactor), "proxy"))

    if options["proxy-api-listen"] not in ("none", ""):
        # Without a configured token nobody outside needs the API: make it unguessable.
        token = environ.get(PROXY_TOKEN_VARIABLE) or secrets.token_urlsafe(32)
        api = QuietSite(ProxyAPIResource(routes, token), reactor=reactor, name="proxy-api")
        api.displayTracebacks = False
        services.append(_named(strports.service(options["proxy-api-listen"], api, reactor=reactor), "proxy-api"))
    log.info("proxy on {listen}, orchestrator on {web}", listen=options["listen"], web=web_listen)
    return services


def _target_of(endpoint: str) -> str:
    """The proxy target URL for an orchestrator endpoint string (tcp or unix)."""
    from tmpnb.sockets import proxy_target

    kind, _, rest = endpoint.partition(":")
    args = rest.split(":")
    if kind == "unix":
        return proxy_target(args[0])
    if kind in ("tcp", "tcp6"):
        interface = next((a.split("=", 1)[1] for a in args[1:] if a.startswith("interface=")), "127.0.0.1")
        host = f"[{interface}]" if ":" in interface else interface
        return f"http://{host}:{int(args[0])}"
    raise usage.UsageError(f"--web-listen must be a tcp: or unix: endpoint, got {endpoint!r}")


def _named(service: IService, name: str) -> IService:
    service.setName(name)
    return service

