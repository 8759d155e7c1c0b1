"""The Nature day, replayed: readers of an article arrive, read, run the welcome cells, leave.

    python benchmarks/nature.py --hosts 1 --minutes 5 --peak-rate 0.5          # one `twistd tmpnb`
    python benchmarks/nature.py --hosts 3 --minutes 60 --peak-rate 2            # three hosts, Swarm
    python benchmarks/nature.py --front-door http://127.0.0.1:8000/ --minutes 2  # readers only

Readers (benchmarks/readers.py) arrive as a Poisson stream that climbs, peaks and tails off;
each goes through the front door as a browser without JavaScript does (redirects, the waiting
line's refreshing page), loads the notebook page, starts a kernel, runs the welcome cells and
moves the slider once (ipywidgets comm messages), thinks, sometimes runs more, and leaves.
Nothing is simulated on the node side: real tmpnb, real Docker, real notebook servers.

With `--hosts 1` it starts one `twistd -n tmpnb` (its own instance and socket root, loopback
ports), takes the resting state before (pooled containers, routes, socket directories, the
process's open fds and memory), runs the day, waits until every reader's server is culled
(`--cull-timeout`), and compares. With `--hosts 3` it builds three hosts on this machine as the swarm test does
(tests/integration/swarm_hosts.py: network namespaces, a dockerd each, Docker Swarm), deploys
deploy/stack.yml (a node on every host, the redirector in front), sends the readers from a
namespace of their own through the redirector, checks every host the same way (its node's
/metrics for routes, fds and memory; its dockerd for containers) and removes it all at the
end (and before, after a crashed run). With `--front-door` it only sends the readers (for a node or
a redirector started elsewhere; nothing is checked for leaks).

Bounded: at most `--max-readers` readers, the day lasts `--minutes`, readers still reading
then are given `--grace` seconds. The last line printed is one JSON summary: served,
peak_live, lost, bounced, time to notebook and to first output (p50/p99, pooled and waited),
per-host spread, leaked (containers, routes, socket directories, fds beyond the pool's) and
the control plane's memory before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "integration"))

from benchmarks.readers import (  # noqa: E402
    ArticleDay,
    KernelChannels,
    Outcome,
    ReaderPlan,
    ReaderWorld,
    arrivals,
    read_article,
)


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))], 3)


def peak_live(outcomes: list[Outcome]) -> int:
    """The most readers at once who had run their cells and not yet left."""
    edges: list[tuple[float, int]] = []
    for o in outcomes:
        if o.slider and o.to_output is not None and o.left is not None:
            edges += [(o.arrived + o.to_output, 1), (o.arrived + o.left, -1)]
    live = best = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
        live += step
        best = max(best, live)
    return best


def summary(outcomes: list[Outcome], seconds: float) -> dict[str, Any]:
    """The figures of a day, from the readers' outcomes."""
    def times(attr: str, waited: bool | None = None) -> list[float]:
        return [getattr(o, attr) for o in outcomes if getattr(o, attr) is not None
                and (waited is None or o.waited == waited)]

    errors = Counter((o.error or "")[:80] for o in outcomes if o.lost)
    return {
        "readers": len(outcomes),
        "served": sum(o.served for o in outcomes),
        "ran_every_cell": sum(o.slider for o in outcomes),
        "peak_live": peak_live(outcomes),
        "lost": sum(o.lost for o in outcomes),
        "lost_because": dict(errors),
        "bounced": sum(o.bounced for o in outcomes),
        "reconnects": sum(o.reconnects for o in outcomes),
        "reconnect_errors": dict(Counter((o.last_reconnect_error or "")[:80] for o in outcomes if o.reconnects)),
        "waited": sum(o.waited and o.served for o in outcomes),
        "to_notebook": {kind: {"p50": percentile(times("to_notebook", w), 50), "p99": percentile(times("to_notebook", w), 99)}
                        for kind, w in (("pooled", False), ("waited", True))},
        "to_kernel": {kind: {"p50": percentile(times("to_kernel", w), 50), "p99": percentile(times("to_kernel", w), 99)}
                      for kind, w in (("pooled", False), ("waited", True))},
        "to_output": {kind: {"p50": percentile(times("to_output", w), 50), "p99": percentile(times("to_output", w), 99)}
                      for kind, w in (("pooled", False), ("waited", True))},
        "per_host": dict(Counter(o.host for o in outcomes if o.served)),
        "seconds": round(seconds, 1),
    }


def run_readers(front_door: str, day: ArticleDay, seed: int, max_readers: int, think_mean: float,
                linger_mean: float, grace: float, step_timeout: float) -> tuple[list[Outcome], float]:
    """Send the day's readers to `front_door` (a reactor run of its own); their outcomes."""
    from treq.client import HTTPClient
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred, gatherResults
    from twisted.internet.task import deferLater
    from twisted.web.client import Agent, CookieAgent, HTTPConnectionPool
    from twisted.web.websocket import WebSocketClientEndpoint
    from http.cookiejar import CookieJar

    rng = random.Random(seed)
    pool = HTTPConnectionPool(reactor, persistent=False)

    def new_http() -> HTTPClient:
        # A browser of its own: its own cookies (the notebook's login), no shared connections.
        return HTTPClient(CookieAgent(Agent(reactor, pool=pool), CookieJar()))

    async def open_channels(url: str) -> KernelChannels:
        channels = KernelChannels()

        class One:
            def buildProtocol(self, _url: str) -> KernelChannels:
                return channels

        return await WebSocketClientEndpoint.new(reactor, url).connect(One())

    world = ReaderWorld(clock=reactor, http=None, new_http=new_http,
                        open_channels=lambda url: Deferred.fromCoroutine(open_channels(url)),
                        front_door=front_door, timeout=step_timeout)
    times = arrivals(day, rng, max_readers)
    outcomes: list[Outcome] = []
    started = time.monotonic()

    def one(at: float) -> Deferred:
        outcome = Outcome(arrived=at)
        outcomes.append(outcome)
        plan = ReaderPlan.draw(rng, think_mean=think_mean, linger_mean=linger_mean)
        return Deferred.fromCoroutine(read_article(world, plan, outcome))

    async def day_run() -> None:
        readers = [deferLater(reactor, at, one, at).addCallback(lambda d: d) for at in times]
        everyone = gatherResults(readers, consumeErrors=True)
        everyone.addTimeout(day.seconds + grace, reactor)
        try:
            await everyone
        except Exception as e:
            print(f"!! readers still reading after the grace: {e!r}", file=sys.stderr)

    done: list[float] = []

    def stop(_: Any) -> None:
        done.append(time.monotonic() - started)
        reactor.stop()

    reactor.callWhenRunning(lambda: Deferred.fromCoroutine(day_run()).addBoth(stop))
    reactor.run()
    return outcomes, done[0] if done else time.monotonic() - started


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def one_host(options: argparse.Namespace, day: ArticleDay) -> dict[str, Any]:
    """A day against one `twistd tmpnb`, leaks and memory checked before and after."""
    import docker
    from soak import finish, new_server, settled

    client = docker.from_env()
    args = [f"--pool-size={options.pool_size}", f"--capacity={options.capacity}",
            f"--cull-timeout={options.cull_timeout}", f"--cull-period={options.cull_period}",
            f"--max-waiting={options.capacity}", *options.tmpnb_arg]
    server = new_server(args, "nature")
    try:
        server.wait_available(options.pool_size, timeout=600)
        before = settled(client, server, options.pool_size, timeout=300)
        memory_before = rss_mib(server.pid)
        print(f"resting before: {before} rss {memory_before} MiB; readers → {server.base}/", flush=True)
        outcomes, seconds = run_readers(f"{server.base}/", day, options.seed, options.max_readers,
                                        options.think, options.linger, options.grace, options.step_timeout)
        after = settled(client, server, options.pool_size, timeout=options.cull_timeout * 3 + 300)
        memory_after = rss_mib(server.pid)
        result = summary(outcomes, seconds)
        result["leaked"] = {"containers": after.containers - before.containers, "routes": after.routes - before.routes,
                            "socket_dirs": after.socket_dirs - before.socket_dirs, "fds": after.fds - before.fds}
        result["memory_mib"] = {"before": memory_before, "after": memory_after,
                                "growth": round((memory_after - memory_before) / memory_before, 3)}
        result["lifecycle_log"] = server.lifecycle_log
        return result
    finally:
        finish(client, server, options.logs)


# -- three hosts: network namespaces with a dockerd each, Swarm, the redirector in front ---------

STACK = "tnbsw"
NODE_PORT = 8000
NODE_ADMIN_PORT = 8002
REDIRECTOR_PORT = 8080
NODE_IMAGE = "tmpnb/node:nature"


def metric_values(text: str) -> dict[str, float]:
    """Prometheus text exposition → {"name{labels}": value} (comments skipped)."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, number = line.rpartition(" ")
            values[name] = float(number)
    return values


def host_state(swarm_hosts: Any, client: Any, host: Any) -> dict[str, float]:
    """What one host holds: its node's containers (Docker's own count), routes, socket
    directories, the node process's fds and memory."""
    metrics = metric_values(swarm_hosts.on(host.netns, "get-text", f"http://127.0.0.1:{NODE_ADMIN_PORT}/metrics"))
    containers = client.containers.list(all=True, filters={"label": f"org.tmpnb.instance={host.name}"})
    socket_dirs = swarm_hosts.SOCKET_ROOT / host.name
    return {
        "containers": len(containers),
        "routes": metrics.get("tmpnb_proxy_routes", -1),
        "socket_dirs": len(list(socket_dirs.iterdir())) if socket_dirs.exists() else 0,
        "fds": metrics.get("process_open_fds", -1),
        "memory_mib": round(metrics.get("process_resident_memory_bytes", 0) / 2**20, 1),
    }


def settled_hosts(swarm_hosts: Any, clients: dict, pool_size: int, timeout: float) -> dict[str, dict[str, float]]:
    """Every node back at rest (its pool full, nothing handed out, the same figures twice in a
    row two seconds apart); each host's state then."""
    def at_rest() -> dict | None:
        for host in swarm_hosts.HOSTS:
            stats = swarm_hosts.client("get-json", f"http://{host.address}:{NODE_PORT}/api/stats")
            if stats["available"] != pool_size or stats["total"] != pool_size:
                return None
        first = {h.name: host_state(swarm_hosts, clients[h.name], h) for h in swarm_hosts.HOSTS}
        time.sleep(2)
        second = {h.name: host_state(swarm_hosts, clients[h.name], h) for h in swarm_hosts.HOSTS}
        same = all({k: v for k, v in first[n].items() if k != "memory_mib"}
                   == {k: v for k, v in second[n].items() if k != "memory_mib"} for n in first)
        return second if same else None

    return swarm_hosts.wait_for(at_rest, timeout, "every node at rest", interval=2)


def three_hosts(options: argparse.Namespace) -> dict[str, Any]:
    """A day against three simulated hosts deployed by Swarm, readers in a namespace of their
    own reaching them through the redirector; leaks and memory checked on every host."""
    import docker
    import swarm_hosts
    from tmpnb.image.node import ensure_node_image

    notebook_image = os.environ.get("TMPNB_TEST_IMAGE", "tmpnb/notebook:latest")
    ensure_node_image(docker.from_env(timeout=600), NODE_IMAGE)
    redirector = f"http://{swarm_hosts.HOSTS[0].address}:{REDIRECTOR_PORT}"
    try:
        swarm_hosts.setup()
        swarm_hosts.load_images(notebook_image, NODE_IMAGE)
        (swarm_hosts.ETC / "nodes").write_text(
            "".join(f"http://{h.address}:{NODE_PORT}\n" for h in swarm_hosts.HOSTS))
        node_args = [f"--cull-period={options.cull_period}", f"--max-waiting={options.capacity}",
                     *options.tmpnb_arg]
        swarm_hosts.deploy(REPO / "deploy" / "stack.yml", STACK, {
            "TMPNB_NODE_IMAGE": NODE_IMAGE,
            "TMPNB_IMAGE": notebook_image,
            "TMPNB_DOCKER_SOCKET": str(swarm_hosts.RUN / "{{.Node.Hostname}}.sock"),
            "TMPNB_SOCKET_ROOT": str(swarm_hosts.SOCKET_ROOT),
            "TMPNB_NODES_DIR": str(swarm_hosts.ETC),
            "TMPNB_NODE_PORT": str(NODE_PORT),
            "TMPNB_NODE_ADMIN_PORT": str(NODE_ADMIN_PORT),
            "TMPNB_REDIRECTOR_PORT": str(REDIRECTOR_PORT),
            "TMPNB_HEALTH_PERIOD": "1",
            "TMPNB_POOL_SIZE": str(options.pool_size),
            "TMPNB_CAPACITY": str(options.capacity),
            "TMPNB_CULL_TIMEOUT": str(options.cull_timeout),
            "TMPNB_NODE_ARGS": " ".join(node_args),
        })
        clients = {h.name: docker.DockerClient(base_url=h.docker_url, timeout=120) for h in swarm_hosts.HOSTS}
        before = settled_hosts(swarm_hosts, clients, options.pool_size, timeout=600)
        print(f"resting before: {before}; readers → {redirector}/", flush=True)
        readers = swarm_hosts.sh(
            "nsenter", f"--net=/var/run/netns/{swarm_hosts.CLIENT_NS}", sys.executable, str(Path(__file__)),
            "--front-door", f"{redirector}/", "--minutes", str(options.minutes), "--peak-rate", str(options.peak_rate),
            "--max-readers", str(options.max_readers), "--think", str(options.think), "--linger", str(options.linger),
            "--grace", str(options.grace), "--step-timeout", str(options.step_timeout), "--seed", str(options.seed),
            timeout=options.minutes * 60 + options.grace + 600, check=False)
        sys.stderr.write(readers.stderr[-4000:])
        result = json.loads(readers.stdout.strip().splitlines()[-1])
        after = settled_hosts(swarm_hosts, clients, options.pool_size, timeout=options.cull_timeout * 3 + 600)
        result["leaked"] = {key: sum(after[h][key] - before[h][key] for h in before)
                            for key in ("containers", "routes", "socket_dirs", "fds")}
        result["memory_mib"] = {h: {"before": before[h]["memory_mib"], "after": after[h]["memory_mib"],
                                    "growth": round((after[h]["memory_mib"] - before[h]["memory_mib"])
                                                    / before[h]["memory_mib"], 3)} for h in before}
        result["hosts"] = {"before": before, "after": after}
        return result
    finally:
        swarm_hosts.teardown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=1, help="1: one twistd tmpnb started here")
    parser.add_argument("--front-door", help="send readers here instead (nothing started, no leak check)")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--peak-rate", type=float, default=0.5, help="readers a second at the peak")
    parser.add_argument("--max-readers", type=int, default=20_000)
    parser.add_argument("--think", type=float, default=20.0, help="mean seconds a reader thinks")
    parser.add_argument("--linger", type=float, default=30.0, help="mean seconds before the tab closes")
    parser.add_argument("--grace", type=float, default=300.0)
    parser.add_argument("--step-timeout", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pool-size", type=int, default=10)
    parser.add_argument("--capacity", type=int, default=60)
    parser.add_argument("--cull-timeout", type=float, default=30.0)
    parser.add_argument("--cull-period", type=float, default=5.0)
    parser.add_argument("--tmpnb-arg", action="append", default=[], help="one more option for twistd tmpnb")
    parser.add_argument("--logs", help="copy the node's log and lifecycle log here")
    options = parser.parse_args(argv)
    day = ArticleDay(options.minutes, options.peak_rate)
    print(f"a day of {options.minutes:g} min, peak {options.peak_rate:g} readers/s, "
          f"about {day.expected():.0f} readers expected; load {os.getloadavg()}", flush=True)
    if options.front_door:
        outcomes, seconds = run_readers(options.front_door, day, options.seed, options.max_readers, options.think,
                                        options.linger, options.grace, options.step_timeout)
        result = summary(outcomes, seconds)
    elif options.hosts == 1:
        result = one_host(options, day)
    elif options.hosts == 3:
        result = three_hosts(options)
    else:
        parser.error("--hosts is 1 (one twistd tmpnb) or 3 (three simulated hosts under Swarm)")
    result["load"] = os.getloadavg()
    print(json.dumps(result))
    return 0 if result["lost"] == 0 and not any(result.get("leaked", {}).values()) else 1


if __name__ == "__main__":
    sys.exit(main())
