"""The researchers' report over a lifecycle log (JSON lines written by tmpnb.lifecycle).

Everything but ``main`` and ``plot`` is a pure function over parsed records, each record a
dict with keys container, from, to, input, time, iso, seconds_in_previous, cause, category,
detail (category and detail: tmpnb.lifecycle.categorize; older logs get them when read).

    python -m tmpnb.lifecycle report FILE [--plot DIR]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import textwrap
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

from tmpnb.lifecycle import categorize, flavor_of, load, transitions

Record = dict[str, Any]

# States a container can be found in while it exists, in lifecycle order (the timeline's stack).
LIVE_STATES = ("requested", "booting", "pooled", "assigned", "idle")
CULLED = "culled"


@dataclass(frozen=True)
class Summary:
    count: int
    min: float
    p50: float
    p90: float
    max: float
    mean: float


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 100]."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    position = (len(sorted_values) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    fraction = position - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


def summarize(values: Iterable[float]) -> Summary | None:
    ordered = sorted(values)
    if not ordered:
        return None
    return Summary(
        count=len(ordered),
        min=ordered[0],
        p50=percentile(ordered, 50),
        p90=percentile(ordered, 90),
        max=ordered[-1],
        mean=sum(ordered) / len(ordered),
    )


def _by_container(records: Iterable[Record]) -> dict[str, list[Record]]:
    grouped: dict[str, list[Record]] = {}
    for record in sorted(records, key=lambda r: r["time"]):
        grouped.setdefault(record["container"], []).append(record)
    return grouped


def boot_times(records: Iterable[Record]) -> list[float]:
    """Seconds from a container first entering booting to reaching pooled, retries included."""
    times = []
    for history in _by_container(records).values():
        started = None
        for record in history:
            if record["to"] == "booting" and started is None:
                started = record["time"]
            if record["to"] == "pooled" and started is not None:
                times.append(record["time"] - started)
                break
    return times


def pool_waits(records: Iterable[Record]) -> list[float]:
    """Seconds a container waited in the pool before a visitor took it."""
    return [
        r["seconds_in_previous"] for r in records if r["from"] == "pooled" and r["to"] == "assigned"
    ]


def session_lengths(records: Iterable[Record]) -> list[float]:
    """Seconds from a visitor taking a container to its cull (sessions that ended)."""
    lengths = []
    for history in _by_container(records).values():
        assigned = None
        for record in history:
            if record["to"] == "assigned" and assigned is None:
                assigned = record["time"]
            if record["to"] == CULLED and record["from"] != CULLED and assigned is not None:
                lengths.append(record["time"] - assigned)
                break
    return lengths


def idle_before_cull(records: Iterable[Record]) -> list[float]:
    """Seconds a container had been idle when it was culled."""
    return [r["seconds_in_previous"] for r in records if r["from"] == "idle" and r["to"] == CULLED]


def _cause(record: Record) -> str:
    return record.get("cause") or f"({record['input']})"


def cull_reasons(records: Iterable[Record]) -> Counter[str]:
    """Why containers were culled; a late, duplicate cull of a culled container is not counted."""
    return Counter(_cause(r) for r in records if r["to"] == CULLED and r["from"] != CULLED)


def boot_failures(records: Iterable[Record]) -> Counter[str]:
    """Every failed boot attempt, by cause (a container retried three times counts three)."""
    return Counter(_cause(r) for r in records if r["input"] == "bootFailed")


def _category(record: Record) -> str:
    if record.get("category"):
        return record["category"]
    return categorize(record["input"], record.get("cause"))[0] or f"({record['input']})"


def cull_categories(records: Iterable[Record]) -> Counter[str]:
    """Culls by category (idle, max-age, died, boot-failed, stopping, drained, ...): "idle:
    no activity for 8s" and "... for 9s" are one category."""
    return Counter(_category(r) for r in records if r["to"] == CULLED and r["from"] != CULLED)


def boot_failure_categories(records: Iterable[Record]) -> Counter[str]:
    """Failed boot attempts by category (not-ready, exited, docker-timeout, launch-failed, ...)."""
    return Counter(_category(r) for r in records if r["input"] == "bootFailed")


def state_timeline(records: Iterable[Record]) -> tuple[list[float], dict[str, list[int]]]:
    """How many containers were in each live state over time.

    Returns change times and, per state in LIVE_STATES, the count from each time until the
    next.  A container's first record also says since when it was in its first state.
    """
    changes: list[tuple[float, int, str, str]] = []  # (time, order, container, new state)
    seen: set[str] = set()
    for order, record in enumerate(sorted(records, key=lambda r: r["time"])):
        if record["container"] not in seen:
            seen.add(record["container"])
            entered = record["time"] - record["seconds_in_previous"]
            changes.append((entered, -1, record["container"], record["from"]))
        changes.append((record["time"], order, record["container"], record["to"]))
    changes.sort(key=lambda c: (c[0], c[1]))

    current: dict[str, str] = {}
    times: list[float] = []
    counts: dict[str, list[int]] = {state: [] for state in LIVE_STATES}
    for when, _, container, state in changes:
        current[container] = state
        tally = Counter(current.values())
        if times and times[-1] == when:  # several changes at one instant: keep the last
            for state_name in LIVE_STATES:
                counts[state_name][-1] = tally[state_name]
        else:
            times.append(when)
            for state_name in LIVE_STATES:
                counts[state_name].append(tally[state_name])
    return times, counts


DISTRIBUTIONS = (
    ("boot time", boot_times),
    ("pool wait", pool_waits),
    ("session length", session_lengths),
    ("idle before cull", idle_before_cull),
)


def text_histogram(values: Sequence[float], bins: int = 10, width: int = 40) -> list[str]:
    """Lines of a horizontal bar histogram: "[low, high)  count  ####"."""
    if not values:
        return []
    low, high = min(values), max(values)
    if low == high:
        return [f"  {low:10.3f}              {len(values):6d}  " + "#" * width]
    step = (high - low) / bins
    counts = [0] * bins
    for value in values:
        counts[min(int((value - low) / step), bins - 1)] += 1
    peak = max(counts)
    return [
        (
            f"  {low + i * step:10.3f} - {low + (i + 1) * step:10.3f}  {n:6d}  "
            + "#" * round(width * n / peak)
        ).rstrip()
        for i, n in enumerate(counts)
    ]


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="seconds")


def format_report(records: Sequence[Record], bins: int = 10) -> str:
    if not records:
        return "no lifecycle events\n"
    start = min(r["time"] for r in records)
    end = max(r["time"] for r in records)
    containers = {r["container"] for r in records}
    lines = [
        f"{len(containers)} containers, {len(records)} transitions,"
        f" {_iso(start)} to {_iso(end)} ({end - start:.0f} s)",
        "",
        f"{'seconds':<18}{'count':>7}{'min':>10}{'p50':>10}{'p90':>10}{'max':>10}{'mean':>10}",
    ]
    samples = {name: measure(records) for name, measure in DISTRIBUTIONS}
    for name, values in samples.items():
        s = summarize(values)
        if s is None:
            lines.append(f"{name:<18}{0:>7}")
        else:
            lines.append(
                f"{name:<18}{s.count:>7}{s.min:>10.3f}{s.p50:>10.3f}{s.p90:>10.3f}"
                f"{s.max:>10.3f}{s.mean:>10.3f}"
            )
    for title, counter in (
        ("culls by category", cull_categories(records)),
        ("boot failures by category", boot_failure_categories(records)),
    ):
        lines += ["", f"{title} ({sum(counter.values())})"]
        lines += [f"  {n:6d}  {category}" for category, n in counter.most_common()] or ["  none"]
    lines += flavor_breakdown(records)
    for name, values in samples.items():
        if values:
            lines += ["", f"{name} (s)"] + text_histogram(values, bins)
    return "\n".join(lines) + "\n"


def flavor_breakdown(records: Sequence[Record]) -> list[str]:
    """Containers, hand-outs and boot p50 by flavor (tmpnb/flavors.py); nothing for a log of
    one flavor."""
    by_flavor: dict[str, list[Record]] = {}
    for record in records:
        by_flavor.setdefault(flavor_of(record), []).append(record)
    if len(by_flavor) < 2:
        return []
    lines = ["", f"{'by flavor':<18}{'containers':>11}{'handouts':>10}{'boot p50':>10}"]
    for name, own in sorted(by_flavor.items()):
        handouts = sum(1 for r in own if r["from"] == "pooled" and r["to"] == "assigned")
        boots = summarize(boot_times(own))
        p50 = f"{boots.p50:>10.3f}" if boots is not None else f"{'-':>10}"
        lines.append(f"{name:<18}{len({r['container'] for r in own}):>11}{handouts:>10}{p50}")
    return lines


def plot(records: Sequence[Record], directory: str, bins: int = 20) -> list[str]:
    """Draw timeline.png (containers by state) and histograms.png in ``directory``."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    os.makedirs(directory, exist_ok=True)
    written = []

    times, counts = state_timeline(records)
    start = times[0] if times else 0.0
    fig, ax = plt.subplots(figsize=(10, 4.5))
    if times:
        xs = [t - start for t in times]
        bottom = [0] * len(xs)
        for state in LIVE_STATES:
            top = [b + c for b, c in zip(bottom, counts[state])]
            ax.fill_between(xs, bottom, top, step="post", label=state, linewidth=0)
            bottom = top
        ax.set_xlim(0, xs[-1] or 1)
    ax.set_xlabel(f"seconds since {_iso(start)}")
    ax.set_ylabel("containers")
    ax.set_title("containers by state")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path = os.path.join(directory, "timeline.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)

    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for ax, (name, measure) in zip(axes.flat, DISTRIBUTIONS):
        values = measure(records)
        if values:
            ax.hist(values, bins=bins)
        ax.set_title(f"{name} (n={len(values)})")
        ax.set_xlabel("seconds")
        ax.set_ylabel("containers")
    for ax, (name, counter) in zip(
        axes.flat[len(DISTRIBUTIONS) :],
        (("culls by category", cull_categories(records)),
         ("boot failures by category", boot_failure_categories(records))),
    ):
        causes = counter.most_common()
        labels = [textwrap.fill(c, 22) for c, _ in causes]
        ax.barh(labels, [n for _, n in causes])
        ax.tick_params(axis="y", labelsize=8)
        ax.invert_yaxis()
        ax.set_title(f"{name} (n={sum(counter.values())})")
    fig.tight_layout()
    path = os.path.join(directory, "histograms.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tmpnb.lifecycle")
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="summarise a lifecycle log (JSON lines)")
    report.add_argument("file", nargs="+", help="one or several logs (several runs or nodes)")
    report.add_argument("--plot", metavar="DIR", help="also draw timeline and histograms as PNG")
    report.add_argument("--bins", type=int, default=10, help="bins of the text histograms")
    args = parser.parse_args(argv)

    records = transitions(load(*args.file))  # the waiting line's records are not summarised here
    sys.stdout.write(format_report(records, args.bins))
    if args.plot:
        for path in plot(records, args.plot):
            print(f"wrote {path}")
    return 0
