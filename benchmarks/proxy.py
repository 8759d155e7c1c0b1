"""Benchmark tmpnb's proxy against configurable-http-proxy 5.3 and against no proxy at all.

    python benchmarks/proxy.py [--duration 10] [--websockets 1000] [--round-trips 200]
                               [--static-dir DIR] [--write benchmarks/RESULTS.md]

One run, one backend image, all on loopback and unix sockets:
  - container A (network none, unix socket): behind our proxy and behind CHP;
  - container B (host network, 127.0.0.1 only): the "direct" baseline, since wrk and the
    kernel client cannot speak to a unix socket;
  - wrk -c10 on /user/<id>/api/status: req/s, p50, p99;
  - kernel round trip (execute_request → execute_reply of 1+1) p50/p99 over a WebSocket;
  - RSS of each proxy process holding N idle WebSockets (/api/events/subscribe);
  - central static files: one asset served by our proxy from DIR versus by the container,
    and the container CPU each costs.
Needs: the image (python -m tmpnb.image build), wrk, CHP in /opt/chp
(npm install --prefix /opt/chp configurable-http-proxy@5.3.0), and for the static part a
DIR filled by `python -m tmpnb.image extract-static DIR`.

`python benchmarks/proxy.py serve --port P --route PATH=TARGET [--static-dir DIR]` runs our
proxy alone in this process (what the benchmark starts as a child).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from contextlib import ExitStack
from pathlib import Path

CHP = "/opt/chp/node_modules/.bin/configurable-http-proxy"
HERE = Path(__file__).resolve().parent


# -- our proxy, as a child process ----------------------------------------------------------


def serve(args: argparse.Namespace) -> None:
    from twisted.internet import reactor

    from tmpnb.proxy.public import public_proxy
    from tmpnb.proxy.routes import RouteTable
    from tmpnb.proxy.settings import ProxySettings

    routes = RouteTable(reactor)
    for route in args.route:
        path, _, target = route.partition("=")
        routes.add(path, {"target": target})
    factory = public_proxy(reactor, routes, ProxySettings(static_dir=args.static_dir))
    reactor.listenTCP(args.port, factory, interface="127.0.0.1", backlog=1024)
    reactor.run()


# -- helpers ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def http_status(url: str, token: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def unix_status(socket_path: str, path: str, token: str) -> int:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(socket_path)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: token {token}\r\nConnection: close\r\n\r\n".encode())
        return int(s.recv(64).split()[1])


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def container_cpu_seconds(docker_id: str) -> float:
    for path in (f"/sys/fs/cgroup/cpuacct/docker/{docker_id}/cpuacct.usage", f"/sys/fs/cgroup/cpu,cpuacct/docker/{docker_id}/cpuacct.usage"):
        if os.path.exists(path):
            return int(Path(path).read_text()) / 1e9
    return float("nan")


def wrk(url: str, token: str, duration: float, connections: int = 10) -> dict:
    out = subprocess.run(
        ["wrk", f"-c{connections}", "-t2", f"-d{duration:.0f}s", "--latency", "-H", f"Authorization: token {token}", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": ms("50%"),
        "p99": ms("99%"),
        "non2xx": int(errors.group(1)) if errors else 0,
    }


def kernel_round_trips(origin: str, base: str, token: str, count: int) -> list[float]:
    import websocket

    request = urllib.request.Request(
        f"http://{origin}{base}api/kernels", data=b"{}", method="POST", headers={"Authorization": f"token {token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        kernel = json.load(response)
    ws = websocket.create_connection(f"ws://{origin}{base}api/kernels/{kernel['id']}/channels?token={token}", timeout=30)
    session = uuid.uuid4().hex
    times = []
    try:
        for i in range(count + 3):  # the first few warm the kernel up
            msg_id = uuid.uuid4().hex
            message = {
                "header": {"msg_id": msg_id, "username": "bench", "session": session, "msg_type": "execute_request", "version": "5.3"},
                "parent_header": {},
                "metadata": {},
                "content": {"code": "1+1", "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False},
                "channel": "shell",
                "buffers": [],
            }
            started = time.perf_counter()
            ws.send(json.dumps(message))
            while True:
                reply = json.loads(ws.recv())
                if reply.get("parent_header", {}).get("msg_id") == msg_id and reply["msg_type"] == "execute_reply":
                    break
            if i >= 3:
                times.append((time.perf_counter() - started) * 1000)
    finally:
        ws.close()
        urllib.request.urlopen(
            urllib.request.Request(
                f"http://{origin}{base}api/kernels/{kernel['id']}", method="DELETE", headers={"Authorization": f"token {token}"}
            ),
            timeout=30,
        ).close()
    return times


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def open_idle_websockets(origin: str, path: str, token: str, count: int) -> list[socket.socket]:
    host, port = origin.split(":")
    sockets = []
    for _ in range(count):
        s = socket.create_connection((host, int(port)), timeout=10)
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        s.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {origin}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: token {token}\r\n\r\n"
            ).encode()
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
        if not answer.startswith(b"HTTP/1.1 101"):
            s.close()
            for other in sockets:
                other.close()
            raise RuntimeError(f"websocket {len(sockets)} refused: {answer[:200]!r}")
        sockets.append(s)
    return sockets


def websocket_memory(pid: int, origin: str, path: str, token: str, count: int) -> dict:
    time.sleep(0.5)
    before = rss_kib(pid)
    held = open_idle_websockets(origin, path, token, count)
    time.sleep(1.0)
    after = rss_kib(pid)
    for s in held:
        s.close()
    return {"before_mib": before / 1024, "after_mib": after / 1024, "per_ws_kib": (after - before) / count}


# -- the run ----------------------------------------------------------------------------------


def launch(client, spec, container_id: str, token: str, socket_root: str) -> str:
    from tmpnb import sockets as socks
    from tmpnb.dockerapi import LaunchRequest, _thd_launch

    base = f"/user/{container_id}/"
    request = LaunchRequest(container_id, token, base, socks.socket_dir(spec, container_id), spec)
    return _thd_launch(client, request, time.time())


def run(args: argparse.Namespace) -> str:
    import docker

    from tmpnb import config, sockets as socks

    client = docker.from_env(timeout=120)
    instance = "bench-proxy-" + secrets.token_hex(3)
    socket_root = tempfile.mkdtemp(prefix="tnbb", dir="/tmp")
    token = secrets.token_hex(16)
    cid = secrets.token_hex(6)
    base = f"/user/{cid}/"
    direct_port = free_port()
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    with ExitStack() as cleanup:

        def remove_containers() -> None:
            for c in client.containers.list(all=True, filters={"label": f"org.tmpnb.instance={instance}"}):
                c.remove(force=True)
            shutil.rmtree(socket_root, ignore_errors=True)

        cleanup.callback(remove_containers)
        spec = config.ContainerSpec(instance=instance, socket_root=socket_root)
        docker_a = launch(client, spec, cid, token, socket_root)
        tcp_command = config.DEFAULT_COMMAND.replace(
            "--ServerApp.sock={sock} --ServerApp.sock_mode=0o660", "--ServerApp.ip={ip} --ServerApp.port={port}"
        )
        spec_b = config.ContainerSpec(
            instance=instance, socket_root=socket_root, host_network=True, container_port=direct_port, command=tcp_command
        )
        launch(client, spec_b, cid + "b", token, socket_root)
        # Container B serves under its own id's base path.
        base_b = f"/user/{cid}b/"
        socket_path = socks.socket_path(spec, cid)
        target = socks.proxy_target(socket_path)
        wait_for(lambda: unix_status(socket_path, base + "api/status", token) == 200, 60, "container A")
        wait_for(lambda: http_status(f"http://127.0.0.1:{direct_port}{base_b}api/status", token) == 200, 60, "container B")

        ours_port, plain_port, chp_port, chp_api = free_port(), free_port(), free_port(), free_port()
        devnull = cleanup.enter_context(open(os.devnull, "w"))
        ours = subprocess.Popen(
            [sys.executable, __file__, "serve", "--port", str(ours_port), "--route", f"{base}={target}"]
            + (["--static-dir", args.static_dir] if args.static_dir else []),
            stdout=devnull,
            stderr=devnull,
        )
        cleanup.callback(_stop, ours)
        plain = subprocess.Popen(
            [sys.executable, __file__, "serve", "--port", str(plain_port), "--route", f"{base}={target}"],
            stdout=devnull,
            stderr=devnull,
        )
        cleanup.callback(_stop, plain)
        chp_token = secrets.token_hex(8)
        chp = subprocess.Popen(
            [CHP, "--ip", "127.0.0.1", "--port", str(chp_port), "--api-ip", "127.0.0.1", "--api-port", str(chp_api),
             "--default-target", "http://127.0.0.1:9", "--log-level", "warn"],
            env={**os.environ, "CONFIGPROXY_AUTH_TOKEN": chp_token},
            stdout=devnull,
            stderr=devnull,
        )
        cleanup.callback(_stop, chp)
        wait_for(lambda: http_status(f"http://127.0.0.1:{chp_api}/api/routes", chp_token) == 200, 30, "CHP")
        urllib.request.urlopen(
            urllib.request.Request(
                f"http://127.0.0.1:{chp_api}/api/routes{base.rstrip('/')}",
                data=json.dumps({"target": target}).encode(),
                method="POST",
                headers={"Authorization": f"token {chp_token}"},
            ),
            timeout=5,
        ).close()
        origins = {
            "direct (TCP)": (f"127.0.0.1:{direct_port}", base_b, None),
            "tmpnb proxy → unix": (f"127.0.0.1:{ours_port}", base, ours.pid),
            "CHP 5.3 → unix": (f"127.0.0.1:{chp_port}", base, chp.pid),
        }
        for name, (origin, path, _) in origins.items():
            wait_for(lambda: http_status(f"http://{origin}{path}api/status", token) == 200, 30, name)

        # Memory first, on fresh proxies: afterwards RSS would also hold what the load left.
        for name, (origin, path, pid) in origins.items():
            results[name] = {}
            if pid:
                results[name]["websockets"] = websocket_memory(
                    pid, origin, f"{path}api/events/subscribe?token={token}", token, args.websockets
                )
                print(name, json.dumps(results[name]["websockets"]), file=sys.stderr, flush=True)
        # The machine is shared: rounds interleave the three paths, and each figure is the
        # median over rounds (kernel round trips: percentiles over every round's samples).
        samples: dict[str, list] = {name: [] for name in origins}
        trips: dict[str, list[float]] = {name: [] for name in origins}
        for name, (origin, path, _) in origins.items():
            wrk(f"http://{origin}{path}api/status", token, 2)  # warm-up
        for _ in range(args.rounds):
            for name, (origin, path, _) in origins.items():
                samples[name].append(wrk(f"http://{origin}{path}api/status", token, args.duration))
                trips[name] += kernel_round_trips(origin, path, token, args.round_trips // args.rounds)
                print(name, json.dumps(samples[name][-1]), file=sys.stderr, flush=True)
        for name in origins:
            results[name]["wrk"] = {key: statistics.median(s[key] for s in samples[name]) for key in ("rps", "p50", "p99")}
            results[name]["wrk_rounds"] = [round(s["rps"]) for s in samples[name]]
            results[name]["kernel_ms"] = {"p50": percentile(trips[name], 50), "p99": percentile(trips[name], 99)}

        if args.static_dir:
            asset = pick_asset(Path(args.static_dir))
            if asset:
                url_path, size = asset
                for name, port in (("static from the proxy", ours_port), ("static from the container", plain_port)):
                    cpu = container_cpu_seconds(docker_a)
                    measured = wrk(f"http://127.0.0.1:{port}{base}{url_path}", token, args.duration / 2)
                    measured["container_cpu_s"] = container_cpu_seconds(docker_a) - cpu
                    measured["requests"] = measured["rps"] * args.duration / 2
                    measured["asset"] = f"{url_path} ({size // 1024} KiB)"
                    results[name] = measured
                    print(name, json.dumps(measured), file=sys.stderr, flush=True)
    return render(results, args)


def pick_asset(root: Path) -> tuple[str, int] | None:
    """A mid-sized JavaScript file of the notebook UI, as a URL path below base_url."""
    manifest = json.loads((root / "manifest.json").read_text())
    candidates = []
    for prefix, subdirectory in manifest.items():
        for path in (root / subdirectory).rglob("*.js"):
            size = path.stat().st_size
            if 20_000 <= size <= 200_000:
                candidates.append((abs(size - 60_000), prefix + str(path.relative_to(root / subdirectory)), size))
    if not candidates:
        return None
    _, url_path, size = min(candidates)
    return url_path, size


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()


def render(results: dict, args: argparse.Namespace) -> str:
    lines = [
        "## proxy",
        "",
        f"`python benchmarks/proxy.py --duration {args.duration:.0f} --rounds {args.rounds} --websockets {args.websockets} "
        f"--round-trips {args.round_trips}` on {results['date']} (2 cores, shared; wrk -c10 -t2).",
        f"Each wrk figure is the median of {args.rounds} interleaved rounds of {args.duration:.0f} s; memory is measured first,",
        "on freshly started proxies (RSS before and while holding the idle WebSockets).",
        "Backend: one notebook server container per path; the proxies reach theirs over its unix socket,",
        "\"direct\" is a twin container on 127.0.0.1 (host network), since wrk cannot speak unix.",
        "",
        f"| path | req/s | (rounds) | p50 ms | p99 ms | kernel 1+1 p50 ms | p99 ms | RSS idle→{args.websockets} ws MiB | per ws KiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("direct (TCP)", "tmpnb proxy → unix", "CHP 5.3 → unix"):
        entry = results[name]
        w, k = entry["wrk"], entry["kernel_ms"]
        ws = entry.get("websockets")
        memory = f"{ws['before_mib']:.0f} → {ws['after_mib']:.0f}" if ws else "–"
        per = f"{ws['per_ws_kib']:.1f}" if ws else "–"
        rounds = " ".join(str(r) for r in entry["wrk_rounds"])
        lines.append(f"| {name} | {w['rps']:.0f} | {rounds} | {w['p50']:.2f} | {w['p99']:.2f} | {k['p50']:.2f} | {k['p99']:.2f} | {memory} | {per} |")
    ours, chp = results["tmpnb proxy → unix"], results["CHP 5.3 → unix"]
    lines += [
        "",
        f"Targets: req/s ≥ 1.3× CHP → {ours['wrk']['rps'] / chp['wrk']['rps']:.2f}×; "
        f"p99 no worse than CHP's → {ours['wrk']['p99']:.2f} vs {chp['wrk']['p99']:.2f} ms; "
        f"kernel round trip p50 ≤ 10 ms → {ours['kernel_ms']['p50']:.2f} ms; "
        f"memory per WebSocket below CHP's → {ours['websockets']['per_ws_kib']:.1f} vs {chp['websockets']['per_ws_kib']:.1f} KiB.",
    ]
    if "static from the proxy" in results:
        proxy_static, container_static = results["static from the proxy"], results["static from the container"]
        lines += [
            "",
            f"Central static files (wrk -c10, {args.duration / 2:.0f} s, {proxy_static['asset']}):",
            "",
            "| served by | req/s | p50 ms | p99 ms | container CPU s per 1000 requests |",
            "|---|---|---|---|---|",
        ]
        for name, entry in (("the proxy", proxy_static), ("the container", container_static)):
            per_1000 = entry["container_cpu_s"] / max(entry["requests"], 1) * 1000
            lines.append(f"| {name} | {entry['rps']:.0f} | {entry['p50']:.2f} | {entry['p99']:.2f} | {per_1000:.3f} |")
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Replace (or append) the "## proxy" section, leaving the others as they are."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(r"^## proxy\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command")
    serve_parser = commands.add_parser("serve")
    serve_parser.add_argument("--port", type=int, required=True)
    serve_parser.add_argument("--route", action="append", default=[])
    serve_parser.add_argument("--static-dir")
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--websockets", type=int, default=1000)
    parser.add_argument("--round-trips", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--static-dir")
    parser.add_argument("--write", type=Path, help="update this RESULTS.md's ## proxy section")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args)
        return 0
    section = run(args)
    print(section)
    if args.write:
        write_section(args.write, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
