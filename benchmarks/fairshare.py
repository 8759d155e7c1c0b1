"""One greedy client address against a second visitor (issue 21's measurement), with and without
the fair share.

    python benchmarks/fairshare.py                       # pool 3, capacity 30, 60 requests
    python benchmarks/fairshare.py --capacity 20 --requests 40

For each of "no limit" (as tmpnb was before issue 21: `ONE_ADDRESS`), "the rate only"
(`--client-share 1`) and the defaults, in one run: `twistd -n tmpnb` with the pool and capacity above; once
the pool is full, one address (sockets bound to 127.0.0.2) sends `--requests` `GET /` at once,
not following the redirects (as `curl` without `-L`); then a visitor on 127.0.0.3 opens `/` as
`curl -L` does (following the waiting line's 303s; after a No-vacancy 503 again in 5 s, as its
page does) and then their notebook page. Reported: what
the greedy address got (302 = a server, 303 = a place in the waiting line, which a container is
booted for, 429 = refused, 503 = no vacancy), the seconds its burst took, what it holds right
after (containers handed out and places in line), and the second visitor's seconds to the redirect into their server and to the page.

Runs tmpnb as a subprocess on loopback (tests/integration/tmpnb_process.py), with its own instance
and socket root, stops it by PID and checks nothing is left behind.
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import docker

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from tmpnb_process import ONE_ADDRESS, Launcher, Tmpnb  # noqa: E402  (the shared helper lives with the integration tests)


def get(server: Tmpnb, source: str, path: str, timeout: float = 120) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout, source_address=(source, 0))
    try:
        connection.request("GET", path, headers={"Host": f"127.0.0.1:{server.port}"})
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("Location") or ""
    finally:
        connection.close()


def greedy(server: Tmpnb, requests: int) -> tuple[Counter, float]:
    statuses: list = []

    def one() -> None:
        try:
            statuses.append(get(server, "127.0.0.2", "/")[0])
        except OSError as e:
            statuses.append(type(e).__name__)

    threads = [threading.Thread(target=one) for _ in range(requests)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Counter(statuses), time.monotonic() - began


def second_visitor(server: Tmpnb) -> tuple[float, float]:
    """Seconds to the redirect into their own server (following 303s), and to its page."""
    began = time.monotonic()
    path = "/"
    for _ in range(100):
        status, location = get(server, "127.0.0.3", path)
        if status == 503:  # No vacancy: the page reloads itself after Retry-After (5 s)
            time.sleep(5)
            path = "/"
            continue
        if status == 302 and location.startswith("/user/"):
            redirected = time.monotonic() - began
            status, _ = get(server, "127.0.0.3", location)
            assert status in (200, 302), status
            return redirected, time.monotonic() - began
        if status in (303, 302):
            path = location
            continue
        raise SystemExit(f"the second visitor got {status}")
    raise SystemExit("the second visitor never got a server")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pool", type=int, default=3)
    parser.add_argument("--capacity", type=int, default=30)
    parser.add_argument("--requests", type=int, default=60)
    args = parser.parse_args()
    client = docker.DockerClient(base_url="unix:///var/run/docker.sock")
    print(f"# pool {args.pool}, capacity {args.capacity}, {args.requests} GET / from one address; "
          f"load {os.getloadavg()[0]:.1f}")
    print("| share | greedy got 302 / 303 / 429 / 503 / other | its burst (s) | it holds | 2nd visitor: redirect (s) | page (s) |")
    print("|---|---|---|---|---|---|")
    limits = (("none, as before issue 21", ONE_ADDRESS), ("the rate only (--client-share 1)", ("--client-share=1",)),
              ("default (share 0.25, burst 20, 12/min)", ()))
    for name, options in limits:
        launch = Launcher(client, "bench-fairshare", ["--cleanup-on-stop"])
        try:
            server = launch(f"--pool-size={args.pool}", f"--capacity={args.capacity}", *options, "--boot-timeout=120")
            server.wait_available(args.pool, timeout=400)
            got, took = greedy(server, args.requests)
            stats = server.stats()
            holds = stats["states"].get("assigned", 0) + stats["waiting"]["length"]
            redirected, page = second_visitor(server)
            other = sum(n for k, n in got.items() if k not in (302, 303, 429, 503))
            print(f"| {name} | {got[302]} / {got[303]} / {got[429]} / {got[503]} / {other} | {took:.2f} | {holds} "
                  f"| {redirected:.2f} | {page:.2f} |")
        finally:
            left = launch.close()
            if left:
                raise SystemExit(f"left behind: {left}")


if __name__ == "__main__":
    main()
