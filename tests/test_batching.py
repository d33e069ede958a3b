"""Batch planning and out-of-memory back-off."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from bench.errors import ModelError
from bench.models.batching import (
    OOMBackoff,
    backoff_for,
    is_oom,
    length_sorted_batches,
    padding_aware_batches,
    run_with_oom_backoff,
)


def test_batches_are_longest_first_stable_and_chunked() -> None:
    lengths = [3, 9, 3, 1, 9, 5, 3]
    batches = length_sorted_batches(lengths, 3)
    # 9s first in input order (1 before 4), then 5, then the 3s in input order, then 1.
    assert batches == [[1, 4, 5], [0, 2, 6], [3]]
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)


def test_plan_is_deterministic_and_handles_edges() -> None:
    lengths = [(i * 7919) % 13 for i in range(100)]
    assert length_sorted_batches(lengths, 8) == length_sorted_batches(list(lengths), 8)
    assert all(len(b) == 8 for b in length_sorted_batches(lengths, 8)[:-1])
    assert length_sorted_batches([], 4) == []
    assert length_sorted_batches([2, 2], 10) == [[0, 1]]
    with pytest.raises(ValueError):
        length_sorted_batches([1], 0)


def _fails_above(limit: int, calls: list[list[int]]):  # type: ignore[no-untyped-def]
    def fn(chunk: list[int]) -> list[int]:
        calls.append(chunk)
        if len(chunk) > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [i * 10 for i in chunk]

    return fn


def _plan_cost(lengths: list[int], plan: list[list[int]], overhead: int) -> int:
    return sum(overhead + len(b) * max(lengths[i] for i in b) for b in plan)


def _brute_force_cost(lengths: list[int], max_batch: int, overhead: int) -> int:
    """Cheapest split of the longest-first order into consecutive batches, by enumeration."""
    import itertools

    ordered = sorted(lengths, reverse=True)
    n = len(ordered)
    best = None
    for cuts in itertools.product([False, True], repeat=n - 1):
        bounds = [0] + [i + 1 for i, c in enumerate(cuts) if c] + [n]
        sizes = [b - a for a, b in itertools.pairwise(bounds)]
        if max(sizes) > max_batch:
            continue
        cost = sum(overhead + (b - a) * ordered[a] for a, b in itertools.pairwise(bounds))
        best = cost if best is None else min(best, cost)
    assert best is not None
    return best


@pytest.mark.parametrize("seed", range(12))
def test_padding_aware_plan_is_a_cheapest_partition(seed: int) -> None:
    import random

    rng = random.Random(seed)
    lengths = [rng.randint(3, 120) for _ in range(rng.randint(1, 11))]
    max_batch, overhead = rng.randint(1, 6), rng.choice([0, 16, 64])
    plan = padding_aware_batches(lengths, max_batch, overhead)
    assert sorted(i for b in plan for i in b) == list(range(len(lengths)))
    assert all(1 <= len(b) <= max_batch for b in plan)
    assert _plan_cost(lengths, plan, overhead) == _brute_force_cost(lengths, max_batch, overhead)
    assert plan == padding_aware_batches(lengths, max_batch, overhead)


def test_padding_aware_plan_separates_short_from_long() -> None:
    lengths = [10, 100, 11, 98, 12, 99]
    plan = padding_aware_batches(lengths, 64, overhead_tokens=20)
    assert [sorted(b) for b in plan] == [[1, 3, 5], [0, 2, 4]]
    # With a large per-batch cost, one padded batch is cheaper.
    assert padding_aware_batches(lengths, 64, overhead_tokens=1000) == [[1, 5, 3, 4, 2, 0]]
    assert padding_aware_batches([], 4) == []
    with pytest.raises(ValueError):
        padding_aware_batches([1], 0)


def test_backoff_halves_until_it_fits_and_keeps_the_smaller_size() -> None:
    calls: list[list[int]] = []
    shrinks: list[tuple[int, int]] = []
    backoff = OOMBackoff(8, on_shrink=lambda old, new: shrinks.append((old, new)))
    first = backoff.run(_fails_above(3, calls), list(range(8)))
    assert [x for chunk in first for x in chunk] == [i * 10 for i in range(8)]
    assert shrinks == [(8, 4), (4, 2)]
    assert backoff.batch_size == 2
    # The next batch starts at the reduced size: no failed attempt at 8 again.
    calls.clear()
    backoff.run(_fails_above(3, calls), [20, 21, 22])
    assert calls == [[20, 21], [22]]


def test_a_later_call_inherits_an_out_of_memory_shrink_but_not_a_small_request() -> None:
    # A model asked once for batch size 1 ran every later call one example at a time.
    small = backoff_for(None, 1)
    later = backoff_for(small, 32)
    assert (small.batch_size, later.batch_size, later.oom_cap) == (1, 32, None)
    assert backoff_for(later, 32) is later  # same size asked: the same back-off
    # Memory ran out at 32 and 16: the cap of 8 holds for every later call, however large.
    later.run(_fails_above(8, []), list(range(32)))
    assert (later.batch_size, later.oom_cap) == (8, 8)
    assert backoff_for(later, 64).batch_size == 8
    calls: list[list[int]] = []
    after = backoff_for(later, 4)
    after.run(_fails_above(8, calls), list(range(6)))
    assert after.batch_size == 4 and calls == [[0, 1, 2, 3], [4, 5]]
    assert backoff_for(after, 64).batch_size == 8


def test_one_shot_helper_reports_the_size_that_worked() -> None:
    results, size = run_with_oom_backoff(_fails_above(1, []), [5, 6, 7], 4)
    assert size == 1
    assert results == [[50], [60], [70]]


def test_runtime_error_mentioning_oom_counts_and_others_propagate() -> None:
    assert is_oom(RuntimeError("CUDA error: out of memory"))
    assert is_oom(torch.cuda.OutOfMemoryError("x"))
    assert not is_oom(RuntimeError("shape mismatch"))
    assert not is_oom(ValueError("out of memory"))

    def broken(chunk: list[int]) -> int:
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        OOMBackoff(4).run(broken, [1, 2, 3])


def test_oom_at_batch_size_one_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="out of memory even at batch size 1"):
        OOMBackoff(4).run(_fails_above(0, []), [1, 2])


def test_torch_free_modules_do_not_import_torch() -> None:
    code = (
        "import sys, bench.models, bench.models.batching, bench.models.labels, "
        "bench.models.identity; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
