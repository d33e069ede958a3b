"""Several attacks advanced together so the model sees full batches.

TextAttack searches one example at a time and queries the model with the few candidates of one
search step (4 to 15 texts seen on NLI pairs), so a GPU or even a CPU idles between tiny batches.
Rewriting every search method to be batch-aware would fork TextAttack; instead each example's
attack runs unchanged in its own thread, and a model query *yields*: the scheduler lets every
other active attack run to its next query, then answers all pending queries with one batched
forward pass.

Only one attack thread runs at any moment (a baton passes between them), so nothing in
TextAttack needs to be thread-safe, and the order of events is fixed. Each example also gets its
own random streams (``random``, NumPy, torch), swapped in whenever it holds the baton, so its
attack draws exactly the numbers it would draw running alone after seeding: outcomes do not
depend on which examples share a round, on the concurrency, or on where a resumed run starts.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

J = TypeVar("J")  # a job (one example to attack)
R = TypeVar("R")  # what an attack returns

# Answers a list of query items with a sliceable sequence of outputs (a list or an array).
Compute = Callable[[list[Any]], Any]


def seed_everything(seed: int) -> None:
    """What TextAttack's own ``set_seed`` does: the Python, NumPy and torch global streams."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _save_rng() -> tuple[Any, Any, Any]:
    import numpy as np
    import torch

    return random.getstate(), np.random.get_state(), torch.get_rng_state()


def _restore_rng(state: tuple[Any, Any, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state[0])
    np.random.set_state(state[1])
    torch.set_rng_state(state[2])


class _Abort(BaseException):
    """Delivered to waiting attacks when the run stops; never caught by TextAttack code."""


@dataclass(eq=False)
class _Worker(Generic[J, R]):
    job: J
    fn: Callable[[J], R]
    rng: tuple[Any, Any, Any]
    go: threading.Event = field(default_factory=threading.Event)
    request: list[Any] | None = None
    response: Any = None
    result: R | None = None
    error: BaseException | None = None
    done: bool = False
    thread: threading.Thread | None = None


@dataclass
class SchedulerStats:
    rounds: int = 0
    batches: int = 0
    requested: int = 0

    @property
    def mean_batch(self) -> float:
        """Queries per batched round (before de-duplication and caching)."""
        return self.requested / self.batches if self.batches else 0.0


class CooperativeScheduler(Generic[J, R]):
    """Runs ``fn(job)`` for many jobs, ``concurrency`` at a time, batching their queries.

    ``compute`` answers a list of query items with one output per item; it is only ever called
    from the thread that called :meth:`run`. Inside ``fn``, queries go through :meth:`query`.
    """

    def __init__(self, compute: Compute, concurrency: int = 16) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.compute = compute
        self.concurrency = concurrency
        self.stats = SchedulerStats()
        self._yielded = threading.Event()
        self._local = threading.local()

    # -- inside an attack ------------------------------------------------------------------

    def query(self, items: list[Any]) -> Sequence[Any]:
        """Answer ``items``; from an attack thread this waits for the next batched round."""
        worker: _Worker[Any, Any] | None = getattr(self._local, "worker", None)
        if worker is None:
            return self.compute(items)
        if not items:
            return []
        worker.request = items
        self._hand_back()
        worker.go.wait()
        worker.go.clear()
        response, worker.response = worker.response, None
        if isinstance(response, BaseException):
            raise response
        return response

    def _hand_back(self) -> None:
        self._yielded.set()

    def _thread_main(self, worker: _Worker[J, R]) -> None:
        self._local.worker = worker
        worker.go.wait()
        worker.go.clear()
        try:
            worker.result = worker.fn(worker.job)
        except BaseException as exc:  # re-raised in the scheduling thread
            worker.error = exc
        finally:
            worker.done = True
            self._hand_back()

    # -- the scheduling thread -------------------------------------------------------------

    def _step(self, worker: _Worker[J, R]) -> None:
        """Let one attack run until it queries the model or finishes."""
        _restore_rng(worker.rng)
        self._yielded.clear()
        worker.go.set()
        self._yielded.wait()
        worker.rng = _save_rng()

    def _start(self, job: J, fn: Callable[[J], R], seed: int) -> _Worker[J, R]:
        outer = _save_rng()
        seed_everything(seed)
        worker: _Worker[J, R] = _Worker(job=job, fn=fn, rng=_save_rng())
        _restore_rng(outer)
        worker.thread = threading.Thread(target=self._thread_main, args=(worker,), daemon=True)
        worker.thread.start()
        return worker

    def run(
        self,
        jobs: Iterable[tuple[J, int]],
        fn: Callable[[J], R],
    ) -> Iterator[tuple[J, R]]:
        """Attack ``(job, seed)`` pairs; yield ``(job, result)`` as each finishes.

        Results come in a deterministic order (by round, then by job order within a round).
        An exception from an attack or from ``compute`` stops the run and is raised here after
        every other active attack has been unwound.
        """
        pending = iter(jobs)
        active: list[_Worker[J, R]] = []
        outer = _save_rng()
        try:
            while True:
                while len(active) < self.concurrency:
                    nxt = next(pending, None)
                    if nxt is None:
                        break
                    active.append(self._start(nxt[0], fn, nxt[1]))
                if not active:
                    return
                self.stats.rounds += 1
                for worker in active:
                    if worker.request is None and not worker.done:
                        self._step(worker)
                waiting: list[_Worker[J, R]] = []
                for worker in active:
                    if worker.done:
                        if worker.error is not None:
                            raise worker.error
                        yield worker.job, worker.result  # type: ignore[misc]
                    else:
                        waiting.append(worker)
                active = waiting
                if active:
                    self._answer(active)
        finally:
            self._unwind(active)
            _restore_rng(outer)

    def _answer(self, workers: list[_Worker[J, R]]) -> None:
        items: list[Any] = []
        spans: list[tuple[int, int]] = []
        for worker in workers:
            assert worker.request is not None
            spans.append((len(items), len(items) + len(worker.request)))
            items.extend(worker.request)
        outputs = self.compute(items)
        self.stats.batches += 1
        self.stats.requested += len(items)
        for worker, (lo, hi) in zip(workers, spans, strict=True):
            worker.request = None
            worker.response = outputs[lo:hi]

    def _unwind(self, workers: list[_Worker[J, R]]) -> None:
        """Stop attacks that are still waiting, so their threads end instead of hanging."""
        for worker in workers:
            guard = 0
            while not worker.done and guard < 1000:
                worker.request = None
                worker.response = _Abort()
                self._yielded.clear()
                worker.go.set()
                self._yielded.wait(timeout=5.0)
                guard += 1
