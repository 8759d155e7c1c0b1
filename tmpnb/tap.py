"""``twistd tmpnb``: the pool, the orchestrator and the proxy in one process.

    python -m tmpnb.image build
    twistd -n tmpnb --pool-size 5 --listen tcp:8000:interface=127.0.0.1

By default the embedded proxy takes the public listener (--listen), sends /user/<id>/ to
each container's unix socket and everything else to the orchestrator, which listens on
its own unix socket (--web-listen). With --proxy-api-url tmpnb drives an external
configurable-http-proxy instead and --listen is the orchestrator's own listener, which
that proxy's --default-target must point at. Option names follow tmpnb's.

Wiring only: the parts live elsewhere (settings.py, endpoints.py, observed.py, options.py).
"""

from __future__ import annotations

import functools
import os
import secrets
from typing import Any

from twisted.application import strports
from twisted.application.service import IService, MultiService
from twisted.logger import Logger, globalLogPublisher
from twisted.python import usage
from twisted.web.server import Site

from tmpnb.admin import AdminResource
from tmpnb.assignments import AssignmentMarks, assigned_dir
from tmpnb.clients import ClientGate, SharePolicy, make_gate
from tmpnb.collector import freeze_startup_objects, freezer_service
from tmpnb.config import DEFAULT_COMMAND, DEFAULT_IMAGE, ContainerSpec, PoolConfig
from tmpnb.dockerapi import DockerAPI, docker_client_factory, make_docker_threadpool
from tmpnb.endpoints import default_proxy_api_listen, orchestrator_endpoint
from tmpnb.health import Health
from tmpnb.http.guard import guard_site
from tmpnb.lifecycle import LifecycleRecorder, RecordTaker, RecordTakers, lifecycle_log_observer
from tmpnb.logs import QuietSite
from tmpnb.metrics import Metrics
from tmpnb.observed import ObservedDocker, ObservedProxy, health_checks
from tmpnb.openfiles import OpenFileLimit
from tmpnb.origins import SubdomainHostError, parse_subdomain_host
from tmpnb.origins.exposure import warn_if_exposed
from tmpnb.origins.ids import new_lower_container_id
from tmpnb.origins.routing import HostRoutes
from tmpnb.options import ADMIN_TOKEN_VARIABLE, PROXY_TOKEN_VARIABLE, endpoint_or_port, optional_int, yes_no
from tmpnb.pool import Pool
from tmpnb.proxy.api import ProxyAPIResource
from tmpnb.proxy.routes import RouteTable
from tmpnb.proxy.public import public_proxy
from tmpnb.proxy.settings import ProxySettings
from tmpnb.proxyapi import InProcessProxyAPI, make_chp_client
from tmpnb.readiness import wait_ready
from tmpnb.servertokens import InsecureSecretFile, ServerTokens, secret_path
from tmpnb.flavors import FlavorError
from tmpnb.settings import (client_policy, confinement_problem, container_spec, flavors_of, front_door, node_flavors,
                            origins_of, pool_config, request_limits, restarts, trusted_proxies, web_settings)
from tmpnb.share import make_sharing
from tmpnb.share.purge import share_purge
from tmpnb.share.service import ShareSettings
from tmpnb.share.store import StoreDriverMissing, check_driver
from tmpnb.share.web import sharing_extension
from tmpnb.slices import Slicer
from tmpnb.sockets import sealed_when_ready
from tmpnb.waitingline import WaitingLine
from tmpnb.web import make_resource
from tmpnb.web.paths import below_from_redirect_uri

log = Logger()

_SPEC = ContainerSpec()
_POOL = PoolConfig()
_SHARE = SharePolicy()


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = __doc__

    optFlags = [
        ["host-network", None, "Containers share the host's network (their code can reach it); the server still answers on its unix socket."],
        ["no-tokens", None, "Removed: every notebook server has its own token (this option is refused)."],
        ["use-tokens", None, "Protect each notebook server with its own token (always; accepted for tmpnb's users)."],
        # Restarts: by default visitors keep their containers across a restart.
        ["cleanup-on-start", None, "Remove this instance's leftover containers at start instead of adopting them."],
        ["cleanup-on-stop", None, "Remove the visitors' containers too when stopping (default: leave them for the next start)."],
        ["writable-root", None, "Leave the image's root filesystem writable (default: read-only; visitors write only to home, /tmp and /dev/shm)."],
        ["writable-socket-dirs", None, "Leave each server's socket directory writable by its visitor after boot (default: sealed,"
         " root's; a visitor could fill it or replace their server's socket). For tests of what a visitor's own server may do."],
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
        ["default-flavor", None, None, "The --flavor a visitor who names none gets (default: the first)."],
        ["command", None, DEFAULT_COMMAND,
         "Server command; {base_path} {sock} {port} {ip} {token} {allow_origin} {tornado_settings} are filled in."],
        ["mem-limit", None, _SPEC.mem_limit, "Memory limit per container."],
        ["cpu-shares", None, _SPEC.cpu_shares, "CPU shares per container.", optional_int],
        ["cpu-quota", None, _SPEC.cpu_quota, "CPU microseconds per 100 ms per container.", int],
        ["container-ip", None, _SPEC.container_ip, "{ip} in --command (the same for every container)."],
        ["container-port", None, _SPEC.container_port, "{port} in --command (the same for every container).", int],
        ["host-directories", None, "", "Comma-separated host:container[:ro|rw] mounts for every container."],
        # What a visitor may write: memory, counted in --mem-limit (docs/security.md).
        ["home-dir", None, _SPEC.home_dir, "The containers' home directory, where --home-size's tmpfs goes."],
        ["home-size", None, _SPEC.home_size, "Size of the visitor's home, a tmpfs counted in --mem-limit (0: the image's own home, needs --writable-root)."],
        ["tmp-size", None, _SPEC.tmp_size, "Size of /tmp (and /var/tmp in tmpnb's image), a tmpfs counted in --mem-limit (0: the image's own)."],
        ["shm-size", None, _SPEC.shm_size, "Size of /dev/shm, counted in --mem-limit."],
        ["nofile", None, _SPEC.nofile, "Open files per process in a container (ulimit -n).", int],
        ["log-max-size", None, _SPEC.log_max_size, "Largest container log (json-file, one file; 0: dockerd's log driver and options)."],
        ["instance", None, _SPEC.instance, "Name of this tmpnb: labels its containers; one never touches another's."],
        ["socket-root", None, _SPEC.socket_root, "Host directory for the containers' socket directories."],
        ["secret-file", None, None,
         "The instance secret the servers' tokens are derived from; made (mode 0600) at first start "
         "(default: <socket-root>/<instance>.secret)."],
        ["max-dock-workers", None, 4, "Threads for Docker calls.", int],
        ["docker-url", None, "unix:///var/run/docker.sock", "dockerd's API."],
        # The web side
        ["redirect-uri", None, "/tree", "Where a new visitor lands in their server."],
        ["allow-origin", None, "", "Access-Control-Allow-Origin, for the API and the notebook servers."],
        ["allow-credentials", None, False, "Access-Control-Allow-Credentials.", yes_no],
        ["allow-methods", None, "", "Access-Control-Allow-Methods."],
        ["allow-headers", None, "", "Access-Control-Allow-Headers."],
        ["expose-headers", None, "", "Access-Control-Expose-Headers."],
        ["max-age", None, None, "Access-Control-Max-Age.", optional_int],
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
        ["shares-per-hour-total", None, 600,
         "Shares all servers together may make in an hour (every node sharing a PostgreSQL store).", int],
        ["share-purge-period", None, 3600.0, "Seconds between purges of expired shares from the store.", float],
        ["share-renders-per-minute", None, 30, "Uncached share renders one client address may ask for in a minute.", int],
        ["public-url", None, None,
         "The URL visitors reach this node at, told to a tmpnb-redirector in /api/stats "
         "(default with --subdomain-host: that host)."],
        # Each visitor its own origin (tmpnb/origins, docs/security.md)
        ["subdomain-host", None, None,
         "Serve each visitor's server on a host of its own, https://<id>.HOST/user/<id>/ (e.g. "
         "https://nb.example.org; needs a wildcard DNS name and certificate; http:// only for "
         "localhost and *.localhost). Ids become [a-z0-9], longer by the same entropy."],
        # Each client address's fair share (tmpnb/clients/)
        ["client-share", None, _SHARE.share,
         "Fraction of --capacity one client address may hold (containers and places in line; at least 1).", float],
        ["client-spawn-rate", None, _SHARE.spawns_per_minute,
         "New containers one client address may start a minute, once its burst is spent.", float],
        ["client-spawn-burst", None, _SHARE.burst, "New containers one client address may start at once.", int],
        # The front door against slow and greedy clients (docs/security.md): the public
        # listener and the orchestrator's. 0 turns a limit off.
        ["head-timeout", None, 20.0, "Seconds a whole request head may take (not an idle timer: each byte does not restart it).", float],
        ["body-timeout", None, 20.0, "Seconds a request body gets before --body-min-rate applies.", float],
        ["body-min-rate", None, 500.0, "Bytes per second a request body must keep up after --body-timeout's grace.", float],
        ["max-client-connections", None, 256,
         "Connections open at once from one client address (an IPv6 /64 is one); at the cap its oldest idle one is closed.", int],
        ["web-max-body", None, 65536,
         "Largest request body for the orchestrator (/api/*, /spawn, /share), read whole by the proxy first; larger: 413.", int],
        ["share-read-timeout", None, 20.0, "Seconds a Share may take to read the notebook from its visitor's server.", float],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["trusted-proxy"] = []
        self["flavor"] = []

    def opt_flavor(self, spec: str) -> None:
        """NAME=IMAGE[,pool-size=N][,landing=PATH][,static-dir=DIR]: one more notebook image
        this node serves, with its own pool, chosen by ?flavor=NAME; repeatable (see
        docs/operations.md, Flavors). Without it: one flavor, "default", of --image and --pool-size."""
        self["flavor"].append(spec)

    def opt_trusted_proxy(self, cidr: str) -> None:
        """A proxy (address or CIDR) whose X-Forwarded-For names the client; repeatable."""
        self["trusted-proxy"].append(cidr)

    def postOptions(self) -> None:
        if self["no-tokens"]:
            # It left visitors on a login page; a server without a token would be anyone's
            # whose URL leaked (Referer, logs, a shared link). See docs/security.md.
            raise usage.UsageError("--no-tokens was removed: each notebook server keeps its own token, "
                                   "and visitors are logged in by the link tmpnb sends them to")
        # With --flavor, --pool-size is not the node's (each flavor has its own, checked by
        # node_flavors): its default must not refuse a --capacity the flavors fit in.
        pool_size = 0 if self["flavor"] else self["pool-size"]
        if self["pool-size"] < 0 or self["capacity"] < 1 or pool_size > self["capacity"]:
            raise usage.UsageError("need 0 <= --pool-size <= --capacity and --capacity >= 1")
        try:
            self["flavors"] = node_flavors(self, self.defaults)
        except FlavorError as e:
            raise usage.UsageError(str(e)) from None
        if not 1 <= self["user-length"] <= 64:
            raise usage.UsageError("--user-length must be between 1 and 64")
        try:
            below_from_redirect_uri(self["redirect-uri"])
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        if self["max-waiting"] < 0 or self["refill-delay"] < 0:
            raise usage.UsageError("--max-waiting and --refill-delay cannot be negative")
        for name in ("head-timeout", "body-timeout", "body-min-rate", "max-client-connections", "web-max-body"):
            if self[name] < 0:
                raise usage.UsageError(f"--{name} cannot be negative")
        if self["share-read-timeout"] <= 0:
            raise usage.UsageError("--share-read-timeout must be more than 0")
        if self["max-booting"] < 1:
            raise usage.UsageError("--max-booting must be at least 1")
        if self["proxy-api-url"] and not os.environ.get(PROXY_TOKEN_VARIABLE):
            raise usage.UsageError(f"--proxy-api-url needs ${PROXY_TOKEN_VARIABLE}")
        if self["admin-port"] is not None:
            self["admin-port"] = endpoint_or_port(self["admin-port"])
        if self["proxy-api-listen"] is None:
            self["proxy-api-listen"] = default_proxy_api_listen(self["instance"], self["socket-root"])
        self["host-directories"] = tuple(d for d in self["host-directories"].split(",") if d)
        try:
            self["origins"] = parse_subdomain_host(self["subdomain-host"])
        except SubdomainHostError as e:
            raise usage.UsageError(str(e)) from None
        problem = confinement_problem(self)
        if problem:
            raise usage.UsageError(problem)
        try:
            client_policy(self).check()
            trusted_proxies(self)
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        try:  # one line naming the extra to install, not a traceback at start
            check_driver(self["share-store"])
        except StoreDriverMissing as e:
            raise usage.UsageError(str(e)) from None


def record_takers(reactor: Any, lifecycle_log: str | None, metrics: Metrics,
                  gate: ClientGate | None = None) -> RecordTakers:
    """The metrics (and the client gate: culled containers leave their accounts) take the
    transitions; --lifecycle-log's file, if any, every record."""
    files: tuple[RecordTaker, ...] = ()
    if lifecycle_log:
        observer = lifecycle_log_observer(lifecycle_log)
        files = (observer.write,)
        # After shutdown: the pool's last culls happen while the reactor shuts down.
        reactor.addSystemEventTrigger("after", "shutdown", observer.close)
    gates = () if gate is None else (gate.record,)
    return RecordTakers(transitions=(metrics.record, *gates, *files), events=files)


def makeService(options: Options, reactor: Any = None, environ: dict[str, str] | None = None) -> IService:
    """Everything `twistd tmpnb` runs; touches neither Docker nor the network until started."""
    if reactor is None:
        from twisted.internet import reactor
    environ = dict(os.environ) if environ is None else environ
    warn_if_exposed(options["listen"], origins_of(options))
    spec = container_spec(options)
    top = MultiService()
    _named(OpenFileLimit(), "open-files").setServiceParent(top)  # first: before any listener
    health = Health(reactor)
    metrics = Metrics(reactor)
    metrics.watch_health(health)
    docker = ObservedDocker(_docker_api(reactor, options, spec), health, metrics)
    proxy_api, routes = _proxy_api(reactor, options, environ)
    proxy = ObservedProxy(proxy_api, health)
    tokens = _server_tokens(options, spec)
    # Reload cookies signed under the instance secret: they outlive a restart, as adoption does.
    gate = make_gate(reactor, options["capacity"], client_policy(options), trusted_proxies(options),
                     secret=tokens.key_for("reload cookies"), host_locked=origins_of(options).subdomains,
                     on_refused=lambda reason: metrics.client_refusals.labels(reason=reason).inc())
    takers = record_takers(reactor, options["lifecycle-log"], metrics, gate)
    pool = _pool(reactor, options, spec, docker, proxy, takers, tokens)
    _named(pool, "pool").setServiceParent(top)
    _watch_pool(reactor, metrics, pool)

    # The pool and its waiting line.
    line = WaitingLine(reactor, pool, options["max-waiting"], records=takers.events,
                       on_turned_away=metrics.no_vacancy.inc, flavors=pool.flavors)
    line.follow(pool)  # the pool publishes its pooled containers and stats; the line takes
    pool.add_stats("clients", gate.stats)  # refusals by reason, in /api/stats

    sharing = _sharing(reactor, options, pool, spec, takers)
    if sharing is not None:
        _named(share_purge(reactor, sharing, options["share-purge-period"]), "share-purge").setServiceParent(top)
    extensions = [] if sharing is None else [sharing_extension(sharing)]
    web = QuietSite(make_resource(pool, web_settings(options, environ), line, extensions, gate=gate), reactor=reactor,
                    name="orchestrator")
    web.displayTracebacks = False
    guard_site(web, request_limits(options), reactor)  # strangers reach it, through a proxy or not
    for service in _listeners(reactor, options, spec, routes, web, environ, metrics):
        service.setServiceParent(top)
    if options["admin-port"]:
        _admin(reactor, options, environ, pool, health, metrics, sharing).setServiceParent(top)
    _named(health_checks(reactor, docker, proxy, health), "health-check").setServiceParent(top)
    # What exists once everything is built is never garbage: out of every full collection;
    # and what lives on (the containers' state) out of them too, once a minute (tmpnb/collector.py).
    reactor.callWhenRunning(freeze_startup_objects)
    _named(freezer_service(reactor), "gc-freezer").setServiceParent(top)
    return top


def _docker_api(reactor: Any, options: Options, spec: ContainerSpec) -> DockerAPI:
    threadpool = make_docker_threadpool(reactor, options["max-dock-workers"])
    return DockerAPI(reactor, threadpool, docker_client_factory(options["docker-url"]), spec)


def _proxy_api(reactor: Any, options: Options, environ: dict[str, str]) -> tuple[Any, RouteTable | None]:
    """The routes' API: an external CHP's (--proxy-api-url), or the embedded proxy's table;
    keyed by host in subdomain mode (that CHP then runs with --host-routing)."""
    origins = origins_of(options)
    routes = None
    if options["proxy-api-url"]:
        api: Any = make_chp_client(reactor, options["proxy-api-url"], environ[PROXY_TOKEN_VARIABLE])
    else:
        routes = RouteTable(reactor)
        # Its listing (every heartbeat) renders the routes in stretches: thousands at once would
        # hold up every visitor (tmpnb/slices.py).
        api = InProcessProxyAPI(routes, Slicer(reactor))
    return (HostRoutes(api, origins) if origins.subdomains else api), routes


def _server_tokens(options: Options, spec: ContainerSpec) -> ServerTokens:
    """The servers' tokens, derived under the instance secret (made at first start)."""
    path = options["secret-file"] or secret_path(spec.socket_root, spec.instance)
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    try:
        return ServerTokens.from_file(path)
    except (InsecureSecretFile, OSError) as e:
        raise SystemExit(f"tmpnb: cannot use the secret file: {e}") from None


def _pool(reactor: Any, options: Options, spec: ContainerSpec, docker: ObservedDocker, proxy: ObservedProxy,
          takers: RecordTakers, tokens: ServerTokens) -> Pool:
    # A pooled server has rendered its landing page once: no visitor pays the cold render.
    warm_ready = functools.partial(wait_ready, warm=below_from_redirect_uri(options["redirect-uri"]))
    # A flavor with a landing page warms that page instead.
    landing_ready = {f.name: functools.partial(wait_ready, warm=f.landing) for f in flavors_of(options) if f.landing}
    if not options["writable-socket-dirs"]:
        warm_ready = sealed_when_ready(warm_ready)
        landing_ready = {name: sealed_when_ready(ready) for name, ready in landing_ready.items()}
    # Subdomain mode: an id is a DNS label, which browsers lower-case.
    new_id = {"new_id": new_lower_container_id} if origins_of(options).subdomains else {}
    return Pool(
        reactor, docker, warm_ready, proxy, spec, pool_config(options), **new_id,
        on_transition=LifecycleRecorder(records=takers.transitions),
        # Restarts keep visitors (docs/lifecycle.md, Restarts); the markers make adoption
        # safe with the embedded proxy, whose routes die with this process.
        **restarts(options),
        assignment_marks=AssignmentMarks(assigned_dir(spec)),
        token_for=tokens.token_for,
        flavors=flavors_of(options),
        flavor_wait_ready=landing_ready,
    )


def _watch_pool(reactor: Any, metrics: Metrics, pool: Pool) -> None:
    """The metrics read the pool's numbers and count its heartbeats (log events)."""
    metrics.watch_pool(pool)
    heartbeats = metrics.heartbeat_observer()
    globalLogPublisher.addObserver(heartbeats)
    reactor.addSystemEventTrigger("after", "shutdown", globalLogPublisher.removeObserver, heartbeats)


def _sharing(reactor: Any, options: Options, pool: Pool, spec: ContainerSpec, takers: RecordTakers) -> Any:
    """Share and remix (tmpnb/share/), unless --share-store is 'none'."""
    if options["share-store"] in ("none", ""):
        return None
    settings = ShareSettings(
        max_bytes=options["share-max-bytes"], expires_days=options["share-expires-days"],
        shares_per_hour=options["shares-per-hour"], shares_per_hour_total=options["shares-per-hour-total"],
        renders_per_minute=options["share-renders-per-minute"], read_timeout=options["share-read-timeout"])
    return make_sharing(reactor, pool, spec, options["share-store"], settings, records=takers.events)


def _listeners(reactor: Any, options: Options, spec: ContainerSpec, routes: RouteTable | None, web: Site,
               environ: dict[str, str], metrics: Metrics) -> list[IService]:
    if routes is None:
        log.info("orchestrator on {listen}, routes in {proxy}", listen=options["listen"], proxy=options["proxy-api-url"])
        return [_named(strports.service(options["listen"], web, reactor=reactor), "web")]
    return _embedded_proxy(reactor, options, spec, routes, web, environ, metrics)


def _admin(reactor: Any, options: Options, environ: dict[str, str], pool: Pool, health: Health, metrics: Metrics,
           sharing: Any) -> IService:
    from prometheus_client.twisted import MetricsResource

    takedown = None if sharing is None else sharing.takedown
    admin = QuietSite(AdminResource(pool, health, environ.get(ADMIN_TOKEN_VARIABLE, ""),
                                    metrics=MetricsResource(metrics.registry), takedown=takedown),
                      reactor=reactor, name="admin")
    admin.displayTracebacks = False
    return _named(strports.service(options["admin-port"], admin, reactor=reactor), "admin")


def _embedded_proxy(reactor: Any, options: Options, spec: ContainerSpec, routes: Any, web: Site,
                    environ: dict[str, str], metrics: Any = None) -> list[IService]:
    """The orchestrator's own listener, the public proxy and the proxy's REST API."""
    services = []
    os.makedirs(spec.socket_root, exist_ok=True)  # the sockets derived from the instance live there
    web_listen, web_target = orchestrator_endpoint(options["web-listen"], spec, options["max-waiting"])
    services.append(_named(strports.service(web_listen, web, reactor=reactor), "web"))

    # Behind `ssl:` the servers are told their visitors came over https (X-Forwarded-Proto).
    scheme = "https" if options["listen"].startswith("ssl:") else "http"
    # Each flavor's servers get their image's static files (--flavor …,static-dir=DIR).
    flavor_static = tuple(flavors_of(options).static_dirs().items()) if options.get("flavor") else ()
    # Each visitor in the waiting line holds a request open at the orchestrator (a long poll):
    # the proxy's bound on connections to one backend must leave room for all of them.
    public = public_proxy(reactor, routes, ProxySettings(default_target=web_target, static_dir=options["static-dir"],
                          flavor_static_dirs=flavor_static,
                          scheme=scheme, max_backend_connections_per_target=32 + options["max-waiting"],
                          host_routing=origins_of(options).subdomains, **front_door(options)))
    public.noisy = False
    if metrics is not None:
        metrics.watch_proxy(public)
    services.append(_named(strports.service(options["listen"], public, reactor=reactor), "proxy"))

    if options["proxy-api-listen"] not in ("none", ""):
        # Without a configured token nobody outside needs the API: make it unguessable.
        token = environ.get(PROXY_TOKEN_VARIABLE) or secrets.token_urlsafe(32)
        api = QuietSite(ProxyAPIResource(routes, token, unix_root=spec.socket_root), reactor=reactor, name="proxy-api")
        api.displayTracebacks = False
        services.append(_named(strports.service(options["proxy-api-listen"], api, reactor=reactor), "proxy-api"))
    log.info("proxy on {listen}, orchestrator on {web}", listen=options["listen"], web=web_listen)
    return services


def _named(service: IService, name: str) -> IService:
    service.setName(name)
    return service
