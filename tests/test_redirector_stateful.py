"""The redirector's node table as a state machine (hypothesis): polls answer or fail, nodes drain,
come and go, visitors arrive in bursts; whatever happens, no visitor goes to a node that is
down or draining, and no node gets more visitors between two answers than the room it reported."""

from __future__ import annotations

import random

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tmpnb.redirector.choosing import choose
from tmpnb.redirector.nodes import NodeTable, Thresholds

URLS = [f"http://10.0.0.{i}:8000" for i in range(1, 6)]
HEADROOM = 1


class Federation(RuleBasedStateMachine):
    @initialize(seed=st.integers(0, 2**32))
    def start(self, seed: int) -> None:
        self.table = NodeTable(Thresholds(down_after=2, up_after=2))
        self.rng = random.Random(seed)
        self.reported: dict[str, int] = {}  # the last available each node reported
        self.since_answer: dict[str, int] = {}  # visitors sent since that answer's poll left
        self.wrong: list[str] = []

    @rule(url=st.sampled_from(URLS))
    def add(self, url: str) -> None:
        self.table.add(url)

    @rule(url=st.sampled_from(URLS))
    def remove(self, url: str) -> None:
        self.table.remove(url)  # an unknown node is fine too
        self.reported.pop(url, None)
        self.since_answer.pop(url, None)

    @rule(url=st.sampled_from(URLS), available=st.integers(0, 6), draining=st.booleans())
    def poll_answers(self, url: str, available: int, draining: bool) -> None:
        node = self.table.get(url)
        if node is not None:
            self.table.answered(node, {"available": available, "draining": draining}, self.table.polling(node))
            self.reported[url] = available
            self.since_answer[url] = 0

    @rule(url=st.sampled_from(URLS))
    def poll_fails(self, url: str) -> None:
        node = self.table.get(url)
        if node is not None:
            self.table.failed(node, "refused")

    @precondition(lambda self: len(self.table) > 0)
    @rule(visitors=st.integers(1, 8))
    def burst(self, visitors: int) -> None:
        for _ in range(visitors):
            node = choose(self.table, HEADROOM, self.rng)
            if node is None:
                return
            if not node.up or node.draining:
                self.wrong.append(f"sent to {node.url} (up={node.up}, draining={node.draining})")
            self.table.sent_visitor(node)
            self.since_answer[node.url] = self.since_answer.get(node.url, 0) + 1

    @invariant()
    def never_a_down_or_draining_node(self) -> None:
        assert self.wrong == []

    @invariant()
    def never_more_than_the_reported_room_between_answers(self) -> None:
        for url, sent in self.since_answer.items():
            assert sent <= max(0, self.reported.get(url, 0) - HEADROOM), url


TestFederation = Federation.TestCase
TestFederation.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
