"""Run `twistd -n tmpnb` as a subprocess and talk to it from outside, as a visitor would.

Shared by the real-engine tests (tests/integration/) and benchmarks/soak.py, so it uses no
pytest: a server that dies or never gets ready raises `TmpnbError` with the end of its log.
Every server gets free loopback ports, its own --instance and --socket-root, and is stopped
with SIGTERM by its PID. Keeping the same `Tmpnb` object for a second `start()` restarts it
on the same ports, instance and socket root (what a restart test needs).

The visitor side is plain blocking HTTP and a websocket client: everything asynchronous
happens in the server process.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import websocket

from listenports import listen_port

REPO = Path(__file__).resolve().parents[2]
CHP = os.environ.get("TMPNB_CHP", "/opt/chp/node_modules/configurable-http-proxy/bin/configurable-http-proxy")
ADMIN_TOKEN = "it-admin-" + secrets.token_hex(8)
INSTANCE_LABEL = "org.tmpnb.instance"
ID_LABEL = "org.tmpnb.id"
BOOT_WAIT = 90.0  # seconds for a small pool to fill on a busy 2-core machine
# For the benchmarks, whose many visitors all come from 127.0.0.1: one client address may hold
# the whole capacity and spawn without a limit to speak of (tmpnb/clients/; docs/operations.md).
ONE_ADDRESS = ("--client-share=1", "--client-spawn-burst=1000000", "--client-spawn-rate=1000000")


class TmpnbError(AssertionError):
    """The server did not do what the caller waited for (pytest shows it as a failure)."""


def free_port() -> int:
    return listen_port()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def is_localhost_name(host: str | None) -> bool:
    return host is not None and (host == "localhost" or host.endswith(".localhost"))


def resolve_localhost(host: str | None, netloc: str, headers: dict) -> tuple[str | None, dict]:
    """Browsers resolve `localhost` and `*.localhost` to loopback (RFC 6761), this machine's
    resolver does not: (address to connect to, headers with the name as Host)."""
    if not is_localhost_name(host):
        return host, headers
    return "127.0.0.1", {"Host": netloc, **headers}


def call(base: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
         timeout: float = 30) -> Reply:
    """One HTTP exchange, redirects not followed."""
    parts = urlsplit(base)
    address, headers = resolve_localhost(parts.hostname, parts.netloc, headers or {})
    if parts.scheme == "https":  # a test's own self-signed certificate: not checked here
        connection = http.client.HTTPSConnection(address, parts.port, timeout=timeout,
                                                 context=ssl._create_unverified_context())
    else:
        connection = http.client.HTTPConnection(address, parts.port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def wait_until(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.2):
    """Poll `condition` until it returns something true; that value. Connection errors count as
    "not yet"; after `timeout` seconds raise TmpnbError naming `what`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except (OSError, ValueError, http.client.HTTPException) as e:
            last_error = e
        if time.monotonic() > deadline:
            raise TmpnbError(f"{what}: not within {timeout:g}s" + (f" (last error: {last_error!r})" if last_error else ""))
        time.sleep(interval)


@dataclass
class Tmpnb:
    """One `twistd -n tmpnb` process and what a test needs to reach it."""

    instance: str
    socket_root: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    proxy_api_port: int = field(default_factory=free_port)
    proxy_token: str = field(default_factory=lambda: secrets.token_hex(16))
    process: subprocess.Popen | None = None
    log_path: str = ""
    lifecycle_log: str = ""
    host: str = "127.0.0.1"  # the public listener's loopback address (many nodes: 127.0.0.2, …)
    # twistd's own options, before "tmpnb"; with --logger the log goes to stdout, kept in log_path
    twistd_args: list[str] = field(default_factory=list)
    # "twistd": `twistd -n tmpnb`; "tmpnb-run": `tmpnb run`, as tools/run and the Swarm stack start it
    launcher: str = "twistd"

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def admin_base(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self) -> None:
        """Start (or start again: same ports, instance and socket root; the log is appended to)."""
        os.makedirs(self.socket_root, exist_ok=True)
        self.log_path = os.path.join(self.socket_root, "twistd.log")
        self.lifecycle_log = self.lifecycle_log or os.path.join(self.socket_root, "lifecycle.jsonl")
        # `tmpnb run` logs to stdout (tmpnb.logs.text_observer), as --logger does
        to_stdout = self.launcher == "tmpnb-run" or any(a.startswith("--logger") for a in self.twistd_args)
        command = ["-m", "tmpnb.cli", "run"] if self.launcher == "tmpnb-run" else [
            "-c", "from twisted.scripts.twistd import run; run()",
            "-n", "--pidfile=", *([] if to_stdout else [f"--logfile={self.log_path}"]), *self.twistd_args, "tmpnb"]
        argv = [
            sys.executable, *command,
            f"--instance={self.instance}", f"--socket-root={self.socket_root}",
            f"--listen=tcp:{self.port}:interface={self.host}",
            f"--proxy-api-listen=tcp:{self.proxy_api_port}:interface=127.0.0.1",
            f"--admin-port={self.admin_port}",
            f"--lifecycle-log={self.lifecycle_log}",
            # `tmpnb run --from REPOSITORY` builds the image it serves (tests/integration/test_content_real.py)
            *([] if any(a == "--from" or a.startswith("--from=") for a in self.args)
              else [f"--image={os.environ.get('TMPNB_TEST_IMAGE', 'tmpnb/notebook:latest')}"]),
            *self.args,
        ]
        env = {**os.environ, "PYTHONPATH": str(REPO), "ADMIN_AUTH_TOKEN": ADMIN_TOKEN,
               "CONFIGPROXY_AUTH_TOKEN": self.proxy_token, **self.env}
        with open(self.log_path, "ab") if to_stdout else open(os.devnull, "wb") as out:
            self.process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return Path(self.log_path).read_text() if os.path.exists(self.log_path) else ""

    def lifecycle(self) -> list[dict]:
        """The transitions recorded so far (--lifecycle-log), oldest first."""
        if not os.path.exists(self.lifecycle_log):
            return []
        return [json.loads(line) for line in Path(self.lifecycle_log).read_text().splitlines() if line.strip()]

    def check_alive(self) -> None:
        if not self.running():
            code = None if self.process is None else self.process.returncode
            raise TmpnbError(f"tmpnb exited with {code}:\n{self.log()[-4000:]}")

    def stats(self, base: str | None = None) -> dict:
        return call(base or self.base, "GET", "/api/stats").json()

    def wait_available(self, count: int, base: str | None = None, timeout: float = BOOT_WAIT) -> dict:
        """Wait until `count` containers are pooled; the stats then."""

        def enough():
            self.check_alive()
            stats = self.stats(base)
            return stats if stats["available"] >= count else None

        try:
            return wait_until(enough, timeout, f"{count} containers available")
        except TmpnbError as e:
            raise TmpnbError(f"{e}; stats {self.stats(base)}\n{self.log()[-3000:]}") from None

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM by PID; the exit status once it has cleaned up.

        twistd ends itself with the signal that stopped it, so a clean stop is -SIGTERM.
        """
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()  # our own child, by its PID
            self.process.wait()
            raise TmpnbError(f"tmpnb did not stop within {timeout:g}s of SIGTERM:\n{self.log()[-4000:]}") from None

    def admin(self, method: str, path: str) -> Reply:
        return call(self.admin_base, method, path, headers={"Authorization": f"token {ADMIN_TOKEN}"})

    def containers(self) -> dict[str, dict]:
        """The admin API's listing, by tmpnb id."""
        return {c["id"]: c for c in self.admin("GET", "/api/containers").json()["containers"]}

    def health(self) -> Reply:
        return call(self.admin_base, "GET", "/health", headers={"Authorization": f"token {ADMIN_TOKEN}"})

    def routes(self) -> dict[str, dict]:
        """The embedded proxy's routes, through its CHP-compatible REST API."""
        reply = call(f"http://127.0.0.1:{self.proxy_api_port}", "GET", "/api/routes",
                     headers={"Authorization": f"token {self.proxy_token}"})
        assert reply.status == 200, reply
        return reply.json()

    def socket_dirs(self) -> set[str]:
        """Names of the containers' socket directories under <socket-root>/<instance>/."""
        root = Path(self.socket_root, self.instance)
        return {p.name for p in root.iterdir() if p.is_dir()} if root.exists() else set()


@dataclass
class Redirector:
    """One `twistd -n tmpnb-redirector` process on loopback, in front of `nodes` (their URLs)."""

    nodes: list[str]
    args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    log_path: str = field(default_factory=lambda: tempfile.mktemp(prefix="tnb-redirector-", suffix=".log", dir="/tmp"))
    process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_base(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self) -> None:
        argv = [
            sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
            "-n", "--pidfile=", f"--logfile={self.log_path}", "tmpnb-redirector",
            f"--listen=tcp:{self.port}:interface=127.0.0.1", f"--admin-listen={self.admin_port}",
            *(f"--node={url}" for url in self.nodes), *self.args,
        ]
        env = {**os.environ, "PYTHONPATH": str(REPO), "ADMIN_AUTH_TOKEN": ADMIN_TOKEN}
        self.process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_until(lambda: self.check_alive() or call(self.base, "GET", "/api/stats").status == 200, 30,
                   "the redirector answering")

    def check_alive(self) -> None:
        if self.process is None or self.process.poll() is not None:
            raise TmpnbError(f"redirector exited:\n{self.log()[-4000:]}")

    def log(self) -> str:
        return Path(self.log_path).read_text() if os.path.exists(self.log_path) else ""

    def stats(self) -> dict:
        return call(self.base, "GET", "/api/stats").json()

    def node_details(self) -> list[dict]:
        """Each node as the redirector sees it: on its admin listener only."""
        return call(self.admin_base, "GET", "/api/nodes", headers={"Authorization": f"token {ADMIN_TOKEN}"}).json()["nodes"]

    def nodes_by_url(self) -> dict[str, dict]:
        return {node["url"]: node for node in self.node_details()}

    def stop(self, keep_log: bool = False) -> int:
        """SIGTERM by PID; the exit status. The log goes unless `keep_log` (to read it after)."""
        self.process.send_signal(signal.SIGTERM)  # our own child, by its PID
        code = self.process.wait(timeout=30)
        if not keep_log:
            Path(self.log_path).unlink(missing_ok=True)
        return code


def visit(base: str, path: str = "/") -> tuple[str, str, str]:
    """A visitor opens `path`: (their /user/<id>/ prefix, token, the URL they landed on)."""
    reply = call(base, "GET", path)
    if reply.status != 302:
        raise TmpnbError(f"no redirect from {path}: {reply.status} {reply.body[:300]!r}")
    location = reply.headers["location"]
    match = re.fullmatch(r"(/user/[A-Za-z0-9]+/)([^?]*)\?token=([0-9a-f]+)", location)
    if not match:
        raise TmpnbError(f"unexpected redirect {location}")
    return match.group(1), match.group(3), location


def container_id_of(prefix: str) -> str:
    """"/user/<id>/" → "<id>"."""
    return prefix.split("/")[2]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}", "Content-Type": "application/json"}


def start_kernel(base: str, prefix: str, token: str) -> str:
    """Start a python3 kernel in the visitor's server; its id."""
    kernel = call(base, "POST", prefix + "api/kernels", json.dumps({"name": "python3"}).encode(), auth(token))
    if kernel.status != 201:
        raise TmpnbError(f"kernel not started: {kernel.status} {kernel.body[:300]!r}")
    return kernel.json()["id"]


def execute(base: str, prefix: str, token: str, kernel_id: str, code: str, timeout: float = 60) -> str | None:
    """Run `code` in the kernel over its websocket (through the proxy); the text/plain result
    (None for a statement without a value)."""
    ws_url = base.replace("http://", "ws://") + f"{prefix}api/kernels/{kernel_id}/channels?token={token}"
    parts = urlsplit(ws_url)
    extra = {}
    if is_localhost_name(parts.hostname):  # as call(): *.localhost is loopback
        extra = {"host": parts.netloc, "origin": base}
        ws_url = ws_url.replace(f"//{parts.netloc}", f"//127.0.0.1:{parts.port}", 1)
    ws = websocket.create_connection(ws_url, timeout=timeout, **extra)
    try:
        return execute_on(ws, code, timeout)
    finally:
        ws.close()


def send_execute_request(ws: websocket.WebSocket, code: str, store_history: bool) -> str:
    """Send `code` as a Jupyter execute_request on a kernel channels websocket; its msg_id."""
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "username": "it", "session": uuid.uuid4().hex,
                   "msg_type": "execute_request", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": store_history,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
    }))
    return msg_id


def execute_on(ws: websocket.WebSocket, code: str, timeout: float = 60) -> str | None:
    """Run `code` on an open kernel channels websocket; the text/plain result (None for a
    statement without a value). A Python error raises TmpnbError."""
    msg_id = send_execute_request(ws, code, store_history=False)
    result = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = json.loads(ws.recv())
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        if message["msg_type"] == "execute_result":
            result = message["content"]["data"]["text/plain"]
        elif message["msg_type"] == "error":
            raise TmpnbError(f"{code!r} failed: {message['content']['ename']}: {message['content']['evalue']}")
        elif message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
            return result
    raise TmpnbError(f"{code!r}: no reply within {timeout:g}s")


def run_one_plus_one(base: str, prefix: str, token: str) -> str:
    """Start a kernel, execute 1+1 over its websocket; the text/plain result."""
    return execute(base, prefix, token, start_kernel(base, prefix, token), "1+1")


def is_friendly_gone_page(reply: Reply) -> bool:
    """The orchestrator's "this notebook has ended" page, which a culled visitor lands on."""
    return reply.status == 404 and b"This notebook has ended" in reply.body


@dataclass
class Chp:
    """configurable-http-proxy 5.3 as a subprocess on loopback; restartable on the same ports."""

    default_target: str
    port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    process: subprocess.Popen | None = None
    extra_args: tuple[str, ...] = ()  # more of CHP's options (--host-routing)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def default_port(self) -> int:
        """The default target's port: where tmpnb listens when it sits behind this proxy."""
        return urlsplit(self.default_target).port

    def start(self) -> None:
        self.process = subprocess.Popen(
            [CHP, "--ip", "127.0.0.1", "--port", str(self.port), "--api-ip", "127.0.0.1",
             "--api-port", str(self.api_port), "--default-target", self.default_target, *self.extra_args],
            env={**os.environ, "CONFIGPROXY_AUTH_TOKEN": self.token},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: self.routes() is not None, 20, "configurable-http-proxy answering", 0.1)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)  # our own child, by its PID
        self.process.wait(timeout=20)

    def routes(self) -> dict[str, dict]:
        reply = call(self.api, "GET", "/api/routes", headers={"Authorization": f"token {self.token}"})
        assert reply.status == 200, reply
        return reply.json()

    def add_route(self, path: str, target: str) -> None:
        reply = call(self.api, "POST", "/api/routes" + path, json.dumps({"target": target}).encode(),
                     {"Authorization": f"token {self.token}", "Content-Type": "application/json"})
        assert reply.status == 201, reply


class Launcher:
    """Starts tmpnb servers for one test module and, at the end, stops each (by PID), removes
    whatever containers its instance left and its socket root.

    `server_args` go to every server it starts, before each call's own arguments.
    """

    def __init__(
        self, docker_client, prefix: str, server_args: Sequence[str] = (), expected_failures: Sequence[str] = ()
    ) -> None:
        self._docker = docker_client
        self._prefix = prefix
        self._server_args = list(server_args)
        # Exception names a module's servers may log as failures (dockerd stopped on purpose).
        self._expected_failures = tuple(expected_failures)
        self.started: list[Tmpnb] = []

    def __call__(self, *args: str, env: dict | None = None, start: bool = True, port: int | None = None,
                 twistd_args: Sequence[str] = (), host: str = "127.0.0.1", name: str = "",
                 launcher: str = "twistd") -> Tmpnb:
        """A new server (started unless `start` is false), on `port` if given, else a free one,
        listening on `host`; `twistd_args` go to twistd itself (before "tmpnb"); `name` ends its
        instance name (n1, n2 … of a federation); `launcher` "tmpnb-run" starts it with `tmpnb run`."""
        server = Tmpnb(f"test-{self._prefix}-{secrets.token_hex(4)}" + (f"-{name}" if name else ""),
                       tempfile.mkdtemp(prefix="tnb" + self._prefix[:2], dir="/tmp"),
                       [*self._server_args, *args], env or {}, twistd_args=list(twistd_args), host=host,
                       launcher=launcher)
        if port is not None:
            server.port = port
        self.started.append(server)
        if start:
            server.start()
        return server

    def unexpected_failures(self, server: Tmpnb) -> list[str]:
        """Failures the server logged (a bug anywhere shows as one) that this module does not
        expect."""
        return [
            f"{server.instance} logged a failure: {failure}"
            for failure in logged_failures(server.log())
            if not any(name in failure for name in self._expected_failures)
        ]

    def instance_containers(self, server: Tmpnb) -> list:
        return self._docker.containers.list(all=True, filters={"label": f"{INSTANCE_LABEL}={server.instance}"})

    def close(self, leftovers_allowed: bool = False) -> list[str]:
        """Clean up after every server; what a server did wrong: logging a failure this module
        does not expect and, for one that should leave nothing (run with --cleanup-on-stop),
        not stopping cleanly on SIGTERM, or leaving containers."""
        problems = []
        for server in self.started:
            if server.running():
                try:
                    code = server.stop()
                    if code != -signal.SIGTERM:
                        problems.append(f"{server.instance} exited with {code}")
                except TmpnbError as e:
                    problems.append(f"{server.instance}: {e}")
            problems += self.unexpected_failures(server)
            left = self.instance_containers(server)
            if left and not leftovers_allowed:
                problems.append(f"{server.instance} left {len(left)} containers behind")
            for container in left:
                try:
                    container.remove(force=True)
                except Exception:  # already gone, or dockerd restarting: nothing left to do
                    pass
            shutil.rmtree(server.socket_root, ignore_errors=True)
        return problems


def logged_failures(log: str) -> list[str]:
    """Every failure a twistd log holds (twisted.logger's log.failure writes a critical event
    followed by the traceback, its lines indented with a tab): the event and the exception."""
    failures = []
    lines = log.splitlines()
    for number, line in enumerate(lines):
        if line.startswith("{"):  # twistd --logger tmpnb.logs.json_observer: one event a line
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if (event.get("log_level") or {}).get("name") == "critical":
                text = event.get("text", "").splitlines()
                failures.append(f"{text[0] if text else ''} | {text[-1] if text else ''}")
            continue
        if "#critical]" not in line:
            continue
        traceback = []
        for following in lines[number + 1 :]:
            if not following.startswith("\t"):
                break
            traceback.append(following.strip())
        exception = next((t for t in reversed(traceback) if t), "")
        failures.append(f"{line.split('] ', 1)[-1]} | {exception}")
    return failures


# -- stopping and starting the shared dockerd --------------------------------------------------

DOCKERD_PIDFILE = "/var/run/docker.pid"
DOCKERD_LOG = "/var/log/tmpnb-dockerd.log"
# Others working on this machine see this file while dockerd is down on purpose.
DOCKERD_ANNOUNCEMENT = "/tmp/DOCKERD_RESTARTING"
ALLOW_DOCKERD_RESTART = "TMPNB_ALLOW_DOCKERD_RESTART"


def dockerd_restart_allowed() -> bool:
    return os.environ.get(ALLOW_DOCKERD_RESTART) == "1"


def docker_answers() -> bool:
    return subprocess.run(["docker", "info"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          timeout=30).returncode == 0


def stop_dockerd(timeout: float = 60) -> float:
    """SIGTERM to dockerd by the PID in its pidfile; seconds until it was gone. Its containers
    die with it (no live-restore)."""
    pid = int(Path(DOCKERD_PIDFILE).read_text())
    started = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not os.path.exists(f"/proc/{pid}"), timeout, f"dockerd (pid {pid}) stopped", 0.05)
    return time.monotonic() - started


def start_dockerd(timeout: float = 60) -> float:
    """Start dockerd as tools/setup does, in its own session; seconds until `docker info` answers."""
    started = time.monotonic()
    subprocess.Popen(f"nohup dockerd >{DOCKERD_LOG} 2>&1 &", shell=True, start_new_session=True,
                     stdin=subprocess.DEVNULL).wait()
    wait_until(docker_answers, timeout, "dockerd answering again", 0.1)
    return time.monotonic() - started


class DockerdStopped:
    """`with DockerdStopped():` dockerd is down inside the block and ALWAYS started again after.

    Announced in DOCKERD_ANNOUNCEMENT for as long as it lasts. `.stopping` and `.starting` are
    the seconds dockerd took to go away and to answer again.
    """

    stopping = starting = 0.0

    def __enter__(self) -> DockerdStopped:
        Path(DOCKERD_ANNOUNCEMENT).write_text(f"stopped by pid {os.getpid()} at {time.time():.0f}\n")
        try:
            self.stopping = stop_dockerd()
        except BaseException:
            self._start_again()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self._start_again()

    def _start_again(self) -> None:
        try:
            if not docker_answers():
                self.starting = start_dockerd()
        finally:
            Path(DOCKERD_ANNOUNCEMENT).unlink(missing_ok=True)
