"""Share and remix: time to a link, render costs, and remix against a plain pooled visit.

    python benchmarks/share.py                  # 30 shares, 5 first renders, 8 remixes
    python benchmarks/share.py --shares 10 --remixes 3

- time to link: `POST /api/share` of a 1 MB notebook holding PNG images, from the request to
  the 201 (the orchestrator reads the file over the container's socket, validates it with
  nbformat, strips `trusted`, stores it in SQLite). Each share changes one cell first, so each is
  a new content hash. p50 / p99.
- render: `GET /share/<id>.html` of a share never rendered (nbconvert in a child process) and
  then again (the cache), p50 / max.
- time to notebook: plain `GET /spawn/notebooks/Welcome.ipynb` → 302 → notebook page 200, against
  `POST /remix/<id>` → 302 → notebook page 200 (the remix also writes the 1 MB notebook into the
  fresh server over its socket), alternating, each from a full pool. p50 / max.

Runs `twistd -n tmpnb` as a subprocess on loopback (tests/integration/tmpnb_process.py), with its
own instance, socket root and SQLite store, stops it by PID and checks nothing is left behind.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import statistics
import struct
import sys
import time
import zlib
from pathlib import Path

import docker

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from tmpnb_process import ONE_ADDRESS, Launcher, auth, call, visit  # noqa: E402  (the shared helper lives with the integration tests)

import nbformat  # noqa: E402


def png(width: int, height: int, rng: random.Random) -> bytes:
    """A real PNG of noise (incompressible, so the notebook really is as large as it looks)."""
    rows = b"".join(b"\x00" + rng.randbytes(width * 3) for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 1)) + chunk(b"IEND", b"")


def megabyte_notebook(marker: int, rng: random.Random) -> dict:
    """About 1 MB: eight plotted-figure-sized PNG outputs and some code and text."""
    cells = [nbformat.v4.new_markdown_cell(f"# Results {marker}\nSome *text* and $x^2$.")]
    for i in range(8):
        image = base64.b64encode(png(200, 150, rng)).decode()
        cells.append(nbformat.v4.new_code_cell(f"plot({i})  # {marker}", execution_count=i + 1, outputs=[
            nbformat.v4.new_output("display_data", data={"image/png": image, "text/plain": "<Figure>"})]))
    notebook = nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}})
    return json.loads(nbformat.writes(notebook))


def put(base: str, prefix: str, token: str, name: str, notebook: dict) -> None:
    reply = call(base, "PUT", f"{prefix}api/contents/{name}",
                 json.dumps({"type": "notebook", "format": "json", "content": notebook}).encode(), auth(token))
    assert reply.status in (200, 201), reply


def timed(f):
    started = time.perf_counter()
    result = f()
    return time.perf_counter() - started, result


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1000:.0f} ms, p99 {pct(values, 0.99) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms (n={len(values)})"


def to_notebook(base: str, method: str, path: str) -> float:
    """From the first request to the notebook page's 200, following the one redirect."""
    started = time.perf_counter()
    first = call(base, method, path)
    assert first.status == 302, (first.status, first.body[:200])
    page = call(base, "GET", first.headers["location"])
    assert page.status == 200, page.status
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shares", type=int, default=30)
    parser.add_argument("--renders", type=int, default=5)
    parser.add_argument("--remixes", type=int, default=8)
    args = parser.parse_args()
    rng = random.Random(7)
    client = docker.DockerClient(base_url="unix:///var/run/docker.sock")
    launcher = Launcher(client, "bench-share", ["--cleanup-on-stop"])
    try:
        server = launcher("--pool-size=2", "--capacity=6", "--shares-per-hour=100000", *ONE_ADDRESS,
                          "--share-renders-per-minute=100000", f"--share-store=/tmp/bench-share-{os.getpid()}.sqlite3")
        server.wait_available(2)
        base = server.base
        prefix, token, _ = visit(base)
        size = len(json.dumps(megabyte_notebook(0, rng)).encode())
        print(f"notebook: {size / 1e6:.2f} MB, 8 PNG outputs")

        link_times, shares = [], []
        for i in range(args.shares):
            put(base, prefix, token, "results.ipynb", megabyte_notebook(i, rng))
            body = json.dumps({"url": prefix + "notebooks/results.ipynb"}).encode()
            seconds, reply = timed(lambda: call(base, "POST", "/api/share", body, auth(token), timeout=60))
            assert reply.status == 201, reply
            link_times.append(seconds)
            shares.append(reply.json()["url"])
        print(f"time to link ({args.shares} shares of a {size / 1e6:.1f} MB notebook): {ms(link_times)}")

        first, cached = [], []
        for url in shares[: args.renders]:
            seconds, reply = timed(lambda: call(base, "GET", url + ".html", timeout=120))
            assert reply.status == 200, reply.status
            first.append(seconds)
            for _ in range(4):
                seconds, reply = timed(lambda: call(base, "GET", url + ".html"))
                assert reply.status == 200
                cached.append(seconds)
        print(f"first render: {ms(first)}")
        print(f"cached render: {ms(cached)}")

        plain, remix = [], []
        share_id = shares[0].rsplit("/", 1)[1]
        for _ in range(args.remixes):
            for kind, times in (("plain", plain), ("remix", remix)):
                server.wait_available(2)
                if kind == "plain":
                    times.append(to_notebook(base, "GET", "/spawn/notebooks/Welcome.ipynb"))
                else:
                    times.append(to_notebook(base, "POST", f"/remix/{share_id}"))
                # Give the capacity back: cull every visitor but the sharer.
                for cid, described in server.containers().items():
                    if described["state"] in ("assigned", "idle") and cid not in prefix:
                        server.admin("DELETE", f"/api/containers/{cid}")
        print(f"time to notebook, plain pooled: {ms(plain)}")
        print(f"time to notebook, remix:        {ms(remix)}")
    finally:
        problems = launcher.close()
        if problems:
            print("problems:", problems)
        for leftover in Path("/tmp").glob(f"bench-share-{os.getpid()}.sqlite3*"):
            leftover.unlink()


if __name__ == "__main__":
    main()
