"""Five minutes of an article's readers over three hosts (benchmarks/nature.py --hosts 3): the
node stack deployed by Docker Swarm on three network-namespace hosts, the redirector in front,
servers culled after a short idle time so they turn over as a day's readers' would.

Asserts what must hold at any speed, not timing: no reader lost (everyone who was not told "no
vacancy" got a working kernel and ran the welcome cells), and nothing leaked on any host once
the readers are gone (containers, routes, socket directories and the node's open fds back to
the pool's). The figures of a longer run are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.swarm, pytest.mark.nature]

REPO = Path(__file__).resolve().parents[2]


def test_five_minutes_of_readers_over_three_hosts_lose_nobody_and_leak_nothing(notebook_image):
    if os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("ip", "nsenter", "unshare", "docker")):
        reason = "needs root, iproute2, nsenter, unshare and the docker CLI"
        pytest.fail(reason) if os.environ.get("TMPNB_REQUIRE_DOCKER") == "1" else pytest.skip(reason)
    run = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "nature.py"), "--hosts", "3", "--minutes", "5",
         "--peak-rate", "0.15", "--think", "10", "--linger", "20", "--pool-size", "2", "--capacity", "8",
         "--cull-timeout", "20", "--cull-period", "2", "--step-timeout", "120", "--grace", "240"],
        cwd=REPO, env={**os.environ, "TMPNB_TEST_IMAGE": notebook_image}, capture_output=True, text=True,
        timeout=40 * 60)
    assert run.stdout.strip(), run.stderr[-4000:]
    day = json.loads(run.stdout.strip().splitlines()[-1])
    print(json.dumps(day, indent=1))
    assert day["readers"] >= 10
    assert day["lost"] == 0, (day["lost_because"], run.stderr[-4000:])
    assert day["served"] + day["bounced"] == day["readers"]
    assert day["leaked"] == {"containers": 0, "routes": 0, "socket_dirs": 0, "fds": 0}, day["hosts"]
    assert len(day["per_host"]) == 3  # every host served readers
