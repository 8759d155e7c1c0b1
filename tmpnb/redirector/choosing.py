"""Choosing a node for a new visitor: pure functions over the NodeTable's records (their
`room` is tmpnb.redirector.nodes.room)."""

from __future__ import annotations

import random
from collections.abc import Iterable

from tmpnb.redirector.nodes import Node, room


def candidates(nodes: Iterable[Node], headroom: int) -> list[tuple[Node, int]]:
    """The nodes a visitor may be sent to, with their room: up, not draining, a public_url the
    redirector accepts (tmpnb/redirector/publicurls.py), room left."""
    return [(node, r) for node in nodes
            if node.up and not node.draining and node.bad_public_url is None and (r := room(node, headroom)) > 0]


def choose(nodes: Iterable[Node], headroom: int, rng: random.Random, exclude: Iterable[Node] = ()) -> Node | None:
    """A node chosen at random, weighted by its room; None when no node has room."""
    excluded = {id(n) for n in exclude}
    pairs = [(n, r) for n, r in candidates(nodes, headroom) if id(n) not in excluded]
    if not pairs:
        return None
    # Not "the first with room": overflow must not pile onto one node in list order.
    return rng.choices([n for n, _ in pairs], weights=[r for _, r in pairs])[0]
