"""Message ids cannot be predicted from other ids, and still sort in creation order (the store
resumes pending messages in id order and appends to its id-keyed tables)."""

from __future__ import annotations

import itertools
import os
import random

from gateway.messages import MessageIdGenerator

MS = 1_764_000_000_000


def test_ids_within_one_millisecond_are_not_sequential() -> None:
    ids = MessageIdGenerator()
    numbers = [int(ids.next_id(MS), 16) for _ in range(1000)]
    steps = [b - a for a, b in itertools.pairwise(numbers)]
    assert all(step > 0 for step in steps)  # still in creation order
    assert len(set(steps)) > 990  # not +1 each time: 24 random bits per step
    assert max(steps) > 2**20


def test_ids_do_not_come_from_the_mersenne_twister() -> None:
    """Seeding `random` (whose output can be rebuilt from what it produced) changes nothing."""
    first, second = MessageIdGenerator(), MessageIdGenerator()
    random.seed(19)
    one = [first.next_id(MS + n) for n in range(50)]
    random.seed(19)
    two = [second.next_id(MS + n) for n in range(50)]
    assert set(one).isdisjoint(two)


def test_ids_sort_in_creation_order_across_milliseconds_and_clock_steps_back() -> None:
    ids = MessageIdGenerator()
    times = [MS, MS, MS + 1, MS + 1, MS - 5, MS + 2, *([MS + 3] * 300)]
    made = [ids.next_id(t) for t in times]
    assert made == sorted(made) and len(set(made)) == len(made)
    assert all(len(i) == 20 and int(i, 16) >= 0 for i in made)


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    ids = MessageIdGenerator()
    ids.next_id(MS)  # the pool is filled before the fork
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its ids to the pipe, then leave without cleanup
        os.close(reader)
        os.write(writer, " ".join(ids.next_id(MS + 10 + n) for n in range(20)).encode())
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        child = pipe.read().split()
    os.waitpid(pid, 0)
    parent = [ids.next_id(MS + 10 + n) for n in range(20)]
    assert len(child) == 20 and set(child).isdisjoint(parent)
