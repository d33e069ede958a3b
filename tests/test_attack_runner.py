"""The attack runner on a tiny real model: stored outcomes, metrics, determinism, resume, CLI."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_WORDS, assert_user_error

from bench.attacks.runner import AttackRunner
from bench.attacks.specs import AttackConfig, AttackSpec, SuiteSpec
from bench.specs import ModelSpec
from bench.store import AttackRow, ResultStore
from bench.tasks.examples import TaskData

LABELS = ["entailment", "neutral", "contradiction"]


def write_pair_task(folder: Path, n: int, name: str = "tiny_pairs") -> Path:
    rng = random.Random(3)
    with (folder / f"{name}.jsonl").open("w") as fh:
        for i in range(n):
            premise = " ".join(rng.choices(TINY_WORDS, k=rng.randint(4, 10)))
            hypothesis = " ".join(rng.choices(TINY_WORDS, k=rng.randint(3, 8)))
            row = {"premise": premise, "hypothesis": hypothesis, "label": LABELS[i % 3]}
            fh.write(json.dumps(row) + "\n")
    task = folder / f"{name}.yaml"
    task.write_text(
        f"name: {name}\nsource: {{type: local, path: {name}.jsonl}}\n"
        "inputs: [premise, hypothesis]\nlabels: [entailment, neutral, contradiction]\n"
        "splits: {fractions: {test: 1.0}}\n"
    )
    return task


def load(path: Path) -> TaskData:
    from bench.tasks import load_task_data
    from bench.tasks.registry import load_task_file

    return load_task_data(load_task_file(path), path.parent)


def suite_of(*recipes: str) -> SuiteSpec:
    return SuiteSpec(name="t", attacks=[AttackSpec(name=r, recipe=r) for r in recipes])


def attack(
    db: Path,
    task: TaskData,
    model_dir: Path,
    *,
    limit: int = 24,
    concurrency: int = 8,
    query_budget: int | None = None,
    recipes: tuple[str, ...] = ("deepwordbug",),
) -> tuple[list[list[AttackRow]], AttackRunner, list[object], object]:
    config = AttackConfig(limit=limit, seed=0, max_length=64, query_budget=query_budget)
    model = ModelSpec(name="tiny", path=str(model_dir))
    with ResultStore(db) as store:
        runner = AttackRunner(store, config, device="cpu", concurrency=concurrency, progress=False)
        outcomes, summary = runner.run_suite(task, model, suite_of(*recipes))
        rows = [store.attack_rows(o.record.run_key) for o in outcomes]
    return rows, runner, list(outcomes), summary


@pytest.fixture(scope="module")
def pair_task(tmp_path_factory: pytest.TempPathFactory) -> TaskData:
    return load(write_pair_task(tmp_path_factory.mktemp("task"), 60))


def test_rows_and_metrics_are_consistent(
    pair_task: TaskData, tiny_model_dir: Path, tmp_path: Path, torch_one_thread: None
) -> None:
    (rows,), _, (outcome,), summary = attack(tmp_path / "r.sqlite", pair_task, tiny_model_dir)
    assert len(rows) == 24
    statuses = {r.status for r in rows}
    assert statuses >= {"succeeded", "skipped"}, statuses
    for r in rows:
        assert r.perturbed[0] == r.original[0], "the premise is frozen by default"
        if r.status == "skipped":
            assert r.original_pred != r.label and r.queries >= 1
        else:
            assert r.original_pred == r.label
        if r.status == "succeeded":
            assert r.perturbed_pred != r.label and r.perturbed[1] != r.original[1]
            assert 0 < r.words_changed <= r.words_total
        if r.status == "failed":
            assert r.perturbed_pred == r.label
    m = {k: v.value for k, v in outcome.metrics.items()}  # type: ignore[attr-defined]
    n = len(rows)
    count = {s: sum(r.status == s for r in rows) for s in ("succeeded", "failed", "skipped")}
    assert m["n"] == n
    assert m["clean_accuracy"] == pytest.approx((count["succeeded"] + count["failed"]) / n)
    assert m["accuracy_under_attack"] == pytest.approx(count["failed"] / n)
    attacked = count["succeeded"] + count["failed"]
    assert m["attack_success_rate"] == pytest.approx(count["succeeded"] / attacked)
    assert m["skipped_rate"] == pytest.approx(count["skipped"] / n)
    pct = [100 * r.words_changed / r.words_total for r in rows if r.status == "succeeded"]
    assert m["avg_perturbed_word_pct"] == pytest.approx(np.mean(pct))
    assert m["avg_queries"] == pytest.approx(
        np.mean([r.queries for r in rows if r.status != "skipped"])
    )
    ci = outcome.metrics["accuracy_under_attack"]  # type: ignore[attr-defined]
    assert ci.low <= ci.value <= ci.high
    # One attack in the suite: the suite's worst case is that attack's accuracy under attack.
    assert summary.metrics["accuracy_under_attack"].value == pytest.approx(  # type: ignore[attr-defined]
        m["accuracy_under_attack"]
    )


def test_concurrency_changes_speed_not_outcomes(
    pair_task: TaskData, tiny_model_dir: Path, tmp_path: Path, torch_one_thread: None
) -> None:
    (serial,), _, (o1,), _ = attack(tmp_path / "a.sqlite", pair_task, tiny_model_dir, concurrency=1)
    (batched,), _, (o8,), _ = attack(
        tmp_path / "b.sqlite", pair_task, tiny_model_dir, concurrency=12
    )
    # Batches of other sizes pad differently, which moves scores by float rounding only.
    discrete = ("idx", "uid", "status", "perturbed", "original_pred", "perturbed_pred", "queries")
    assert [[getattr(r, f) for f in discrete] for r in serial] == [
        [getattr(r, f) for f in discrete] for r in batched
    ]
    np.testing.assert_allclose(
        [r.perturbed_scores for r in serial], [r.perturbed_scores for r in batched], atol=1e-5
    )
    assert o8.mean_round > 3 * o1.mean_round  # type: ignore[attr-defined]


def test_second_run_is_answered_from_the_store(
    pair_task: TaskData, tiny_model_dir: Path, tmp_path: Path, torch_one_thread: None
) -> None:
    db = tmp_path / "r.sqlite"
    first, _, _, _ = attack(db, pair_task, tiny_model_dir)
    again, runner, outcomes, summary = attack(db, pair_task, tiny_model_dir)
    assert again == first
    assert all(o.cached for o in outcomes) and summary.cached  # type: ignore[attr-defined]
    assert runner.engine.models.loads == 0, "nothing to compute: the model must not even be loaded"  # type: ignore[union-attr]


def test_query_budget_caps_queries(
    pair_task: TaskData, tiny_model_dir: Path, tmp_path: Path, torch_one_thread: None
) -> None:
    (rows,), _, _, _ = attack(tmp_path / "r.sqlite", pair_task, tiny_model_dir, query_budget=4)
    assert max(r.queries for r in rows) <= 4
    (free,), _, _, _ = attack(tmp_path / "f.sqlite", pair_task, tiny_model_dir)
    assert max(r.queries for r in free) > 4


def _suite(text: str) -> SuiteSpec:
    import yaml

    from bench.attacks.suites import parse_suite

    return parse_suite(yaml.safe_load(text), "inline")


def test_two_attacks_of_one_recipe_keep_their_suite_names(
    pair_task: TaskData, tiny_model_dir: Path, tmp_path: Path, torch_one_thread: None
) -> None:
    # Both are variant deepwordbug-modified: labelled by variant they were one column, and the
    # store's newest-run-per-column view (export rows, leaderboards) kept only one of them.
    dup = _suite(
        "name: dup\nattacks:\n"
        "  - {name: dwb-a, recipe: deepwordbug, params: {max_edit_distance: 10}}\n"
        "  - {name: dwb-b, recipe: deepwordbug, params: {max_edit_distance: 5}}\n"
    )
    config = AttackConfig(limit=6, seed=0, max_length=64, n_bootstrap=0)
    model = ModelSpec(name="tiny", path=str(tiny_model_dir))
    with ResultStore(tmp_path / "r.sqlite") as store:
        runner = AttackRunner(store, config, device="cpu", concurrency=4, progress=False)
        outcomes, summary = runner.run_suite(pair_task, model, dup)
        assert [o.record.column for o in outcomes] == ["dup/dwb-a", "dup/dwb-b"]
        assert {o.record.config.variant for o in outcomes} == {"deepwordbug-modified"}  # type: ignore[union-attr]
        assert outcomes[0].record.run_key != outcomes[1].record.run_key
        assert summary.record.config.attacks == ["dup/dwb-a", "dup/dwb-b"]  # type: ignore[union-attr]
        stored = store.latest_complete(kinds=("attack",))
        assert sorted(r.column for r in stored) == ["dup/dwb-a", "dup/dwb-b"]
    # A suite still cannot name two attacks alike.
    from bench.errors import SpecError

    with pytest.raises(SpecError, match="twice"):
        _suite("name: d\nattacks: [{name: x, recipe: pruthi}, {name: x, recipe: deepwordbug}]\n")


def test_a_run_two_suites_share_is_named_by_each(
    pair_task: TaskData, tiny_model_dir: Path, tmp_path: Path, torch_one_thread: None
) -> None:
    config = AttackConfig(limit=6, seed=0, max_length=64, n_bootstrap=0)
    model = ModelSpec(name="tiny", path=str(tiny_model_dir))
    first = _suite("name: first\nattacks: [{name: deepwordbug, recipe: deepwordbug}]\n")
    # The same attack under another name: the same run (keys leave the suite out), and a
    # suite of the same members, so the same suite run too.
    cheap = _suite("name: cheap\nattacks: [{name: dwb, recipe: deepwordbug}]\n")
    with ResultStore(tmp_path / "r.sqlite") as store:
        runner = AttackRunner(store, config, device="cpu", concurrency=4, progress=False)
        (a,), s1 = runner.run_suite(pair_task, model, first)
        (b,), s2 = runner.run_suite(pair_task, model, cheap)
    assert b.cached and b.record.run_key == a.record.run_key
    assert (a.record.column, b.record.column) == ("first/deepwordbug", "cheap/dwb")
    assert (b.record.config.suite, b.record.config.attack) == ("cheap", "dwb")  # type: ignore[union-attr]
    assert s2.cached and s2.record.run_key == s1.record.run_key
    assert (s1.record.column, s2.record.column) == ("first", "cheap")
    assert s2.record.config.attacks == ["cheap/dwb"]  # type: ignore[union-attr]


def test_a_masked_lm_that_is_a_file_is_named_a_file(tmp_path: Path) -> None:
    from bench.attacks.resources import check_masked_lm_folder
    from bench.errors import ModelError

    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"x")
    with pytest.raises(ModelError, match="is a file"):
        check_masked_lm_folder(str(weights))
    with pytest.raises(ModelError, match="does not exist"):
        check_masked_lm_folder(str(tmp_path / "none"))


def test_a_folder_given_as_a_suite_is_named_a_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench.attacks.suites import load_suite
    from bench.errors import SpecError

    (tmp_path / "suites").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError, match="'suites' is a folder"):
        load_suite("suites")
    with pytest.raises(SpecError, match="unknown attack suite"):
        load_suite("no_such_suite")
    (tmp_path / "quick").mkdir()  # a built-in name still names the built-in suite
    assert load_suite("quick").name == "quick"


# -- command line -----------------------------------------------------------------------------


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.fixture(scope="module")
def cli_task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pair_task(tmp_path_factory.mktemp("cli"), 12, name="cli_pairs")


def _attack_cli(task: Path, model: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["attack", "--task", str(task), "--model", f"tiny={model}", "--db",
            str(tmp_path / "r.sqlite"), "--no-progress", *extra]  # fmt: skip


def test_cli_unknown_suite(cli_task: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    proc = _bench(*_attack_cli(cli_task, tiny_model_dir, tmp_path, "--suite", "no_such_suite"))
    assert_user_error(proc, "no_such_suite")


def test_cli_unknown_recipe(cli_task: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nattacks:\n  - {name: x, recipe: no_such_recipe}\n")
    proc = _bench(*_attack_cli(cli_task, tiny_model_dir, tmp_path, "--suite", str(suite)))
    assert_user_error(proc, "no_such_recipe")


def test_cli_unknown_component(cli_task: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: s\nattacks:\n  - name: x\n    composition:\n"
        "      transformation: {type: no_such_transformation}\n"
        "      search: {type: greedy}\n"
    )
    proc = _bench(*_attack_cli(cli_task, tiny_model_dir, tmp_path, "--suite", str(suite)))
    assert_user_error(proc, "no_such_transformation")


def test_cli_masked_lm_recipe_without_masked_lm(
    cli_task: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nattacks:\n  - {name: bae, recipe: bae}\n")
    proc = _bench(*_attack_cli(cli_task, tiny_model_dir, tmp_path, "--suite", str(suite)))
    assert_user_error(proc, "masked language model", "--masked-lm")


def test_cli_column_the_attack_cannot_address(
    cli_task: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    proc = _bench(*_attack_cli(cli_task, tiny_model_dir, tmp_path, "--attack-column", "claim"))
    assert_user_error(proc, "cannot attack 'claim'")


def test_cli_malformed_suite_file(cli_task: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nattacks: [ {name: x, recipe: deepwordbug\n")
    proc = _bench(*_attack_cli(cli_task, tiny_model_dir, tmp_path, "--suite", str(suite)))
    assert_user_error(proc, "s.yaml")
    wrong = tmp_path / "w.yaml"
    wrong.write_text("name: w\nattacks:\n  - {name: x, recipe: deepwordbug, speed: 3}\n")
    proc = _bench(*_attack_cli(cli_task, tiny_model_dir, tmp_path, "--suite", str(wrong)))
    assert_user_error(proc, "speed")


def _count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM attack_examples").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def _rows(db: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT idx, uid, status, perturbed, perturbed_pred, queries FROM attack_examples "
            "ORDER BY idx"
        ).fetchall()


@pytest.mark.slow
def test_sigkill_during_an_attack_then_resume(tiny_model_dir: Path, tmp_path: Path) -> None:
    task = write_pair_task(tmp_path, 150, name="resume_pairs")
    suite = tmp_path / "one.yaml"
    suite.write_text("name: one\nattacks:\n  - {name: deepwordbug, recipe: deepwordbug}\n")
    common = ["attack", "--task", str(task), "--model", f"tiny={tiny_model_dir}", "--suite",
              str(suite), "--limit", "0", "--concurrency", "4", "--no-progress",
              "--n-bootstrap", "100"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    killed = tmp_path / "killed.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", *common, "--db", str(killed)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 300
    while _count(killed) < 10:
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "attack made no progress"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = _count(killed)
    assert 10 <= partial < 150, "the kill must land mid-attack"

    resumed = _bench(*common, "--db", str(killed))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{150 - partial} attacked now, {partial} from the store" in resumed.stdout
    clean = _bench(*common, "--db", str(tmp_path / "clean.sqlite"))
    assert clean.returncode == 0, clean.stderr[-2000:]
    assert "150 attacked now, 0 from the store" in clean.stdout
    assert _rows(killed) == _rows(tmp_path / "clean.sqlite")
    # The reports agree too (same metrics from the same rows).
    table = [line for line in resumed.stdout.splitlines() if line.startswith("|")]
    assert table == [line for line in clean.stdout.splitlines() if line.startswith("|")]


def test_leaderboard_shows_clean_and_under_attack_side_by_side(
    cli_task: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    db = tmp_path / "r.sqlite"
    suite = tmp_path / "one.yaml"
    suite.write_text("name: one\nattacks:\n  - {name: deepwordbug, recipe: deepwordbug}\n")
    ran = _bench("run", "--task", str(cli_task), "--model", f"tiny={tiny_model_dir}", "--db",
                 str(db), "--suite", str(suite), "--no-progress")  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-2000:]
    md = _bench("leaderboard", "--db", str(db))
    assert md.returncode == 0, md.stderr
    header = next(line for line in md.stdout.splitlines() if line.startswith("| model"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells[1:] == ["cli_pairs (n=12)", "cli_pairs@one (n=12)"]
    csv = _bench("leaderboard", "--db", str(db), "--format", "csv")
    import io

    import pandas as pd

    frame = pd.read_csv(io.StringIO(csv.stdout))
    attack_row = frame[frame["column"] == "cli_pairs@one/deepwordbug"]
    suite_row = frame[frame["column"] == "cli_pairs@one"]
    assert len(attack_row) == 1 and len(suite_row) == 1
    assert len(str(attack_row["profile"].iloc[0])) == 12
    assert frame[frame["column"] == "cli_pairs"]["profile"].isna().all()


def test_attacks_of_a_suite_share_the_query_cache(
    pair_task: TaskData, tiny_model_dir: Path, tmp_path: Path, torch_one_thread: None
) -> None:
    _, _, outcomes, _ = attack(
        tmp_path / "r.sqlite",
        pair_task,
        tiny_model_dir,
        limit=12,
        recipes=("deepwordbug", "textbugger-char"),
    )
    first, second = outcomes
    assert 0 < first.model_computed <= first.model_queries  # type: ignore[attr-defined]
    # Every clean text of the second attack was already computed by the first.
    assert second.model_computed <= second.model_queries - 12  # type: ignore[attr-defined]


def test_texts_that_tokenise_alike_get_identical_scores(
    tiny_model_dir: Path, torch_one_thread: None
) -> None:
    from bench.attacks.wrapper import ModelQuery
    from bench.models.classifier import HFClassifier
    from bench.models.labels import align_labels

    clf = HFClassifier.load(str(tiny_model_dir), device="cpu")
    query = ModelQuery(clf, align_labels(clf.labels, LABELS), batch_size=2)
    # Uncased vocabulary: both spellings are the same tokens; "zzq" and "qqz" are both [UNK].
    first = query([("the movie was good", "a dog zzq"), ("the park", "two people")])
    second = query([("THE MOVIE was GOOD", "a dog qqz"), ("the park", "two people eat")])
    assert np.array_equal(first[0], second[0])
    assert query.stats.computed == 3  # the alike pair and the repeated text were not recomputed
    assert not np.array_equal(first[1], second[1])
