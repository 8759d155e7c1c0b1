"""Visitors arriving at once: time to a notebook, and a spike beyond the pool.

    python benchmarks/visitors.py                     # every scenario
    python benchmarks/visitors.py pooled-no-refill    # or some of: pooled, pooled-no-refill,
                                                      # pooled-refill-at-once, pooled-warmed,
                                                      # pooled-one-by-one, spike, spike-40

pooled: pool of 25, 20 visitors at once; each visitor's time from `GET /` to the
        notebook page's 200 (following the 302). Capacity 45, so the visitors' replacements
        boot too: after the burst (--refill-delay, default); pooled-refill-at-once boots
        them during it (--refill-delay=0); pooled-no-refill has capacity 25, where no boot
        competes for the CPU; each run then requests the same 20 pages again at once (the CPU
        floor). Targets: p99 <= 1.5x that floor, p50 no slower than with refill off.
        pooled-warmed also renders every landing page once more before the visitors come
        (readiness does it once already); pooled-one-by-one sends the 20 visitors one after
        another (target p50 <= 15 ms).
spike:  pool 20, capacity 60, 60 visitors at once, each following the waiting line's
        page (<meta refresh> to /wait/<ticket>) as a browser does: all 60 must get a
        notebook. Time to notebook of the first 20 served and of the other 40; the k-th of
        those 40 should wait at most k / (boots per second) + 1 s, the boot rate measured
        when the pool first filled in the same run. spike-40 is the old scenario (capacity
        40: 20 visitors get No vacancy, none a 5xx).

Each scenario runs `twistd -n tmpnb` as a subprocess on free loopback ports with its own
--instance and --socket-root, stops it with SIGTERM by its PID, and checks that no
container of that instance is left. The visitors are treq clients on this process's
reactor, so they run concurrently without threads.
"""

from __future__ import annotations

import os
import re
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
from treq.client import HTTPClient
from twisted.internet import task
from twisted.internet.defer import Deferred, gatherResults
from twisted.web.client import Agent, HTTPConnectionPool

REPO = Path(__file__).resolve().parents[1]
IMAGE = os.environ.get("TMPNB_TEST_IMAGE", "tmpnb/notebook:latest")
# Every visitor here comes from 127.0.0.1: one client address may hold the whole capacity and
# spawn without a limit to speak of (tmpnb/clients/; docs/operations.md).
ONE_ADDRESS = ("--client-share=1", "--client-spawn-burst=1000000", "--client-spawn-rate=1000000")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`twistd -n tmpnb` in a subprocess, on loopback, with its own instance."""

    def __init__(self, *args: str, port: int | None = None) -> None:
        self.instance = "bench-visitors-" + secrets.token_hex(3)
        self.socket_root = tempfile.mkdtemp(prefix="tnbB", dir="/tmp")
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        argv = [
            sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
            "-n", "--pidfile=", f"--logfile={self.socket_root}/twistd.log", "tmpnb",
            f"--instance={self.instance}", f"--socket-root={self.socket_root}", f"--image={IMAGE}",
            f"--listen=tcp:{self.port}:interface=127.0.0.1",
            f"--proxy-api-listen=tcp:{free_port()}:interface=127.0.0.1", "--cleanup-on-stop", *ONE_ADDRESS, *args,
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
    waited: int = 0  # waiting pages seen (202, <meta refresh> to /wait/<ticket>)


BROWSER = {"Accept": ["text/html,application/xhtml+xml,*/*;q=0.8"]}
REFRESH = re.compile(rb'http-equiv="refresh" content="0; url=([^"]+)"')


async def visitor(http: HTTPClient, server: Server) -> Visit:
    """One visitor, as a browser without JavaScript: GET /, the waiting line's pages if any
    (following their <meta refresh>), then the notebook page it is sent to."""
    start = time.perf_counter()
    path, waited = "/", 0
    while True:
        first = await http.get(server.base + path, allow_redirects=False, headers=BROWSER)
        body = await first.content()
        if first.code != 202:
            break
        waited += 1
        path = REFRESH.search(body).group(1).decode()
    redirected = time.perf_counter() - start
    if first.code != 302:
        return Visit("no-vacancy" if first.code == 503 else "error", redirected, first.code, redirected, waited=waited)
    location = first.headers.getRawHeaders("location")[0]
    page = await http.get(server.base + location, allow_redirects=False, headers=BROWSER)
    await page.content()
    outcome = "notebook" if page.code == 200 else "error"
    return Visit(outcome, time.perf_counter() - start, page.code, redirected, location, waited)


def load() -> str:
    return "load average " + " / ".join(f"{x:.1f}" for x in os.getloadavg())


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
        directory = os.path.join(server.socket_root, server.instance, labels["org.tmpnb.id"])
        with open(os.path.join(directory, "token")) as f:  # no token label: the server's own file
            token = f.read()
        with socket.socket(socket.AF_UNIX) as conn:
            conn.connect(os.path.join(directory, "jupyter.sock"))
            conn.sendall(f"GET /user/{labels['org.tmpnb.id']}/{redirect_uri}?token={token} "
                         f"HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
            while conn.recv(65536):
                pass
        warmed += 1
    return warmed


RESULTS: dict[str, dict] = {}


async def pooled(reactor, visitors: int = 20, pool_size: int = 25, capacity: int = 45, warm: bool = False,
                 at_once: bool = True, name: str = "pooled", *args: str) -> bool:
    """With capacity > pool size every visitor also has a replacement boot, which competes
    for the CPU with the servers rendering the visitors' first pages unless it waits."""
    server = Server(f"--pool-size={pool_size}", f"--capacity={capacity}", *args)
    print(f"{name}: {load()} at the start")
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
        floor50, floor99 = statistics.median(again_ms), percentile(again_ms, 99)
        print(f"pooled: the same {len(again_ms)} notebook pages again at once (refill done): "
              f"p50 {floor50:.1f} ms, p99 {floor99:.1f} ms; {load()}")
        RESULTS[name] = {"p50": p50, "p99": p99, "floor_p50": floor50, "floor_p99": floor99}
        if failures:
            print(f"pooled: failures {failures}")
        if not at_once:
            return not failures and p50 <= 15
        if capacity == pool_size:
            return not failures
        met = p99 <= 1.5 * floor99
        if "pooled-no-refill" in RESULTS:
            met = met and p50 <= RESULTS["pooled-no-refill"]["p50"]
        print(f"{name}: p99 {p99:.1f} ms vs 1.5x floor {1.5 * floor99:.1f} ms; p50 {p50:.1f} ms vs no refill "
              f"{RESULTS.get('pooled-no-refill', {}).get('p50', float('nan')):.1f} ms")
        return not failures and met
    finally:
        server.stop()


async def spike(reactor, visitors: int = 60, pool_size: int = 20, capacity: int = 60, *args: str) -> bool:
    server = Server(f"--pool-size={pool_size}", f"--capacity={capacity}", *args)
    print(f"spike: {load()} at the start")
    try:
        http = client(reactor)
        await wait_available(reactor, http, server, 0)  # listening: the pool starts filling
        boot = await wait_available(reactor, http, server, pool_size)
        rate = pool_size / boot
        print(f"spike: {pool_size} containers ready after {boot:.1f}s: the floor, {rate:.2f} boots/s")
        await task.deferLater(reactor, 3, lambda: None)
        start = time.monotonic()
        results = await gatherResults([Deferred.fromCoroutine(visitor(http, server)) for _ in range(visitors)])
        outcomes = {name: sum(1 for v in results if v.outcome == name) for name in ("notebook", "no-vacancy", "error")}
        statuses = sorted({v.status for v in results})
        print(f"spike: {visitors} visitors at once -> {outcomes}; statuses {statuses}; "
              f"{sum(1 for v in results if v.waited)} saw the waiting page; {load()}")
        served = sorted(v.seconds for v in results if v.outcome == "notebook")
        first, rest = served[:pool_size], served[pool_size:]
        if first:
            print(f"spike: first {len(first)} served: p50 {statistics.median(first) * 1000:.0f} ms, "
                  f"p99 {percentile(first, 99) * 1000:.0f} ms")
        if rest:
            bounds = [k / rate + 1 for k in range(1, len(rest) + 1)]
            within = sum(1 for t, b in zip(rest, bounds) if t <= b)
            worst = max(t - b for t, b in zip(rest, bounds))
            print(f"spike: the other {len(rest)}: p50 {statistics.median(rest):.2f} s, p99 {percentile(rest, 99):.2f} s, "
                  f"last {rest[-1]:.2f} s; {within}/{len(rest)} within position / {rate:.2f} boots/s + 1 s "
                  f"(worst {worst:+.2f} s against its bound)")
        print(f"spike: stats afterwards {await stats(http, server)}")
        if capacity >= visitors:  # everybody fits: everybody is served, in time
            return outcomes["notebook"] == visitors and bool(rest) and within == len(rest)
        refill = await wait_available(reactor, http, server, pool_size)
        print(f"spike: refilled to {pool_size} available {time.monotonic() - start:.1f}s after the spike "
              f"({refill:.1f}s after the last visitor was answered); stats {await stats(http, server)}")
        return outcomes["error"] == 0 and all(code < 500 or code == 503 for code in statuses)
    finally:
        server.stop()


async def pooled_no_refill(reactor) -> bool:
    """The same visitors with capacity = pool size: no replacement boots compete."""
    return await pooled(reactor, capacity=25, name="pooled-no-refill")


async def pooled_refill_at_once(reactor) -> bool:
    """Replacements boot during the hand-outs, as before --refill-delay."""
    return await pooled(reactor, 20, 25, 45, False, True, "pooled-refill-at-once", "--refill-delay=0")


async def pooled_warmed(reactor) -> bool:
    """No refill, and every server has rendered its landing page once more before the visitors."""
    return await pooled(reactor, capacity=25, warm=True, name="pooled-warmed")


async def pooled_one_by_one(reactor) -> bool:
    """The same 20 visitors one after another, no refill."""
    return await pooled(reactor, capacity=25, at_once=False, name="pooled-one-by-one")


async def spike_40(reactor) -> bool:
    return await spike(reactor, capacity=40)


async def spike_booting_3(reactor) -> bool:
    """The spike with at most 3 boots at once: the first in line wait less for theirs."""
    return await spike(reactor, 60, 20, 60, "--max-booting=3")


SCENARIOS = {"pooled": pooled, "pooled-no-refill": pooled_no_refill, "pooled-refill-at-once": pooled_refill_at_once,
             "pooled-warmed": pooled_warmed, "pooled-one-by-one": pooled_one_by_one, "spike": spike,
             "spike-40": spike_40, "spike-booting-3": spike_booting_3}


async def main(reactor, *which: str) -> None:
    chosen = which or ("pooled-no-refill", "pooled", "pooled-refill-at-once", "pooled-one-by-one", "spike")
    verdicts = {}
    for name in chosen:
        verdicts[name] = await SCENARIOS[name](reactor)
    print("verdict:", ", ".join(f"{name} {'met' if ok else 'MISSED'}" for name, ok in verdicts.items()))


if __name__ == "__main__":
    task.react(lambda reactor: Deferred.fromCoroutine(main(reactor, *sys.argv[1:])))
