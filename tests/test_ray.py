"""The Ray executor on an embedded local Ray instance: the same rows as the local executor on 1,
2 and 4 workers, a worker killed mid-run, a driver killed and resumed on another number of
workers, and bad input."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY_WORDS, assert_user_error

pytest.importorskip("ray")

from bench.engine import Engine
from bench.engine.executors import LocalExecutor, RayExecutor
from bench.specs import EvalConfig, ModelSpec, PromptConfig
from bench.store import ResultStore
from bench.tasks.examples import TaskData

LABELS = ["entailment", "neutral", "contradiction"]


def _task(folder: Path, n: int) -> Path:
    rng = random.Random(21)
    with (folder / "pairs.jsonl").open("w") as fh:
        for i in range(n):
            row = {"p": " ".join(rng.choices(TINY_WORDS, k=rng.randint(3, 14))),
                   "h": " ".join(rng.choices(TINY_WORDS, k=rng.randint(2, 6))),
                   "label": LABELS[i % 3]}  # fmt: skip
            fh.write(json.dumps(row) + "\n")
    path = folder / "pairs.yaml"
    path.write_text(
        "name: pairs\nsource: {type: local, path: pairs.jsonl}\ninputs: [p, h]\n"
        "labels: [entailment, neutral, contradiction]\n"
        "prompt:\n  templates: ['{p} => {h}:']\n  choices: [' yes', ' maybe', ' no']\n"
    )
    return path


def _load(path: Path) -> TaskData:
    from bench.tasks import load_task_data
    from bench.tasks.registry import load_task_file

    return load_task_data(load_task_file(path), path.parent)


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    import ray

    yield
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture(scope="module")
def task_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _task(tmp_path_factory.mktemp("ray-task"), 240)


def _rows(db: Path, executor: Any, task: TaskData, model: Path, lm: Path) -> dict[str, Any]:
    """Every kind of run with ``executor``: evaluation, prompting, an attack; rows by kind."""
    from bench.attacks.runner import AttackRunner
    from bench.attacks.specs import AttackConfig, AttackSpec, SuiteSpec
    from bench.prompt_runner import PromptRunner
    from bench.runner import Evaluator

    suite = SuiteSpec(name="t", attacks=[AttackSpec(name="deepwordbug", recipe="deepwordbug")])
    spec = ModelSpec(name="tiny", path=str(model))
    with ResultStore(db) as store:
        engine = Engine(store, progress=False, executor=executor)
        evaluated = Evaluator(store, EvalConfig(device="cpu"), engine=engine).evaluate(task, spec)
        runner = PromptRunner(store, PromptConfig(device="cpu", limit=40), engine=engine)
        (prompted,), _ = runner.run(ModelSpec(name="lm", path=str(lm)), runner.plan(task, [0]))
        attacks = AttackRunner(store, AttackConfig(limit=16, max_length=64), device="cpu",
                               progress=False, engine=engine)  # fmt: skip
        (attacked,), _ = attacks.run_suite(task, spec, suite)
        return {
            "eval": store.predictions(evaluated.record.run_key),
            "prompt": store.prompt_rows(prompted.record.run_key),
            "attack": store.attack_rows(attacked.record.run_key),
            "records": (evaluated.record, prompted.record, attacked.record),
        }


def test_local_and_ray_on_one_two_and_four_workers_give_identical_rows(
    tmp_path: Path, task_path: Path, tiny_model_dir: Path, ray_session: None
) -> None:
    import ray
    from lm_helpers import build_tiny_llama

    task = _load(task_path)
    lm = build_tiny_llama(tmp_path / "lm")
    local = _rows(tmp_path / "local.sqlite", LocalExecutor(), task, tiny_model_dir, lm)
    for workers in (1, 2, 4):
        # A fresh Ray instance per topology, as each command starts its own (four workers on
        # two cores need an instance started for four).
        ray.shutdown()
        executor = RayExecutor(workers=workers)
        ray_rows = _rows(tmp_path / f"ray{workers}.sqlite", executor, task, tiny_model_dir, lm)
        executor.close()
        for kind in ("eval", "prompt", "attack"):
            _same_rows(ray_rows[kind], local[kind], f"{kind} on {workers} worker(s)")
        execution = ray_rows["records"][0].config.execution
        assert execution["executor"] == "ray" and execution["workers"] == workers
        assert len(execution["per_worker_examples_per_s"]) == workers
    assert len(local["eval"]) == 240 and len(local["attack"]) == 16


def _same_rows(got: list[Any], want: list[Any], what: str) -> None:
    """Identical rows, but for scores, which may differ by float rounding: a worker computes
    with one thread, the driver with several, and reductions add in another order."""
    import dataclasses

    import numpy as np

    assert len(got) == len(want), what
    for a, b in zip(got, want, strict=True):
        da, db = dataclasses.asdict(a), dataclasses.asdict(b)
        for name in da:
            if name in ("probs", "logits", "scores", "original_scores", "perturbed_scores"):
                np.testing.assert_allclose(da[name], db[name], rtol=0, atol=1e-5, err_msg=what)
            else:
                assert da[name] == db[name], (what, name, a.idx)


def test_a_worker_killed_mid_run_costs_only_its_shard(
    tmp_path: Path, task_path: Path, tiny_model_dir: Path, ray_session: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from bench.attacks.runner import AttackRunner
    from bench.attacks.specs import AttackConfig, AttackSpec, SuiteSpec
    from bench.engine import executors

    # One or two examples per shard: many shards, so the kill lands mid-run.
    monkeypatch.setattr(executors, "SHARD_COST", 1)
    task = _load(task_path)
    executor = RayExecutor(workers=2)
    db = tmp_path / "r.sqlite"
    suite = SuiteSpec(name="t", attacks=[AttackSpec(name="pruthi", recipe="pruthi")])
    pids = executor.worker_pids()
    killed: list[int] = []

    def kill_after_first_rows() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with sqlite3.connect(db) as conn:
                    n = conn.execute("SELECT COUNT(*) FROM attack_examples").fetchone()[0]
            except sqlite3.Error:
                n = 0
            if n >= 3:
                os.kill(pids[1], signal.SIGKILL)
                killed.append(pids[1])
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_after_first_rows)
    killer.start()
    with ResultStore(db) as store:
        engine = Engine(store, progress=False, executor=executor)
        runner = AttackRunner(store, AttackConfig(limit=30, max_length=64), device="cpu",
                              progress=False, engine=engine)  # fmt: skip
        (outcome,), _ = runner.run_suite(task, ModelSpec(name="tiny", path=str(tiny_model_dir)),
                                         suite)  # fmt: skip
        rows = store.attack_rows(outcome.record.run_key)
    killer.join()
    executor.close()
    assert killed, "the run finished before a worker could be killed"
    assert sorted(r.idx for r in rows) == sorted({r.idx for r in rows}) and len(rows) == 30
    assert outcome.record.status == "complete"
    assert outcome.record.config.execution["retried"], "the killed worker's shard was retried"


def test_a_killed_driver_resumes_on_another_number_of_workers(
    tmp_path: Path, task_path: Path, tiny_model_dir: Path
) -> None:
    db = tmp_path / "r.sqlite"
    args = [sys.executable, "-m", "bench", "attack", "--task", str(task_path), "--model",
            f"tiny={tiny_model_dir}", "--suite", str(_suite(tmp_path)), "--limit", "40",
            "--db", str(db), "--no-progress", "--device", "cpu", "--max-length", "64",
            "--executor", "ray"]  # fmt: skip
    env = {**os.environ, "BENCH_SHARD_COST": "1"}
    proc = subprocess.Popen([*args, "--workers", "2"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    stored = 0
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with sqlite3.connect(db) as conn:
                stored = conn.execute("SELECT COUNT(*) FROM attack_examples").fetchone()[0]
        except sqlite3.Error:
            stored = 0
        if stored >= 4:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray processes it started
    proc.wait()
    assert 0 < stored < 40, stored
    resumed = subprocess.run([*args, "--workers", "1"], env=env, capture_output=True, text=True,
                             timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT idx, status, perturbed FROM attack_examples ORDER BY idx").fetchall()  # fmt: skip
    assert [r[0] for r in rows] == sorted({r[0] for r in rows}) and len(rows) == 40
    fresh = tmp_path / "fresh.sqlite"
    local = [a if a != str(db) else str(fresh) for a in args]
    local = local[: local.index("--executor")]
    done = subprocess.run(local, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    with sqlite3.connect(fresh) as conn:
        expected = conn.execute("SELECT idx, status, perturbed FROM attack_examples ORDER BY idx").fetchall()  # fmt: skip
    assert rows == expected


def _suite(folder: Path) -> Path:
    path = folder / "suite.yaml"
    path.write_text("name: t\nattacks: [{name: deepwordbug, recipe: deepwordbug}]\n")
    return path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    """A Ray cluster started the way a user starts one, ``ray start --head``, on 127.0.0.1, with
    token authentication and 2 CPUs: its address, its token's file and its session folder."""
    import secrets
    import shutil
    import tempfile

    from served_helpers import free_port

    folder = tmp_path_factory.mktemp("cluster")
    token = folder / "auth_token"
    token.write_text(secrets.token_hex(32))
    temp = Path(tempfile.mkdtemp(prefix="ray"))  # short: its session folder holds Unix sockets
    port = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    command = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
               "--port", str(port), "--num-cpus", "2", "--temp-dir", str(temp),
               "--include-dashboard", "false", "--disable-usage-stats"]  # fmt: skip
    log = folder / "ray.log"
    with log.open("w") as out:
        head = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:
        raylet = temp / "session_latest" / "sockets" / "raylet"
        deadline = time.monotonic() + 120
        while not raylet.exists():
            assert head.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        yield f"127.0.0.1:{port}", token, temp / "session_latest"
    finally:
        # Told alone, `ray start --block` drains the node and stops what it started (about 4 s);
        # whatever is left of its process group after a minute is killed.
        head.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        shutil.rmtree(temp, ignore_errors=True)


def test_a_cluster_joined_by_address_gives_the_local_rows(
    cluster: tuple[str, Path, Path], tmp_path: Path, task_path: Path, tiny_model_dir: Path
) -> None:
    """The documented way to use a cluster: ``ray start --head``, then ``--ray-address``. Its
    workers evaluate, prompt and attack; the rows equal the local executor's. A driver without
    the cluster's token is told what to set, in one line, not Ray's retry chatter."""
    from lm_helpers import build_tiny_llama

    address, token, session = cluster
    lm = build_tiny_llama(tmp_path / "lm")

    def bench(db: Path, *extra: str, **env: str | None) -> subprocess.CompletedProcess[str]:
        args = [sys.executable, "-m", "bench", "run", "--task", str(task_path),
                "--model", f"tiny={tiny_model_dir}", "--model", f"lm={lm}", "--shots", "0",
                "--limit", "60", "--suite", str(_suite(tmp_path)), "--attack-limit", "8",
                "--max-length", "64", "--device", "cpu", "--db", str(db), "--no-progress",
                *extra]  # fmt: skip
        merged = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
        return subprocess.run(args, env=merged, capture_output=True, text=True, timeout=600)

    on_cluster = ["--executor", "ray", "--ray-address", address, "--workers", "2"]
    joined = bench(tmp_path / "ray.sqlite", *on_cluster, RAY_AUTH_MODE="token",
                   RAY_AUTH_TOKEN_PATH=str(token))  # fmt: skip
    assert joined.returncode == 0, joined.stderr[-2000:]
    assert list(session.glob("logs/worker-*")), "no worker ran on the cluster"
    local = bench(tmp_path / "local.sqlite")
    assert local.returncode == 0, local.stderr[-2000:]
    with ResultStore(tmp_path / "ray.sqlite") as a, ResultStore(tmp_path / "local.sqlite") as b:
        kinds = ["attack", "eval", "prompt"]
        runs = {r.run_key: r for r in a.runs(kinds=kinds)}
        assert sorted(runs) == sorted(r.run_key for r in b.runs(kinds=kinds))
        assert sorted(r.kind for r in runs.values()) == kinds
        for key, record in runs.items():
            read = {"eval": ResultStore.predictions, "prompt": ResultStore.prompt_rows,
                    "attack": ResultStore.attack_rows}[record.kind]  # fmt: skip
            _same_rows(read(a, key), read(b, key), record.kind)
            assert record.config.execution["workers"] == 2, record.config.execution

    # Without RAY_AUTH_MODE=token Ray never sends a token to an address it is given; the cluster
    # turns the driver away, and Ray says why only in a line a second on stderr.
    # (Ray tries for 20 s by default; RAY_gcs_server_port_wait_time_s, a Ray setting, cuts
    # that to 2 tries here.)
    refused = bench(tmp_path / "refused.sqlite", *on_cluster, RAY_AUTH_MODE=None,
                    RAY_gcs_server_port_wait_time_s="2")  # fmt: skip
    assert_user_error(refused, address, "asks for an authentication token", "RAY_AUTH_MODE=token")
    # Token mode with no token anywhere was a traceback (Ray's AuthenticationError).
    no_token = bench(tmp_path / "refused.sqlite", *on_cluster, RAY_AUTH_MODE="token",
                     HOME=str(tmp_path), RAY_AUTH_TOKEN_PATH=str(tmp_path / "absent"))  # fmt: skip
    assert_user_error(no_token, address, "no authentication token was found")


def test_a_refused_token_and_an_unreachable_cluster_read_apart() -> None:
    """The one line names the cause Ray wrote on stderr: a token turned away is not a network
    problem. (The cluster test above sees the first case for real; this one the rest.)"""
    from bench.engine.executors import _unreachable

    failed = ConnectionError("Failed to connect to Ray cluster at 10.0.0.5:6379")
    chatter = "W gcs_client.cc:210: Unauthenticated: RPC error: InvalidAuthToken: missing\n" * 3
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_AUTH_MODE", "token")
        assert "refused this machine's authentication token" in _unreachable("h:1", failed, chatter)
        env.delenv("RAY_AUTH_MODE")
        assert "set RAY_AUTH_MODE=token" in _unreachable("h:1", failed, chatter)
    other = _unreachable("h:1", failed, "W rpc_client.h:153: Failed to connect to GCS\n")
    assert other == "cannot reach the Ray cluster at 'h:1': " + str(failed)


def test_bad_executor_input_is_one_line(tmp_path: Path, task_path: Path) -> None:
    base = [sys.executable, "-m", "bench", "run", "--task", str(task_path), "--model", "x",
            "--db", str(tmp_path / "r.sqlite"), "--no-progress"]  # fmt: skip

    def run(*extra: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *extra], capture_output=True, text=True, timeout=120,
                              env={**os.environ, **env})  # fmt: skip

    assert_user_error(run("--executor", "ray", "--workers", "0"), "--workers")
    assert_user_error(run("--executor", "spark"), "--executor")
    assert_user_error(run("--workers", "2"), "--executor ray")
    started = time.monotonic()
    unreachable = run("--executor", "ray", "--ray-address", "127.0.0.1:9")
    assert_user_error(unreachable, "127.0.0.1:9")
    assert time.monotonic() - started < 60
    # Ray's own RAY_ADDRESS is the cluster to join when --ray-address is not given; it made the
    # embedded instance's ray.init(num_cpus=...) fail ("num_cpus must not be provided").
    assert_user_error(run("--executor", "ray", RAY_ADDRESS="127.0.0.1:9"), "127.0.0.1:9")
    assert_user_error(run("--executor", "ray", RAY_ADDRESS="junk"), "RAY_ADDRESS 'junk'")


def test_more_workers_than_the_ray_instance_has_cpus_is_one_line(ray_session: None) -> None:
    import ray

    from bench.errors import BenchError

    ray.shutdown()
    small = RayExecutor(workers=1)
    small.worker_pids()  # starts an instance with a CPU per core of this machine
    try:
        cpus = int(ray.cluster_resources()["CPU"])
        started = time.monotonic()
        with pytest.raises(BenchError, match=f"--workers {cpus + 1} needs a CPU per worker") as e:
            RayExecutor(workers=cpus + 1).worker_pids()
        assert "\n" not in str(e.value) and time.monotonic() - started < 10
    finally:
        small.close()


def _square_after(x: int, pause: float) -> tuple[int, int]:
    time.sleep(pause)
    return x * x, os.getpid()


def _refuse(x: int) -> int:
    from bench.errors import BenchError

    raise BenchError(f"job input {x} refused")


def test_map_runs_on_the_workers_even_when_they_fill_every_cpu(ray_session: None) -> None:
    # The actors hold one CPU each; jobs sent as separate Ray tasks asking for a CPU of their
    # own waited forever once the actors filled the machine. They run on the actors now.
    import ray
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests
    workers = os.cpu_count() or 2
    executor = RayExecutor(workers=workers)
    try:
        pids = set(executor.worker_pids())
        # Later jobs are quicker, so results come back out of order and must be put back.
        calls = [(x, 0.05 * (8 - x)) for x in range(8)]
        results = executor.map(_square_after, calls)
        assert [r[0] for r in results] == [x * x for x in range(8)]
        assert {r[1] for r in results} <= pids  # on the workers, nowhere else
        with pytest.raises(Exception, match="job input 3 refused"):
            executor.map(_refuse, [(3,)])
    finally:
        executor.close()
        ray.shutdown()
