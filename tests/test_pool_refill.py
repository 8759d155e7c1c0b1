"""Refill that yields to visitors: the replacements for a burst of hand-outs boot once the
burst is over (--refill-delay after its last hand-out), so that they do not take the CPU
the visitors' first pages need; a steady stream postpones them only so long; visitors in
the waiting line are booted for at once.
"""

from __future__ import annotations

from tests.test_pool import World
from tmpnb.config import PoolConfig
from tmpnb.pool import REFILL_POSTPONE_MAX
from tmpnb.waitingline import WaitingLine

DELAY = 1.0


def yielding(pool_size: int = 3, capacity: int = 8) -> World:
    return World(config=PoolConfig(pool_size=pool_size, capacity=capacity, refill_delay=DELAY)).started()


def booting(world: World) -> int:
    states = world.pool.stats()["states"]
    return states.get("booting", 0) + states.get("requested", 0)


def test_a_hand_out_is_replaced_once_the_refill_delay_has_passed():
    world = yielding()
    assert world.pool.acquire() is not None
    assert booting(world) == 0  # the visitor's first page has the CPU
    world.clock.advance(DELAY)
    assert booting(world) == 1


def test_each_hand_out_of_a_burst_postpones_its_replacements_until_the_burst_is_over():
    world = yielding()
    for _ in range(3):
        world.pool.acquire()
        world.clock.advance(DELAY / 2)
    assert booting(world) == 0
    world.clock.advance(DELAY / 2)
    assert booting(world) == 3  # all at once, as fast as booting allows


def test_a_steady_stream_postpones_the_refill_no_longer_than_a_few_delays():
    world = yielding(pool_size=8, capacity=20)
    for _ in range(int(REFILL_POSTPONE_MAX / 0.5)):
        world.pool.acquire()
        assert booting(world) == 0
        world.clock.advance(DELAY / 2)
    assert booting(world) == REFILL_POSTPONE_MAX * 2


def test_with_no_delay_the_replacement_boots_at_once():
    world = World(config=PoolConfig(pool_size=2, capacity=4, refill_delay=0.0)).started()
    world.pool.acquire()
    assert booting(world) == 1


def test_visitors_in_line_are_booted_for_at_once_even_while_refill_yields():
    world = yielding(pool_size=1, capacity=5)
    line = WaitingLine(world.clock, world.pool, max_waiting=10)
    line.follow(world.pool)
    assert line.take() is not None  # the pooled one
    assert booting(world) == 0
    line.take(), line.take()  # two wait in line
    assert booting(world) == 2
    world.clock.advance(DELAY)
    assert booting(world) == 3  # and the pool's own replacement after the burst
