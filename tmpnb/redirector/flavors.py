"""Flavors as the redirector knows them: what a name may look like, and what a node reports.

A node's `GET /api/stats` says which flavors it serves (docs/many-hosts.md, "Flavors across
nodes"):

    "default_flavor": "NAME",
    "flavors": {"NAME": {"image": "repo:tag", "pool_size": N, "available": N, "waiting": N,
                         "room": N}, ...}

Neither a node nor a visitor is trusted to send well-formed data. A flavor name is
`[a-z0-9-]{1,32}` or it is nothing: a visitor's other names never reach a page, a URL or a
metric label, and a node's other names (or a flavor without a sound `room`) are left out of
its report, with the reason kept for one warning per change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tmpnb.options import flavor_name

MAX_FLAVORS = 64  # per node: a report with more keeps the first 64 names (sorted)
MAX_IMAGE = 200  # characters of a flavor's image name kept for the admin listener
MAX_COUNT = 1_000_000  # a larger count is taken as this: a weight must stay a float


@dataclass(frozen=True)
class FlavorReport:
    """One flavor as a node last reported it (its numbers checked, not yet the redirector's)."""

    room: int  # what the node's top-level `room` means, for this flavor
    available: int = 0
    waiting: int = 0
    image: str | None = None


@dataclass(frozen=True)
class NodeFlavors:
    """What a node's report says of flavors: None for `flavors` means an older node (no
    `flavors` key), which serves only visitors who ask for no flavor."""

    flavors: dict[str, FlavorReport] | None
    default: str | None
    problems: tuple[str, ...] = ()  # what was left out of the report, and why


def read_flavors(stats: dict[str, Any]) -> NodeFlavors:
    """The flavors of a node's `/api/stats`, every ill-formed part left out (and said why)."""
    if "flavors" not in stats:
        return NodeFlavors(None, None)
    reported = stats["flavors"]
    problems: list[str] = []
    flavors: dict[str, FlavorReport] = {}
    if not isinstance(reported, dict):
        problems.append(f"flavors is a {type(reported).__name__}, not an object")
        reported = {}
    names = [key for key in reported if flavor_name(key) is not None]
    bad_names = [key for key in reported if flavor_name(key) is None]
    if bad_names:
        problems.append(f"{len(bad_names)} flavor names not [a-z0-9-]{{1,32}}, e.g. {_short(bad_names[0])}")
    if len(names) > MAX_FLAVORS:
        problems.append(f"{len(names)} flavors: only the first {MAX_FLAVORS} by name are kept")
    for name in sorted(names)[:MAX_FLAVORS]:
        report = _flavor_report(reported[name])
        if report is None:
            problems.append(f"flavor {name} has no room (a count)")
            continue
        flavors[name] = report
    default = stats.get("default_flavor")
    if default is not None and flavor_name(default) not in flavors:
        problems.append(f"default_flavor {_short(default)} is not one of its flavors")
        default = None
    return NodeFlavors(flavors, default, tuple(problems))


def _flavor_report(value: Any) -> FlavorReport | None:
    if not isinstance(value, dict):
        return None
    room = _count(value.get("room"))
    if room is None:
        return None
    image = value.get("image")
    image = image if isinstance(image, str) and image.isprintable() and len(image) <= MAX_IMAGE else None
    return FlavorReport(room=room, available=_count(value.get("available")) or 0,
                        waiting=_count(value.get("waiting")) or 0, image=image)


def _count(value: Any) -> int | None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return None
    return min(value, MAX_COUNT)


def _short(value: Any) -> str:
    """A hostile value, shortened for a log line."""
    return repr(value)[:40]
