"""The same JupyterHub flow through tmpnb-proxy and configurable-http-proxy 5.3, in one run.

    python benchmarks/jupyterhub.py [--rounds 3] [--status-requests 300] [--executes 30]

Each round starts JupyterHub (DummyAuthenticator, SimpleLocalProcessSpawner) once with each
proxy, the hub starting the proxy itself (`c.ConfigurableHTTPProxy.command`), alternating
which goes first. Measured through the proxy: login + spawn → `/lab` answered; a warm `1+1`
round trip on an open kernel websocket (p50); `GET <server>/api/status` one after another on
a keep-alive connection (p50, p99); the proxy process's CPU time over the whole flow and its
memory (RSS at the end, peak RSS). Loopback only; every process is stopped by PID.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import requests
import websocket

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from hub_process import Hub, chp_command, login  # noqa: E402

TICKS = 100  # /proc clock ticks per second on Linux


def proc_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def proc_memory_mib(pid: int) -> tuple[float, float]:
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def warm_one_plus_one(server: str, token: str, count: int) -> list[float]:
    """Round trips of 1+1 on one open kernel websocket, after a first one to warm it."""
    headers = {"Authorization": f"token {token}"}
    kernel = requests.post(f"{server}api/kernels", json={"name": "python3"}, headers=headers, timeout=60).json()["id"]
    parts = urlsplit(server)
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{parts.port}{parts.path}api/kernels/{kernel}/channels",
        header=[f"Authorization: token {token}"],
        timeout=60,
    )
    session = uuid.uuid4().hex
    times = []
    try:
        for index in range(count + 1):
            msg_id = uuid.uuid4().hex
            started = time.perf_counter()
            ws.send(json.dumps({
                "header": {"msg_id": msg_id, "username": "bench", "session": session,
                           "msg_type": "execute_request", "version": "5.3"},
                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                "content": {"code": "1+1", "silent": False, "store_history": False,
                            "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
            }))
            while True:
                message = json.loads(ws.recv())
                if (message["parent_header"].get("msg_id") == msg_id and message["msg_type"] == "status"
                        and message["content"]["execution_state"] == "idle"):
                    break
            if index:  # the first one warms the kernel
                times.append(time.perf_counter() - started)
    finally:
        ws.close()
        requests.delete(f"{server}api/kernels/{kernel}", headers=headers, timeout=60)
    return times


def one_flow(name: str, command: list[str] | None, args: argparse.Namespace) -> dict:
    with Hub(proxy_command=command) as hub:
        pid = hub.proxy_pid
        cpu_start = proc_cpu_seconds(pid)
        started = time.perf_counter()
        browser = login(hub, "bench")
        server = hub.spawn("bench")
        lab = browser.get(server + "lab", timeout=60)
        assert lab.status_code == 200 and "JupyterLab" in lab.text, lab.status_code
        spawn_to_lab = time.perf_counter() - started

        token = hub.user_token("bench")
        executes = warm_one_plus_one(server, token, args.executes)

        status_times = []
        with requests.Session() as session:
            session.headers["Authorization"] = f"token {token}"
            session.get(f"{server}api/status", timeout=30)
            for _ in range(args.status_requests):
                began = time.perf_counter()
                reply = session.get(f"{server}api/status", timeout=30)
                status_times.append(time.perf_counter() - began)
                assert reply.status_code == 200
        cpu = proc_cpu_seconds(pid) - cpu_start
        rss, peak = proc_memory_mib(pid)
        hub.stop("bench")
    return {
        "proxy": name,
        "spawn_to_lab_s": spawn_to_lab,
        "warm_1plus1_p50_ms": statistics.median(executes) * 1000,
        "status_p50_ms": statistics.median(status_times) * 1000,
        "status_p99_ms": percentile(status_times, 99) * 1000,
        "proxy_cpu_s": cpu,
        "proxy_rss_mib": rss,
        "proxy_peak_rss_mib": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--status-requests", type=int, default=300)
    parser.add_argument("--executes", type=int, default=30)
    args = parser.parse_args()
    chp = chp_command()
    if chp is None:
        sys.exit("configurable-http-proxy 5.3 is not installed (tools/setup --test installs it in /opt/chp)")
    proxies = [("tmpnb-proxy", None), ("chp", chp)]
    results = []
    for round_ in range(args.rounds):
        order = proxies if round_ % 2 == 0 else proxies[::-1]
        for name, command in order:
            result = one_flow(name, command, args)
            result["round"] = round_ + 1
            results.append(result)
            print(json.dumps(result), flush=True)
    print()
    print("| proxy | spawn → /lab | warm 1+1 p50 | api/status p50 / p99 | proxy CPU | proxy RSS end / peak |")
    print("|---|---|---|---|---|---|")
    for name, _ in proxies:
        mine = [r for r in results if r["proxy"] == name]

        def med(key: str) -> float:
            return statistics.median(r[key] for r in mine)

        print(
            f"| {name} | {med('spawn_to_lab_s'):.2f} s | {med('warm_1plus1_p50_ms'):.1f} ms | "
            f"{med('status_p50_ms'):.2f} / {med('status_p99_ms'):.2f} ms | {med('proxy_cpu_s'):.2f} s | "
            f"{med('proxy_rss_mib'):.1f} / {med('proxy_peak_rss_mib'):.1f} MiB |"
        )


if __name__ == "__main__":
    main()
