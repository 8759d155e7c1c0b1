"""The control plane's memory, side by side with the original tmpnb, pool full and idle.

    python benchmarks/footprint.py                   # both, pool 12, two rounds each
    python benchmarks/footprint.py --only tmpnb      # or: --only original
    python benchmarks/footprint.py --rounds 1 --tmpnb-env MALLOC_ARENA_MAX=2   # try a setting
    python benchmarks/footprint.py --only tmpnb --tmpnb-repo /path/to/other/checkout  # before/after

tmpnb:    `twistd -n tmpnb` with its default options (sharing on, the embedded proxy) except
          what keeps it apart from anything else on the machine: its own --instance, a temporary
          --socket-root and share store, free loopback ports, --pool-size 12, --cleanup-on-stop.
original: jupyter/tmpnb's orchestrate.py (tornado 4.3, docker-py 1.7.2, pycurl, in a Python 3.6
          venv under /tmp) with the real configurable-http-proxy (/opt/chp, tools/setup --test),
          --pool_size 12, the same notebook image on the host network (this dockerd has no
          bridge): each server listens on 127.0.0.1 on a port of its own.

Each side boots its pool, waits until it is full (`/api/stats` available = 12), lets it settle
(--settle seconds), then samples every process of its control plane --samples times, 2 s apart:
RSS (VmRSS), PSS and USS (private clean + dirty) from /proc/<pid>/smaps_rollup, for the process
and all its descendants. Then it stops everything it started, by PID, and removes every container
it made (by label for tmpnb, by name for the original), checking that none is left.

The original's code comes from the mirror of github.com/jupyter/tmpnb (--original-repo, a git
directory; default the search tool's /work/.mirror/jupyter+tmpnb/repo), unpacked into a temporary
directory with `git archive`, never into this repository. One line of it is changed there: its
container-name pattern (`tmp\\.([^.]+)\\.(.+)`) matches every container named tmp.<x>.<y>, and its
start-up clean-out would remove other people's; the pattern is narrowed to its own --pool_name.
The venv (made once, kept in /tmp/tmpnb-original-venv) needs a Python of the era, 3.6 (pyenv's;
tornado 4.3 uses the collections ABC aliases that 3.10 removed), and libcurl's headers for pycurl
(apt-get install libcurl4-openssl-dev).
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import docker

REPO = Path(__file__).resolve().parents[1]
IMAGE = os.environ.get("TMPNB_TEST_IMAGE", "tmpnb/notebook:latest")
CHP = "/opt/chp/node_modules/.bin/configurable-http-proxy"
ORIGINAL_REPO = "/work/.mirror/jupyter+tmpnb/repo"
ORIGINAL_VENV = Path("/tmp/tmpnb-original-venv")
ORIGINAL_PACKAGES = [  # requirements.txt of jupyter/tmpnb, and what docker-py 1.7.2 needed then
    "tornado==4.3.0", "docker-py==1.7.2", "pycurl==7.43.0", "pytz==2015.7",
    "requests==2.9.1", "six==1.10.0", "websocket-client==0.35.0",
]
INSTANCE_LABEL = "org.tmpnb.instance"
MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def free_port_run(count: int) -> int:
    """The first of `count` consecutive free loopback ports (the original numbers its servers)."""
    for _ in range(200):
        start = 20000 + secrets.randbelow(20000)
        taken = False
        for port in range(start, start + count):
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    taken = True
                    break
        if not taken:
            return start
    raise SystemExit(f"no {count} consecutive free ports")


def children_of() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rpartition(")")[2].split()[1])
            kids.setdefault(ppid, []).append(int(entry))
    return kids


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants (a child started by a thread is the process's child too)."""
    kids, found, todo = children_of(), [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(kids.get(current, []))
    return found


def memory_kib(pid: int) -> dict[str, int]:
    """RSS, PSS and USS of one process, in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    field = {k: int(v) for k, v in re.findall(r"^(\w+):\s+(\d+) kB", rollup, re.M)}
    return {"rss": rss, "pss": field["Pss"], "uss": field["Private_Clean"] + field["Private_Dirty"]}


def command_of(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:90].strip()


def sample(roots: dict[str, int], samples: int) -> dict[str, Any]:
    """Per root (and its descendants): median of `samples` samples of RSS/PSS/USS in MiB."""
    taken: dict[str, list[dict[str, float]]] = {name: [] for name in roots}
    processes: dict[str, list[str]] = {}
    for i in range(samples):
        if i:
            time.sleep(2)
        for name, pid in roots.items():
            pids = tree(pid)
            processes[name] = [f"{p} {command_of(p)}" for p in pids]
            figures = [memory_kib(p) for p in pids]
            taken[name].append({k: sum(f[k] for f in figures) / 1024 for k in ("rss", "pss", "uss")}
                               | {"own_rss": figures[0]["rss"] / 1024, "processes": len(pids)})
    return {name: {k: round(statistics.median(s[k] for s in series), 1) for k in series[0]}
            | {"pids": processes[name]} for name, series in taken.items()}


def available(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.load(answer)["available"]


def wait_full(url: str, pool: int, processes: list[subprocess.Popen], timeout: float, logs: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        for process in processes:
            if process.poll() is not None:
                raise SystemExit(f"{process.args[:3]} exited {process.returncode}:\n{tail(logs)}")
        try:
            if available(url) >= pool:
                return time.monotonic() - start
        except OSError:
            pass  # not listening yet
        time.sleep(0.5)
    raise SystemExit(f"the pool never reached {pool} available in {timeout:.0f} s:\n{tail(logs)}")


def tail(path: str, size: int = 3000) -> str:
    try:
        return Path(path).read_text(errors="replace")[-size:]
    except OSError:
        return ""


def stop(process: subprocess.Popen, timeout: float = 120) -> None:
    """SIGTERM to our own child by its PID; SIGKILL if it does not go."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    mem = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)
    return {"load": [round(x, 2) for x in load], "cpus": os.cpu_count(), "mem_total_mib": int(mem) // 1024,
            "kernel": platform.release(), "python": platform.python_version()}


# tmpnb ---------------------------------------------------------------------------------------


def run_tmpnb(args: argparse.Namespace, client: docker.DockerClient) -> dict[str, Any]:
    instance = "bench-footprint-" + secrets.token_hex(3)
    root = tempfile.mkdtemp(prefix="tnbF", dir="/tmp")  # short: unix socket paths are short
    port = free_port()
    argv = [
        sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
        "-n", "--pidfile=", f"--logfile={root}/twistd.log", "tmpnb",
        f"--instance={instance}", f"--socket-root={root}", f"--image={IMAGE}",
        f"--share-store={root}/shares.sqlite3",
        f"--listen=tcp:{port}:interface=127.0.0.1",
        f"--proxy-api-listen=tcp:{free_port()}:interface=127.0.0.1",
        f"--pool-size={args.pool}", "--cleanup-on-stop", *args.tmpnb_arg,
    ]
    env = {**os.environ, "PYTHONPATH": args.tmpnb_repo, **dict(kv.split("=", 1) for kv in args.tmpnb_env)}
    process = subprocess.Popen(argv, cwd=args.tmpnb_repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        filled = wait_full(f"http://127.0.0.1:{port}/api/stats", args.pool, [process], args.timeout, f"{root}/twistd.log")
        time.sleep(args.settle)
        figures = sample({"twistd": process.pid}, args.samples)
        figures["filled_seconds"] = round(filled, 1)
        return figures
    finally:
        stop(process)
        left = client.containers.list(all=True, filters={"label": f"{INSTANCE_LABEL}={instance}"})
        for container in left:
            container.remove(force=True)
        shutil.rmtree(root, ignore_errors=True)
        if left:
            print(f"warning: tmpnb {instance} left {len(left)} containers; removed", file=sys.stderr)


# the original --------------------------------------------------------------------------------


def original_python() -> str:
    # pyenv's shims only run the version pyenv has selected: ask for the interpreter itself.
    for candidate in (os.environ.get("ORIGINAL_PYTHON"), os.path.expanduser("~/.pyenv/versions/3.6.15/bin/python3.6"),
                      "/usr/bin/python3.6"):
        if candidate and os.path.exists(candidate):
            return candidate
    raise SystemExit("the original needs Python 3.6 (set ORIGINAL_PYTHON): tornado 4.3 does not run on 3.10+")


def original_venv() -> Path:
    """A venv with the original's packages, made once and kept in /tmp."""
    python = ORIGINAL_VENV / "bin" / "python"
    check = "import tornado, docker, pycurl, pytz; assert tornado.version == '4.3' and docker.version == '1.7.2'"
    if python.exists() and subprocess.run([python, "-c", check], capture_output=True).returncode == 0:
        return python
    if not shutil.which("curl-config"):
        raise SystemExit("pycurl 7.43.0 builds against libcurl: apt-get install libcurl4-openssl-dev")
    shutil.rmtree(ORIGINAL_VENV, ignore_errors=True)
    subprocess.run([original_python(), "-m", "venv", ORIGINAL_VENV], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", *ORIGINAL_PACKAGES], check=True,
                   env={**os.environ, "PYCURL_SSL_LIBRARY": "openssl"})
    return python


def original_source(repo: str, into: str) -> str:
    """jupyter/tmpnb's files at the mirror's HEAD, in `into`, its name pattern narrowed; the commit."""
    if not os.path.isdir(repo):
        raise SystemExit(f"no mirror of jupyter/tmpnb at {repo} (the search tool's `fetch github:jupyter/tmpnb`, "
                         "or `git clone --bare https://github.com/jupyter/tmpnb`)")
    archive = subprocess.run(["git", "--git-dir", repo, "archive", "HEAD"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
    spawnpool = Path(into, "spawnpool.py")
    text = spawnpool.read_text()
    old = r"re.compile('tmp\.([^.]+)\.(.+)\Z')"
    if old not in text:
        raise SystemExit("spawnpool.py changed: check its container-name pattern before running it here")
    spawnpool.write_text(text.replace(old, r"re.compile('tmp\.(' + re.escape(pool_name) + r')\.(.+)\Z')"))
    head = subprocess.run(["git", "--git-dir", repo, "rev-parse", "HEAD"], check=True, capture_output=True, text=True)
    return head.stdout.strip()


def run_original(args: argparse.Namespace, client: docker.DockerClient) -> dict[str, Any]:
    if not os.access(CHP, os.X_OK):
        raise SystemExit(f"no configurable-http-proxy at {CHP}: tools/setup --test installs it")
    python = original_venv()
    work = tempfile.mkdtemp(prefix="tnbO", dir="/tmp")
    commit = original_source(args.original_repo, work)
    pool_name = "fp" + secrets.token_hex(4)
    token = secrets.token_hex(16)
    public, api, orchestrator_port, admin = free_port(), free_port(), free_port(), free_port()
    first_server_port = free_port_run(args.pool * 3)  # replacements take new ports
    env = {**os.environ, "CONFIGPROXY_AUTH_TOKEN": token, "CONFIGPROXY_ENDPOINT": f"http://127.0.0.1:{api}",
           "DOCKER_HOST": "unix:///var/run/docker.sock"}
    env.pop("API_AUTH_TOKEN", None)
    chp_log = open(f"{work}/chp.log", "wb")
    chp = subprocess.Popen([CHP, "--ip", "127.0.0.1", "--port", str(public), "--api-ip", "127.0.0.1",
                            "--api-port", str(api), "--default-target", f"http://127.0.0.1:{orchestrator_port}"],
                           env=env, stdout=chp_log, stderr=subprocess.STDOUT)
    # The original's own command, for this image: TCP on 127.0.0.1 (host network), its token.
    command = ("jupyter notebook --no-browser --port {port} --ip=127.0.0.1"
               " --ServerApp.base_url={base_path} --ServerApp.port_retries=0"
               ' --ServerApp.token="{token}"')
    orchestrator_log = open(f"{work}/orchestrate.log", "wb")
    orchestrator = subprocess.Popen(
        [python, "orchestrate.py", f"--port={orchestrator_port}", "--ip=127.0.0.1",
         f"--admin_port={admin}", "--admin_ip=127.0.0.1", f"--pool_size={args.pool}", f"--image={IMAGE}",
         "--host_network=True", "--container_ip=127.0.0.1", f"--container_port={first_server_port}",
         "--use_tokens=True", f"--command={command}", f"--pool_name={pool_name}"],
        cwd=work, env=env, stdout=orchestrator_log, stderr=subprocess.STDOUT)
    try:
        filled = wait_full(f"http://127.0.0.1:{orchestrator_port}/api/stats", args.pool, [chp, orchestrator],
                           args.timeout, f"{work}/orchestrate.log")
        time.sleep(args.settle)
        figures = sample({"orchestrator": orchestrator.pid, "chp": chp.pid}, args.samples)
        figures["filled_seconds"] = round(filled, 1)
        figures["commit"] = commit
        return figures
    finally:
        stop(orchestrator)
        stop(chp)
        # The original leaves its containers when it stops: remove them, by their names.
        mine = re.compile(rf"^/?tmp\.{pool_name}\.")
        left = [c for c in client.containers.list(all=True) if mine.match(c.name)]
        for container in left:
            container.remove(force=True)
        shutil.rmtree(work, ignore_errors=True)


# the report ----------------------------------------------------------------------------------


def summary(rounds: list[dict[str, Any]], side: str, parts: list[str]) -> dict[str, Any]:
    figures = [r[side] for r in rounds if side in r]
    if not figures:
        return {}
    out: dict[str, Any] = {}
    for kind in ("rss", "pss", "uss"):
        totals = [sum(f[p][kind] for p in parts) for f in figures]
        out[kind] = [min(totals), max(totals)]
    for part in parts:
        out[part] = {kind: [min(f[part][kind] for f in figures), max(f[part][kind] for f in figures)]
                     for kind in ("rss", "own_rss", "processes")}
    return out


def span(values: list[float]) -> str:
    low, high = values
    return f"{low:.1f}" if low == high else f"{low:.1f}–{high:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("tmpnb", "original"))
    parser.add_argument("--pool", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--settle", type=float, default=20.0, help="seconds idle after the pool is full")
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for a pool to fill")
    parser.add_argument("--original-repo", default=ORIGINAL_REPO)
    parser.add_argument("--tmpnb-repo", default=str(REPO), help="the checkout whose tmpnb runs (a before/after)")
    parser.add_argument("--tmpnb-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--tmpnb-arg", action="append", default=[], metavar="--OPTION=VALUE")
    args = parser.parse_args(argv)
    client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=120)
    started = datetime.now(timezone.utc)
    rounds: list[dict[str, Any]] = []
    for number in range(args.rounds):
        result: dict[str, Any] = {}
        # Alternate which goes first, so neither always runs on the warmer machine.
        order = ["original", "tmpnb"] if number % 2 == 0 else ["tmpnb", "original"]
        for side in order:
            if args.only in (None, side):
                run = run_tmpnb if side == "tmpnb" else run_original
                result[side] = run(args, client)
                result[side]["machine"] = machine()
                print(f"round {number + 1} {side}: " + json.dumps(result[side]), file=sys.stderr)
        rounds.append(result)

    tmpnb, original = summary(rounds, "tmpnb", ["twistd"]), summary(rounds, "original", ["orchestrator", "chp"])
    print(f"footprint, pool {args.pool} full and idle, {args.rounds} round(s), {started:%Y-%m-%d %H:%M} UTC, "
          f"load {' '.join(str(x) for x in machine()['load'])}")
    if original:
        print(f"  original: orchestrator + CHP  RSS {span(original['rss'])} MiB (orchestrator "
              f"{span(original['orchestrator']['rss'])}, CHP {span(original['chp']['rss'])}), "
              f"PSS {span(original['pss'])}, USS {span(original['uss'])}")
    if tmpnb:
        print(f"  tmpnb:    twistd + children   RSS {span(tmpnb['rss'])} MiB (twistd alone "
              f"{span(tmpnb['twistd']['own_rss'])}, processes {span(tmpnb['twistd']['processes'])}), "
              f"PSS {span(tmpnb['pss'])}, USS {span(tmpnb['uss'])}")
    print(json.dumps({"benchmark": "footprint", "date": started.isoformat(timespec="seconds"), "pool": args.pool,
                      "tmpnb": tmpnb, "original": original, "rounds": rounds, "machine": machine(),
                      "command": " ".join(["python", "benchmarks/footprint.py", *(argv or sys.argv[1:])])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
