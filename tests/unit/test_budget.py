"""The per-worker budget for bytes of unfinished request heads (pure bookkeeping)."""

from __future__ import annotations

from pasteserve.workers.budget import HeadBudget


class Head:
    def __init__(self, size: int = 0) -> None:
        self.head_size = size


def test_total_follows_updates_and_forgets():
    budget = HeadBudget(100)
    a, b = Head(30), Head(50)
    budget.update(a)
    budget.update(b)
    assert budget.total == 80
    a.head_size = 60   # more arrived
    budget.update(a)
    assert budget.total == 110
    a.head_size = 0    # the head completed
    budget.update(a)
    assert budget.total == 50 and a not in budget.sizes
    budget.forget(b)
    assert budget.total == 0 and not budget.sizes


def test_over_budget_refuses_the_largest_until_it_fits():
    budget = HeadBudget(100)
    heads = [Head(size) for size in (10, 70, 40, 30)]
    for head in heads:
        budget.update(head)
    # 150 in all, 50 over: the largest (70) alone brings it back under.
    assert budget.over() == [heads[1]]
    heads[1].head_size = 0
    budget.update(heads[1])
    assert budget.over() == []


def test_several_victims_when_one_is_not_enough():
    budget = HeadBudget(50)
    heads = [Head(size) for size in (30, 30, 30)]
    for head in heads:
        budget.update(head)
    assert len(budget.over()) == 2


def test_zero_is_unlimited():
    budget = HeadBudget(0)
    head = Head(10**9)
    budget.update(head)
    assert budget.over() == []
