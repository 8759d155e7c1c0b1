"""Content images (issue 20): what building a course repository costs, and whether its image
serves as fast and as light as the default one.

1. Build time of tests/fixtures/binder-course: cold (Docker's layer cache off for it, tmpnb's
   notebook image present: apt, uv and the Python packages are fetched again) and cached (the
   image of that content exists: `tmpnb image build --from` finds it by its hash).
2. Time to notebook, for the repository's image and for the default image: a `twistd tmpnb`
   with a full pool; each visitor, one after another, `GET /` (a pooled hand-out), then starts a
   kernel and runs `1+1` over its websocket. Measured from the request to the reply.
3. Idle memory of a server of each image: usage − inactive file and RSS from the container's
   memory cgroup (v1), as benchmarks/boot.py reads it, of the pooled servers `--settle` seconds
   after the pool was full.

    python benchmarks/content.py                       # pool and visitors of 4 per image
    python benchmarks/content.py --visitors 6 --skip-cold

It uses its own tmpnb instances and removes every container it made; the cold build leaves the
fixture's image in place (tests reuse it). It loads the machine: do not run it alongside others.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import docker

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "benchmarks"))

from boot import memory_of  # noqa: E402
from tmpnb_process import ONE_ADDRESS, Launcher, run_one_plus_one, visit  # noqa: E402

from tmpnb.config import DEFAULT_IMAGE  # noqa: E402
from tmpnb.content.builder import ensure_content_image  # noqa: E402

COURSE = REPO / "tests" / "fixtures" / "binder-course"


def build_times(client: docker.DockerClient, cold: bool) -> tuple[str, dict[str, float]]:
    times: dict[str, float] = {}
    if cold:
        started = time.monotonic()
        image = ensure_content_image(client, str(COURSE), force=True, layer_cache=False)
        times["cold build (s)"] = time.monotonic() - started
    started = time.monotonic()
    image = ensure_content_image(client, str(COURSE))
    times["cached build (s)"] = time.monotonic() - started
    return image, times


def serve_and_measure(client: docker.DockerClient, image: str, visitors: int, settle: float) -> dict[str, object]:
    launcher = Launcher(client, "bench-content", ["--cleanup-on-stop"])
    try:
        server = launcher(f"--image={image}", f"--pool-size={visitors}", f"--capacity={visitors + 2}",
                          *ONE_ADDRESS, "--refill-delay=60")  # no refill boots while measuring
        server.wait_available(visitors, timeout=240)
        time.sleep(settle)
        memory = [m for m in (memory_of(c.id) for c in launcher.instance_containers(server)) if m]
        to_notebook = []
        for _ in range(visitors):
            started = time.monotonic()
            prefix, token, _ = visit(server.base, "/")
            assert run_one_plus_one(server.base, prefix, token) == "2"
            to_notebook.append(time.monotonic() - started)
        return {
            "image": image,
            "time to notebook (s)": to_notebook,
            "idle usage - inactive (MiB)": [round(m[0], 1) for m in memory],
            "idle rss (MiB)": [round(m[1], 1) for m in memory],
        }
    finally:
        problems = launcher.close()
        if problems:
            print("problems:", problems, file=sys.stderr)


def median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}" if values else "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visitors", type=int, default=4, help="pool size and visitors per image")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds after a full pool before memory is read")
    parser.add_argument("--skip-cold", action="store_true", help="leave out the cold build")
    args = parser.parse_args(argv)
    client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=900)
    load_before = os.getloadavg()
    image, times = build_times(client, cold=not args.skip_cold)
    results = [serve_and_measure(client, image, args.visitors, args.settle),
               serve_and_measure(client, DEFAULT_IMAGE, args.visitors, args.settle)]
    print(json.dumps({"builds": times, "runs": results, "load before": load_before,
                      "load after": os.getloadavg()}, indent=1))
    print()
    print("| | " + " | ".join(r["image"] for r in results) + " |")
    print("|---|" + "---|" * len(results))
    for key in ("time to notebook (s)", "idle usage - inactive (MiB)", "idle rss (MiB)"):
        print(f"| {key}, median | " + " | ".join(median(r[key]) for r in results) + " |")
    for key, value in times.items():
        print(f"{key}: {value:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
