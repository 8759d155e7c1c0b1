"""The operator's log of a real `twistd -n tmpnb`: short at the default level, and JSON lines
for the whole service with twistd's --logger (tmpnb/logs.py)."""

from __future__ import annotations

import json
import time

import pytest

from tmpnb_process import ONE_ADDRESS, Launcher

pytestmark = pytest.mark.integration

IDLE = 20.0  # seconds the full pool sits waiting for visitors


def test_a_pool_of_three_booting_and_idling_writes_fewer_than_30_lines(launch: Launcher):
    server = launch(*ONE_ADDRESS, "--pool-size=3")
    server.wait_available(3)
    time.sleep(IDLE)  # what is measured is what gets written meanwhile, not how fast
    lines = server.log().splitlines()
    print("\n".join(lines))
    print(f"-- {len(lines)} lines")
    assert len(lines) < 30, f"{len(lines)} lines"
    assert not [line for line in lines if "Starting factory" in line or "Stopping factory" in line]
    assert sum("booting -> pooled on ready" in line for line in lines) == 3


def test_with_the_json_logger_every_line_is_a_json_event(launch: Launcher):
    server = launch(*ONE_ADDRESS, "--pool-size=1", twistd_args=["--logger=tmpnb.logs.json_observer"])
    server.wait_available(1)
    server.stop()
    lines = server.log().splitlines()
    events = [json.loads(line) for line in lines]  # every line, twistd's own included
    assert any(e.get("log_namespace", "").startswith("twisted.") for e in events)
    [ready] = [e for e in events if e.get("to_state") == "pooled"]
    assert ready["log_namespace"] == "tmpnb.lifecycle" and ready["log_level"]["name"] == "info"
    assert ready["text"].startswith(f"container {ready['container']} booting -> pooled on ready after")
    culled = [e for e in events if e.get("to_state") == "culled"]
    assert [(e["category"], e["detail"]) for e in culled] == [("stopping", None)]
    assert not [e for e in events if "factory" in e.get("log_format", "").lower()]
