"""What the redirector knows of each node: health, drain, room, and its own recent redirects.

Room is what the node last reported it can still serve (its `room`: pooled servers, and the
places in its waiting line that its capacity can still boot for; a node without that figure
reports only `available`, minus those already waiting in its line), minus a headroom, minus
the visitors this redirector sent it since the poll that answered was sent: so a burst
between two polls spreads out on local counts instead of landing on stale numbers.

A node that reports flavors (tmpnb/redirector/flavors.py) has a room per flavor, counted the
same way with the visitors sent for that flavor since the poll; a visitor who asks for no
flavor takes the room of the node's default flavor. A flavor's room never exceeds the node's
own: every flavor shares the node's one capacity.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from twisted.logger import Logger

from tmpnb.redirector.flavors import MAX_COUNT, FlavorReport, read_flavors
from tmpnb.redirector.publicurls import BadPublicURL, PublicURLPolicy

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
    bad_public_url: str | None = None  # what it reported and why it is refused: no visitors go there
    stats: dict[str, Any] = field(default_factory=dict)
    sent: int = 0  # visitors sent to it, ever
    sent_at_poll: int = 0  # `sent` when the poll that last answered was sent
    last_error: str | None = None
    # What it serves: None for an older node (no `flavors` in its stats), which serves only
    # visitors who ask for no flavor; else each flavor as reported, and its default.
    flavors: dict[str, FlavorReport] | None = None
    default_flavor: str | None = None
    flavor_problems: tuple[str, ...] = ()  # what its last report had that was left out
    sent_flavor: Counter[str] = field(default_factory=Counter)  # visitors sent, by the flavor they take
    sent_flavor_at_poll: dict[str, int] = field(default_factory=dict)  # `sent_flavor` at that poll
    # `sent` and `sent_flavor` when the poll in flight was sent (polls of a node never overlap)
    sent_flavor_polling: tuple[int, dict[str, int]] | None = None

    @property
    def pending(self) -> int:
        """Visitors sent since the poll behind `available` left: not in its numbers yet."""
        return self.sent - self.sent_at_poll

    def pending_flavor(self, flavor: str) -> int:
        """Visitors sent for `flavor` since the poll behind its room left."""
        return self.sent_flavor[flavor] - self.sent_flavor_at_poll.get(flavor, 0)

    def flavor_taken(self, flavor: str | None) -> str | None:
        """The flavor a visitor asking for `flavor` takes here: the default for none, or None
        (the node's room as a whole) where the node names no flavor it serves them from."""
        if flavor is not None:
            return flavor
        if self.flavors is not None and self.default_flavor in self.flavors:
            return self.default_flavor
        return None

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
            "bad_public_url": self.bad_public_url,
            "default_flavor": self.default_flavor,
            "flavors": None if self.flavors is None else {
                name: {"room": flavor_room(self, name, headroom), "reported_room": report.room,
                       "available": report.available, "waiting": report.waiting,
                       "pending": self.pending_flavor(name), "image": report.image}
                for name, report in self.flavors.items()},
            "flavor_problems": list(self.flavor_problems),
        }


def room(node: Node, headroom: int) -> int:
    """Visitors `node` can still take, as far as this redirector knows (never below 0)."""
    serves = node.serves if node.serves is not None else node.available - node.waiting
    return max(0, serves - headroom - node.pending)


def serves(node: Node, flavor: str | None) -> bool:
    """Whether `node` serves visitors asking for `flavor` (None: no flavor, which every node
    serves, from its default flavor or, for an older node, its one image)."""
    return flavor is None or (node.flavors is not None and flavor in node.flavors)


def flavor_room(node: Node, flavor: str | None, headroom: int) -> int:
    """Visitors asking for `flavor` (None: none) that `node` can still take, as far as this
    redirector knows: 0 where it does not serve that flavor, never more than its own room."""
    if not serves(node, flavor):
        return 0
    whole = room(node, headroom)
    taken = node.flavor_taken(flavor)
    if taken is None or node.flavors is None:
        return whole
    return min(whole, max(0, node.flavors[taken].room - headroom - node.pending_flavor(taken)))


class NodeTable:
    """The nodes, by URL; the one place their health and counts change."""

    def __init__(self, thresholds: Thresholds | None = None, public_urls: PublicURLPolicy | None = None) -> None:
        self.thresholds = thresholds or Thresholds()
        self.public_urls = public_urls or PublicURLPolicy()
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
        node.sent_flavor_polling = (node.sent, dict(node.sent_flavor))
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
        self._take_public_url(node, stats.get("public_url"))
        node.stats = stats
        node.sent_at_poll = sent_then
        self._take_flavors(node, stats, sent_then)
        if not node.up and (not node.ever_up or node.successes >= self.thresholds.up_after):
            node.up = node.ever_up = True
            log.info("node {url} is up", url=node.url)

    def _take_flavors(self, node: Node, stats: dict[str, Any], sent_then: int) -> None:
        reported = read_flavors(stats)
        node.flavors, node.default_flavor = reported.flavors, reported.default
        if reported.problems != node.flavor_problems and reported.problems:  # once per change
            log.warn("node {url} reported flavors the redirector leaves out: {problems}",
                     url=node.url, problems="; ".join(reported.problems)[:500])
        node.flavor_problems = reported.problems
        polled = node.sent_flavor_polling
        node.sent_flavor_polling = None
        if polled is not None and polled[0] == sent_then:
            node.sent_flavor_at_poll = polled[1]
        elif sent_then == node.sent:  # nothing sent since: every visitor is in these numbers
            node.sent_flavor_at_poll = dict(node.sent_flavor)
        # else: a count this table did not hand out; the older counts leave more pending (safe)

    def _take_public_url(self, node: Node, reported: Any) -> None:
        """The node's public_url, if the policy allows it; otherwise the node gets no visitors."""
        node.public_url = None
        if reported is None or reported == "":
            node.bad_public_url = None
            return
        try:
            if not isinstance(reported, str):
                raise BadPublicURL("not a string")
            node.public_url = self.public_urls.check(node.url, reported)
            node.bad_public_url = None
        except BadPublicURL as e:
            refused = f"{reported!r}: {e}"[:300]
            if refused != node.bad_public_url:  # once per change, not every poll
                log.warn("node {url} reported a public_url the redirector will not send visitors to "
                         "({refused}); it gets none until it reports a good one", url=node.url, refused=refused)
            node.bad_public_url = refused

    def failed(self, node: Node, cause: str) -> None:
        node.successes = 0
        node.failures += 1
        node.last_error = cause
        if node.up and node.failures >= self.thresholds.down_after:
            node.up = False
            log.warn("node {url} is down: {cause}", url=node.url, cause=cause)

    def sent_visitor(self, node: Node, flavor: str | None = None) -> None:
        """A visitor asking for `flavor` (None: none) was sent to `node`."""
        node.sent += 1
        taken = node.flavor_taken(flavor)
        if taken is not None:
            node.sent_flavor[taken] += 1

    def found_full(self, node: Node, flavor: str | None = None) -> None:
        """The node answered a forwarded spawn with 429: nothing left until it says otherwise
        (for the flavor asked, where it serves flavors; the node as a whole otherwise)."""
        taken = node.flavor_taken(flavor)
        if taken is not None and node.flavors is not None and taken in node.flavors:
            node.flavors[taken] = replace(node.flavors[taken], room=0, available=0)
            node.sent_flavor_at_poll[taken] = node.sent_flavor[taken]
            return
        node.available = 0
        node.serves = 0 if node.serves is not None else None
        node.sent_at_poll = node.sent

    def stopped_serving(self, node: Node, flavor: str) -> None:
        """The node answered a forwarded spawn for `flavor` with 404: it no longer serves it
        (restarted with other flavors); left out until its next report says otherwise."""
        if node.flavors is not None:
            node.flavors.pop(flavor, None)


def _waiting(value: Any) -> int:
    """Visitors in a node's waiting line: its stats say {"length": n, …} (tmpnb/waitingline.py)."""
    return _count(value.get("length")) if isinstance(value, dict) else _count(value)


def _count(value: Any) -> int:
    # Capped: a node reporting 10**400 must not make its weight overflow a float (a crash).
    return min(value, MAX_COUNT) if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
