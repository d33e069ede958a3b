"""The run engine: identities that cannot collide, metrics recomputed from stored rows without a
model, the store's migration from schema 1, failure records, display names, and the SQL the
leaderboard's query uses."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY_WORDS, assert_user_error, build_tiny_model

from bench.errors import BenchError, ModelError
from bench.records import MetricSettings
from bench.specs import EvalConfig, ModelSpec
from bench.store import SCHEMA_VERSION, ResultStore
from bench.tasks.examples import TaskData

FIXTURES = Path(__file__).parent / "fixtures"
LABELS = ["entailment", "neutral", "contradiction"]


def _pair_task(folder: Path, n: int = 40) -> TaskData:
    import random

    from bench.tasks import load_task_data
    from bench.tasks.registry import load_task_file

    rng = random.Random(5)
    with (folder / "pairs.jsonl").open("w") as fh:
        for i in range(n):
            premise = " ".join(rng.choices(TINY_WORDS, k=6))
            hypothesis = " ".join(rng.choices(TINY_WORDS, k=4))
            fh.write(json.dumps({"p": premise, "h": hypothesis, "label": LABELS[i % 3]}) + "\n")
    (folder / "pairs.yaml").write_text(
        "name: pairs\nsource: {type: local, path: pairs.jsonl}\ninputs: [p, h]\n"
        "labels: [entailment, neutral, contradiction]\nsplits: {fractions: {test: 1.0}}\n"
    )
    return load_task_data(load_task_file(folder / "pairs.yaml"), folder)


@pytest.fixture(scope="module")
def pair_task(tmp_path_factory: pytest.TempPathFactory) -> TaskData:
    return _pair_task(tmp_path_factory.mktemp("engine-task"))


def _fake_hub(cache: Path, repo: str, commits: dict[str, str]) -> None:
    """A hub cache layout holding ``repo`` at the given refs (ref name -> commit)."""
    folder = cache / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    for ref, commit in commits.items():
        snapshot = folder / "snapshots" / commit
        snapshot.mkdir(parents=True, exist_ok=True)
        (snapshot / "config.json").write_text(json.dumps({"model_type": "bert"}))
        (folder / "refs" / ref).write_text(commit)


# ------------------------------------------------------------------------------------------------
# Shards (the Ray executor's work split)


def test_shards_cover_what_is_missing_once_in_order_and_attacks_split_by_concurrency(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    from bench.attacks.runner import AttackRunner
    from bench.attacks.specs import AttackConfig, AttackSpec, SuiteSpec
    from bench.engine.executors import SHARD_COST, shards
    from bench.engine.kinds import WorkUnit

    task = _pair_task(tmp_path, 400)
    suite = SuiteSpec(name="t", attacks=[AttackSpec(name="deepwordbug", recipe="deepwordbug")])
    model = ModelSpec(name="tiny", path=str(tiny_model_dir))
    with ResultStore(tmp_path / "r.sqlite") as store:
        runner = AttackRunner(store, AttackConfig(limit=100), concurrency=16, progress=False)
        (planned,) = runner.plan(task, suite)
        plan = runner.run_plan(task, model, planned)
    units = [WorkUnit((i,)) for i in range(len(plan.examples))]
    chars = sum(len(x) for ex in plan.examples for x in ex.inputs)
    assert chars < SHARD_COST  # one shard by cost alone
    cut = shards(plan, units, set())
    assert [len(s) for s in cut] == [16] * 6 + [4]
    assert [u.positions for s in cut for u in s] == [u.positions for u in units]
    # Stored examples are skipped; the rest keep their order.
    done = set(range(0, 100, 3))
    rest = [u.positions[0] for s in shards(plan, units, done) for u in s]
    assert rest == [i for i in range(100) if i not in done]
    # BENCH_SHARD_COST sets the cost budget (an attack's is 20 times it): a tiny one cuts a
    # shard at every example; a value that is not a positive whole number is refused in a line.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("BENCH_SHARD_COST", "1")
        assert [len(s) for s in shards(plan, units[:5], set())] == [1] * 5
        for bad in ("abc", "0", "-5", "1.5", "nan"):
            env.setenv("BENCH_SHARD_COST", bad)
            with pytest.raises(BenchError, match="BENCH_SHARD_COST must be a whole number"):
                shards(plan, units, set())


# ------------------------------------------------------------------------------------------------
# Identity


def test_run_keys_never_collide_across_models_revisions_and_weights(
    tmp_path: Path, pair_task: TaskData, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    from bench.runner import Evaluator

    cache = tmp_path / "hub"
    _fake_hub(cache, "org-one/model-a", {"main": "1" * 40})
    _fake_hub(cache, "org-two/model-b", {"main": "2" * 40})
    _fake_hub(cache, "org-one/model-c", {"main": "3" * 40, "v2": "4" * 40})
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)  # hub ids must not be mistaken for local folders

    other = build_tiny_model(tmp_path / "other", seed=7, init_range=0.5)
    moved = tmp_path / "moved" / "copy"
    shutil.copytree(tiny_model_dir, moved)

    with ResultStore(tmp_path / "r.sqlite") as store:
        evaluator = Evaluator(store, EvalConfig(device="cpu"), progress=False)

        def key(path: str, revision: str | None = None) -> str:
            return evaluator.key_for(pair_task, ModelSpec(name="m", path=path, revision=revision))

        # Two hub ids, each at its own cached commit.
        assert key("org-one/model-a") != key("org-two/model-b")
        # Two revisions of one id.
        assert key("org-one/model-c") != key("org-one/model-c", revision="v2")
        # The same commit named two ways is the same model only when the revision says so too.
        assert key("org-one/model-c", revision="3" * 40) != key("org-one/model-c", revision="v2")
        # Two local folders with different weights.
        assert key(str(tiny_model_dir)) != key(str(other))
        # A moved but identical folder keeps its key (and so its stored results).
        assert key(str(moved)) == key(str(tiny_model_dir))
        # The display name is not part of a run's identity.
        assert evaluator.key_for(
            pair_task, ModelSpec(name="another-name", path=str(tiny_model_dir))
        ) == key(str(tiny_model_dir))

        # A hub model that cannot be resolved (offline, not cached) is refused in one line.
        with pytest.raises(ModelError, match="not in the hub cache") as err:
            key("org-three/not-cached")
        assert "\n" not in str(err.value)
        assert store.runs(status=None) == []


def test_unresolvable_hub_model_is_refused_by_the_cli_with_nothing_stored(
    tmp_path: Path,
) -> None:
    _pair_task(tmp_path)
    db = tmp_path / "r.sqlite"
    env = {**_env(), "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-hub")}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--task", str(tmp_path / "pairs.yaml"),
         "--model", "acme/never-downloaded", "--adapter", "classifier", "--db", str(db),
         "--no-progress"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )  # fmt: skip
    assert_user_error(proc, "acme/never-downloaded", "HF_HUB_OFFLINE")
    if db.exists():
        with ResultStore(db) as store:
            assert store.runs(status=None) == []


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("BENCH_DB")}


# ------------------------------------------------------------------------------------------------
# Metrics apart from predictions


def _intervals(metrics: dict[str, Any]) -> dict[str, tuple[float | None, float | None]]:
    return {name: (m.low, m.high) for name, m in metrics.items()}


def test_new_bootstrap_settings_recompute_cis_without_loading_any_model(
    tmp_path: Path, pair_task: TaskData, tiny_model_dir: Path, torch_one_thread: None
) -> None:
    from lm_helpers import build_tiny_llama

    from bench.attacks.runner import AttackRunner
    from bench.attacks.specs import AttackConfig, AttackSpec, SuiteSpec
    from bench.metrics import ClassificationData, compute
    from bench.prompt_runner import PromptRunner
    from bench.runner import Evaluator
    from bench.specs import PromptConfig, PromptSpec

    db = tmp_path / "r.sqlite"
    model = ModelSpec(name="tiny", path=str(tiny_model_dir))
    lm = ModelSpec(name="lm", path=str(build_tiny_llama(tmp_path / "lm")))
    prompt = PromptSpec(templates=["{p} => {h}:"], choices=[" yes", " maybe", " no"])
    task = TaskData(pair_task.spec.model_copy(update={"prompt": prompt}), pair_task.splits,
                    pair_task.data_hash)  # fmt: skip
    suite = SuiteSpec(name="s", attacks=[AttackSpec(name="deepwordbug", recipe="deepwordbug")])

    def everything(n_boot: int, confidence: float) -> tuple[Any, Any, Any, int]:
        with ResultStore(db) as store:
            ev = Evaluator(
                store,
                EvalConfig(device="cpu", n_bootstrap=n_boot, confidence=confidence),
                progress=False,
            )
            evaluated = ev.evaluate(task, model)
            pr = PromptRunner(
                store,
                PromptConfig(device="cpu", limit=12, n_bootstrap=n_boot, confidence=confidence),
                progress=False,
            )
            _, (prompted,) = pr.run(lm, pr.plan(task, [0]))
            ar = AttackRunner(
                store,
                AttackConfig(limit=8, max_length=64, n_bootstrap=n_boot, confidence=confidence),
                device="cpu",
                progress=False,
            )
            _, attacked = ar.run_suite(task, model, suite)
            loads = sum(
                r.engine.models.loads  # type: ignore[union-attr]
                for r in (ev, pr, ar)
            )
            return evaluated, prompted, attacked, loads

    first = everything(1000, 0.95)
    assert first[3] > 0
    again = everything(200, 0.90)
    assert again[3] == 0, "no model may be loaded to recompute metrics"
    new = MetricSettings(n_bootstrap=200, confidence=0.90)
    from bench.engine import get_kind

    with ResultStore(db) as store:
        for before, after in zip(first[:3], again[:3], strict=True):
            assert after.cached and after.record.run_key == before.record.run_key
            # Point values do not depend on the bootstrap; intervals are the new settings'.
            assert {k: m.value for k, m in after.metrics.items()} == {
                k: m.value for k, m in before.metrics.items()
            }
            expected = get_kind(after.record.kind).metrics(store, after.record, new)
            assert _intervals(after.metrics) == {
                k: (v.low, v.high) for k, v in expected.items() if k in after.metrics
            }
            assert store.metrics(after.record.run_key, new), "the new set is stored"
    changed = [
        name
        for name, (lo, hi) in _intervals(again[0].metrics).items()
        if lo is not None and (lo, hi) != _intervals(first[0].metrics)[name]
    ]
    assert "accuracy" in changed
    # The new intervals are those of the new settings, computed from the stored predictions.
    import numpy as np

    with ResultStore(db) as store:
        rows = store.predictions(first[0].record.run_key)
    data = ClassificationData(
        np.array([r.label for r in rows]), np.array([r.probs for r in rows]), tuple(LABELS)
    )
    expected = compute("classification", data, ["accuracy"], 200, 0, 0.10)["accuracy"]
    assert (again[0].metrics["accuracy"].low, again[0].metrics["accuracy"].high) == (
        expected.low,
        expected.high,
    )
    # Both sets of metrics stay in the store, keyed by their settings.
    with ResultStore(db) as store:
        key = first[0].record.run_key
        wide = store.metrics(key, MetricSettings(n_bootstrap=1000))
        narrow = store.metrics(key, MetricSettings(n_bootstrap=200, confidence=0.9))
    assert wide["accuracy"].low != narrow["accuracy"].low


def test_leaderboard_recomputes_intervals_from_rows(
    tmp_path: Path, pair_task: TaskData, tiny_model_dir: Path
) -> None:
    from typer.testing import CliRunner

    from bench.cli import app
    from bench.runner import Evaluator

    db = tmp_path / "r.sqlite"
    with ResultStore(db) as store:
        Evaluator(store, EvalConfig(device="cpu"), progress=False).evaluate(
            pair_task, ModelSpec(name="tiny", path=str(tiny_model_dir))
        )
    runner = CliRunner()
    wide = runner.invoke(app, ["leaderboard", "--db", str(db), "--format", "json"])
    narrow = runner.invoke(
        app, ["leaderboard", "--db", str(db), "--format", "json", "--confidence", "0.5"]
    )
    assert wide.exit_code == 0 and narrow.exit_code == 0, (wide.output, narrow.output)
    (w,) = json.loads(wide.stdout)["rows"]
    (n,) = json.loads(narrow.stdout)["rows"]
    assert w["value"] == n["value"]
    assert w["low"] < n["low"] <= n["value"] <= n["high"] < w["high"]


# ------------------------------------------------------------------------------------------------
# The store: migration, failure, names, queries


def _comparable(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    keys = ("model", "column", "value", "low", "high", "n", "majority", "profile", "spread")
    return sorted(tuple(r[k] for k in keys) for r in rows)


def test_a_schema_1_store_migrates_and_renders_the_same_leaderboard(tmp_path: Path) -> None:
    from bench.report.leaderboard import render
    from bench.summary import result_rows

    db = tmp_path / "old.sqlite"
    shutil.copy(FIXTURES / "store_v1.sqlite", db)
    with sqlite3.connect(db) as conn:
        before = {
            t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("runs", "predictions", "attack_examples", "prompt_examples", "metrics")
        }
    with ResultStore(db) as store:
        kinds = ["eval", "suite", "prompt_set", "attack", "prompt"]
        rows = result_rows(store, store.latest_complete(kinds=kinds))
        suite = next(r for r in store.runs() if r.kind == "suite")
        sets = [r for r in store.runs() if r.kind == "prompt_set"]
        assert len(suite.members) == 2 and all(len(s.members) == 2 for s in sets)
        assert all(store.get_run(k) is not None for k in suite.members)
    assert (tmp_path / "old.sqlite.schema1.bak").is_file()
    expected = json.loads((FIXTURES / "store_v1_leaderboard.json").read_text())["rows"]
    got = json.loads(render(rows, "json"))["rows"]
    assert _comparable(got) == _comparable(expected)
    with sqlite3.connect(db) as conn:
        # Through every migration step to the current schema.
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (
            str(SCHEMA_VERSION),
        )
        for table, count in before.items():
            assert conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == count, table
    # Opening again does not migrate again, and the migrated store takes new runs.
    with ResultStore(db) as store:
        assert len(store.runs()) == before["runs"]


def test_a_store_of_a_newer_schema_or_another_app_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "new.sqlite"
    ResultStore(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value='7' WHERE key='schema_version'")
    with pytest.raises(BenchError, match="schema 7, newer than this harness"):
        ResultStore(db)
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(BenchError, match="not a bench results store"):
        ResultStore(foreign)
    with sqlite3.connect(foreign) as conn:  # nothing was added to it
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert names == {"customers"}


def test_latest_complete_is_one_indexed_sql_query(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "r.sqlite") as store:
        plan = store._conn.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM runs r INDEXED BY runs_latest "
            "WHERE r.status='complete' AND r.kind IN ('eval')"
        ).fetchall()
    assert any("runs_latest" in str(step) for step in plan), plan


def test_identical_weights_under_a_new_name_show_under_that_name(
    tmp_path: Path, pair_task: TaskData, tiny_model_dir: Path
) -> None:
    from bench.runner import Evaluator
    from bench.summary import result_rows

    with ResultStore(tmp_path / "r.sqlite") as store:
        ev = Evaluator(store, EvalConfig(device="cpu"), progress=False)
        first = ev.evaluate(pair_task, ModelSpec(name="first", path=str(tiny_model_dir)))
        second = ev.evaluate(pair_task, ModelSpec(name="second", path=str(tiny_model_dir)))
        assert second.cached and second.record.model == "second"
        assert second.record.run_key == first.record.run_key
        shown = {r.model for r in result_rows(store, store.latest_complete())}
        assert shown == {"first", "second"}
