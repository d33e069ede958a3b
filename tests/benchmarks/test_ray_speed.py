"""Ray workers against the local executor, side by side in one run (ratios, never seconds):

- DeepWordBug on the default NLI model (epistemic_reasoning pairs) and on the default sentiment
  model (vader_movies; it needs no BIG-bench asset): 2 single-threaded Ray workers vs the local
  executor with 2 torch threads (the local executor batches the queries of 16 concurrent attacks
  on both threads; the CPU share it printed, 1.63 cores on NLI, says how little room Ray had on
  2 cores);
- the VADER transfer suite at one seed, small recipe: 2 Ray workers vs 1.

Under `--benchmark-enable` (tox -e bench) at full size (100 attacked examples); in the ordinary
suite a few examples, to keep the code path exercised.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray")


@pytest.fixture(autouse=True)
def _ray_down_after_each_test() -> Iterator[None]:
    # A test that fails must not leave its workers holding the CPUs for the tests after it.
    yield
    import ray

    ray.shutdown()


def _attack_seconds(
    db: Path, executor: Any, model: str, model_dir: Path, task_name: str, limit: int
) -> tuple[float, float, Any]:
    """(wall seconds, this process's CPU seconds, the attack rows), warm: both executors first
    attack two examples into a store of their own, outside the timed part, so that neither
    pays for loading the model or importing TextAttack (some 7 s of CPU per process) inside
    it."""
    from bench.attacks.runner import AttackRunner
    from bench.attacks.specs import AttackConfig, AttackSpec, SuiteSpec
    from bench.engine import Engine
    from bench.specs import ModelSpec
    from bench.store import ResultStore
    from bench.tasks import get_task, load_task_data

    item = get_task(task_name)
    task = load_task_data(item.spec, item.base_dir)
    suite = SuiteSpec(name="t", attacks=[AttackSpec(name="deepwordbug", recipe="deepwordbug")])
    spec = ModelSpec(name=model, path=str(model_dir))
    with ResultStore(db.with_name(f"{db.stem}-warm.sqlite")) as store:
        engine = Engine(store, progress=False, executor=executor)
        runner = AttackRunner(store, AttackConfig(limit=2, max_length=128), device="cpu",
                              progress=False, engine=engine)  # fmt: skip
        runner.run_suite(task, spec, suite)  # on Ray: every worker loads the model and TextAttack
    with ResultStore(db) as store:
        engine = Engine(store, progress=False, executor=executor)
        runner = AttackRunner(store, AttackConfig(limit=limit, max_length=128), device="cpu",
                              progress=False, engine=engine)  # fmt: skip
        if not hasattr(executor, "worker_pids"):
            runner.warm(spec)  # this runner's own model pool
        started, cpu = time.perf_counter(), time.process_time()
        (outcome,), _ = runner.run_suite(task, spec, suite)
        wall = time.perf_counter() - started
        return wall, time.process_time() - cpu, store.attack_rows(outcome.record.run_key)


@pytest.mark.slow
@pytest.mark.benchmark
@pytest.mark.parametrize(
    ("model", "task"),
    [
        pytest.param("minilm-nli", "epistemic_reasoning", marks=pytest.mark.assets("bigbench")),
        ("minilm-sentiment", "vader_movies"),
    ],
)
def test_deepwordbug_on_two_ray_workers_vs_local(
    benchmark: Any, default_models: dict[str, Path], tmp_path: Path, model: str, task: str
) -> None:
    import ray
    import torch

    from bench.engine.executors import LocalExecutor, RayExecutor

    limit = 100 if benchmark.enabled else 8
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        local_s, local_cpu, local_rows = _attack_seconds(
            tmp_path / "local.sqlite", LocalExecutor(), model, default_models[model], task, limit
        )
    finally:
        torch.set_num_threads(threads)
    executor = RayExecutor(workers=2)
    times: list[float] = []

    def ray_run() -> None:
        seconds, _, rows = _attack_seconds(
            tmp_path / f"ray{len(times)}.sqlite", executor, model, default_models[model], task,
            limit,
        )  # fmt: skip
        times.append(seconds)
        assert [(r.idx, r.status, r.perturbed) for r in rows] == [
            (r.idx, r.status, r.perturbed) for r in local_rows
        ]

    benchmark.pedantic(ray_run, rounds=1, iterations=1)
    if not times:
        ray_run()
    executor.close()
    ray.shutdown()
    speedup = local_s / times[0]
    cores = local_cpu / local_s  # how busy the local executor kept the machine
    benchmark.extra_info.update(
        {"local_s": local_s, "ray_s": times[0], "speedup": speedup, "local_cores": cores}
    )
    print(f"\nDeepWordBug, {limit} {task} examples ({model}): local (2 threads) {local_s:.1f} s "
          f"using {cores:.2f} cores, Ray 2 workers {times[0]:.1f} s: {speedup:.2f}x")  # fmt: skip
    # The speed-up is reported, not asserted (the aim is 1.6x on 2 cores); the outcomes were
    # asserted identical above.


@pytest.mark.slow
@pytest.mark.benchmark
def test_transfer_on_two_workers_vs_one(benchmark: Any, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    import ray

    from bench import assets
    from bench.engine.executors import RayExecutor
    from bench.store import ResultStore
    from bench.transfer import TransferRecipe, TransferSpec, run_transfer

    assets.fetch(["minilm", "vader"], progress=False)
    size = (500, 200) if benchmark.enabled else (24, 24)
    # Four domains at full size; two in the ordinary suite (the code path, not the figure).
    domains = ["vader_movies", "vader_amazon", "vader_nyt", "vader_tweets"]
    domains = domains if benchmark.enabled else domains[:2]
    spec = TransferSpec(
        name="bench-ray",
        train_tasks=domains,
        test_tasks=domains,
        seeds=[0],
        max_train=size[0],
        eval_limit=size[1],
        recipe=TransferRecipe(epochs=1, max_length=48),
    )
    seconds: dict[int, float] = {}
    cells: dict[int, list[tuple[str, str, float]]] = {}

    def on(workers: int) -> None:
        monkeypatch.setenv("BENCH_MODELS_DIR", str(tmp_path / f"models{workers}"))
        executor = RayExecutor(workers=workers)
        executor.worker_pids()  # workers started outside the timed part
        with ResultStore(tmp_path / f"t{workers}.sqlite") as store:
            started = time.perf_counter()
            result = run_transfer(spec, store, progress=False, executor=executor)
            seconds[workers] = time.perf_counter() - started
        cells[workers] = [(c.train, c.test, c.mean) for c in result.cells]
        executor.close()
        ray.shutdown()

    on(1)
    benchmark.pedantic(on, args=(2,), rounds=1, iterations=1)
    if 2 not in seconds:
        on(2)
    benchmark.extra_info.update({f"{w}_workers_s": s for w, s in seconds.items()})
    speedup = seconds[1] / seconds[2]
    print(f"\ntransfer, {len(domains)} domains x 1 seed ({size[0]} training examples each): 1 worker "
          f"{seconds[1]:.1f} s, 2 workers {seconds[2]:.1f} s: {speedup:.2f}x")  # fmt: skip
    # The same training recipe and seeds on either topology give the same matrix.
    assert cells[1] == cells[2]
