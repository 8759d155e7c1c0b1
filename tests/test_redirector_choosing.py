"""Choosing a node: the rules as properties (hypothesis), over the NodeTable's own records."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from tmpnb.redirector.choosing import candidates, choose
from tmpnb.redirector.nodes import Node, NodeTable, room

nodes_st = st.lists(
    st.builds(
        lambda i, up, draining, available, pending: _node(i, up, draining, available, pending),
        st.integers(0, 10_000), st.booleans(), st.booleans(), st.integers(0, 20), st.integers(0, 25),
    ),
    max_size=8,
    unique_by=lambda n: n.url,
)


def _node(i: int, up: bool, draining: bool, available: int, pending: int) -> Node:
    node = Node(url=f"http://10.0.{i // 250}.{i % 250 + 1}:8000", up=up, draining=draining, available=available)
    node.sent = pending
    return node


@settings(deadline=None)
@given(nodes_st, st.integers(0, 3), st.integers(0, 2**32))
def test_never_a_down_draining_or_full_node(nodes, headroom, seed):
    chosen = choose(nodes, headroom, random.Random(seed))
    if chosen is None:
        assert all(not n.up or n.draining or room(n, headroom) == 0 for n in nodes)
    else:
        assert chosen.up and not chosen.draining
        assert chosen.available - headroom - chosen.pending >= 1


@settings(deadline=None)
@given(nodes_st, st.integers(0, 3), st.integers(0, 2**32), st.integers(1, 60))
def test_a_burst_between_polls_never_sends_a_node_more_than_its_room(nodes, headroom, seed, visitors):
    """Counted locally, as the redirector does for every visitor it sends."""
    table = NodeTable()
    for node in nodes:
        table._nodes[node.url] = node
    rooms = {n.url: 0 for n in nodes} | {n.url: r for n, r in candidates(nodes, headroom)}
    sent: Counter[str] = Counter()
    rng = random.Random(seed)
    for _ in range(visitors):
        node = choose(table, headroom, rng)
        if node is None:
            break
        table.sent_visitor(node)
        sent[node.url] += 1
    assert all(sent[url] <= rooms[url] for url in rooms)
    # Turned away only when every node's room was used up.
    if sum(sent.values()) < visitors:
        assert all(sent[url] == rooms[url] for url in rooms)


@settings(max_examples=30, deadline=None)  # 4000 draws an example: slow on a loaded machine
@given(st.lists(st.integers(1, 50), min_size=2, max_size=5), st.integers(0, 2**32))
def test_spread_follows_room(rooms, seed):
    nodes = [_node(i, True, False, r, 0) for i, r in enumerate(rooms)]
    rng = random.Random(seed)
    draws = 4000
    counts = Counter(choose(nodes, 0, rng).url for _ in range(draws))
    total = sum(rooms)
    for node, r in zip(nodes, rooms):
        expected = r / total
        # 6 standard deviations of a binomial share: fails about once in 10^8 examples.
        tolerance = 6 * (expected * (1 - expected) / draws) ** 0.5
        assert abs(counts[node.url] / draws - expected) <= tolerance


def test_equal_room_overflow_does_not_pile_onto_the_last_node():
    nodes = [_node(i, True, False, 5, 0) for i in range(3)]
    rng = random.Random(7)
    firsts = Counter()
    for _ in range(300):
        for node in nodes:
            node.sent = 0
        firsts[choose(nodes, 0, rng).url] += 1
    assert all(count > 50 for count in firsts.values()) and len(firsts) == 3


def test_candidates_name_their_room_after_headroom_and_pending():
    node = _node(1, True, False, 10, 3)
    assert candidates([node], 2) == [(node, 5)]
    assert candidates([_node(2, True, False, 2, 0)], 2) == []


def test_a_node_never_seen_comes_up_on_its_first_answer_and_down_after_n_failures():
    table = NodeTable()
    node = table.add("http://10.0.0.1:8000/")
    assert node.url == "http://10.0.0.1:8000" and not node.up
    table.answered(node, {"available": 2}, table.polling(node))
    assert node.up
    table.failed(node, "refused")
    assert node.up  # one failure is not yet down (down_after=2)
    table.failed(node, "refused")
    assert not node.up
    table.answered(node, {"available": 2}, 0)
    assert not node.up  # a node that went down needs up_after answers in a row
    table.answered(node, {"available": 2}, 0)
    assert node.up


def test_removing_an_unknown_node_is_false_not_a_crash():
    table = NodeTable()
    assert table.remove("http://nowhere:1") is False
    assert table.remove("not a url") is False


def test_visitors_sent_before_a_poll_left_are_still_pending_after_its_answer():
    table = NodeTable()
    node = table.add("http://10.0.0.1:8000")
    table.sent_visitor(node)
    sent_then = table.polling(node)  # the poll leaves after the first visitor ...
    table.sent_visitor(node)  # ... and a second is sent before it answers
    table.answered(node, {"available": 5}, sent_then)
    assert node.pending == 1 and room(node, 0) == 4


good_lines = st.builds(lambda i, slash: f"http://10.1.{i // 250}.{i % 250 + 1}:8000" + ("/" if slash else ""),
                       st.integers(0, 2000), st.booleans())
junk_lines = st.sampled_from(["10.0.0.1:8000", "ftp://x", "http://", "http://h:99999", "http://h/?q=1", "::"])


@settings(deadline=None)
@given(st.lists(st.lists(st.one_of(good_lines, junk_lines, st.just("# a comment"), st.just("")), max_size=6),
                min_size=1, max_size=5))
def test_reloads_take_a_good_file_whole_and_a_bad_one_not_at_all(files):
    from tmpnb.redirector.nodesfile import BadNodesFile, parse_nodes

    table = NodeTable()
    table.add("http://10.9.9.9:8000", source="option")
    expected = {"http://10.9.9.9:8000"}
    for lines in files:
        text = "\n".join(lines)
        try:
            urls = parse_nodes(text)
        except BadNodesFile:
            pass  # the table keeps the last good list
        else:
            table.replace_source("file", urls)
            expected = {"http://10.9.9.9:8000"} | {u.rstrip("/") for u in lines if u.startswith("http://10.1.")}
        assert {n.url for n in table} == expected
