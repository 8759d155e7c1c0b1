"""Prometheus metrics of one tmpnb service, served as ``GET /metrics`` on the admin listener.

One ``CollectorRegistry`` per service (never prometheus_client's global one): two services
in one process, or two tests, never mix their numbers. What is counted comes from where it
is already seen, with no new bookkeeping in the parts themselves:

- the lifecycle record (tmpnb/lifecycle/): hand-outs, boot durations, boot failures and
  culls, by the record's category;
- ``observe_docker_call`` (wired in tmpnb/observed.py's ObservedDocker): latency and timeouts of every
  Docker call, by operation;
- the waiting line's ``on_turned_away`` (wired in tap.py): visitors turned away, no vacancy;
- the client gate's ``on_refused`` (wired in tap.py): requests refused a container, by reason;
- the heartbeat's own log event (its wall time): heartbeat durations;
- at scrape time: containers by state (the pool's stats), the health of Docker and the
  proxy's API (tmpnb/health.py), and the embedded proxy's own counters (requests, bytes,
  open websockets).
"""

from __future__ import annotations

from typing import Any, Iterator, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import ILogObserver, LogEvent
from twisted.python.failure import Failure
from zope.interface import implementer

from tmpnb.dockerapi import DockerTimeout
from tmpnb.lifecycle import flavor_of

# Every state a container can be in (tmpnb/states.py), so each has a series, at 0 if empty.
STATES = ("requested", "booting", "pooled", "assigned", "idle", "culled")
BOOT_BUCKETS = (0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0, 60.0, 120.0)
DOCKER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
HEARTBEAT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
HEARTBEAT_NAMESPACE = "tmpnb.heartbeat"


class PoolStats(Protocol):
    def stats(self) -> dict[str, Any]: ...  # tmpnb.pool.Pool.stats: "states", "capacity", ...


class HealthSnapshot(Protocol):
    def snapshot(self) -> dict[str, Any]: ...  # tmpnb.health.Health.snapshot


class Metrics:
    """The service's metrics and the hooks that feed them."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self.registry = CollectorRegistry()
        r = self.registry
        # The process's open fds and memory (process_open_fds, process_resident_memory_bytes):
        # what creeps over a long day shows here first.
        ProcessCollector(registry=r)
        self.handouts = Counter("tmpnb_handouts", "Containers handed to visitors.", registry=r)
        self.flavor_handouts = Counter("tmpnb_flavor_handouts", "Containers handed to visitors, by flavor.",
                                       ["flavor"], registry=r)
        self.no_vacancy = Counter(
            "tmpnb_no_vacancy", "Visitors who asked for a container when none was ready.", registry=r
        )
        self.client_refusals = Counter(
            "tmpnb_client_refusals", "Requests refused a container, by reason: over the client address's"
            " share, its spawn rate, or not a navigation/API call (tmpnb/clients/).", ["reason"], registry=r,
        )
        self.boot_duration = Histogram(
            "tmpnb_boot_duration_seconds", "Seconds from a container's boot to its server answering,"
            " retries included.", buckets=BOOT_BUCKETS, registry=r,
        )
        self.boot_failures = Counter(
            "tmpnb_boot_failures", "Failed boot attempts, by cause (lifecycle category).", ["cause"], registry=r
        )
        self.culls = Counter("tmpnb_culls", "Containers culled, by reason (lifecycle category).", ["reason"], registry=r)
        self.docker_duration = Histogram(
            "tmpnb_docker_call_duration_seconds", "Seconds a Docker call took (answered, failed or timed"
            " out), by operation.", ["operation"], buckets=DOCKER_BUCKETS, registry=r,
        )
        self.docker_timeouts = Counter(
            "tmpnb_docker_call_timeouts", "Docker calls that got no answer in time, by operation.", ["operation"],
            registry=r,
        )
        self.heartbeat_duration = Histogram(
            "tmpnb_heartbeat_duration_seconds", "Seconds one heartbeat (reconcile and judge) took.",
            buckets=HEARTBEAT_BUCKETS, registry=r,
        )

    # -- hooks ---------------------------------------------------------------------------

    def record(self, record: dict[str, Any]) -> None:
        """A lifecycle record (tmpnb.lifecycle.LifecycleRecorder's ``records`` take this)."""
        came, went = record["from"], record["to"]
        if came == "pooled" and went == "assigned":
            self.handouts.inc()
            self.flavor_handouts.labels(flavor=flavor_of(record)).inc()
        elif came == "booting" and went == "pooled":
            # booting is left only at the end: its time covers every attempt
            self.boot_duration.observe(record["seconds_in_previous"])
        elif record["input"] == "bootFailed":
            self.boot_failures.labels(cause=record["category"] or "unknown").inc()
        if went == "culled" and came != "culled":
            self.culls.labels(reason=record["category"] or "unknown").inc()

    def observe_docker_call(self, operation: str, d: Deferred[Any]) -> Deferred[Any]:
        """Time ``d``, a Docker call; its result or failure passes through."""
        began = self.clock.seconds()

        def ended(result: Any) -> Any:
            self.docker_duration.labels(operation=operation).observe(self.clock.seconds() - began)
            if isinstance(result, Failure) and result.check(DockerTimeout):
                self.docker_timeouts.labels(operation=operation).inc()
            return result

        return d.addBoth(ended)

    def heartbeat_observer(self) -> ILogObserver:
        """A log observer that times heartbeats from the heartbeat's own event (its ``wall``)."""

        @implementer(ILogObserver)
        def observe(event: LogEvent) -> None:
            if event.get("log_namespace") == HEARTBEAT_NAMESPACE and "wall" in event and "count" in event:
                self.heartbeat_duration.observe(float(event["wall"]))

        return observe

    # -- read at scrape time -------------------------------------------------------------

    def watch_pool(self, pool: PoolStats) -> None:
        self.registry.register(_PoolCollector(pool))

    def watch_health(self, health: HealthSnapshot) -> None:
        self.registry.register(_HealthCollector(health))

    def watch_proxy(self, proxy: Any) -> None:
        """The embedded proxy (tmpnb.proxy.factory.ReverseProxyFactory) and its counters."""
        self.registry.register(_ProxyCollector(proxy))


class _PoolCollector(Collector):
    def __init__(self, pool: PoolStats) -> None:
        self._pool = pool

    def collect(self) -> Iterator[Metric]:
        stats = self._pool.stats()
        containers = GaugeMetricFamily("tmpnb_containers", "Containers by lifecycle state.", labels=["state"])
        for state in STATES:
            containers.add_metric([state], stats["states"].get(state, 0))
        yield containers
        yield GaugeMetricFamily("tmpnb_containers_available", "Booted containers waiting for visitors"
                                " (/api/stats' available).", value=stats["available"])
        yield GaugeMetricFamily("tmpnb_capacity_containers", "Most containers at once (--capacity).",
                                value=stats["capacity"])
        yield GaugeMetricFamily("tmpnb_pool_size_containers", "Containers kept booted (--pool-size).",
                                value=stats["pool_size"])
        yield GaugeMetricFamily("tmpnb_containers_left_behind", "Containers whose removal gave up, counted"
                                " until Docker shows them gone.", value=stats["left_behind"])
        yield from _flavor_metrics(stats.get("flavors", {}))


def _flavor_metrics(flavors: dict[str, dict[str, Any]]) -> Iterator[Metric]:
    """The per-pool figures again, with a `flavor` label (tmpnb/flavors.py); the families
    above stay the node's totals."""
    families = {
        "available": GaugeMetricFamily("tmpnb_flavor_containers_available", "Booted containers waiting for"
                                       " visitors, by flavor.", labels=["flavor"]),
        "pool_size": GaugeMetricFamily("tmpnb_flavor_pool_size_containers", "Containers kept booted, by flavor.",
                                       labels=["flavor"]),
        "waiting": GaugeMetricFamily("tmpnb_flavor_waiting", "Visitors in a flavor's waiting line.", labels=["flavor"]),
        "room": GaugeMetricFamily("tmpnb_flavor_room", "More visitors of a flavor the node would serve now"
                                  " (/api/stats' flavors' room).", labels=["flavor"]),
    }
    containers = GaugeMetricFamily("tmpnb_flavor_containers", "Containers by flavor and lifecycle state.",
                                   labels=["flavor", "state"])
    for name, figures in flavors.items():
        for key, family in families.items():
            family.add_metric([name], figures.get(key, 0))
        for state in STATES:
            containers.add_metric([name, state], figures.get("states", {}).get(state, 0))
    if flavors:
        yield from families.values()
        yield containers


class _HealthCollector(Collector):
    def __init__(self, health: HealthSnapshot) -> None:
        self._health = health

    def collect(self) -> Iterator[Metric]:
        snapshot = self._health.snapshot()
        up = GaugeMetricFamily("tmpnb_dependency_up", "1 when the dependency answers (tmpnb's /health:"
                               " state ok), else 0.", labels=["dependency"])
        for dependency in ("docker", "proxy"):
            up.add_metric([dependency], 1 if snapshot[dependency]["state"] == "ok" else 0)
        yield up


class _ProxyCollector(Collector):
    def __init__(self, proxy: Any) -> None:
        self._proxy = proxy

    def collect(self) -> Iterator[Metric]:
        p = self._proxy
        yield CounterMetricFamily("tmpnb_proxy_requests", "Requests the embedded proxy received.", value=p.requests)
        received = CounterMetricFamily("tmpnb_proxy_bytes", "Bytes through the embedded proxy, by direction:"
                                       " from visitors (in) and from their servers (out).", labels=["direction"])
        received.add_metric(["in"], p.bytes_in)
        received.add_metric(["out"], p.bytes_out)
        yield received
        yield GaugeMetricFamily("tmpnb_proxy_websockets_open", "WebSockets the embedded proxy holds open.",
                                value=p.websockets)
        yield GaugeMetricFamily("tmpnb_proxy_connections_open", "Visitor connections to the embedded proxy.",
                                value=p.connections)
        yield GaugeMetricFamily("tmpnb_proxy_routes", "Routes in the embedded proxy's table.", value=len(p.routes))
        refused = CounterMetricFamily("tmpnb_proxy_refused", "What the front door refused or closed, by cause:"
                                      " a head or a body too slow, a body too large, a client at its connection"
                                      " cap (a new connection refused, or an idle one shed).", labels=["cause"])
        refused.add_metric(["head_too_slow"], p.heads_timed_out)
        refused.add_metric(["body_too_slow"], p.bodies_timed_out)
        refused.add_metric(["body_too_large"], p.bodies_too_large)
        refused.add_metric(["client_at_cap"], p.clients.refused)
        refused.add_metric(["idle_shed"], p.clients.shed)
        yield refused

