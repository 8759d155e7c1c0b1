"""Content images (issue 20): what building a course repository costs, and whether its image
serves as fast and as light as the default one.

1. Build time of tests/fixtures/binder-course: cold (Docker's layer cache off for it, tmpnb's
   notebook image present: apt, uv and the Python packages are fetched again) and cached (the
   image of that content exists: `tmpnb image build --from` finds it by its hash).
2. Time to notebook, for the repository's image and for the default image, in rounds that
   alternate which image goes first: a `twistd tmpnb` with a full pool; each visitor, one after another, `GET /` (a pooled hand-out), then starts a
   kernel and runs `1+1` over its websocket. Measured from the request to the reply.
3. Idle memory of a server of each image: usage − inactive file and RSS from the container's
   memory cgroup (v1), as benchmarks/boot.py reads it, of the pooled servers `--settle` seconds
   after the pool was full.
4. With `--notebook PATH`: one server of the repository's image runs every cell of that notebook;
   its memory with the kernel alive.

    python benchmarks/content.py                       # 2 rounds, pool and visitors of 4 per image
    python benchmarks/content.py --visitors 6 --rounds 4 --skip-cold
    python benchmarks/content.py --repository tests/fixtures/binder-examples-requirements --notebook index.ipynb

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
from notebook_cells import run_notebook  # noqa: E402
from tmpnb_process import ONE_ADDRESS, Launcher, run_one_plus_one, visit  # noqa: E402

from tmpnb.config import DEFAULT_IMAGE  # noqa: E402
from tmpnb.content.builder import ensure_content_image  # noqa: E402

COURSE = REPO / "tests" / "fixtures" / "binder-course"


def build_times(client: docker.DockerClient, repository: Path, cold: bool) -> tuple[str, dict[str, float]]:
    times: dict[str, float] = {}
    if cold:
        started = time.monotonic()
        image = ensure_content_image(client, str(repository), force=True, layer_cache=False)
        times["cold build (s)"] = time.monotonic() - started
    started = time.monotonic()
    image = ensure_content_image(client, str(repository))
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


def notebook_memory(client: docker.DockerClient, image: str, notebook: str) -> dict[str, object]:
    """One server of `image`: its memory idle, then with a kernel that has run every cell of
    `notebook` (a path in the home)."""
    launcher = Launcher(client, "bench-content", ["--cleanup-on-stop"])
    try:
        server = launcher(f"--image={image}", "--pool-size=1", *ONE_ADDRESS)
        server.wait_available(1, timeout=240)
        time.sleep(10)
        (container,) = launcher.instance_containers(server)
        idle = memory_of(container.id)
        prefix, token, _ = visit(server.base, "/")
        started = time.monotonic()
        runs = run_notebook(server.base, prefix, token, notebook, timeout=300)
        elapsed = time.monotonic() - started
        errors = [run.error() for run in runs if run.error()]
        time.sleep(5)
        busy = memory_of(container.id)
        return {"notebook": notebook, "cells": len(runs), "errors": errors, "ran in (s)": round(elapsed, 2),
                "idle (usage - inactive, rss MiB)": [round(v, 1) for v in idle or ()],
                "after the notebook, kernel alive (usage - inactive, rss MiB)": [round(v, 1) for v in busy or ()]}
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
    parser.add_argument("--repository", default=str(COURSE), help="the repository (default %(default)s)")
    parser.add_argument("--notebook", help="also run this notebook of the repository (a path in the home) in "
                        "one server and read its memory with the kernel alive")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per image, alternating which goes first")
    args = parser.parse_args(argv)
    client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=900)
    load_before = os.getloadavg()
    image, times = build_times(client, Path(args.repository), cold=not args.skip_cold)
    # Rounds alternate which image goes first, so that neither pays alone for the machine's moods.
    measured: dict[str, list[dict]] = {image: [], DEFAULT_IMAGE: []}
    for round_ in range(args.rounds):
        for name in ([image, DEFAULT_IMAGE] if round_ % 2 == 0 else [DEFAULT_IMAGE, image]):
            measured[name].append(serve_and_measure(client, name, args.visitors, args.settle))
    results = [{"image": name, **{key: [v for run in runs for v in run[key]] for key in runs[0] if key != "image"}}
               for name, runs in measured.items()]
    notebook = notebook_memory(client, image, args.notebook) if args.notebook else None
    print(json.dumps({"builds": times, "runs": results, "notebook": notebook, "load before": load_before,
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
