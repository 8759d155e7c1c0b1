"""What the confinement (tmpnb/confinement.py) costs a container's start, Docker's side and the image's.

1. Docker: create + start + wait + remove of a container running `/bin/true`, with and without
   `confinement_kwargs` (read-only root, two tmpfs mounts, ulimits, log options), alternating.
2. The image: the copy of the home skeleton into a fresh tmpfs home (`files/jupyter`), timed
   inside one confined container over `--copies` fresh homes.

    python benchmarks/confinement.py --image tmpnb/notebook:latest --rounds 12

The whole start (create → the server answering) is benchmarks/boot.py's; run it before and after.
Its containers carry the label org.tmpnb.instance=bench-confinement and are removed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import docker

from tmpnb import config
from tmpnb.confinement import confinement_kwargs

LABEL = {"org.tmpnb.instance": "bench-confinement"}

COPY = """
skeleton=/opt/notebook/share/tmpnb/home
start=$(date +%s%N)
for i in $(seq {copies}); do
    mkdir -p /tmp/h$i && cp -a -n "$skeleton/." /tmp/h$i/
done
echo $(( ($(date +%s%N) - start) / {copies} ))
"""


def docker_side(client: docker.DockerClient, image: str, rounds: int) -> dict[str, list[float]]:
    base = dict(image=image, entrypoint=["/bin/true"], network_mode="none", user="1000:1000",
                mem_limit="512m", memswap_limit="512m", detach=True, labels=LABEL)
    times: dict[str, list[float]] = {"plain": [], "confined": []}
    for _ in range(rounds):
        for name, extra in (("plain", {}), ("confined", confinement_kwargs(config.ContainerSpec()))):
            started = time.monotonic()
            container = client.containers.create(**base, **extra)
            try:
                container.start()
                container.wait()
                times[name].append(time.monotonic() - started)
            finally:
                container.remove(force=True)
    return times


def copy_side(client: docker.DockerClient, image: str, copies: int) -> float:
    """Nanoseconds per skeleton copy, the `cp` process included."""
    output = client.containers.run(
        image, ["sh", "-c", COPY.format(copies=copies)], entrypoint=[], network_mode="none", user="1000:1000",
        remove=True, labels=LABEL, **confinement_kwargs(config.ContainerSpec()))
    return float(output.decode().strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=config.DEFAULT_IMAGE)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--copies", type=int, default=50)
    args = parser.parse_args()
    client = docker.from_env()
    for name, values in docker_side(client, args.image, args.rounds).items():
        print(f"docker create+start+wait+remove, {name}: median {statistics.median(values):.3f} s, "
              f"min {min(values):.3f} s ({len(values)} runs)")
    print(f"home skeleton copy: {copy_side(client, args.image, args.copies) / 1e6:.1f} ms each")


if __name__ == "__main__":
    main()
