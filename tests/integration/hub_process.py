"""JupyterHub as a subprocess that starts its own proxy (tmpnb-proxy or configurable-http-proxy).

Shared by tests/integration/test_jupyterhub_real.py and benchmarks/jupyterhub.py, so it uses
no pytest. One `Hub` lives in a temporary directory (its database, cookie secret, certificates
and the users' home directories), on free loopback ports; DummyAuthenticator lets anyone in,
SimpleLocalProcessSpawner runs `jupyterhub-singleuser` as the same Unix user. Everything the
hub started is stopped by PID in `close()`: the hub itself, its proxy and the user servers.

Subdomains (`subdomain=True`): users live at `http://<name>.hub.localhost:<port>/`; every
connection this module's clients open goes to 127.0.0.1 whatever the name (`loopback_names`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests
import urllib3.util.connection
import websocket

from tmpnb_process import CHP, REPO, execute_on, free_port

START_WAIT = 60.0
SPAWN_WAIT = 90.0


class HubError(AssertionError):
    """The hub did not do what the caller waited for (pytest shows it as a failure)."""


def tmpnb_proxy_command(bin_dir: Path) -> list[str]:
    """``["tmpnb-proxy"]``, the one line a JupyterHub operator writes.

    Where the console script is not installed (a worktree that is not the editable install),
    a script doing exactly what the console script does is put in ``bin_dir`` on PATH.
    """
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "tmpnb-proxy"
    script.write_text(f"#!{sys.executable}\nimport sys\nfrom tmpnb.proxy.cli import main\nsys.exit(main())\n")
    script.chmod(0o755)
    return ["tmpnb-proxy"]


@contextlib.contextmanager
def loopback_names() -> Iterator[None]:
    """Resolve every name to 127.0.0.1 for urllib3 (requests) in this process, for *.hub.localhost."""
    original = urllib3.util.connection.create_connection

    def to_loopback(address, *args, **kwargs):
        return original(("127.0.0.1", address[1]), *args, **kwargs)

    urllib3.util.connection.create_connection = to_loopback
    try:
        yield
    finally:
        urllib3.util.connection.create_connection = original


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours counts as gone
        waited, _ = os.waitpid(pid, os.WNOHANG)
        return waited == 0
    except ChildProcessError:
        return True


def stop_pid(pid: int, grace: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds: one process, by its id."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def wait_for(what: str, check, timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (requests.RequestException, OSError) as error:
            value, last = None, error
        if value:
            return value
        time.sleep(interval)
    raise HubError(f"{what}: not within {timeout:g}s (last error: {last})")


@dataclass
class Hub:
    proxy_command: list[str] | None = None  # None: tmpnb-proxy
    internal_ssl: bool = False
    subdomain: bool = False
    extra_config: str = ""
    port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    hub_port: int = field(default_factory=free_port)
    proxy_token: str = field(default_factory=lambda: secrets.token_hex(16))
    service_token: str = field(default_factory=lambda: secrets.token_hex(16))

    def __post_init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tnbhub"))
        self.process: subprocess.Popen | None = None
        self.user_pids: set[int] = set()
        self.proxy_pid: int | None = None
        self.base = f"http://127.0.0.1:{self.port}"
        self.hub_base = f"http://hub.localhost:{self.port}" if self.subdomain else self.base
        self.api = f"{'https' if self.internal_ssl else 'http'}://127.0.0.1:{self.api_port}"

    # -- life ------------------------------------------------------------------------------

    def start(self) -> None:
        command = self.proxy_command or tmpnb_proxy_command(self.dir / "bin")
        config = f"""
c.JupyterHub.bind_url = "http://127.0.0.1:{self.port}"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {self.hub_port}
c.ConfigurableHTTPProxy.should_start = True
c.ConfigurableHTTPProxy.command = {command!r}
c.ConfigurableHTTPProxy.api_url = {self.api!r}
c.ConfigurableHTTPProxy.auth_token = {self.proxy_token!r}
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {str(self.dir / "home" / "{username}")!r}
c.Spawner.default_url = "/lab"
c.Spawner.args = ["--allow-root"]  # CI runs as root
c.Spawner.start_timeout = {SPAWN_WAIT:g}
c.Spawner.http_timeout = {SPAWN_WAIT:g}
c.Spawner.poll_interval = 3600  # a server killed by a test stays routed: the error target's case
c.JupyterHub.last_activity_interval = 2  # the hub's route check (re-adding deleted routes)
c.JupyterHub.services = [{{"name": "tester", "api_token": {self.service_token!r}}}]
c.JupyterHub.load_roles = [{{"name": "tester", "services": ["tester"],
    "scopes": ["admin:users", "admin:servers", "admin:server_state", "tokens", "list:users", "read:users"]}}]
c.JupyterHub.internal_ssl = {self.internal_ssl!r}
c.JupyterHub.internal_certs_location = {str(self.dir / "certs")!r}
"""
        if self.subdomain:
            config += f'c.JupyterHub.subdomain_host = "http://hub.localhost:{self.port}"\n'
        config += self.extra_config
        (self.dir / "jupyterhub_config.py").write_text(config)
        env = dict(os.environ)
        env["PATH"] = f"{self.dir / 'bin'}:{os.path.dirname(sys.executable)}:{env.get('PATH', '')}"
        env["PYTHONPATH"] = f"{REPO}:{env['PYTHONPATH']}" if env.get("PYTHONPATH") else str(REPO)
        env.pop("CONFIGPROXY_AUTH_TOKEN", None)
        self.log_path = self.dir / "hub.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", "jupyterhub_config.py"],
                cwd=self.dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for("the hub answering through its proxy", self._healthy, START_WAIT)
        except HubError as error:
            raise HubError(f"{error}\n--- hub log ---\n{self.log_tail()}") from None
        self.proxy_pid = int((self.dir / "jupyterhub-proxy.pid").read_text())

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise HubError(f"the hub exited with {self.process.returncode}\n{self.log_tail()}")
        return requests.get(f"{self.hub_base}/hub/health", timeout=5).status_code == 200

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def close(self) -> None:
        """Stop the hub, then whatever of its proxy and servers outlived it; remove the directory."""
        if self.process is not None and self.process.poll() is None:
            stop_pid(self.process.pid, grace=30)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)
        for pid in [self.proxy_pid, *self.user_pids]:
            if pid is not None and _pid_alive(pid):
                stop_pid(pid)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Hub:
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        log_path = getattr(self, "log_path", None)
        if exc_type is not None and log_path is not None and log_path.exists():
            # The hub's log holds its proxy's too (tmpnb-proxy is the hub's child): say what they saw.
            print(f"--- hub log (the test failed: {exc_type.__name__}) ---\n{self.log_tail(120)}")
        self.close()

    # -- the hub's API, as the `tester` service ----------------------------------------------

    def hub_api(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"token {self.service_token}"}
        return requests.request(method, f"{self.hub_base}/hub/api/{path}", headers=headers, timeout=30, **kwargs)

    def user_model(self, name: str) -> dict:
        reply = self.hub_api("GET", f"users/{name}")
        reply.raise_for_status()
        return reply.json()

    def spawn(self, name: str) -> str:
        """Start the user's server and wait until it is ready; its URL (through the proxy)."""
        reply = self.hub_api("POST", f"users/{name}/server")
        if reply.status_code not in (201, 202):
            raise HubError(f"spawn of {name}: {reply.status_code} {reply.text[:300]}\n{self.log_tail()}")

        def ready() -> dict | None:
            server = self.user_model(name)["servers"].get("")
            return server if server and server["ready"] else None

        try:
            server = wait_for(f"{name}'s server ready", ready, SPAWN_WAIT, interval=0.5)
        except HubError as error:
            raise HubError(f"{error}\n{self.log_tail()}") from None
        pid = server.get("state", {}).get("pid")
        if pid:
            self.user_pids.add(pid)
        return server["url"] if server["url"].startswith("http") else self.base + server["url"]

    def server_pid(self, name: str) -> int:
        return self.user_model(name)["servers"][""]["state"]["pid"]

    def stop(self, name: str) -> None:
        reply = self.hub_api("DELETE", f"users/{name}/server")
        if reply.status_code not in (202, 204):
            raise HubError(f"stop of {name}: {reply.status_code} {reply.text[:300]}")
        wait_for(f"{name}'s server stopped", lambda: "" not in self.user_model(name)["servers"], SPAWN_WAIT, 0.5)

    def user_token(self, name: str) -> str:
        reply = self.hub_api("POST", f"users/{name}/tokens", json={"note": "test"})
        reply.raise_for_status()
        return reply.json()["token"]

    # -- the proxy's REST API, as the hub speaks to it -------------------------------------------

    def proxy_api(self, method: str, path: str = "") -> requests.Response:
        kwargs: dict = {}
        if self.internal_ssl:
            certs = self.dir / "certs"
            kwargs["cert"] = (str(certs / "hub-internal" / "hub-internal.crt"), str(certs / "hub-internal" / "hub-internal.key"))
            kwargs["verify"] = str(certs / "hub-ca_trust.crt")  # what the hub trusts the proxy API with
        return requests.request(
            method,
            f"{self.api}/api/routes{path}",
            headers={"Authorization": f"token {self.proxy_token}"},
            timeout=30,
            **kwargs,
        )

    def routes(self) -> dict:
        reply = self.proxy_api("GET")
        reply.raise_for_status()
        return reply.json()

    def route_of(self, name: str) -> str | None:
        """The proxy's path of a user's server route (with the host first under host routing)."""
        for path, data in self.routes().items():
            if data.get("user") == name:
                return path
        return None


# -- a visitor ------------------------------------------------------------------------------------


def login(hub: Hub, name: str) -> requests.Session:
    """A browser-like session logged in through the hub's form (DummyAuthenticator)."""
    session = requests.Session()
    form = session.get(f"{hub.hub_base}/hub/login", timeout=30)
    form.raise_for_status()
    xsrf = session.cookies.get("_xsrf")
    reply = session.post(
        f"{hub.hub_base}/hub/login?next=%2Fhub%2Fhome", data={"username": name, "password": "any", "_xsrf": xsrf}, timeout=30
    )
    if reply.status_code != 200 or "/hub/login" in reply.url:
        raise HubError(f"login as {name}: {reply.status_code} at {reply.url}")
    return session


def run_one_plus_one(server_url: str, token: str, timeout: float = 60) -> str | None:
    """Start a kernel in the user's server and run 1+1 over its websocket, through the proxy."""
    headers = {"Authorization": f"token {token}"}
    kernel = requests.post(f"{server_url}api/kernels", json={"name": "python3"}, headers=headers, timeout=60)
    if kernel.status_code != 201:
        raise HubError(f"kernel not started: {kernel.status_code} {kernel.text[:300]}")
    kernel_id = kernel.json()["id"]
    try:
        return execute(server_url, token, kernel_id, "1+1", timeout)
    finally:
        requests.delete(f"{server_url}api/kernels/{kernel_id}", headers=headers, timeout=60)


def execute(server_url: str, token: str, kernel_id: str, code: str, timeout: float = 60) -> str | None:
    parts = urlsplit(server_url)
    # Connect to loopback whatever the name; the Host header still carries the name.
    ws_url = f"ws://127.0.0.1:{parts.port}{parts.path}api/kernels/{kernel_id}/channels"
    ws = websocket.create_connection(
        ws_url, timeout=timeout, header=[f"Authorization: token {token}"], host=parts.netloc, suppress_origin=True
    )
    try:
        return execute_on(ws, code, timeout)
    finally:
        ws.close()


def chp_command() -> list[str] | None:
    """configurable-http-proxy 5.3, where installed."""
    return [CHP] if os.path.exists(CHP) and shutil.which("node") else None


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
