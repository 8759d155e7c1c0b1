"""The front door under the slow-client attack of issue 21, with the default deadlines.

    python benchmarks/frontdoor.py [--slow 400] [--samples 200] [--visitors 5] [--hold 30]

One `twistd -n tmpnb` (pool 3, capacity 30, as the issue measured, every front-door option at
its default). In the same run, first quiet, then with 400 connections dripping a request head
and 400 dripping a `POST /api/spawn` body (a byte a second each, from 100 loopback addresses,
each replaced as soon as the server closes it):

- `GET /api/stats`: p50 and p99 of `--samples` requests one after another;
- a new visitor's time to notebook: `GET /` → 302 → the notebook page's 200, `--visitors`
  visitors one after another, each once the pool is full again;
- the control plane's memory (RSS of the tmpnb process: orchestrator and proxy) quiet, and its
  highest while the 800 slow connections are held (`--hold` seconds at least).

Targets: under attack ≤ 2× the quiet figures; RSS ≤ +20 MiB with 800 slow connections held.
The server is stopped by its PID and its containers removed by its instance label.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import docker

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from slow_clients import BODY_PREFIX, HEAD_PREFIX, SlowClients, raise_open_file_limit  # noqa: E402
from tmpnb_process import INSTANCE_LABEL, Tmpnb, call, visit, wait_until  # noqa: E402


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def stats_latencies(base: str, samples: int) -> list[float]:
    out = []
    for _ in range(samples):
        start = time.perf_counter()
        reply = call(base, "GET", "/api/stats", timeout=30)
        out.append((time.perf_counter() - start) * 1000)
        assert reply.status == 200, reply.status
    return out


def times_to_notebook(server: Tmpnb, visitors: int, pool: int) -> list[float]:
    out = []
    for _ in range(visitors):
        server.wait_available(pool, timeout=400)
        start = time.perf_counter()
        _, _, location = visit(server.base)
        page = call(server.base, "GET", location, timeout=60)
        out.append((time.perf_counter() - start) * 1000)
        assert page.status == 200, page.status
    return out


def attack(host: str, port: int, slow: int, ready, stop, results) -> None:
    """The attacker, in a process of its own: its sockets and thread do not share this
    process's interpreter with the measuring client."""
    raise_open_file_limit(4 * slow + 1024)
    heads = SlowClients(host, port, HEAD_PREFIX, slow, interval=1.0)
    bodies = SlowClients(host, port, BODY_PREFIX, slow, interval=1.0)
    heads.start()
    bodies.start()
    wait_until(lambda: heads.open_now + bodies.open_now >= 2 * slow - 10, 60, "the slow connections open")
    ready.set()
    stop.wait()
    answers: dict[str, int] = {}
    for clients in (heads, bodies):
        for k, v in clients.answers.items():
            answers[k.decode()] = answers.get(k.decode(), 0) + v
    results.put({"held": heads.open_now + bodies.open_now, "closed": heads.closed + bodies.closed, "answers": answers,
                 "refused_connects": heads.refused_connects + bodies.refused_connects})
    heads.stop()
    bodies.stop()


def phase(name: str, server: Tmpnb, options: argparse.Namespace) -> dict:
    loads = [load()]
    cpu_start, wall_start = cpu_seconds(server.pid), time.monotonic()
    stats = stats_latencies(server.base, options.samples)
    loads.append(load())
    notebook = times_to_notebook(server, options.visitors, options.pool)
    loads.append(load())
    cpu = (cpu_seconds(server.pid) - cpu_start) / (time.monotonic() - wall_start) * 100
    figures = {
        "stats_p50": statistics.median(stats), "stats_p99": pct(stats, 0.99),
        "notebook_p50": statistics.median(notebook), "notebook_max": max(notebook), "load": " → ".join(loads),
    }
    print(f"{name}: /api/stats p50 {figures['stats_p50']:.1f} ms p99 {figures['stats_p99']:.1f} ms; "
          f"time to notebook p50 {figures['notebook_p50']:.0f} ms max {figures['notebook_max']:.0f} ms; "
          f"load {figures['load']}; tmpnb's CPU {cpu:.0f}% of a core", flush=True)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slow", type=int, default=400, help="connections dripping heads, and as many bodies")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--visitors", type=int, default=8, help="per phase (3 phases: keep 3 × visitors + pool ≤ capacity)")
    parser.add_argument("--hold", type=float, default=30.0, help="seconds the attack runs at least")
    parser.add_argument("--pool", type=int, default=3)
    parser.add_argument("--capacity", type=int, default=30)
    options = parser.parse_args()
    raise_open_file_limit(4 * options.slow + 1024)

    client = docker.from_env()
    server = Tmpnb("bench-frontdoor-" + os.urandom(4).hex(), tempfile.mkdtemp(prefix="tnbfd", dir="/tmp"),
                   [f"--pool-size={options.pool}", f"--capacity={options.capacity}", "--cleanup-on-stop",
                    "--boot-timeout=180"])  # boots are not measured here; a loaded machine is slow at them
    server.start()
    attacker = None
    stop = multiprocessing.Event()
    try:
        server.wait_available(options.pool, timeout=400)
        call(server.base, "GET", "/api/stats")
        stats_latencies(server.base, 20)  # warm
        rss_quiet = rss_mib(server.pid)
        quiet = phase("quiet", server, options)
        rss_quiet = max(rss_quiet, rss_mib(server.pid))

        ready, results = multiprocessing.Event(), multiprocessing.Queue()
        attacker = multiprocessing.Process(target=attack, args=(server.host, server.port, options.slow, ready, stop, results))
        started = time.monotonic()
        attacker.start()
        if not ready.wait(90):
            raise RuntimeError("the slow connections did not open")
        print(f"attack: {2 * options.slow} slow connections open, load {load()}", flush=True)
        rss_attack = rss_mib(server.pid)
        attacked = phase("attack", server, options)
        while time.monotonic() - started < options.hold:
            rss_attack = max(rss_attack, rss_mib(server.pid))
            time.sleep(0.5)
        rss_attack = max(rss_attack, rss_mib(server.pid))
        stop.set()
        outcome = results.get(timeout=60)
        attacker.join(60)
        print(f"held {outcome['held']} slow connections after {time.monotonic() - started:.0f} s; the server closed "
              f"{outcome['closed']} ({outcome['answers']}); connects refused {outcome['refused_connects']}", flush=True)
        print(f"RSS quiet {rss_quiet:.1f} MiB, with {2 * options.slow} slow connections held (max) {rss_attack:.1f} MiB:"
              f" +{rss_attack - rss_quiet:.1f} MiB (target ≤ +20)", flush=True)
        again = phase("quiet again", server, options)
        for key, label in (("stats_p99", "/api/stats p99"), ("notebook_p50", "time to notebook p50"),
                           ("notebook_max", "time to notebook max")):
            ratio = attacked[key] / quiet[key]
            print(f"{label}: quiet {quiet[key]:.1f} ms, attack {attacked[key]:.1f} ms: {ratio:.2f}x (target ≤ 2x);"
                  f" quiet again {again[key]:.1f} ms")
    finally:
        stop.set()
        if attacker is not None and attacker.is_alive():
            attacker.join(30)
        server.stop()
        for container in client.containers.list(all=True, filters={"label": f"{INSTANCE_LABEL}={server.instance}"}):
            container.remove(force=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
