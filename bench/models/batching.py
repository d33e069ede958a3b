"""Batch planning and out-of-memory back-off (no torch import at module level).

Batches are planned longest-first: padding waste is smallest when similar lengths share a batch,
and an input that does not fit in memory fails on the first batch rather than an hour in.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from bench.errors import ModelError

T = TypeVar("T")

log = logging.getLogger(__name__)


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices sorted by length, longest first (ties keep input order), cut into batches.

    The plan is a pure function of ``lengths`` and ``batch_size``, so a resumed run recomputes the
    exact same batches.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    # sorted() is stable, so equal lengths keep their original relative order.
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def padding_aware_batches(
    lengths: Sequence[int], max_batch: int, overhead_tokens: int = 64
) -> list[list[int]]:
    """Longest-first batches whose boundaries minimise padded tokens plus a per-batch overhead.

    A fixed batch size pads a mixed bag of lengths (attack queries from many examples) to its
    longest member; one batch per length wastes the fixed cost of each forward pass. Over the
    length-sorted order, the cost of a batch is ``overhead_tokens + size * longest`` and a
    dynamic programme picks the cheapest cut (batches of at most ``max_batch``). Deterministic:
    equal inputs give equal plans.
    """
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    n = len(order)
    sorted_len = [lengths[i] for i in order]
    inf = float("inf")
    best = [0.0] + [inf] * n  # best[j]: cheapest plan of the first j (longest) items
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(max(0, j - max_batch), j):
            # Items i..j-1 share a batch padded to sorted_len[i], the longest of them.
            cost = best[i] + overhead_tokens + (j - i) * sorted_len[i]
            if cost < best[j]:
                best[j], cut[j] = cost, i
    batches: list[list[int]] = []
    j = n
    while j > 0:
        batches.append(order[cut[j] : j])
        j = cut[j]
    return batches[::-1]


def is_oom(exc: BaseException) -> bool:
    """True for a CUDA/MPS out-of-memory error (torch's class, or a RuntimeError saying so)."""
    torch = sys.modules.get("torch")
    oom_cls = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    if oom_cls is not None and isinstance(exc, oom_cls):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _release_cached_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is None:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if mps is not None and torch.backends.mps.is_available():
        mps.empty_cache()


class OOMBackoff:
    """Runs a function on chunks of a batch, halving the chunk size whenever memory runs out.

    The shrunken size sticks for later batches (the next batch of a length-sorted plan is no
    longer, so it would fail again). Callers see whole batches regardless of chunking.
    """

    def __init__(
        self, batch_size: int, on_shrink: Callable[[int, int], None] | None = None
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.on_shrink = on_shrink
        # The size memory ran out above (None while it has not): what later calls inherit.
        self.oom_cap: int | None = None

    def run(self, fn: Callable[[list[int]], T], indices: Sequence[int]) -> list[T]:
        """``fn`` over consecutive chunks of ``indices``; returns the chunk results in order."""
        results: list[T] = []
        pos = 0
        while pos < len(indices):
            chunk = list(indices[pos : pos + self.batch_size])
            try:
                results.append(fn(chunk))
            except Exception as exc:
                if not is_oom(exc):
                    raise
                if self.batch_size == 1:
                    raise ModelError(
                        "out of memory even at batch size 1; lower max_length, use a smaller "
                        "dtype or run on a device with more memory"
                    ) from exc
                old, self.batch_size = self.batch_size, max(1, self.batch_size // 2)
                self.oom_cap = self.batch_size
            else:
                pos += len(chunk)
                continue
            # Outside the except block, so the traceback (and the tensors it pins) is released.
            _release_cached_memory()
            log.warning("out of memory at batch size %d; retrying at %d", old, self.batch_size)
            if self.on_shrink is not None:
                self.on_shrink(old, self.batch_size)
        return results


def backoff_for(current: OOMBackoff | None, batch_size: int) -> OOMBackoff:
    """The back-off for a call that asks for ``batch_size``, after ``current`` (a model's
    previous one). A size that running out of memory forced carries over, since the device is
    as full now; a smaller size a previous call merely asked for does not. (It used to: after a
    call at batch size 1, every later batch of that model ran one example at a time, so its
    chunks, and for low-precision or dynamically quantised models its numbers, depended on
    what the process had run before.)"""
    cap = current.oom_cap if current is not None else None
    size = batch_size if cap is None else min(batch_size, cap)
    if current is not None and current.batch_size == size:
        return current
    fresh = OOMBackoff(size)
    fresh.oom_cap = cap
    return fresh


def run_with_oom_backoff(
    fn: Callable[[list[int]], T], indices: Sequence[int], batch_size: int
) -> tuple[list[T], int]:
    """One-shot form of :class:`OOMBackoff`: the chunk results and the batch size that worked."""
    backoff = OOMBackoff(batch_size)
    results = backoff.run(fn, indices)
    return results, backoff.batch_size
