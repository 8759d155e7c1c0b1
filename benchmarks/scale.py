"""The control plane at 1,000, 5,000 and 20,000 tracked containers, by simulation (issue 19).

    python benchmarks/scale.py                  # 1000 5000 20000
    python benchmarks/scale.py 1000 5000        # or some sizes
    python benchmarks/scale.py --no-memory      # skip the (slower) tracemalloc pass

Real: tmpnb's Pool and container machines, the waiting line and the web's HandOut, the
heartbeat, the in-process route table, the lifecycle recorder feeding Metrics, /api/stats
(the orchestrator's resource tree) and /metrics (prometheus_client over the service's
registry), the redirector's NodeTable and choosing over 50 nodes, and, for the status round,
tmpnb.statusround.StatusRounds with real unix sockets. Simulated (tests/scalerig.py): Docker
answers at once (FakeDocker with indexed lookups), notebook servers answer readiness and
status on the next reactor turn; for the real status round one server process answers every
container's socket (each a symlink to its one listening socket). Time is a SliceClock: every
call the reactor would run is timed on its own (thread CPU), so the longest one is what a
visitor's request would wait behind; the simulated engine's own CPU is not counted.

Each size gets a fresh rig: N visitors are handed a container each through the line, the
pool refilling behind them; then the figures are taken at N.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from prometheus_client import generate_latest  # noqa: E402
from twisted.logger import globalLogBeginner  # noqa: E402
from twisted.web.resource import getChildForRequest  # noqa: E402
from twisted.web.test.requesthelper import DummyRequest  # noqa: E402

from tests.scalerig import ScaleRig, SliceClock, build_scale  # noqa: E402
from tmpnb import sockets  # noqa: E402
from tmpnb.collector import Freezer, freeze_startup_objects, freezer_service  # noqa: E402
from tmpnb.config import ContainerSpec  # noqa: E402
from tmpnb.logs import json_observer  # noqa: E402
from tmpnb.redirector.metrics import Metrics as RedirectorMetrics  # noqa: E402
from tmpnb.redirector.nodes import NodeTable  # noqa: E402
from tmpnb.redirector.web import Redirector  # noqa: E402
from tmpnb.statusround import StatusAsk, StatusRounds  # noqa: E402
from tmpnb.web import WebSettings, make_resource  # noqa: E402

HANDOUTS_TIMED = 200  # the last hand-outs before N, timed one by one
RENDERS = 200
LOOKUPS = 30_000
CHOICES = 20_000
NODES = 50
MARGINAL = 1000  # containers whose memory is traced, the last ones before N

SIMULATED = ("Docker (answers at once) and the notebook servers (answer readiness and api/status on"
             " the next reactor turn); the status round's servers are one process answering every socket")


def cpu() -> float:
    return time.thread_time()


def grow(rig: ScaleRig, tracked: int) -> list[float]:
    """Hand out until `tracked`; the last HANDOUTS_TIMED hand-outs timed (take + claim, the
    replacement's launch included; its boot's later turns are not a visitor's wait)."""
    rig.grow(max(0, tracked - HANDOUTS_TIMED))
    timings = []
    while len(rig.handed) < tracked:
        began = cpu()
        rig.hand_out()
        timings.append(cpu() - began)
        rig.turn()
    return timings


def heartbeat(rig: ScaleRig, after: float) -> dict[str, Any]:
    """The LoopingCall's next heartbeat, `after` seconds from now: its CPU (the simulated
    engine's left out), the reactor calls it took and the longest of them."""
    clock = rig.clock
    asked = rig.servers.asked
    until = clock.seconds() + after - 0.001
    while clock.seconds() < until:  # in steps, so the heartbeats before come in their time
        clock.advance(min(rig.config.cull_period / 2, until - clock.seconds()))
    clock.reset_slices()
    full = gc.get_stats()[2]["collections"]
    clock.advance(0.001)
    clock.run_until_idle()
    return {"cpu": clock.cpu_run, "slices": clock.slices_run, "longest": clock.longest.cpu,
            "longest_in": clock.longest.what, "asked": rig.servers.asked - asked,
            "full_collections": gc.get_stats()[2]["collections"] - full}


def render_stats(rig: ScaleRig) -> tuple[float, dict]:
    root = make_resource(rig.pool, WebSettings(), rig.line, gate=rig.handout.gate)
    times, body = [], b""
    for _ in range(RENDERS):
        began = cpu()
        request = DummyRequest([b"api", b"stats"])
        request.method = b"GET"
        body = getChildForRequest(root, request).render(request)
        times.append(cpu() - began)
    return statistics.median(times), json.loads(body)


def render_metrics(rig: ScaleRig) -> float:
    times = []
    for _ in range(RENDERS):
        began = cpu()
        generate_latest(rig.metrics.registry)
        times.append(cpu() - began)
    return statistics.median(times)


def route_lookups(rig: ScaleRig) -> float:
    """What the proxy does per request: match the path, touch the route."""
    rng = random.Random(19)
    paths = [f"/user/{rng.choice(rig.handed)}/api/kernels/k/channels?session_id=s".encode() for _ in range(1000)]
    routes = rig.routes
    began = cpu()
    for i in range(LOOKUPS):
        matched = routes.match(paths[i % 1000])
        assert matched is not None
        routes.touch(matched[0])
    return (cpu() - began) / LOOKUPS


def redirector_choosing() -> dict[str, float]:
    """A redirector over NODES nodes: choosing one per visitor, and its /api/stats' numbers."""
    table = NodeTable()
    rng = random.Random(19)
    for i in range(NODES):
        node = table.add(f"http://10.0.{i // 250}.{i % 250 + 1}:8000")
        table.answered(node, {"available": 10, "capacity": 400, "room": rng.randint(0, 400),
                              "waiting": {"length": 0}, "draining": i % 10 == 9}, table.polling(node))
    redirector = Redirector(table, headroom=2, rng=rng, metrics=RedirectorMetrics(table, 2))
    began = cpu()
    for _ in range(CHOICES):
        node = redirector.take("page")
        if node is not None:  # keep the rooms from running out: a poll answered meanwhile
            node.sent_at_poll = node.sent
    choose = (cpu() - began) / CHOICES
    began = cpu()
    for _ in range(RENDERS):
        redirector.stats()
    return {"choose": choose, "stats": (cpu() - began) / RENDERS}


def left_after_cull(rig: ScaleRig) -> dict[str, int]:
    stats = rig.pool.stats()
    return {"routes": len(rig.routes), "containers": len(rig.docker.running()), "machines": stats["total"],
            "handed_out": rig.handed_out_now()}


def status_round(n: int) -> dict[str, Any]:
    """tmpnb.statusround.StatusRounds over n real unix sockets (symlinks to one server's),
    driven by a SliceClock in real time: our CPU for the round, and its longest call."""
    # tmpfs, as /run (where --socket-root lives) is on most hosts; on a disk every path
    # lookup of a connect costs more.
    with tempfile.TemporaryDirectory(prefix="tnb-scale-", dir="/dev/shm") as root:
        listen = os.path.join(root, "server.sock")
        server = subprocess.Popen([sys.executable, "-c", STATUS_SERVER, listen], stdout=subprocess.PIPE)
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
            rig_spec = build_spec(root)
            asks = []
            for i in range(n):
                cid = f"c{i:011d}"
                path = sockets.socket_path(rig_spec, cid)
                os.makedirs(os.path.dirname(path))
                os.symlink(listen, path)
                asks.append(StatusAsk(cid, path, f"/user/{cid}/", "t"))
            clock = SliceClock(time.time())
            rounds = StatusRounds(clock)
            wall = time.monotonic()
            answers: list[Any] = []
            began = cpu()
            rounds.ask(asks).addCallback(answers.append)
            first = cpu() - began
            while not answers:
                time.sleep(0.02)
                clock.advance(0.02)
            wall = time.monotonic() - wall
            ok = sum(1 for a in answers[0].values() if isinstance(a, dict))
            return {"cpu": first + clock.cpu_run, "longest": max(first, clock.longest.cpu), "wall": wall,
                    "answered": ok}
        finally:
            server.terminate()
            server.wait()


def build_spec(root: str) -> ContainerSpec:
    return ContainerSpec(instance="scale", socket_root=root)


# One process answering api/status on one unix socket, HTTP/1.0 and close, as jupyter_server.
STATUS_SERVER = r"""
import asyncio, sys
BODY = b'{"started": "2027-01-15T08:00:00.000000Z", "last_activity": "2027-01-15T08:00:00.000000Z", "connections": 0, "kernels": 0}'
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(BODY), BODY)
async def serve(reader, writer):
    await reader.readuntil(b"\r\n\r\n")
    writer.write(ANSWER)
    await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_unix_server(serve, sys.argv[1], backlog=512)
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


def _traced() -> int:
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, str(REPO / "tests") + "/*"), tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    return sum(stat.size for stat in snapshot.statistics("filename"))


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(n: int, with_memory: bool) -> dict[str, Any]:
    """One rig at N. Memory: tracemalloc's count of what stays allocated by tmpnb, Twisted,
    automat and the rest of the control plane (frames in tests/ are the simulated engine's,
    left out) over MARGINAL containers handed out just before the timed ones (tracing all
    the way to 20,000 takes minutes); and the RSS growth from nothing to N, / N (the
    simulated engine's records included: an upper bound)."""
    wall = time.monotonic()
    gc.collect()
    rss_before = rss()
    rig = build_scale(capacity=n + 10)
    freeze_startup_objects()  # as `twistd tmpnb` does once the reactor runs
    # ...and its freezer (tmpnb/collector.py), ticking half a period after the heartbeats
    # (as unrelated timers do), so a thaw is seen on its own, not inside a heartbeat.
    freezer = Freezer()
    rig.clock.callLater(rig.config.cull_period / 2, freezer_service(rig.clock, freezer=freezer).startService)
    traced = None
    if with_memory:
        last = min(n - HANDOUTS_TIMED, MARGINAL)
        rig.grow(n - HANDOUTS_TIMED - last)
        gc.collect()
        tracemalloc.start()
        base = _traced()
        rig.grow(n - HANDOUTS_TIMED)
        gc.collect()
        traced = (_traced() - base) / last
        tracemalloc.stop()
    handouts = grow(rig, n)
    rss_per = (rss() - rss_before) / n
    assert rig.handed_out_now() == n and len(rig.routes) == n
    stats_time, stats = render_stats(rig)
    metrics_time = render_metrics(rig)
    lookup = route_lookups(rig)
    # The LoopingCall's heartbeats, every cull_period from the start (the visitors were all
    # handed out at the start: the clock stood still while they came).
    period = rig.config.cull_period
    rig.clock.advance(period - 1)
    for container_id in rig.handed:  # every visitor did something a second ago
        rig.routes.touch(f"/user/{container_id}")
    active = heartbeat(rig, 1)
    idle = heartbeat(rig, period)  # nothing since: each server asked, each goes idle
    still_idle = heartbeat(rig, period)  # asked again, nothing to change
    thaws_in_heartbeats = freezer.thaws
    began = cpu()
    gc.collect()
    gc_pause = cpu() - began  # a full collection as the freezer leaves them: what it did not freeze
    began = cpu()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    thaw_pause = cpu() - began  # one over everything: what the freezer's thaw costs at N
    # Everyone leaves: the heartbeat after --cull-timeout culls them all.
    culled = heartbeat(rig, rig.config.cull_timeout - 2 * period)
    left = left_after_cull(rig)
    result = {
        "tracked": n,
        "handout_cpu_p50": statistics.median(handouts),
        "handout_cpu_max": max(handouts),
        "heartbeat_active": active,
        "heartbeat_idle": idle,
        "heartbeat_still_idle": still_idle,
        "gc_full_pause": gc_pause,
        "gc_thaw_pause": thaw_pause,
        "freezer": {"thaws": thaws_in_heartbeats, "last_thaw": freezer.last_thaw},
        "stats_render": stats_time,
        "metrics_render": metrics_time,
        "route_lookup": lookup,
        "cull_all": culled,
        "left_after_cull": left,
        "stats_total": stats["total"],
        "memory": {"traced": traced, "rss": rss_per},
    }
    del rig
    gc.unfreeze()
    gc.collect()
    result["status_round"] = status_round(n)
    result["wall"] = time.monotonic() - wall
    return result


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[1000, 5000, 20000])
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc pass")
    args = parser.parse_args()
    # As under twistd: every event to a JSON-lines observer (tmpnb/logs.py), here into /dev/null.
    globalLogBeginner.beginLoggingTo([json_observer(open(os.devnull, "w"))], redirectStandardIO=False)
    print(f"simulated: {SIMULATED}; everything else is tmpnb's own code", flush=True)
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}", flush=True)
    results = []
    for n in args.sizes:
        r = measure(n, not args.no_memory)
        results.append(r)
        print(f"  {n}: done in {r['wall']:.1f}s", flush=True)
    choosing = redirector_choosing()

    print()
    print("| tracked | hand-out CPU p50 / max (ms) | /api/stats (ms) | /metrics (ms) | route lookup + touch (µs) |"
          " full GC pause: regular / over everything (ms) | memory / container (KiB: traced / RSS) |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        mem = r["memory"]
        traced = "—" if mem["traced"] is None else f"{mem['traced'] / 1024:.2f}"
        print(f"| {r['tracked']} | {ms(r['handout_cpu_p50'])} / {ms(r['handout_cpu_max'])} | {ms(r['stats_render'])}"
              f" | {ms(r['metrics_render'])} | {us(r['route_lookup'])} | {ms(r['gc_full_pause'])} / {ms(r['gc_thaw_pause'])}"
              f" | {traced} / {mem['rss'] / 1024:.2f} |")
    print()
    print("| tracked | heartbeat, all active: CPU / longest call (ms) | all idle, every server asked (simulated round)"
          " | still idle | real status round: CPU (ms) / wall (s) / longest call (ms) | worst heartbeat: all idle +"
          " real round (ms) | cull all: CPU / longest call (ms) |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        a, i, s2, c, sr = (r["heartbeat_active"], r["heartbeat_idle"], r["heartbeat_still_idle"], r["cull_all"],
                           r["status_round"])
        print(f"| {r['tracked']} | {ms(a['cpu'])} / {ms(a['longest'])} | {ms(i['cpu'])} / {ms(i['longest'])}"
              f" | {ms(s2['cpu'])} / {ms(s2['longest'])} | {ms(sr['cpu'])} / {sr['wall']:.1f} / {ms(sr['longest'])}"
              f" | {ms(i['cpu'] + sr['cpu'])} | {ms(c['cpu'])} / {ms(c['longest'])} |")
    print()
    print("per tracked container:")
    for r in results:
        n = r["tracked"]
        a, i, c, sr = r["heartbeat_active"], r["heartbeat_idle"], r["cull_all"], r["status_round"]
        print(f"  {n}: heartbeat {us(a['cpu'] / n)} µs active ({a['asked']} asked), {us(i['cpu'] / n)} µs idle"
              f" ({i['asked']} asked) + status round {us(sr['cpu'] / n)} µs; cull {us(c['cpu'] / n)} µs;"
              f" GC over everything {us(r['gc_thaw_pause'] / n)} µs (full collections during the heartbeats active / idle / still idle"
              f" / culling: {a['full_collections']} / {i['full_collections']} /"
              f" {r['heartbeat_still_idle']['full_collections']} / {c['full_collections']}); the freezer's thaws before the"
              f" GC measure: {r['freezer']['thaws']} (the last {ms(r['freezer']['last_thaw'])} ms)"
              f" [still-idle heartbeat asked {r['heartbeat_still_idle']['asked']}]; longest calls in {a['longest_in']}, {i['longest_in']},"
              f" {c['longest_in']}; left after culling all: {r['left_after_cull']}")
    print(f"redirector over {NODES} nodes: choosing a node {us(choosing['choose'])} µs, its stats {ms(choosing['stats'])} ms")
    print(json.dumps({"simulated": SIMULATED, "sizes": results, "redirector": {"nodes": NODES, **choosing},
                      "load": os.getloadavg()}))


if __name__ == "__main__":
    main()
