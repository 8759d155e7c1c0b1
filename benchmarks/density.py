"""Density: how many idle notebook servers one host holds, and what each one costs it.

    python benchmarks/density.py --max 512 --step 64        # the Nature demo's mark (issue 19)
    python benchmarks/density.py --max 40 --step 10         # a quick look

One `tmpnb run` (as tools/run starts it) with `--pool-size MAX --capacity MAX`: the pool boots
servers until MAX are pooled and idle. Every `--step` servers the run lets the host settle
(`--settle` seconds: boots over, the page cache quiet) and samples:

- the host's `MemAvailable` (what the kernel could still hand out: servers, their containerd
  shims, dockerd's and containerd's own growth, the control plane, all included);
- each container's cgroup memory (usage − inactive file, as docs/image.md measures a server);
- the PSS of these containers' containerd shims, the RSS of dockerd, containerd and tmpnb.

The cost of a server is the slope of `MemAvailable` against the number of idle servers (least
squares over the samples), so the control plane's fixed cost and the host's own drift stay out
of it; the projection is how many servers the `MemAvailable` before the run holds at that slope
with `--reserve` MiB left for the host. The run stops early (and says so) when `MemAvailable`
falls under the reserve: the host is never driven into its OOM killer. Everything it started is
stopped by PID and every container removed at the end. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import docker

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from tmpnb_process import INSTANCE_LABEL, ONE_ADDRESS, Tmpnb, wait_until  # noqa: E402

CGROUP_MEMORY = Path("/sys/fs/cgroup/memory/docker")  # cgroup v1, cgroupfs driver (this machine)


def mem_available_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def proc_mib(pid: int, file: str, field: str) -> float:
    """One kB figure of /proc/<pid>/<file> (status's VmRSS, smaps_rollup's Pss) in MiB; 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def rss_mib(pid: int) -> float:
    return proc_mib(pid, "status", "VmRSS")


def pss_mib(pid: int) -> float:
    """Proportional set size: shared pages (the shims' one binary) split among their users."""
    return proc_mib(pid, "smaps_rollup", "Pss")


def shims_of(container_ids: set[str]) -> list[int]:
    """The containerd shims of these containers (a shim's command line names its container)."""
    found = []
    for pid in pids_named("containerd-shim"):  # comm is cut to 15 characters
        try:
            words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(w.decode(errors="replace") in container_ids for w in words):
            found.append(pid)
    return found


def pids_named(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def container_memory_mib(container_id: str) -> float | None:
    """usage − inactive file of one container's memory cgroup (None if it has none here)."""
    group = CGROUP_MEMORY / container_id
    try:
        usage = int((group / "memory.usage_in_bytes").read_text())
        stat = dict(line.split() for line in (group / "memory.stat").read_text().splitlines())
    except OSError:
        return None
    return (usage - int(stat.get("total_inactive_file", stat.get("inactive_file", 0)))) / 2**20


def sample(client: docker.DockerClient, server: Tmpnb) -> dict[str, Any]:
    containers = client.containers.list(filters={"label": f"{INSTANCE_LABEL}={server.instance}"})
    memories = [m for m in (container_memory_mib(c.id) for c in containers) if m is not None]
    shims = shims_of({c.id for c in containers})
    return {
        "servers": server.stats()["available"],
        "containers": len(containers),
        "mem_available_mib": round(mem_available_mib(), 1),
        "server_cgroup_mib_median": round(statistics.median(memories), 1) if memories else None,
        "shims": len(shims),
        "shim_pss_mib_total": round(sum(pss_mib(p) for p in shims), 1),
        "dockerd_rss_mib": round(sum(rss_mib(p) for p in pids_named("dockerd")), 1),
        "containerd_rss_mib": round(sum(rss_mib(p) for p in pids_named("containerd")), 1),
        "tmpnb_rss_mib": round(rss_mib(server.pid), 1),
        "time": time.strftime("%H:%M:%S", time.gmtime()),
    }


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y against x."""
    xs, ys = zip(*points)
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x in xs)


def run(options: argparse.Namespace) -> dict[str, Any]:
    client = docker.from_env(timeout=300)
    before = mem_available_mib()
    server = Tmpnb(f"bench-density-{os.urandom(3).hex()}", tempfile.mkdtemp(prefix="tnbD", dir="/tmp"),
                   [*ONE_ADDRESS, f"--pool-size={options.max}", f"--capacity={options.max}",
                    f"--image={options.image}", "--cleanup-on-stop", *options.tmpnb_arg],
                   launcher="tmpnb-run")
    samples: list[dict[str, Any]] = []
    stopped_early = None
    try:
        server.start()
        wait_until(lambda: server.stats().get("total") is not None, 120, "tmpnb answering")
        time.sleep(options.settle)
        samples.append(sample(client, server))  # the control plane with its first boots, or none
        for target in range(options.step, options.max + 1, options.step):
            def reached(target: int = target) -> bool:
                if mem_available_mib() < options.reserve:
                    raise MemoryError
                return server.stats()["available"] >= target

            try:
                wait_until(reached, options.boot_timeout, f"{target} idle servers", interval=1)
            except MemoryError:
                stopped_early = f"MemAvailable under the {options.reserve} MiB reserve before {target} servers"
                break
            time.sleep(options.settle)
            samples.append(sample(client, server))
            print(json.dumps(samples[-1]), flush=True)
    finally:
        if server.running():
            server.stop(timeout=600)
        for container in client.containers.list(all=True, filters={"label": f"{INSTANCE_LABEL}={server.instance}"}):
            container.remove(force=True)
    after = mem_available_mib()
    points = [(s["servers"], s["mem_available_mib"]) for s in samples if s["servers"] > 0]
    per_server = -slope(points) if len({x for x, _ in points}) >= 2 else None
    last = samples[-1]
    return {
        "image": options.image,
        "mem_available_before_mib": round(before, 1),
        "mem_available_after_stop_mib": round(after, 1),
        "idle_servers_reached": last["servers"],
        "mem_available_at_most_mib": last["mem_available_mib"],
        "per_server_mib": round(per_server, 1) if per_server else None,
        "per_server_parts_mib": {
            "server_cgroup_median": last["server_cgroup_mib_median"],
            "shim_pss": round(last["shim_pss_mib_total"] / max(last["shims"], 1), 1),
            "dockerd_and_containerd_growth": round(
                (last["dockerd_rss_mib"] + last["containerd_rss_mib"]
                 - samples[0]["dockerd_rss_mib"] - samples[0]["containerd_rss_mib"])
                / max(last["servers"] - samples[0]["servers"], 1), 2),
        },
        "control_plane_rss_mib": last["tmpnb_rss_mib"],
        "projected_servers_at_reserve": (int((before - options.reserve) / per_server) if per_server else None),
        "stopped_early": stopped_early,
        "load": [round(x, 2) for x in os.getloadavg()],
        "samples": samples,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max", type=int, default=512, help="idle servers to reach")
    parser.add_argument("--step", type=int, default=64, help="servers between two samples")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds before each sample")
    parser.add_argument("--reserve", type=float, default=768.0, help="MiB of MemAvailable never gone under")
    parser.add_argument("--boot-timeout", type=float, default=900.0, help="seconds to reach each step")
    parser.add_argument("--image", default=os.environ.get("TMPNB_TEST_IMAGE", "tmpnb/notebook:latest"))
    parser.add_argument("--tmpnb-arg", action="append", default=[], help="one more option for tmpnb")
    options = parser.parse_args()
    result = run(options)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
