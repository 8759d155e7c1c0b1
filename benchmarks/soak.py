"""Soak: many spawn → short session → cull cycles, one dockerd restart in the middle.

    TMPNB_ALLOW_DOCKERD_RESTART=1 python benchmarks/soak.py      # 300 cycles, then 200 live
    python benchmarks/soak.py --cycles 40 --no-dockerd-restart --live 0   # a quick look
    python benchmarks/soak.py --heartbeat-only                            # 200 live only

cycles:    `twistd -n tmpnb` with pool 20, capacity 40, --cull-period 1, --cull-timeout 8.
           Visitors (a few threads of blocking HTTP) each open /, follow to their notebook
           page, ask api/status with their token and, one in ten, start a kernel, run 1+1
           over its websocket and shut it down; then they leave and the heartbeat culls the
           container. Halfway through, dockerd is stopped by its PID for a few seconds and
           started again as tools/setup does (its containers die with it). Before and after:
           the instance's containers, the proxy's routes, the socket directories and the
           tmpnb process's open fds, which must all return to their start values.
heartbeat: a second tmpnb with --live containers (default 200) all handed out, and a
           heartbeat every 5 s. The reactor thread's CPU time (/proc/<pid>/task/<pid>/stat)
           over 6 heartbeats, divided by 6, bounds the reactor time one heartbeat takes
           (target <= 50 ms); a probe asking /api/stats every 50 ms meanwhile shows the
           longest stall a visitor would see. The pool's own log event per heartbeat
           ("heartbeat over N handed-out containers took …s, … ms of reactor CPU") gives
           each heartbeat's reactor CPU as tmpnb measures it (time.thread_time over the sweep);
           the heartbeat part passes when every such event is <= 50 ms.

--hold SECONDS (diagnosis): after the cycles' figures, list the tmpnb process's unix sockets,
each with the process and path at its other end (matched by peer inode in `ss -xapn`), keep
the process running SECONDS longer and list them again.

dockerd is shared: the restart needs TMPNB_ALLOW_DOCKERD_RESTART=1, is announced in
/tmp/DOCKERD_RESTARTING and dockerd is always started again. Every tmpnb runs on free
loopback ports with its own --instance and --socket-root and is stopped by its PID.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import docker

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from tmpnb_process import (  # noqa: E402  (the shared helper lives with the integration tests)
    ALLOW_DOCKERD_RESTART,
    INSTANCE_LABEL,
    ONE_ADDRESS,
    DockerdStopped,
    Tmpnb,
    TmpnbError,
    auth,
    call,
    dockerd_restart_allowed,
    execute,
    start_kernel,
    wait_until,
)

CLOCK_TICK = os.sysconf("SC_CLK_TCK")
RECOVERY_GRACE = 10.0  # seconds after dockerd answers again in which sessions may still fail


@dataclass(frozen=True)
class Snapshot:
    containers: int
    routes: int
    socket_dirs: int
    fds: int

    def row(self, name: str) -> str:
        return f"| {name} | {self.containers} | {self.routes} | {self.socket_dirs} | {self.fds} |"


def snapshot(client: docker.DockerClient, server: Tmpnb) -> Snapshot:
    containers = client.containers.list(all=True, filters={"label": f"{INSTANCE_LABEL}={server.instance}"})
    routes = sum(1 for path in server.routes() if path.startswith("/user/"))
    socket_dirs = len(server.socket_dirs())
    # tmpnb closes its end of the request just made a moment after we close ours: until
    # then that is one more fd, counted or not by chance.
    time.sleep(0.2)
    return Snapshot(len(containers), routes, socket_dirs, fds=len(os.listdir(f"/proc/{server.pid}/fd")))


def settled(client: docker.DockerClient, server: Tmpnb, pool: int, timeout: float) -> Snapshot:
    """Wait for the resting state: `pool` pooled, nothing handed out, nothing being removed,
    the fd count steady for two seconds; that snapshot."""

    def rest() -> Snapshot | None:
        stats = server.stats()
        if stats["available"] != pool or stats["total"] != pool:
            return None
        first = snapshot(client, server)
        time.sleep(2)
        second = snapshot(client, server)
        if first == second and first.containers == pool and first.socket_dirs == pool and first.routes == 0:
            return second
        return None

    return wait_until(rest, timeout, "the resting state", interval=0.5)


def new_server(args: list[str], prefix: str) -> Tmpnb:
    server = Tmpnb(f"bench-soak-{prefix}-{os.urandom(3).hex()}", tempfile.mkdtemp(prefix="tnbS", dir="/tmp"),
                   [*ONE_ADDRESS, *args])
    server.start()
    return server


def finish(client: docker.DockerClient, server: Tmpnb, logs: str | None) -> None:
    """Stop by PID; keep its logs in `logs`; remove anything left (and say so) and the socket root."""
    if server.running():
        code = server.stop(timeout=180)
        print(f"tmpnb stopped with {code}")
    if logs:
        os.makedirs(logs, exist_ok=True)
        for path in (server.log_path, server.lifecycle_log):
            if os.path.exists(path):
                shutil.copyfile(path, os.path.join(logs, f"{server.instance}.{os.path.basename(path)}"))
    left = client.containers.list(all=True, filters={"label": f"{INSTANCE_LABEL}={server.instance}"})
    if left:
        print(f"!! {len(left)} containers left after stopping; removing them")
        for container in left:
            container.remove(force=True)
    shutil.rmtree(server.socket_root, ignore_errors=True)


# -- diagnosis: whose are the open sockets ---------------------------------------------


@dataclass(frozen=True)
class UnixSocket:
    state: str
    path: str  # "*" when unnamed
    inode: str
    peer_inode: str  # "*" or "0" when unconnected
    process: str  # ss's users:((...)) column, "" when ss cannot tell

    @classmethod
    def parse(cls, line: str) -> UnixSocket | None:
        fields = line.split()
        if len(fields) < 8 or not fields[0].startswith("u_"):
            return None
        return cls(fields[1], fields[4], fields[5], fields[7], " ".join(fields[8:]))


def unix_sockets() -> list[UnixSocket]:
    listing = subprocess.run(["ss", "-xapn"], capture_output=True, text=True, check=True).stdout
    return [s for s in map(UnixSocket.parse, listing.splitlines()[1:]) if s is not None]


def print_unix_sockets(pid: int) -> None:
    """The process's unix sockets, each with what is at its other end."""
    everything = unix_sockets()
    by_inode = {s.inode: s for s in everything}
    ours = [s for s in everything if f"pid={pid}," in s.process]
    print(f"{len(os.listdir(f'/proc/{pid}/fd'))} fds, {len(ours)} unix sockets of pid {pid}:")
    for s in sorted(ours, key=lambda s: (s.state, s.path)):
        peer = by_inode.get(s.peer_inode)
        other = f"peer {s.peer_inode} {peer.path} {peer.process}" if peer else f"peer {s.peer_inode}"
        fd = s.process.split("fd=")[-1].rstrip(")")
        print(f"  fd {fd} {s.state} {s.inode} {s.path} -> {other}")


def hold(pid: int, seconds: float) -> None:
    print_unix_sockets(pid)
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(10.0, left))
        print(f"  +{seconds - max(end - time.monotonic(), 0):.0f}s: {len(os.listdir(f'/proc/{pid}/fd'))} fds")
    print_unix_sockets(pid)


# -- the cycles ------------------------------------------------------------------------


class Cycles:
    """Visitors doing `total` spawn → session cycles; counts what they saw, by the phase of
    the run each session overlapped: "outage" if dockerd was stopping, down or starting at
    any moment of it (dockerd stopping kills every container, a session begun just before
    included), "just after" if it began within RECOVERY_GRACE after, "normal" otherwise."""

    def __init__(self, server: Tmpnb, total: int, kernel_every: int) -> None:
        self.server = server
        self.total = total
        self.kernel_every = kernel_every
        self.lock = threading.Lock()
        self.started = 0
        self.done = 0
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self.session_seconds: list[float] = []
        self.full_answers = 0
        self.outage_began: float | None = None  # monotonic times of dockerd's stop and answer
        self.outage_ended: float | None = None

    def phase(self, began: float, ended: float) -> str:
        if self.outage_began is not None and ended >= self.outage_began:
            if self.outage_ended is None or began <= self.outage_ended:
                return "outage"
            if began - self.outage_ended < RECOVERY_GRACE:
                return "just after"
        return "normal"

    def next_cycle(self) -> int | None:
        with self.lock:
            if self.started >= self.total:
                return None
            self.started += 1
            return self.started

    def record(self, phase: str, outcome: str, seconds: float | None = None) -> None:
        with self.lock:
            self.done += 1
            self.outcomes[(phase, outcome)] += 1
            if seconds is not None:
                self.session_seconds.append(seconds)

    def visitor(self) -> None:
        while (number := self.next_cycle()) is not None:
            began = time.monotonic()
            try:
                self.session(number)
            except Exception as e:  # a failed session is a result to count, not a crash
                self.record(self.phase(began, time.monotonic()), f"{type(e).__name__}: {str(e)[:90]}")
            else:
                ended = time.monotonic()
                self.record(self.phase(began, ended), "ok", ended - began)

    def session(self, number: int) -> None:
        base = self.server.base
        while True:
            reply = call(base, "GET", "/")
            if reply.status == 302:
                break
            if reply.status != 503:  # 503 is the No-vacancy page: wait like a person would
                raise TmpnbError(f"GET / answered {reply.status}")
            with self.lock:
                self.full_answers += 1
            time.sleep(0.5)
        prefix, token, landing = landing_of(reply.headers["location"])
        page = call(base, "GET", landing)
        if page.status != 200:
            raise TmpnbError(f"notebook page answered {page.status}")
        status = call(base, "GET", prefix + "api/status", headers=auth(token))
        if status.status != 200:
            raise TmpnbError(f"api/status answered {status.status}")
        if number % self.kernel_every == 0:
            kernel = start_kernel(base, prefix, token)
            if execute(base, prefix, token, kernel, "1+1") != "2":
                raise TmpnbError("1+1 is not 2")
            gone = call(base, "DELETE", prefix + f"api/kernels/{kernel}", headers=auth(token))
            if gone.status != 204:
                raise TmpnbError(f"kernel shutdown answered {gone.status}")


def landing_of(location: str) -> tuple[str, str, str]:
    """The redirect to a visitor's notebook: (/user/<id>/ prefix, token, the URL)."""
    match = re.fullmatch(r"(/user/[A-Za-z0-9]+/)([^?]*)\?token=([0-9a-f]+)", location)
    if not match:
        raise TmpnbError(f"unexpected redirect {location}")
    return match.group(1), match.group(3), location


def run_cycles(client: docker.DockerClient, options: argparse.Namespace) -> bool:
    pool, capacity = options.pool, options.capacity
    server = new_server([f"--pool-size={pool}", f"--capacity={capacity}", "--cull-period=1",
                         f"--cull-timeout={options.cull_timeout:g}", "--cull-max=600", "--cleanup-on-stop"], "cycles")
    print(f"\n### cycles: {options.cycles} visitors, pool {pool}, capacity {capacity}, "
          f"{options.workers} at a time, --cull-period 1 --cull-timeout {options.cull_timeout:g}")
    try:
        began = time.monotonic()
        server.wait_available(pool, timeout=300)
        print(f"pool of {pool} filled in {time.monotonic() - began:.1f}s")
        before = settled(client, server, pool, 120)

        cycles = Cycles(server, options.cycles, kernel_every=options.kernel_every)
        threads = [threading.Thread(target=cycles.visitor, daemon=True) for _ in range(options.workers)]
        began = time.monotonic()
        for thread in threads:
            thread.start()
        outage_report = "no dockerd restart"
        if options.dockerd_restart:
            wait_until(lambda: cycles.done >= options.cycles // 2, 3600, "half the cycles", interval=0.5)
            at = time.monotonic() - began
            cycles.outage_began = time.monotonic()
            try:
                with DockerdStopped() as dockerd:
                    time.sleep(options.outage)
            finally:
                cycles.outage_ended = time.monotonic()
            outage_report = (f"dockerd stopped after {cycles.done} cycles ({at:.0f}s in): took {dockerd.stopping:.1f}s "
                             f"to stop, down {options.outage:g}s, {dockerd.starting:.1f}s to answer again")
            server.check_alive()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - began
        print(f"{options.cycles} cycles in {elapsed:.0f}s ({options.cycles / elapsed:.2f}/s); {outage_report}")
        print(f"No-vacancy answers while waiting for a container: {cycles.full_answers}")
        if cycles.session_seconds:
            s = sorted(cycles.session_seconds)
            print(f"session seconds (visit to done, waits for a free container included): p50 {statistics.median(s):.2f}, "
                  f"p90 {s[int(0.9 * (len(s) - 1))]:.2f}, max {s[-1]:.2f}")
        print("outcomes by the phase each session overlapped:")
        for (label, outcome), count in sorted(cycles.outcomes.items()):
            print(f"  {label:10s} {count:4d}  {outcome}")

        after = settled(client, server, pool, 240)
        print("\n| | containers | routes | socket dirs | open fds |\n|---|---|---|---|---|")
        print(before.row("before"))
        print(after.row("after"))
        normal_failures = sum(n for (label, outcome), n in cycles.outcomes.items() if label == "normal" and outcome != "ok")
        back = before == after
        print(f"returned to start values: {'yes' if back else 'NO'}; failed sessions outside the outage: {normal_failures}")
        server.check_alive()
        if options.hold:
            hold(server.pid, options.hold)
        if options.lifecycle_out:
            shutil.copyfile(server.lifecycle_log, options.lifecycle_out)
            print(f"lifecycle log: {options.lifecycle_out}")
        return back and normal_failures == 0
    finally:
        finish(client, server, options.logs)


# -- the heartbeat with many live containers ------------------------------------------


def reactor_cpu(pid: int) -> float:
    """CPU seconds (user + system) of the process's main thread, where twistd runs its reactor."""
    stat = Path(f"/proc/{pid}/task/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK  # utime, stime: fields 14 and 15


HEARTBEAT_EVENT = re.compile(
    r"^(\S+) \[tmpnb\.pool#info\] heartbeat over (\d+) handed-out containers took ([\d.]+)s, ([\d.]+) ms of reactor CPU \(([\d.]+) ms judging",
    re.MULTILINE,
)


def heartbeats_logged(server: Tmpnb, since: float) -> list[tuple[int, float, float, float]]:
    """The pool's heartbeat events logged from `since` (unix time) on: (count, wall s, reactor
    CPU ms, judging ms). twistd rotates its log at 1 MB: only the current file is read."""
    return [
        (int(n), float(wall), float(cpu), float(judge))
        for when, n, wall, cpu, judge in HEARTBEAT_EVENT.findall(server.log())
        if datetime.strptime(when, "%Y-%m-%dT%H:%M:%S%z").timestamp() >= since
    ]


def run_heartbeat(client: docker.DockerClient, options: argparse.Namespace) -> bool:
    live, period = options.live, 5.0
    server = new_server([f"--pool-size={live}", f"--capacity={live}", f"--cull-period={period:g}",
                         "--cull-timeout=3600", "--cull-max=7200", "--boot-timeout=120", "--cleanup-on-stop"], "live")
    print(f"\n### heartbeat with {live} live containers, all handed out, --cull-period {period:g}")
    try:
        began = time.monotonic()
        server.wait_available(live, timeout=live * 3 + 120)
        print(f"{live} containers booted in {time.monotonic() - began:.0f}s")
        for _ in range(live):
            call(server.base, "GET", "/")
        stats = wait_until(lambda: (lambda s: s if s["available"] == 0 else None)(server.stats()), 60, "all handed out")
        time.sleep(2 * period)  # the first heartbeats over them have run: their states settled

        heartbeats = 6
        window = int(time.time()) + 1  # the log's times are whole seconds
        cpu, began = reactor_cpu(server.pid), time.monotonic()
        time.sleep(heartbeats * period)
        spent, elapsed = reactor_cpu(server.pid) - cpu, time.monotonic() - began
        per_heartbeat = spent / (elapsed / period)
        print(f"reactor-thread CPU over {elapsed:.1f}s ({elapsed / period:.1f} heartbeats, no visitors): "
              f"{spent * 1000:.0f} ms, so at most {per_heartbeat * 1000:.0f} ms per heartbeat (target <= 50 ms)")
        logged = [h for h in heartbeats_logged(server, window) if h[0] == live]
        if logged:
            cpus, walls, judging = [h[2] for h in logged], [h[1] for h in logged], [h[3] for h in logged]
            print(f"the pool's heartbeat events over {live} containers ({len(logged)}): reactor CPU p50 "
                  f"{statistics.median(cpus):.1f} ms, max {max(cpus):.1f} ms; wall p50 {statistics.median(walls):.3f}s, "
                  f"max {max(walls):.3f}s; judging max {max(judging):.1f} ms in one go")
        else:
            print(f"!! no heartbeat event over {live} containers in the log")
        silent = server.log().count("no status from")
        print(f"status requests that got no answer (in the current log file): {silent}")

        latencies: list[float] = []
        end = time.monotonic() + 3 * period
        while time.monotonic() < end:
            sent = time.monotonic()
            call(server.base, "GET", "/api/stats")
            latencies.append(time.monotonic() - sent)
            time.sleep(0.05)
        latencies.sort()
        print(f"GET /api/stats every 50 ms for {3 * period:g}s ({len(latencies)} probes): "
              f"p50 {statistics.median(latencies) * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms")
        stats = server.stats()
        print(f"states at the end: {stats['states']}")
        logged_ok = bool(logged) and max(h[2] for h in logged) <= 50
        return logged_ok and stats["total"] == live
    finally:
        finish(client, server, options.logs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--pool", type=int, default=20)
    parser.add_argument("--capacity", type=int, default=40)
    parser.add_argument("--workers", type=int, default=6, help="visitors at a time")
    parser.add_argument("--outage", type=float, default=3.0, help="seconds dockerd stays down")
    parser.add_argument("--no-dockerd-restart", dest="dockerd_restart", action="store_false")
    parser.add_argument("--live", type=int, default=200, help="live containers for the heartbeat (0: skip)")
    parser.add_argument("--cull-timeout", type=float, default=8.0,
                        help="longer than a session's longest wait: a kernel start on a busy machine takes seconds")
    parser.add_argument("--kernel-every", type=int, default=10, help="every Nth visitor runs 1+1 in a kernel")
    parser.add_argument("--logs", help="keep each tmpnb's twistd.log and lifecycle log in this directory")
    parser.add_argument("--lifecycle-out", help="copy the cycles' lifecycle log (JSON lines) here")
    parser.add_argument("--hold", type=float, default=0, metavar="SECONDS",
                        help="diagnosis: list tmpnb's unix sockets and their peers after the cycles, keep it running SECONDS, list again")
    parser.add_argument("--heartbeat-only", action="store_true",
                        help="only the heartbeat with --live containers: no cycles, no dockerd restart")
    options = parser.parse_args()
    if options.heartbeat_only:
        options.cycles, options.dockerd_restart = 0, False
    if options.dockerd_restart and not dockerd_restart_allowed():
        parser.error(f"the dockerd restart stops the shared daemon: set {ALLOW_DOCKERD_RESTART}=1 "
                     "or pass --no-dockerd-restart")
    client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=120)
    print(f"soak: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, {os.cpu_count()} cores")
    ok = True
    if options.cycles:
        ok = run_cycles(client, options) and ok
    if options.live:
        ok = run_heartbeat(client, options) and ok
    print(f"\nsoak {'passed' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
