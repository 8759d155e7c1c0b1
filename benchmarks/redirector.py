"""tmpnb-redirector: what the hop costs, how much it carries, how it spreads, how fast it reacts.

    python benchmarks/redirector.py                 # every scenario
    python benchmarks/redirector.py overhead spread # or some of: overhead, throughput, spread, failover

overhead:   three real nodes (pool 3) on 127.0.0.2-4 behind the redirector; 30 visitors through
            it and 30 straight to a node, alternating in the same run; each visitor's time from
            the first GET to the notebook page's 200 (redirects followed), p50/p99.
throughput: `wrk -t2 -c10 -d10s` on the redirector's / in front of three stats_node.py nodes
            with room for every request; requests/s, latency, the redirector's RSS before/after.
spread:     300 visitors (10 at a time) through the redirector to three stats_node.py nodes with
            room 60/120/180: each node's share of visitors vs its share of room.
failover:   a stats_node.py node killed (SIGKILL) and started again, --health-period 1 and 2,
            3 times each: seconds from the kill to the redirector excluding it, and from its
            first answer to its inclusion (--down-after 2, --up-after 2).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import docker

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from tmpnb_process import ONE_ADDRESS, Launcher, Redirector, call, free_port, wait_until  # noqa: E402


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def ms(values: list[float]) -> str:
    return f"p50 {percentile(values, 50) * 1000:.1f} ms, p99 {percentile(values, 99) * 1000:.1f} ms"


def follow(base: str, path: str = "/") -> tuple[float, str, str]:
    """GET and follow redirects to the end: (seconds, the final base, the final path)."""
    started = time.perf_counter()
    for _ in range(5):
        reply = call(base, "GET", path)
        if reply.status not in (301, 302):
            break
        location = urlsplit(reply.headers["location"])
        if location.netloc:
            base = f"{location.scheme}://{location.netloc}"
        path = location.path + (f"?{location.query}" if location.query else "")
    assert reply.status == 200, (reply.status, reply.body[:200])
    return time.perf_counter() - started, base, path


def stats_node(port: int, room: int) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, str(REPO / "benchmarks" / "stats_node.py"), str(port), str(room)])
    wait_until(lambda: call(f"http://127.0.0.1:{port}", "GET", "/api/stats").status == 200, 10, "stats node")
    return process


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def overhead() -> None:
    client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=60)
    launch = Launcher(client, "bench-redirector", ["--cleanup-on-stop"])
    try:
        nodes = [launch("--pool-size=3", "--capacity=20", "--cull-timeout=600", *ONE_ADDRESS, host=f"127.0.0.{i + 2}",
                        name=f"n{i + 1}") for i in range(3)]
        redirector = Redirector([n.base for n in nodes], ["--health-period=1"])
        redirector.start()
        by_base = {n.base: n for n in nodes}
        through, straight, hop = [], [], []
        for i in range(60):
            for node in nodes:
                node.wait_available(3)
            wait_until(lambda: all(n["room"] >= 3 for n in redirector.stats()["nodes"]), 30, "room")
            if i % 2 == 0:
                started = time.perf_counter()
                call(redirector.base, "GET", "/")  # the hop alone: a 302, not followed
                hop.append(time.perf_counter() - started)
                seconds, base, path = follow(redirector.base)
                through.append(seconds)
            else:
                seconds, base, path = follow(nodes[(i // 2) % 3].base)
                straight.append(seconds)
            node = by_base[base]
            node.admin("DELETE", f"/api/containers/{path.split('/')[2]}")  # capacity back
        print(f"overhead: through the redirector {ms(through)}; straight {ms(straight)}; "
              f"the redirector's 302 alone {ms(hop)} ({len(through)}+{len(straight)} visitors)")
        redirector.stop()
    finally:
        print("problems:", launch.close(leftovers_allowed=True))


def throughput() -> None:
    ports = [free_port() for _ in range(3)]
    nodes = [stats_node(port, 10**9) for port in ports]
    redirector = Redirector([f"http://127.0.0.1:{p}" for p in ports], ["--health-period=1"])
    try:
        redirector.start()
        wait_until(lambda: redirector.stats()["up"] == 3, 30, "nodes up")
        before = rss_mib(redirector.process.pid)
        out = subprocess.run(["wrk", "-t2", "-c10", "-d10s", "--latency", redirector.base + "/"],
                             capture_output=True, text=True, check=True).stdout
        after = rss_mib(redirector.process.pid)
        print(out)
        print(f"throughput: redirector RSS {before:.1f} MiB before, {after:.1f} MiB after wrk")
    finally:
        redirector.stop()
        for node in nodes:
            node.send_signal(signal.SIGTERM)
            node.wait()


def spread() -> None:
    rooms = [60, 120, 180]
    ports = [free_port() for _ in rooms]
    nodes = [stats_node(port, room) for port, room in zip(ports, rooms)]
    redirector = Redirector([f"http://127.0.0.1:{p}" for p in ports], ["--health-period=1"])
    try:
        redirector.start()
        wait_until(lambda: redirector.stats()["up"] == 3, 30, "nodes up")
        with ThreadPoolExecutor(10) as pool:
            landed = list(pool.map(lambda _: follow(redirector.base)[1], range(300)))
        counts = {f"http://127.0.0.1:{p}": landed.count(f"http://127.0.0.1:{p}") for p in ports}
        for (url, count), room in zip(counts.items(), rooms):
            print(f"spread: room {room} ({room / sum(rooms):.1%} of room): {count} visitors ({count / 300:.1%})")
    finally:
        redirector.stop()
        for node in nodes:
            node.send_signal(signal.SIGTERM)
            node.wait()


def failover() -> None:
    for period in (1.0, 2.0):
        ports = [free_port() for _ in range(3)]
        nodes = [stats_node(port, 1000) for port in ports]
        url = f"http://127.0.0.1:{ports[0]}"
        redirector = Redirector([f"http://127.0.0.1:{p}" for p in ports], [f"--health-period={period}"])
        exclusions, inclusions = [], []
        try:
            redirector.start()
            for _ in range(3):
                wait_until(lambda: redirector.nodes_by_url()[url]["up"], 60, "node up", 0.01)
                time.sleep(period * 1.3)  # kill at a random point of the period
                nodes[0].send_signal(signal.SIGKILL)
                killed = time.monotonic()
                nodes[0].wait()
                wait_until(lambda: not redirector.nodes_by_url()[url]["up"], 60, "node excluded", 0.01)
                exclusions.append(time.monotonic() - killed)
                nodes[0] = stats_node(ports[0], 1000)
                back = time.monotonic()
                wait_until(lambda: redirector.nodes_by_url()[url]["up"], 60, "node included", 0.01)
                inclusions.append(time.monotonic() - back)
            print(f"failover --health-period {period:g}: death to exclusion "
                  f"{', '.join(f'{s:.2f}' for s in exclusions)} s; return to inclusion "
                  f"{', '.join(f'{s:.2f}' for s in inclusions)} s")
        finally:
            redirector.stop()
            for node in nodes:
                node.send_signal(signal.SIGTERM)
                node.wait()


SCENARIOS = {"overhead": overhead, "throughput": throughput, "spread": spread, "failover": failover}

if __name__ == "__main__":
    for name in sys.argv[1:] or list(SCENARIOS):
        SCENARIOS[name]()
