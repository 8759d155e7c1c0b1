"""Choosing a node for a new visitor: pure functions over the NodeTable's records (their
`room` is tmpnb.redirector.nodes.room, or for a flavor tmpnb.redirector.nodes.flavor_room)."""

from __future__ import annotations

import random
from collections.abc import Iterable

from tmpnb.redirector.nodes import Node, flavor_room


def candidates(nodes: Iterable[Node], headroom: int, flavor: str | None = None) -> list[tuple[Node, int]]:
    """The nodes a visitor asking for `flavor` (None: none) may be sent to, with their room:
    up, not draining, a public_url the redirector accepts (tmpnb/redirector/publicurls.py),
    serving that flavor, room left."""
    return [(node, r) for node in nodes
            if node.up and not node.draining and node.bad_public_url is None
            and (r := flavor_room(node, flavor, headroom)) > 0]


def choose(nodes: Iterable[Node], headroom: int, rng: random.Random, exclude: Iterable[Node] = (),
           flavor: str | None = None) -> Node | None:
    """A node chosen at random, weighted by its room (for `flavor`); None when no node has room."""
    excluded = {id(n) for n in exclude}
    pairs = [(n, r) for n, r in candidates(nodes, headroom, flavor) if id(n) not in excluded]
    if not pairs:
        return None
    # Not "the first with room": overflow must not pile onto one node in list order.
    return rng.choices([n for n, _ in pairs], weights=[r for _, r in pairs])[0]


def flavors_served(nodes: Iterable[Node]) -> list[str]:
    """The flavors the nodes that are up report, sorted: what a visitor may ask for. A draining
    or full node's flavors count (they are known, only not free now)."""
    return sorted({name for node in nodes if node.up and node.flavors is not None for name in node.flavors})
