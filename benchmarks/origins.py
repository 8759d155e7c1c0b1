"""Time to notebook with each visitor on its own origin (--subdomain-host) next to path mode.

    python benchmarks/origins.py [rounds]      # default 2 rounds of each mode, alternating

Side by side (the verdict): a path-mode and a subdomain-mode tmpnb run at once, pool 6 each;
6 first visits alternate between them, then 100 warm page loads each, alternating. Then the
rounds: each round starts `twistd -n tmpnb` (benchmarks/visitors.py's Server) with a pool of 10 and
capacity 10 (no refill competes), waits for the pool, settles 5 s, then 10 visitors arrive at
once; afterwards each visitor's notebook page is asked for again, one by one (a warm page: what
the proxy and its routing cost beside the server). A visitor is `GET /` on the bare host, then the page its 302 names: on
tmpnb's origin in path mode, on `<id>.nb.localhost:PORT` in subdomain mode (connected to
127.0.0.1 with that Host: this machine's resolver does not know *.localhost). Target: subdomain
mode no slower than path mode.
"""

from __future__ import annotations

import statistics
import sys
import time
from urllib.parse import urlsplit

from twisted.internet import task
from twisted.internet.defer import Deferred, gatherResults
from visitors import Server, client, free_port, load, percentile, wait_available

POOL = 10


async def get(http, port: int, host: str, target: str):
    response = await http.get(f"http://127.0.0.1:{port}{target}", headers={"Host": [host]}, allow_redirects=False)
    await response.content()
    return response


async def visitor(http, port: int, bare: str) -> tuple[float, str, str]:
    """(seconds from GET / to the notebook page's 200, host, target of that page)."""
    start = time.perf_counter()
    first = await get(http, port, bare, "/")
    assert first.code == 302, first.code
    location = urlsplit(first.headers.getRawHeaders("location")[0])
    host = location.netloc or bare
    target = f"{location.path}?{location.query}"
    page = await get(http, port, host, target)
    assert page.code == 200, page.code
    return time.perf_counter() - start, host, target


async def one_round(reactor, mode: str) -> dict:
    port = free_port()
    bare = f"nb.localhost:{port}" if mode == "subdomain" else f"127.0.0.1:{port}"
    extra = [f"--subdomain-host=http://{bare}"] if mode == "subdomain" else []
    server = Server(f"--pool-size={POOL}", f"--capacity={POOL}", *extra, port=port)
    try:
        http = client(reactor)
        await wait_available(reactor, http, server, POOL, timeout=900)
        await task.deferLater(reactor, 5, lambda: None)
        started = load()
        burst = await gatherResults([Deferred.fromCoroutine(visitor(http, port, bare)) for _ in range(POOL)])
        if mode == "subdomain":
            assert all(host.endswith(".nb.localhost:" + str(port)) for _, host, _ in burst)
        again = []
        for _, host, target in burst:
            start = time.perf_counter()
            await get(http, port, host, target)
            again.append(time.perf_counter() - start)
        ms = [seconds * 1000 for seconds, _, _ in burst]
        again_ms = [seconds * 1000 for seconds in again]
        result = {"p50": statistics.median(ms), "p99": percentile(ms, 99),
                  "again_p50": statistics.median(again_ms), "again_p99": percentile(again_ms, 99)}
        print(f"{mode}: {POOL} at once p50 {result['p50']:.1f} ms p99 {result['p99']:.1f} ms; the pages again "
              f"one by one p50 {result['again_p50']:.1f} ms p99 {result['again_p99']:.1f} ms ({started})")
        return result
    finally:
        server.stop()


async def side_by_side(reactor, visits: int = 6, warm: int = 100) -> dict:
    """Both modes running at once, so both share the machine's load as it drifts (this machine is
    shared): `visits` first visits one after another, alternating between the modes (which goes
    first alternates too), then the last visitor's notebook page `warm` times each, alternating."""
    servers = {}
    try:
        for mode in ("path", "subdomain"):
            port = free_port()
            bare = f"nb.localhost:{port}" if mode == "subdomain" else f"127.0.0.1:{port}"
            extra = [f"--subdomain-host=http://{bare}"] if mode == "subdomain" else []
            servers[mode] = (Server(f"--pool-size={visits}", f"--capacity={visits}", *extra, port=port), port, bare)
        http = client(reactor)
        for server, _, _ in servers.values():
            await wait_available(reactor, http, server, visits, timeout=900)  # a loaded, shared machine
        await task.deferLater(reactor, 5, lambda: None)
        first: dict[str, list[float]] = {"path": [], "subdomain": []}
        pages: dict[str, tuple[int, str, str]] = {}
        for i in range(visits):
            order = list(servers.items())
            for mode, (_, port, bare) in (order if i % 2 else order[::-1]):
                seconds, host, target = await visitor(http, port, bare)
                first[mode].append(seconds * 1000)
                pages[mode] = (port, host, target)
        again: dict[str, list[float]] = {"path": [], "subdomain": []}
        for i in range(warm):
            order = list(pages.items())
            for mode, (port, host, target) in (order if i % 2 else order[::-1]):
                start = time.perf_counter()
                await get(http, port, host, target)
                again[mode].append((time.perf_counter() - start) * 1000)
        result = {mode: {"first_p50": statistics.median(first[mode]), "first_max": max(first[mode]),
                         "warm_p50": statistics.median(again[mode]), "warm_p99": percentile(again[mode], 99)}
                  for mode in first}
        for mode, figures in result.items():
            print(f"side by side, {mode}: first visit (GET / -> notebook page) p50 {figures['first_p50']:.1f} ms, "
                  f"max {figures['first_max']:.1f} ms; warm page p50 {figures['warm_p50']:.1f} ms, "
                  f"p99 {figures['warm_p99']:.1f} ms")
        print(f"side by side: {load()}")
        return result
    finally:
        for server, _, _ in servers.values():
            server.stop()


async def main(reactor, rounds: str = "2") -> None:
    side = await side_by_side(reactor)
    results: dict[str, list[dict]] = {"path": [], "subdomain": []}
    for _ in range(int(rounds)):
        for mode in ("path", "subdomain"):
            results[mode].append(await one_round(reactor, mode))
    summary = {mode: {key: statistics.median(r[key] for r in runs) for key in runs[0]} for mode, runs in results.items()}
    for mode, figures in summary.items():
        print(f"median of rounds, {mode}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in figures.items()))
    # The verdict is the side-by-side one: the rounds run one after another, under whatever load.
    slower = side["subdomain"]["first_p50"] > side["path"]["first_p50"] * 1.1 \
        or side["subdomain"]["warm_p50"] > side["path"]["warm_p50"] * 1.1
    print("verdict: subdomain mode", "SLOWER" if slower else "no slower (within 10%)", "than path mode, side by side")


if __name__ == "__main__":
    task.react(lambda reactor: Deferred.fromCoroutine(main(reactor, *sys.argv[1:])))
