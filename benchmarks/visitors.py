"""Visitors arriving at once: time to a notebook, and a spike beyond the pool.

    python benchmarks/visitors.py                     # every scenario
    python benchmarks/visitors.py pooled-no-refill    # or some of: pooled, pooled-no-refill,
                                                      # pooled-warmed, pooled-one-by-one, spike

pooled: pool of 25, 20 visitors at once; each visitor's time from `GET /` to the
        notebook page's 200 (following the 302). Target p50 <= 40 ms, p99 <= 100 ms.
        Capacity 45, so each visitor also starts a replacement at once; pooled-no-refill
        is the same with capacity 25, where no boot competes for the CPU; pooled-warmed
        also has every server render its landing page once before the visitors come;
        pooled-one-by-one sends the 20 visitors one after another (the floor).
spike:  pool 20, capacity 40, 60 visitors at once; every visitor must get a notebook or
        the No-vacancy page, none a 5xx; then how long refilling to the pool size takes.

Each scenario runs `twistd -n tmpnb` as a subprocess on free loopback ports with its own
--instance and --socket-root, stops it with SIGTERM by its PID, and checks that no
container of that instance is left. The visitors are treq clients on this process's
reactor, so they run concurrently without threads.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import treq
from treq.client import HTTPClient
from twisted.internet import task
from twisted.internet.defer import Deferred, gatherResults
from twisted.web.client import Agent, HTTPConnectionPool

REPO = Path(__file__).resolve().parents[1]
IMAGE = os.environ.get("TMPNB_TEST_IMAGE", "tmpnb/notebook:latest")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`twistd -n tmpnb` in a subprocess, on loopback, with its own instance."""

    def __init__(self, *args: str) -> None:
        self.instance = "bench-visitors-" + secrets.token_hex(3)
        self.socket_root = tempfile.mkdtemp(prefix="tnbB", dir="/tmp")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        argv = [
            sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
            "-n", "--pidfile=", f"--logfile={self.socket_root}/twistd.log", "tmpnb",
            f"--instance={self.instance}", f"--socket-root={self.socket_root}", f"--image={IMAGE}",
            f"--listen=tcp:{self.port}:interface=127.0.0.1",
            f"--proxy-api-listen=tcp:{free_port()}:interface=127.0.0.1", "--cleanup-on-stop", *args,
        ]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=120)
        client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=60)
        left = client.containers.list(all=True, filters={"label": f"org.tmpnb.instance={self.instance}"})
        shutil.rmtree(self.socket_root, ignore_errors=True)
        if left:
            for container in left:
                container.remove(force=True)
            raise SystemExit(f"{self.instance} left {len(left)} containers behind")


async def stats(http: HTTPClient, server: Server) -> dict:
    response = await http.get(server.base + "/api/stats")
    return await response.json()


async def wait_available(reactor, http: HTTPClient, server: Server, count: int, timeout: float = 300) -> float:
    """Seconds until /api/stats shows `count` available."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if server.process.poll() is not None:
            raise SystemExit(f"tmpnb exited: {Path(server.socket_root, 'twistd.log').read_text()[-3000:]}")
        try:
            if (await stats(http, server))["available"] >= count:
                return time.monotonic() - start
        except Exception:
            pass  # not listening yet
        await task.deferLater(reactor, 0.1, lambda: None)
    raise SystemExit(f"pool never reached {count} available")


@dataclass
class Visit:
    outcome: str  # "notebook", "no-vacancy" or "error"
    seconds: float  # from GET / to the last answer
    status: int  # of the last answer
    redirect_seconds: float  # from GET / to the 302
    location: str = ""


async def visitor(http: HTTPClient, server: Server) -> Visit:
    """One visitor: GET /, then the notebook page it is sent to."""
    start = time.perf_counter()
    first = await http.get(server.base + "/", allow_redirects=False)
    await first.content()
    redirected = time.perf_counter() - start
    if first.code != 302:
        return Visit("no-vacancy" if first.code == 503 else "error", redirected, first.code, redirected)
    location = first.headers.getRawHeaders("location")[0]
    page = await http.get(server.base + location, allow_redirects=False)
    await page.content()
    outcome = "notebook" if page.code == 200 else "error"
    return Visit(outcome, time.perf_counter() - start, page.code, redirected, location)


async def page_again(http: HTTPClient, server: Server, location: str) -> float:
    start = time.perf_counter()
    page = await http.get(server.base + location, allow_redirects=False)
    await page.content()
    return time.perf_counter() - start


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def client(reactor) -> HTTPClient:
    pool = HTTPConnectionPool(reactor, persistent=False)
    return HTTPClient(Agent(reactor, pool=pool))


def warm_pooled_servers(server: Server, redirect_uri: str = "tree") -> int:
    """Render the landing page once in every container, straight over its unix socket.

    An experiment, not what tmpnb does: it shows what visitors would see if the servers
    had rendered their first page during boot. Blocking, and only before measuring.
    """
    client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=60)
    warmed = 0
    for container in client.containers.list(filters={"label": f"org.tmpnb.instance={server.instance}"}):
        labels = container.labels
        sock = os.path.join(server.socket_root, server.instance, labels["org.tmpnb.id"], "jupyter.sock")
        with socket.socket(socket.AF_UNIX) as conn:
            conn.connect(sock)
            conn.sendall(f"GET /user/{labels['org.tmpnb.id']}/{redirect_uri}?token={labels['org.tmpnb.token']} "
                         f"HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
            while conn.recv(65536):
                pass
        warmed += 1
    return warmed


async def pooled(reactor, visitors: int = 20, pool_size: int = 25, capacity: int = 45, warm: bool = False,
                 at_once: bool = True) -> bool:
    """With capacity > pool size every visitor also starts a replacement boot at once,
    which competes for the CPU with the servers rendering the visitors' first pages."""
    server = Server(f"--pool-size={pool_size}", f"--capacity={capacity}")
    try:
        http = client(reactor)
        boot = await wait_available(reactor, http, server, pool_size)
        print(f"pooled: {pool_size} containers ready after {boot:.1f}s; settling 5s")
        if warm:
            print(f"pooled: rendered the landing page once in {warm_pooled_servers(server)} servers beforehand")
        await task.deferLater(reactor, 5, lambda: None)  # let the refill-free pool go quiet
        if at_once:
            results = await gatherResults([Deferred.fromCoroutine(visitor(http, server)) for _ in range(visitors)])
        else:
            results = [await visitor(http, server) for _ in range(visitors)]
        times = [v.seconds * 1000 for v in results if v.outcome == "notebook"]
        redirects = [v.redirect_seconds * 1000 for v in results]
        failures = [(v.outcome, v.status) for v in results if v.outcome != "notebook"]
        p50, p99 = statistics.median(times), percentile(times, 99)
        arrival = "at once" if at_once else "one after another"
        print(f"pooled (pool {pool_size}, capacity {capacity}, {arrival}): {len(times)}/{visitors} visitors got their "
              f"notebook page; p50 {p50:.1f} ms, p90 {percentile(times, 90):.1f} ms, p99 {p99:.1f} ms, "
              f"max {max(times):.1f} ms (target p50 <= 40, p99 <= 100)")
        print(f"pooled: of which GET / -> 302: p50 {statistics.median(redirects):.1f} ms, "
              f"p99 {percentile(redirects, 99):.1f} ms")
        # The same pages again, all at once: what a server costs once it has rendered the page before.
        await wait_available(reactor, http, server, min(pool_size, capacity - visitors))
        again = await gatherResults([Deferred.fromCoroutine(page_again(http, server, v.location))
                                     for v in results if v.location])
        again_ms = [seconds * 1000 for seconds in again]
        print(f"pooled: the same {len(again_ms)} notebook pages again at once (refill done): "
              f"p50 {statistics.median(again_ms):.1f} ms, p99 {percentile(again_ms, 99):.1f} ms")
        if failures:
            print(f"pooled: failures {failures}")
        return not failures and p50 <= 40 and p99 <= 100
    finally:
        server.stop()


async def spike(reactor, visitors: int = 60, pool_size: int = 20, capacity: int = 40) -> bool:
    server = Server(f"--pool-size={pool_size}", f"--capacity={capacity}")
    try:
        http = client(reactor)
        boot = await wait_available(reactor, http, server, pool_size)
        print(f"spike: {pool_size} containers ready after {boot:.1f}s")
        start = time.monotonic()
        results = await gatherResults([Deferred.fromCoroutine(visitor(http, server)) for _ in range(visitors)])
        outcomes = {name: sum(1 for v in results if v.outcome == name) for name in ("notebook", "no-vacancy", "error")}
        statuses = sorted({v.status for v in results})
        print(f"spike: {visitors} visitors at once -> {outcomes}; statuses {statuses}")
        refill = await wait_available(reactor, http, server, pool_size)
        print(f"spike: refilled to {pool_size} available {time.monotonic() - start:.1f}s after the spike "
              f"({refill:.1f}s after the last visitor was answered); stats {await stats(http, server)}")
        return outcomes["error"] == 0 and all(code < 500 or code == 503 for code in statuses)
    finally:
        server.stop()


async def pooled_no_refill(reactor) -> bool:
    """The same visitors with capacity = pool size: no replacement boots compete."""
    return await pooled(reactor, capacity=25)


async def pooled_warmed(reactor) -> bool:
    """No refill, and every server has rendered its landing page once before the visitors."""
    return await pooled(reactor, capacity=25, warm=True)


async def pooled_one_by_one(reactor) -> bool:
    """The floor: the same 20 visitors one after another, no refill."""
    return await pooled(reactor, capacity=25, at_once=False)


SCENARIOS = {"pooled": pooled, "pooled-no-refill": pooled_no_refill, "pooled-warmed": pooled_warmed,
             "pooled-one-by-one": pooled_one_by_one, "spike": spike}


async def main(reactor, *which: str) -> None:
    chosen = which or ("pooled", "pooled-no-refill", "pooled-warmed", "spike")
    verdicts = {}
    for name in chosen:
        verdicts[name] = await SCENARIOS[name](reactor)
    print("verdict:", ", ".join(f"{name} {'met' if ok else 'MISSED'}" for name, ok in verdicts.items()))


if __name__ == "__main__":
    task.react(lambda reactor: Deferred.fromCoroutine(main(reactor, *sys.argv[1:])))
