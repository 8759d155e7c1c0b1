"""A three-host Docker Swarm on one machine, without touching the host's network.

Each "host" is a network namespace (tnbsw-a, -b, -c) with a dockerd of its own, started with
`nsenter --net` (not `ip netns exec`, which remounts /sys and hides the cgroups) in a UTS
namespace that gives it its own hostname (Swarm's {{.Node.Hostname}} names the tmpnb instance).
The hosts and a client namespace (tnbsw-cl) are joined by veth pairs through a bridge in a fifth
namespace (tnbsw-sw); their addresses (10.231.77.0/24) exist only inside these namespaces.

`teardown()` removes everything: the swarm, each dockerd (by its pidfile) and its containers, the
mounts under its roots, the namespaces and the directories. It is safe to call at any point and
is called before `setup()` too, so a crashed earlier run leaves nothing behind for long.

Run as a script inside the client namespace (`client(...)`) it is a visitor: plain HTTP with
tmpnb_process's helpers, one JSON line out.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

PREFIX = "tnbsw"
SUBNET = "10.231.77"
BRIDGE_NS = f"{PREFIX}-sw"
CLIENT_NS = f"{PREFIX}-cl"
CLIENT_ADDRESS = f"{SUBNET}.100"
RUN = Path("/run") / PREFIX  # sockets, pidfiles, exec roots, logs
# Data roots and the image archive, on a tmpfs of their own: three copies of the images are
# written in seconds there, and removed at once by unmounting it (rm -rf on disk took a minute).
DATA = Path("/var/lib") / PREFIX
SOCKET_ROOT = RUN / "sockets"  # the tmpnb nodes' socket root (each instance its own directory)
ETC = RUN / "etc"  # the redirector's nodes file
# The daemon.json of this machine's dockerd: no bridge, no iptables (nothing outside the namespace).
DAEMON_CONFIG = {"bridge": "none", "iptables": False, "ip-masq": False, "ip-forward": False}
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class SwarmHost:
    name: str
    address: str

    @property
    def netns(self) -> str:
        return self.name

    @property
    def socket(self) -> Path:
        return RUN / f"{self.name}.sock"

    @property
    def docker_url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pidfile(self) -> Path:
        return RUN / f"{self.name}.pid"

    @property
    def exec_root(self) -> Path:
        return RUN / self.name

    @property
    def data_root(self) -> Path:
        return DATA / self.name

    @property
    def log(self) -> Path:
        return RUN / f"{self.name}.log"


HOSTS = tuple(SwarmHost(f"{PREFIX}-{letter}", f"{SUBNET}.{11 + i}") for i, letter in enumerate("abc"))


def sh(*argv: str, check: bool = True, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, timeout=timeout, capture_output=True, text=True, **kwargs)


def wait_for(condition, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
            if value:
                return value
        except Exception:  # not there yet (a socket that does not answer, a file not written)
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        time.sleep(interval)


# -- the network ----------------------------------------------------------------------------


def make_network() -> None:
    sh("ip", "netns", "add", BRIDGE_NS)
    sh("ip", "-n", BRIDGE_NS, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", BRIDGE_NS, "link", "set", "br0", "up")
    members = [(host.netns, host.address) for host in HOSTS] + [(CLIENT_NS, CLIENT_ADDRESS)]
    for number, (netns, address) in enumerate(members):
        sh("ip", "netns", "add", netns)
        port = f"port{number}"
        # Both ends made directly in their namespaces: nothing appears in the host's.
        sh("ip", "-n", netns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", BRIDGE_NS)
        sh("ip", "-n", BRIDGE_NS, "link", "set", port, "master", "br0", "up")
        sh("ip", "-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
        sh("ip", "-n", netns, "link", "set", "eth0", "up")
        sh("ip", "-n", netns, "link", "set", "lo", "up")


def host_links() -> set[str]:
    """The network interfaces of this machine's own namespace."""
    return {line.split()[0] for line in sh("ip", "-br", "link").stdout.splitlines() if line.strip()}


def our_namespaces() -> list[str]:
    listed = sh("ip", "netns", "list", check=False).stdout.split("\n")
    return [line.split()[0] for line in listed if line.startswith(f"{PREFIX}-")]


# -- the dockerds ---------------------------------------------------------------------------


def start_dockerd(host: SwarmHost) -> None:
    for directory in (host.exec_root, host.data_root):
        directory.mkdir(parents=True, exist_ok=True)
    config = RUN / f"{host.name}.json"
    config.write_text(json.dumps(DAEMON_CONFIG))
    dockerd = (f"hostname {host.name} && exec dockerd --config-file {config} --data-root {host.data_root}"
               f" --exec-root {host.exec_root} -H {host.docker_url} --pidfile {host.pidfile}")
    with open(host.log, "ab") as log:
        subprocess.Popen(["nsenter", f"--net=/var/run/netns/{host.netns}", "unshare", "--uts", "sh", "-c", dockerd],
                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def docker(host: SwarmHost, *args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return sh("docker", "-H", host.docker_url, *args, timeout=timeout, **kwargs)


def dockerd_answers(host: SwarmHost) -> bool:
    return host.socket.exists() and docker(host, "info", "--format", "{{.ID}}", check=False, timeout=10).returncode == 0


def alive(pid: int) -> bool:
    """Whether `pid` still runs: a dead child of ours is reaped, a zombie counts as gone."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child (an earlier run's), or reaped already
        pass
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop_dockerd(host: SwarmHost) -> None:
    """Leave the swarm, remove every container, stop dockerd by its pidfile (SIGKILL after 30 s)."""
    if not host.pidfile.exists():
        return
    try:
        pid = int(host.pidfile.read_text().strip())
    except ValueError:
        return
    if not alive(pid):
        return
    if dockerd_answers(host):
        docker(host, "swarm", "leave", "--force", check=False, timeout=30)
        # One at a time: concurrent removals of host-network containers can hang dockerd 20.10.
        for container_id in docker(host, "ps", "-aq", check=False, timeout=30).stdout.split():
            docker(host, "rm", "-f", container_id, check=False, timeout=60)
    os.kill(pid, signal.SIGTERM)  # the dockerd this module started, by its pidfile
    try:
        wait_for(lambda: not alive(pid), 30, f"{host.name}'s dockerd stopping")
    except AssertionError:
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not alive(pid), 10, f"{host.name}'s dockerd killed")


def unmount_below(*roots: Path) -> None:
    """Every mount under `roots`, deepest first (nsfs of <exec-root>/netns/default, overlays)."""
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    prefixes = tuple(str(root) + "/" for root in roots)
    for mount in sorted((m for m in mounts if m.startswith(prefixes)), key=len, reverse=True):
        sh("umount", "-l", mount, check=False)


def teardown() -> None:
    with ThreadPoolExecutor(len(HOSTS)) as pool:
        list(pool.map(stop_dockerd, HOSTS))
    unmount_below(RUN, DATA)
    if DATA.is_mount():
        sh("umount", "-l", str(DATA), check=False)
    for netns in our_namespaces():
        sh("ip", "netns", "del", netns, check=False)
    # Data roots hold root-owned overlay layers: rm -rf, after the mounts are gone.
    for root in (DATA, RUN):
        if root.exists():
            sh("rm", "-rf", "--one-file-system", str(root), check=False, timeout=300)


# -- the swarm --------------------------------------------------------------------------------


def setup() -> None:
    teardown()
    RUN.mkdir(parents=True)
    DATA.mkdir(parents=True)
    sh("mount", "-t", "tmpfs", "-o", "mode=700,size=8g", f"{PREFIX}-data", str(DATA))
    SOCKET_ROOT.mkdir()
    ETC.mkdir()
    make_network()
    for host in HOSTS:
        start_dockerd(host)
    for host in HOSTS:
        wait_for(lambda: dockerd_answers(host), 60, f"{host.name}'s dockerd answering")
    manager, *workers = HOSTS
    docker(manager, "swarm", "init", "--advertise-addr", manager.address, "--listen-addr", f"{manager.address}:2377")
    token = docker(manager, "swarm", "join-token", "-q", "worker").stdout.strip()
    for host in workers:
        docker(host, "swarm", "join", "--token", token, "--advertise-addr", host.address,
               "--listen-addr", f"{host.address}:2377", f"{manager.address}:2377")
    for node in docker(manager, "node", "ls", "-q").stdout.split():
        docker(manager, "node", "update", "--label-add", "tmpnb.node=true", node)


def load_images(*images: str) -> None:
    """`docker save` once from this machine's dockerd, `docker load` on every host at once."""
    archive = DATA / "images.tar"
    sh("docker", "save", "-o", str(archive), *images, timeout=300)
    with ThreadPoolExecutor(len(HOSTS)) as pool:
        list(pool.map(lambda host: docker(host, "load", "-i", str(archive), timeout=300), HOSTS))
    archive.unlink()


def deploy(stack_file: Path, stack: str, env: dict[str, str]) -> None:
    docker(HOSTS[0], "stack", "deploy", "--resolve-image=never", "-c", str(stack_file), stack,
           env={**os.environ, **env})


def service_containers(host: SwarmHost, service: str) -> list[dict]:
    """The running containers of a swarm service on `host`: [{"id", "pid"}]."""
    ids = docker(host, "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={service}").stdout.split()
    found = []
    for container_id in ids:
        pid = docker(host, "inspect", "--format", "{{.State.Pid}}", container_id).stdout.strip()
        found.append({"id": container_id, "pid": int(pid)})
    return found


# -- a visitor in the client namespace ----------------------------------------------------------


def client(*args: str, timeout: float = 120):
    """Run this file as a visitor inside the client namespace; its JSON answer."""
    return on(CLIENT_NS, *args, timeout=timeout)


def on(netns: str, *args: str, timeout: float = 120):
    """Run this file with `args` inside network namespace `netns` (the client's, or a host's to
    reach what its node serves on loopback); its JSON answer."""
    done = sh("nsenter", f"--net=/var/run/netns/{netns}", sys.executable, str(Path(__file__)), *args,
              timeout=timeout, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{netns} {args}: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def _client_main(command: str, *args: str) -> object:
    sys.path.insert(0, str(HERE))
    from urllib.parse import urlsplit

    import tmpnb_process as tp

    if command == "get-json":
        [url] = args
        parts = urlsplit(url)
        return tp.call(f"{parts.scheme}://{parts.netloc}", "GET", parts.path).json()
    if command == "get-text":
        [url] = args
        parts = urlsplit(url)
        return tp.call(f"{parts.scheme}://{parts.netloc}", "GET", parts.path).body.decode()
    if command == "visit":  # through the redirector: where it sent us, and our server there
        [redirector] = args
        reply = tp.call(redirector, "GET", "/")
        if reply.status != 302:
            return {"status": reply.status}
        location = urlsplit(reply.headers["location"])
        node = f"{location.scheme}://{location.netloc}"
        prefix, token, _ = tp.visit(node, location.path)
        return {"node": node, "prefix": prefix, "token": token}
    if command == "answers":
        node, prefix, token = args
        return tp.call(node, "GET", prefix + "api/status", headers=tp.auth(token), timeout=10).status == 200
    if command == "kernel":
        node, prefix, token = args
        return tp.start_kernel(node, prefix, token)
    if command == "execute":
        node, prefix, token, kernel, code = args
        return tp.execute(node, prefix, token, kernel, code)
    raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    print(json.dumps(_client_main(*sys.argv[1:])))
