"""What the redirector knows of each node: health, drain, room, and its own recent redirects.

Room is what the node last reported it can still serve (its `room`: pooled servers, and the
places in its waiting line that its capacity can still boot for; a node without that figure
reports only `available`, minus those already waiting in its line), minus a headroom, minus
the visitors this redirector sent it since the poll that answered was sent: so a burst
between two polls spreads out on local counts instead of landing on stale numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger

log = Logger()


def normalized_url(url: str) -> str:
    """A node's URL as the redirector keys it: scheme://host[:port][/prefix], no trailing slash.
    Raises ValueError for anything that is not an http(s) URL with a host."""
    from urllib.parse import urlsplit

    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"not a node URL (http[s]://host[:port]): {url!r}")
    parts.port  # raises ValueError for a bad port
    return url.rstrip("/")


@dataclass
class Thresholds:
    """How many failed polls in a row mark a node down, and successes bring it back up."""

    down_after: int = 2
    up_after: int = 2


@dataclass
class Node:
    url: str  # where the redirector polls it and forwards API spawns
    source: str = "option"  # "option" (--node), "file" (--nodes-file) or "admin"
    up: bool = False
    # A node never seen comes up on its first answer; one that went down needs up_after.
    ever_up: bool = False
    failures: int = 0  # in a row
    successes: int = 0  # in a row
    draining: bool = False
    available: int = 0
    waiting: int = 0  # visitors in the node's waiting line, where it has one: ahead of ours
    serves: int | None = None  # the node's own `room`: visitors it can still serve, line included
    capacity: int = 0
    name: str = ""
    public_url: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    sent: int = 0  # visitors sent to it, ever
    sent_at_poll: int = 0  # `sent` when the poll that last answered was sent
    last_error: str | None = None

    @property
    def pending(self) -> int:
        """Visitors sent since the poll behind `available` left: not in its numbers yet."""
        return self.sent - self.sent_at_poll

    @property
    def visitor_url(self) -> str:
        """The URL visitors are sent to: the node's --public-url, else the URL it is polled at."""
        return (self.public_url or self.url).rstrip("/")

    def describe(self, headroom: int) -> dict[str, Any]:
        return {
            "url": self.url,
            "public_url": self.visitor_url,
            "node": self.name,
            "source": self.source,
            "up": self.up,
            "draining": self.draining,
            "available": self.available,
            "waiting": self.waiting,
            "capacity": self.capacity,
            "pending": self.pending,
            "room": room(self, headroom),
            "sent": self.sent,
            "error": self.last_error,
        }


def room(node: Node, headroom: int) -> int:
    """Visitors `node` can still take, as far as this redirector knows (never below 0)."""
    serves = node.serves if node.serves is not None else node.available - node.waiting
    return max(0, serves - headroom - node.pending)


class NodeTable:
    """The nodes, by URL; the one place their health and counts change."""

    def __init__(self, thresholds: Thresholds | None = None) -> None:
        self.thresholds = thresholds or Thresholds()
        self._nodes: dict[str, Node] = {}

    def __iter__(self):
        return iter(list(self._nodes.values()))

    def __len__(self) -> int:
        return len(self._nodes)

    def get(self, url: str) -> Node | None:
        try:
            return self._nodes.get(normalized_url(url))
        except ValueError:
            return None

    def add(self, url: str, source: str = "option") -> Node:
        """Add a node (ValueError for a bad URL); an existing one is kept as it is."""
        url = normalized_url(url)
        node = self._nodes.get(url)
        if node is None:
            node = self._nodes[url] = Node(url=url, source=source)
            log.info("node {url} added ({source})", url=url, source=source)
        return node

    def remove(self, url: str) -> bool:
        """Remove a node; False (never an exception) when there is no such node."""
        node = self.get(url)
        if node is None:
            return False
        del self._nodes[node.url]
        log.info("node {url} removed", url=node.url)
        return True

    def replace_source(self, source: str, urls: Iterable[str]) -> None:
        """The nodes of `source` become `urls` (already checked); nodes that stay keep their
        state, nodes of other sources are untouched."""
        wanted = [normalized_url(u) for u in urls]
        for node in list(self._nodes.values()):
            if node.source == source and node.url not in wanted:
                self.remove(node.url)
        for url in wanted:
            self.add(url, source)

    # -- what polls and forwarded spawns report

    def polling(self, node: Node) -> int:
        """A poll of `node` is being sent: returns the count its answer will be judged from."""
        return node.sent

    def answered(self, node: Node, stats: dict[str, Any], sent_then: int) -> None:
        node.failures = 0
        node.successes += 1
        node.last_error = None
        node.available = _count(stats.get("available"))
        node.waiting = _waiting(stats.get("waiting"))
        node.serves = _count(stats["room"]) if "room" in stats else None
        node.capacity = _count(stats.get("capacity"))
        node.draining = bool(stats.get("draining", False))
        node.name = str(stats.get("node") or "")
        public_url = stats.get("public_url")
        node.public_url = public_url if isinstance(public_url, str) and public_url else None
        node.stats = stats
        node.sent_at_poll = sent_then
        if not node.up and (not node.ever_up or node.successes >= self.thresholds.up_after):
            node.up = node.ever_up = True
            log.info("node {url} is up", url=node.url)

    def failed(self, node: Node, cause: str) -> None:
        node.successes = 0
        node.failures += 1
        node.last_error = cause
        if node.up and node.failures >= self.thresholds.down_after:
            node.up = False
            log.warn("node {url} is down: {cause}", url=node.url, cause=cause)

    def sent_visitor(self, node: Node) -> None:
        node.sent += 1

    def found_full(self, node: Node) -> None:
        """The node answered a forwarded spawn with 429: nothing left until it says otherwise."""
        node.available = 0
        node.serves = 0 if node.serves is not None else None
        node.sent_at_poll = node.sent


def _waiting(value: Any) -> int:
    """Visitors in a node's waiting line: its stats say {"length": n, …} (tmpnb/waitingline.py)."""
    return _count(value.get("length")) if isinstance(value, dict) else _count(value)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
