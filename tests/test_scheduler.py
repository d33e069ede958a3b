"""The cooperative scheduler: batched queries across jobs, outcomes independent of concurrency."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest
import torch

from bench.attacks.scheduler import CooperativeScheduler, seed_everything


class Model:
    """A deterministic 'model': the score of a string is a hash of it; counts batch sizes."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.threads: set[str] = set()

    def __call__(self, items: list[str]) -> list[float]:
        self.batches.append(len(items))
        self.threads.add(threading.current_thread().name)
        return [float(sum(map(ord, s)) % 97) for s in items]


def search(scheduler: CooperativeScheduler[str, list[object]], job: str) -> list[object]:
    """A toy randomised search: draws from all three global RNGs between model queries."""
    trace: list[object] = []
    text = job
    for _ in range(4):
        k = random.randint(1, 5)
        candidates = [text + chr(97 + int(np.random.randint(0, 26))) for _ in range(k)]
        scores = scheduler.query(candidates)
        best = max(range(k), key=lambda i: (scores[i], -i))
        text = candidates[best]
        trace.append((text, float(torch.rand(1).item())))
    return trace


def run_all(jobs: list[str], concurrency: int) -> tuple[dict[str, list[object]], Model]:
    model = Model()
    scheduler: CooperativeScheduler[str, list[object]] = CooperativeScheduler(model, concurrency)
    jobs_and_seeds = ((j, i * 7 + 1) for i, j in enumerate(jobs))
    out = dict(scheduler.run(jobs_and_seeds, lambda j: search(scheduler, j)))
    return out, model


def test_outcomes_do_not_depend_on_concurrency_and_match_a_seeded_solo_run() -> None:
    jobs = [f"job{i}-" for i in range(12)]
    serial, serial_model = run_all(jobs, 1)
    batched, batched_model = run_all(jobs, 8)
    assert serial == batched
    # A job run alone after seeding gives the same trace (what stock TextAttack does per example).
    model = Model()
    solo: CooperativeScheduler[str, list[object]] = CooperativeScheduler(model, 1)
    seed_everything(7 * 3 + 1)
    assert search(solo, jobs[3]) == serial[jobs[3]]
    # Queries were merged across jobs: fewer, larger batches.
    assert sum(serial_model.batches) == sum(batched_model.batches)
    assert len(batched_model.batches) < len(serial_model.batches) / 4
    assert max(batched_model.batches) > max(serial_model.batches)
    # The model only ever runs in the scheduling thread.
    assert batched_model.threads == {threading.current_thread().name}


def test_scheduler_leaves_the_callers_random_state_alone() -> None:
    seed_everything(123)
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    seed_everything(123)
    run_all(["a", "b", "c"], 2)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected


def test_an_error_in_one_job_stops_the_run_and_unwinds_the_others() -> None:
    model = Model()
    scheduler: CooperativeScheduler[str, object] = CooperativeScheduler(model, 4)

    def job(name: str) -> object:
        scheduler.query([name])
        if name == "bad":
            raise ValueError("boom")
        scheduler.query([name + "!"])
        return name

    before = threading.active_count()
    with pytest.raises(ValueError, match="boom"):
        list(scheduler.run([(n, 0) for n in ["a", "bad", "c", "d", "e"]], job))
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and thread.daemon:
            thread.join(timeout=5)
    assert threading.active_count() <= before


def test_results_arrive_as_jobs_finish_in_a_fixed_order() -> None:
    def finish_order(concurrency: int) -> list[int]:
        scheduler: CooperativeScheduler[int, int] = CooperativeScheduler(Model(), concurrency)

        def job(n: int) -> int:
            for i in range(n):
                scheduler.query([f"{n}:{i}"])
            return n

        return [j for j, _ in scheduler.run([(n, 0) for n in [3, 1, 2, 0, 5]], job)]

    # Rounds: {3,1,2} query; 1 ends; 2 ends and 0 (no query) ends; 3 ends; 5 ends last.
    assert finish_order(3) == [1, 2, 0, 3, 5]
    assert finish_order(1) == [3, 1, 2, 0, 5]


def test_query_outside_a_job_computes_directly() -> None:
    model = Model()
    scheduler: CooperativeScheduler[str, object] = CooperativeScheduler(model, 2)
    assert scheduler.query(["x"]) == model(["x"])
