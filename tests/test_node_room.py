"""A node's room, as the redirector spreads visitors by it: what the node would serve now
rather than turn away, its waiting line included (issue 19: three nodes with pools of 2 and
room for 36 bounced 6 of 12 visitors, because only pooled servers counted)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.builders import build_line, build_pool
from tmpnb.config import PoolConfig
from tmpnb.redirector.choosing import choose
from tmpnb.redirector.nodes import NodeTable


def started_node(pool_size: int, capacity: int, max_waiting: int):
    rig = build_pool(PoolConfig(pool_size=pool_size, capacity=capacity, refill_delay=0))
    rig.pool.startService()
    rig.answer_all()
    return rig, build_line(rig, max_waiting=max_waiting)


def test_room_counts_the_pooled_and_the_places_in_line_the_capacity_can_boot_for():
    rig, line = started_node(pool_size=2, capacity=12, max_waiting=100)
    assert rig.pool.stats()["available"] == 2
    assert rig.pool.stats()["room"] == 12  # 2 at once, 10 more through the line


def test_room_is_bounded_by_the_places_left_in_line():
    rig, line = started_node(pool_size=2, capacity=12, max_waiting=3)
    assert line.room() == 5


def test_a_node_without_a_line_has_only_its_pooled_servers_as_room():
    rig, line = started_node(pool_size=2, capacity=12, max_waiting=0)
    assert line.room() == 2


def test_visitors_in_line_take_room_and_a_draining_node_has_none():
    rig, line = started_node(pool_size=1, capacity=4, max_waiting=10)
    tickets = [line.take() for _ in range(3)]  # 1 served at once, 2 wait for boots
    assert all(t is not None for t in tickets)
    assert line.room() == 1
    rig.pool.set_draining(True)
    assert line.room() == 0


@settings(max_examples=60, deadline=None)
@given(
    nodes=st.lists(st.tuples(st.integers(0, 3), st.integers(1, 12), st.integers(0, 12)), min_size=1, max_size=4),
    visitors=st.integers(1, 40),
    seed=st.integers(0, 2**16),
)
def test_the_redirector_bounces_nobody_a_node_could_serve(nodes, visitors, seed):
    """Nodes polled once, then a spike: each visitor sent to a node is served or waits there,
    and a visitor is bounced only when the nodes' room together is used up."""
    table = NodeTable()
    lines = {}
    for i, (pool_size, capacity, max_waiting) in enumerate(nodes):
        rig, line = started_node(min(pool_size, capacity), capacity, max_waiting)
        node = table.add(f"http://127.0.0.{i + 2}:8000")
        table.answered(node, rig.pool.stats(), table.polling(node))
        lines[node.url] = line
    total_room = sum(line.room() for line in lines.values())
    rng = random.Random(seed)
    bounced = 0
    for _ in range(visitors):
        node = choose(table, headroom=0, rng=rng)
        if node is None:
            bounced += 1
            continue
        table.sent_visitor(node)
        assert lines[node.url].take() is not None, "sent to a node that turned the visitor away"
    assert bounced == max(0, visitors - total_room)
