"""Executors: where a run's work units are computed. The controller owns keys, the store and
transactions; an executor only turns a plan and the positions still missing into rows.

- ``LocalExecutor``: in this process, the kind's own work units (the classifier's length-sorted
  batches, prompt chunks, attacked examples), as the harness always ran.
- ``RayExecutor``: on Ray workers (an embedded local instance, or a cluster by address). The
  first worker loads the model and lists the run kind's work units (the same units the local
  executor computes: they are a pure function of the plan and the tokenizer); the driver groups
  the units still missing into shards by a deterministic cost estimate that does not depend on
  the number of workers; each worker (an actor, so a model is loaded once per worker) computes
  its shards' units and returns their rows; only the driver writes the store, one transaction
  per shard. A shard whose worker raised or died is retried (bounded), each failure recorded.
  Rows do not depend on the topology: the local executor and any number of workers compute the
  same units, so they give the same rows.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from bench.engine.kinds import WorkUnit
from bench.errors import BenchError, shown

if TYPE_CHECKING:
    from bench.backends import ModelPool
    from bench.engine.kinds import RunPlan
    from bench.records import RunRecord

# Shards aim at this much work (characters of input, times expected queries per example for
# attacks): big enough that loading and shipping a shard is noise, small enough that a killed
# worker loses little and two workers share a run evenly.
# BENCH_SHARD_COST overrides it (read when shards are cut, so a bad value is one error line).
SHARD_COST = 64 * 200
SHARD_MAX = 256
RETRIES = 2
J = TypeVar("J")  # a job handed to a Ray worker: a shard of work units, or a call's index


@dataclass
class Execution:
    """A started run: the record to store, the rows of each unit as it finishes, and the
    counters for the outcome once the rows are consumed."""

    record: RunRecord
    rows: Iterator[Sequence[Any]]
    stats: Callable[[], dict[str, Any]]
    info: Callable[[], dict[str, Any]] = field(default=lambda: {})


class Executor(Protocol):
    name: str

    def start(self, plan: RunPlan, models: ModelPool, done: set[int]) -> Execution:
        """Load what the run needs and start computing the positions not in ``done``."""

    def map(self, fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]]) -> list[Any]:
        """``[fn(*args) for args in calls]``, possibly in parallel (jobs that are not runs:
        fine-tuning one model per (training task, seed) for a transfer suite)."""


class LocalExecutor:
    """The run kind's own work units, computed in this process."""

    name = "local"

    def start(self, plan: RunPlan, models: ModelPool, done: set[int]) -> Execution:
        kind = plan.kind
        state, record = kind.start(plan, models)
        todo = [u for u in kind.units(plan, state) if not set(u.positions) <= done]
        return Execution(record, iter(kind.compute(plan, state, todo)), lambda: kind.stats(state))

    def map(self, fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]]) -> list[Any]:
        return [fn(*args) for args in calls]


# --------------------------------------------------------------------------------------------------
# Shards


def example_cost(plan: RunPlan, position: int) -> float:
    """A deterministic estimate of one example's work: its characters; a prompt's context times
    the answers it scores; an attack's characters times about the queries it makes."""
    if plan.kind.name == "prompt":
        request = plan.detail.planned.requests[position]
        return float(len(request.context)) * max(1, len(request.choices))
    chars = float(sum(len(x) for x in plan.examples[position].inputs)) + 1.0
    return chars * (20.0 if plan.kind.name == "attack" else 1.0)


def shard_limit(plan: RunPlan) -> int:
    """The most examples one shard holds. An attack's shard holds as many as one process
    advances together (its concurrency): the worker batches their queries as the local executor
    does, and a 100-example attack (some 21,000 characters of NLI pairs, under two shards by cost
    alone) spreads over 7 workers instead of 2, evening out attacks that take 1 s or 30 s."""
    settings = getattr(plan.detail, "settings", None)
    if plan.kind.name == "attack" and settings is not None:
        return max(1, min(SHARD_MAX, int(settings.concurrency)))
    return SHARD_MAX


def shard_cost() -> int:
    """``$BENCH_SHARD_COST`` if set (a whole number of characters, at least 1), else
    ``SHARD_COST``."""
    raw = os.environ.get("BENCH_SHARD_COST", "").strip()
    if not raw:
        return SHARD_COST
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise BenchError(
            f"BENCH_SHARD_COST must be a whole number of characters, at least 1, not {shown(raw)}"
        )
    return value


def shards(plan: RunPlan, units: Sequence[WorkUnit], done: set[int]) -> list[list[WorkUnit]]:
    """The units not yet stored, in order, grouped into shards of about :func:`shard_cost` (or
    :func:`shard_limit` examples); a pure function of the plan and its units, not of the
    workers."""
    budget = shard_cost() * (20.0 if plan.kind.name == "attack" else 1.0)
    limit = shard_limit(plan)
    cut: list[list[WorkUnit]] = []
    current: list[WorkUnit] = []
    cost = 0.0
    size = 0
    for unit in units:
        if set(unit.positions) <= done:
            continue
        current.append(unit)
        cost += sum(example_cost(plan, p) for p in unit.positions)
        size += len(unit.positions)
        if cost >= budget or size >= limit:
            cut.append(current)
            current, cost, size = [], 0.0, 0
    if current:
        cut.append(current)
    return cut


def shipped(plan: RunPlan) -> RunPlan:
    """The plan as it travels to a worker: the task without its examples (the plan carries the
    ones it evaluates; a prompt's few-shot examples are in its prompts already)."""
    from bench.tasks.examples import TaskData

    slim = TaskData(plan.task.spec, {}, plan.task.data_hash)
    detail = plan.detail
    planned = getattr(detail, "planned", None)
    if planned is not None:
        detail = replace(detail, planned=replace(planned, task=slim))
    return replace(plan, task=slim, detail=detail)


# --------------------------------------------------------------------------------------------------
# Ray


class _Worker:
    """A Ray actor: one process with its own model pool, single-threaded torch by default (the
    workers are the parallelism)."""

    def __init__(self, threads: int) -> None:
        from bench.backends import ModelPool

        if threads > 0:
            import torch

            torch.set_num_threads(threads)
        self.models = ModelPool()
        self.examples = 0
        self.seconds = 0.0

    def pid(self) -> int:
        return os.getpid()

    def prepare(self, plan: RunPlan) -> tuple[RunRecord, list[WorkUnit]]:
        state, record = plan.kind.start(plan, self.models)
        return record, plan.kind.units(plan, state)

    def warm(self, plan: RunPlan) -> None:
        """Load what ``plan`` needs (the model; an attack's TextAttack import and resources, some
        7 s of CPU) while another worker prepares the run, instead of on the first shard."""
        # A failure here is met again, and reported, by the worker's first shard.
        with contextlib.suppress(Exception):
            plan.kind.start(plan, self.models)

    def shard(self, plan: RunPlan, units: Sequence[WorkUnit]) -> tuple[list[Any], float]:
        started = time.perf_counter()
        state, _ = plan.kind.start(plan, self.models)  # the model is loaded once per worker
        rows = [row for part in plan.kind.compute(plan, state, units) for row in part]
        elapsed = time.perf_counter() - started
        self.examples += sum(len(u.positions) for u in units)
        self.seconds += elapsed
        return rows, elapsed

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        """One job of ``RayExecutor.map`` (a fine-tuning run, say), in this worker's process."""
        return fn(*args)


class RayExecutor:
    """Shards on Ray workers (``workers`` actors), the driver writing every row."""

    name = "ray"

    def __init__(self, workers: int = 2, address: str | None = None, threads: int = 1) -> None:
        if workers < 1:
            raise BenchError(f"--workers must be at least 1, not {workers}")
        given = "--ray-address"
        if address is None and os.environ.get("RAY_ADDRESS", "").strip() not in {"", "local"}:
            # Ray's own variable: ray.init() would join that cluster anyway (and refuse the
            # CPU count an embedded instance is started with), so it is joined as if given.
            address, given = os.environ["RAY_ADDRESS"].strip(), "RAY_ADDRESS"
        self.workers = workers
        self.address = address
        self.threads = threads
        self._actors: list[Any] = []
        if address is not None and address != "auto":  # auto: Ray finds this machine's cluster
            _check_client(address, given)
            _probe(address, given)  # an unreachable cluster is refused now, not after planning

    def close(self) -> None:
        """Stop this executor's workers (their models go with them)."""
        if self._actors:
            import ray

            for actor in self._actors:
                ray.kill(actor)
            self._actors = []

    def _ray(self) -> Any:
        try:
            import ray
        except ImportError:
            raise BenchError("--executor ray needs Ray: pip install 'nlp-bench[ray]'") from None
        if not ray.is_initialized():
            _init_ray(ray, self.address, self.workers)
        return ray

    def actors(self) -> list[Any]:
        ray = self._ray()
        if not self._actors:
            # Each worker holds one CPU; one that can never be placed would leave the run
            # waiting forever. (An instance this process started has room for its workers; one
            # it joined, or started earlier with fewer, may not.)
            cpus = int(ray.cluster_resources().get("CPU", 0))
            if cpus < self.workers:
                where = (
                    f"the Ray cluster at {self.address}" if self.address else "this Ray instance"
                )
                raise BenchError(
                    f"--workers {self.workers} needs a CPU per worker and {where} has {cpus}; "
                    f"ask for at most {cpus}"
                )
            remote = ray.remote(num_cpus=1, max_restarts=RETRIES, max_task_retries=0)(_Worker)
            self._actors = [remote.remote(self.threads) for _ in range(self.workers)]
        return self._actors

    def worker_pids(self) -> list[int]:
        """The workers' process ids (a test kills one)."""
        ray = self._ray()
        return list(ray.get([a.pid.remote() for a in self.actors()]))

    def start(self, plan: RunPlan, models: ModelPool, done: set[int]) -> Execution:
        ray = self._ray()
        actors = self.actors()
        payload = ray.put(shipped(plan))
        # One worker loads the model first and says how the run is stored (device, labels) and
        # what its work units are; meanwhile the others load it too. (An actor runs its calls in
        # order, so each one's first shard waits for its warm-up, whose result nobody needs.)
        for actor in actors[1:]:
            actor.warm.remote(payload)
        record, units = _get(ray, actors[0].prepare.remote(payload))
        todo = shards(plan, units, done)
        timing: dict[int, list[float]] = {i: [0.0, 0.0] for i in range(len(actors))}
        failures: list[str] = []

        def rows() -> Iterator[Sequence[Any]]:
            jobs = _Dispatch(
                ray, actors, todo, lambda actor, shard: actor.shard.remote(payload, shard)
            )
            for worker, shard, attempt, ref in jobs:
                try:
                    shard_rows, seconds = ray.get(ref)
                except Exception as exc:  # a raising unit, or a worker that died under it
                    first = shard[0].positions[0]
                    failures.append(f"shard at position {first}: {_first_line(exc)}")
                    if attempt >= RETRIES:
                        raise BenchError(
                            f"a shard of run {plan.key} failed {attempt + 1} times; last: "
                            f"{_first_line(exc)}"
                        ) from None
                    jobs.retry(shard, attempt)  # a worker that died is restarted by Ray meanwhile
                    continue
                timing[worker][0] += sum(len(u.positions) for u in shard)
                timing[worker][1] += seconds
                yield shard_rows

        def info() -> dict[str, Any]:
            return {
                "executor": "ray",
                "workers": len(actors),
                "shards": len(todo),
                "per_worker_examples_per_s": [
                    round(n / s, 2) if s else None for n, s in timing.values()
                ],
                "retried": failures,
            }

        return Execution(record, rows(), lambda: {}, info)

    def map(self, fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]]) -> list[Any]:
        """``fn(*args)`` for every call, on this executor's workers, results in call order.

        The jobs run on the same actors as the shards rather than as separate Ray tasks: the
        actors hold their CPUs, so a task asking for one more could wait forever on a machine
        the actors fill (and ``workers`` then means the same thing for both kinds of work). A
        job whose worker dies is retried like a shard; a job that raises is not (it would raise
        again the same way)."""
        ray = self._ray()
        actors = self.actors()
        results: dict[int, Any] = {}
        jobs = _Dispatch(
            ray, actors, range(len(calls)), lambda actor, i: actor.call.remote(fn, calls[i])
        )
        for _, index, attempt, ref in jobs:
            try:
                results[index] = ray.get(ref)
            except ray.exceptions.RayActorError as exc:  # the worker died; Ray restarts it
                if attempt >= RETRIES:
                    raise BenchError(
                        f"job {index + 1} of {len(calls)} failed {attempt + 1} times; last: "
                        f"{_first_line(exc)}"
                    ) from None
                jobs.retry(index, attempt)
            except Exception:
                _get(ray, ref)  # raises the job's own error, as one line
        return [results[i] for i in range(len(calls))]


class _Dispatch(Generic[J]):
    """Hands jobs to free workers, one job per worker at a time, and yields each finished one as
    (worker index, job, attempt, Ray reference) in the order they finish; ``retry`` puts a job
    first in line again (the caller decides what is worth another try)."""

    def __init__(
        self, ray: Any, actors: list[Any], jobs: Iterable[J], submit: Callable[[Any, J], Any]
    ) -> None:
        self.ray = ray
        self.actors = actors
        self.submit = submit
        self.queue: list[tuple[J, int]] = [(job, 0) for job in jobs]

    def retry(self, job: J, attempt: int) -> None:
        self.queue.insert(0, (job, attempt + 1))

    def __iter__(self) -> Iterator[tuple[int, J, int, Any]]:
        pending: dict[Any, tuple[int, J, int]] = {}
        free = list(range(len(self.actors)))
        while self.queue or pending:
            while self.queue and free:
                worker = free.pop(0)
                job, attempt = self.queue.pop(0)
                pending[self.submit(self.actors[worker], job)] = (worker, job, attempt)
            (ref,), _ = self.ray.wait(list(pending), num_returns=1)
            worker, job, attempt = pending.pop(ref)
            free.append(worker)
            yield worker, job, attempt, ref


# A host name (labels of letters, digits, "-" and "_", as container and cluster tools name
# hosts), an IPv4 address, or an IPv6 address in brackets.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST = re.compile(rf"(?:{_LABEL})(?:\.{_LABEL})*\.?|\[[0-9A-Fa-f:.]+\]")


def parse_address(address: str, given: str = "--ray-address") -> tuple[str, int]:
    """``host:port`` or ``ray://host:port`` as (host, port), or one error line naming where it
    was ``given``. Only names the resolver can take (an over-long or empty label made the socket
    layer raise UnicodeError) and ports 1 to 65535 written in ASCII digits."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if (
        not _HOST.fullmatch(host)
        or len(host) > 253
        or not (port.isascii() and port.isdigit() and 0 < int(port) < 65536)
    ):
        raise BenchError(f"{given} {shown(address, 60)} is not HOST:PORT (or auto)")
    return host.removeprefix("[").removesuffix("]"), int(port)


def _check_client(address: str, given: str) -> None:
    """A ``ray://`` address is Ray Client's, which needs ``grpc`` (the ``ray[client]`` extra,
    which this package's ``ray`` extra does not pull: Ray deprecates Ray Client). Without it Ray
    says so only after the probe, as if the cluster could not be reached."""
    import importlib.util

    if address.startswith("ray://") and importlib.util.find_spec("grpc") is None:
        raise BenchError(
            f"{given} {shown(address, 60)} is a Ray Client address, which needs "
            '`pip install "ray[client]"` on this machine; or run on a machine of the cluster '
            "and give the head's HOST:PORT"
        )


# An HTTP/2 client's connection preface and an empty SETTINGS frame (RFC 9113, section 3.4).
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _probe(address: str, given: str = "--ray-address") -> None:
    """A Ray address (``host:port`` or ``ray://host:port``) answers, and answers as gRPC, within
    3 s each. Ray's cluster and client ports speak gRPC, that is HTTP/2, whose servers reply to a
    client's preface with a SETTINGS frame. Given an address where something else listens (the
    dashboard's port, 8265, is the usual mix-up), ``ray.init`` waits forever (over 200 s seen,
    Ray 2.60). With ``RAY_USE_TLS`` on, the ports expect TLS first and only the connection is
    checked."""
    import socket

    host, port = parse_address(address, given)
    try:
        with socket.create_connection((host, port), timeout=3.0) as sock:
            if os.environ.get("RAY_USE_TLS", "0").lower() in {"1", "true"}:
                return
            sock.sendall(_HTTP2_PREFACE)
            head = b""
            with contextlib.suppress(OSError):  # a timeout, or a reset: not gRPC either way
                while len(head) < 9 and (chunk := sock.recv(9 - len(head))):
                    head += chunk
    except OSError as exc:
        raise BenchError(
            f"cannot reach Ray at {shown(address, 60)}: {exc.strerror or exc}"
        ) from None
    if len(head) < 9 or head[3] != 4:  # a frame header's fourth byte is its type; 4: SETTINGS
        raise BenchError(
            f"{shown(address, 60)} answers, but not as Ray: give the cluster's own port (the "
            "one `ray start --head --port` opened, 6379 by default; not the dashboard's, 8265)"
        )


def _init_ray(ray: Any, address: str | None, workers: int) -> None:
    import logging

    options: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.ERROR,
        "configure_logging": True,
    }
    if address is None:
        # Room for every worker, and for a later executor of this process with more of them.
        options["num_cpus"] = max(workers, os.cpu_count() or 1)
        try:
            ray.init(**options)
        except Exception as exc:  # whatever keeps Ray from starting here is one line
            raise BenchError(f"cannot start a local Ray instance: {_first_line(exc)}") from None
        return
    options["address"] = address
    with _stderr_to_file() as written:
        try:
            ray.init(**options)
        except Exception as exc:
            raise BenchError(_unreachable(address, exc, written())) from None
        said = written()
    if said:  # joined: whatever Ray had to say is shown after all
        sys.stderr.write(said)


# Where a cluster's token is looked for, in Ray's order (the driver's environment or home).
_TOKEN_PLACES = "RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH names, or ~/.ray/auth_token"


def _unreachable(address: str, exc: BaseException, stderr: str) -> str:
    """Why joining the cluster at ``address`` failed, as one line. A cluster that `ray start`
    set up with token authentication (Ray's default where a token exists) turns away a driver
    without the token, but Ray only says so on stderr, once a second for about 20 seconds,
    before raising "Failed to connect"; Ray never sends a token to an address it was given
    unless RAY_AUTH_MODE=token says to."""
    where = f"the Ray cluster at {shown(address, 60)}"
    token = (
        f"the cluster's token (`ray get-auth-token` on its head node prints it) in {_TOKEN_PLACES}"
    )
    if type(exc).__name__ == "AuthenticationError":  # RAY_AUTH_MODE=token, and no token here
        return (
            f"cannot join {where}: RAY_AUTH_MODE=token is set but no authentication token was "
            f"found; put {token}"
        )
    if "InvalidAuthToken" in stderr or "Unauthenticated" in stderr:
        if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
            return (
                f"cannot join {where}: it asks for an authentication token; set "
                f"RAY_AUTH_MODE=token, with {token}"
            )
        return f"cannot join {where}: it refused this machine's authentication token; use {token}"
    return f"cannot reach {where}: {_first_line(exc)}"


@contextlib.contextmanager
def _stderr_to_file() -> Iterator[Callable[[], str]]:
    """File descriptor 2 goes to a temporary file while the driver joins a cluster: Ray's C++
    client writes a line there for every failed attempt (which the one error line replaces),
    and reading it is the only way to tell a refused token from an unreachable cluster. Only
    around joining: a local instance's processes, started by ``ray.init``, would inherit it."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as file:
        os.dup2(file.fileno(), 2)
        try:

            def written() -> str:
                file.seek(0)
                return file.read().decode("utf-8", "replace")

            yield written
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _get(ray: Any, ref: Any) -> Any:
    try:
        return ray.get(ref)
    except Exception as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BenchError):
            raise cause from None
        raise BenchError(f"a Ray worker failed: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    text = str(cause if cause is not None else exc).strip().splitlines()
    return text[-1][:200] if text else type(exc).__name__
