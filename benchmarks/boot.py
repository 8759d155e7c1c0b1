"""How fast does the pool boot, and what does an idle server cost?

Boots pools of 1, 10 and 50 containers of the real image through the real Pool, DockerAPI and
readiness check, and prints for each:
  - create→ready per container (median, max): from the machine entering booting, which is
    when it asks Docker to create the container, to the server answering api/status over its
    socket (the booting→pooled transition's seconds_in_previous);
  - boots per second: containers / (pool start → last one ready);
  - idle memory per container (median, max) from the container's memory cgroup (v1), read
    `--settle` seconds after the last one was ready: usage − inactive file, as `docker stats`
    shows it, and the resident set (total_rss).

Targets on the 2-core machine: one container ready ≤ 1.2 s after create; ≥ 1.6 boots/s with
50; ≤ 45 MiB idle with the notebook 7 UI.

    python benchmarks/boot.py                     # sizes 1,10,50
    python benchmarks/boot.py --sizes 1 --settle 2

It uses its own instance name (bench-boot-<random>) and removes every container it made.
It loads the whole machine: do not run it alongside other benchmarks.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import sys
import tempfile
from typing import Any

import docker
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import deferLater, react
from twisted.python.threadpool import ThreadPool

from tmpnb import config
from tmpnb.dockerapi import INSTANCE_LABEL, DockerAPI, docker_client_factory
from tmpnb.pool import Pool
from tmpnb.proxy.routes import RouteTable
from tmpnb.proxyapi import InProcessProxyAPI
from tmpnb.readiness import wait_ready
from tmpnb.states import TransitionEvent

MiB = 1024 * 1024
CGROUP_MEMORY = "/sys/fs/cgroup/memory/docker"


def memory_of(docker_id: str) -> tuple[float, float] | None:
    """(usage − inactive file, rss) in MiB from the container's cgroup v1, if readable."""
    directory = os.path.join(CGROUP_MEMORY, docker_id)
    try:
        with open(os.path.join(directory, "memory.usage_in_bytes")) as f:
            usage = int(f.read())
        with open(os.path.join(directory, "memory.stat")) as f:
            stat = dict(line.split() for line in f)
    except OSError:
        return None
    inactive = int(stat.get("total_inactive_file", 0))
    return (usage - inactive) / MiB, int(stat.get("total_rss", 0)) / MiB


async def boot_pool(reactor: Any, size: int, args: argparse.Namespace) -> dict[str, Any]:
    instance = "bench-boot-" + secrets.token_hex(3)
    socket_root = tempfile.mkdtemp(prefix="tnbb", dir="/tmp")
    spec = config.ContainerSpec(instance=instance, image=args.image, socket_root=socket_root)
    pool_config = config.PoolConfig(
        pool_size=size, capacity=size, boot_attempts=1, boot_timeout=args.boot_timeout
    )
    threadpool = ThreadPool(minthreads=0, maxthreads=args.workers, name="bench-boot-docker")
    threadpool.start()
    docker_api = DockerAPI(reactor, threadpool, docker_client_factory(), spec, call_timeout=120)
    events: list[TransitionEvent] = []
    pool = Pool(
        reactor,
        docker_api,
        wait_ready,
        InProcessProxyAPI(RouteTable(reactor)),
        spec,
        pool_config,
        on_transition=events.append,
    )
    started = reactor.seconds()
    pool.startService()
    try:
        while pool.stats()["available"] < size:
            if any(e.to_state == "culled" for e in events):
                failed = [e.cause for e in events if e.to_state == "culled"]
                raise RuntimeError(f"a container failed to boot: {failed[0]}")
            if reactor.seconds() - started > args.boot_timeout + 60:
                raise RuntimeError(f"pool of {size} not ready: {pool.stats()}")
            await deferLater(reactor, 0.05)
        ready = [e for e in events if e.to_state == "pooled"]
        create_to_ready = [e.seconds_in_previous for e in ready]
        wall = max(e.time for e in ready) - started
        await deferLater(reactor, args.settle)
        memory = [m for c in pool.containers() if (m := memory_of(c["docker_id"])) is not None]
    finally:
        await pool.stopService()
        docker_api.stop_watching()
        threadpool.stop()
        leftovers = docker.from_env().containers.list(
            all=True, filters={"label": f"{INSTANCE_LABEL}={instance}"}
        )
        for container in leftovers:
            container.remove(force=True)
        shutil.rmtree(socket_root, ignore_errors=True)
    return {
        "size": size,
        "ready_median": statistics.median(create_to_ready),
        "ready_max": max(create_to_ready),
        "boots_per_second": size / wall,
        "wall": wall,
        "memory_median": statistics.median(m[0] for m in memory) if memory else None,
        "memory_max": max(m[0] for m in memory) if memory else None,
        "rss_median": statistics.median(m[1] for m in memory) if memory else None,
    }


def table(results: list[dict[str, Any]]) -> str:
    def mib(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f}"

    lines = [
        "| pool | create→ready median (s) | create→ready max (s) | boots/s | all ready after (s)"
        " | idle memory median (MiB) | idle memory max (MiB) | idle RSS median (MiB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['size']} | {r['ready_median']:.2f} | {r['ready_max']:.2f}"
            f" | {r['boots_per_second']:.2f} | {r['wall']:.1f}"
            f" | {mib(r['memory_median'])} | {mib(r['memory_max'])} | {mib(r['rss_median'])} |"
        )
    return "\n".join(lines)


async def main(reactor: Any, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,50", help="pool sizes, comma-separated")
    parser.add_argument("--image", default=config.DEFAULT_IMAGE)
    parser.add_argument("--workers", type=int, default=4, help="Docker thread pool size")
    parser.add_argument("--boot-timeout", type=float, default=180.0)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds idle before measuring memory")
    parser.add_argument("--pause", type=float, default=10.0, help="seconds between pools, to cool down")
    args = parser.parse_args(argv)
    results = []
    for n, size in enumerate(int(s) for s in args.sizes.split(",")):
        if n:
            await deferLater(reactor, args.pause)
        result = await boot_pool(reactor, size, args)
        results.append(result)
        print(
            f"pool of {size}: create→ready median {result['ready_median']:.2f}s"
            f" max {result['ready_max']:.2f}s; {result['boots_per_second']:.2f} boots/s;"
            f" idle memory median {result['memory_median'] or 0:.1f} MiB",
            flush=True,
        )
    print()
    print(table(results))


if __name__ == "__main__":
    react(lambda reactor: ensureDeferred(main(reactor, sys.argv[1:])))
