"""bench gate on stored runs: verdicts and exit codes agree, JUnit XML one case per check,
clusters and seeds, refusals in one line, and the pytest plugin."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import assert_user_error

from bench.records import EvalRunConfig, PredictionRow, RunRecord
from bench.store import ResultStore, run_key
from bench.tasks.examples import TaskData

LABELS = ["negative", "positive"]
N = 400


def _task(
    folder: Path, n: int = N, name: str = "gated", cluster: bool = False, dev: bool = False
) -> Path:
    """A one-file evaluation set: every row in the test split (or, with ``dev``, half of them in
    a dev split); 40 passages of 10 questions."""
    rng = random.Random(4)
    with (folder / f"{name}.jsonl").open("w") as fh:
        for i in range(n):
            row = {"text": f"item {i} {rng.random():.6f}", "passage": i // 10,
                   "label": LABELS[rng.randrange(2)]}  # fmt: skip
            fh.write(json.dumps(row) + "\n")
    path = folder / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nsource: {{type: local, path: {name}.jsonl}}\ninputs: [text]\n"
        f"labels: [negative, positive]\n"
        + ("cluster_by: passage\n" if cluster else "")
        + ("splits: {fractions: {dev: 0.5, test: 0.5}}\n" if dev else "")
    )
    return path


def _load(path: Path) -> TaskData:
    from bench.tasks import load_task_data
    from bench.tasks.registry import load_task_file

    return load_task_data(load_task_file(path), path.parent)


def store_run(
    store: ResultStore,
    data: TaskData,
    model: str,
    correct: np.ndarray,
    max_length: int = 256,
    split: str = "test",
    limit: int | None = None,
) -> str:
    """An evaluation run of a model that is right exactly on ``correct`` (written through the
    store like any run, so the gate reads it as it reads real ones); with ``limit``, on the
    split's first ``limit`` examples."""
    examples = data.split(split)[:limit]
    config = EvalRunConfig(split=split, max_length=max_length, dtype="float32", limit=limit)
    key = run_key({"model": model, "task": data.data_hash, "config": config.to_json()})
    record = RunRecord(
        run_key=key, kind="eval", task=data.spec.name, task_version="1",
        task_hash=data.data_hash, model=model, model_path=f"/models/{model}", model_hash=model,
        config=config, split=split, n_examples=len(examples), label_names=LABELS,
        label_mapping={}, seed=0, harness_version="t", versions={},
    )  # fmt: skip
    store.begin_run(record)
    rows = []
    for ex, ok in zip(examples, correct[: len(examples)], strict=True):
        pred = ex.label if ok else 1 - ex.label
        probs = [0.9, 0.1] if pred == 0 else [0.1, 0.9]
        rows.append(PredictionRow(ex.idx, ex.uid, ex.label, pred, probs, probs))
    store.add_predictions(key, rows)
    store.finish_run(key, [])
    return key


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("gate")
    task = _task(folder)
    data = _load(task)
    rng = np.random.default_rng(0)
    base = rng.random(N) < 0.85
    flips = rng.permutation(N)
    same = base.copy()  # identical predictions
    worse = base.copy()
    worse[flips[:60]] = False  # about 13 points worse
    slightly = base.copy()
    slightly[flips[:8]] = False  # 2 points worse: inconclusive at margin 0.02
    db = folder / "r.sqlite"
    with ResultStore(db) as store:
        for name, correct in (("base", base), ("same", same), ("worse", worse),
                              ("slightly", slightly)):  # fmt: skip
            store_run(store, data, name, correct)
        store_run(store, data, "longer", base, max_length=512)
    return {"folder": folder, "task": task, "db": db, "data": data}


def _gate(gated: dict[str, Any], cand: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return _bench("gate", "--baseline", "base", "--candidate", cand, "--task",
                  str(gated["task"]), "--db", str(gated["db"]), "--margin", "0.02", *extra)  # fmt: skip


def test_verdicts_and_exit_codes_agree_for_all_three_outcomes(gated: dict[str, Any]) -> None:
    for cand, verdict, code in (("same", "pass", 0), ("worse", "fail", 1),
                                ("slightly", "inconclusive", 1)):  # fmt: skip
        proc = _gate(gated, cand, "--format", "json")
        assert proc.returncode == code, proc.stderr
        out = json.loads(proc.stdout)
        assert [c["verdict"] for c in out["checks"]] == [verdict]
        assert out["exit_code"] == code and out["passed"] == (code == 0)
        md = _gate(gated, cand)
        assert md.returncode == code
        assert f"**{verdict.upper()}**" in md.stdout
        assert ("PASSED" in md.stdout.splitlines()[0]) == (code == 0)
    # What an inconclusive check does is the config's choice.
    assert _gate(gated, "slightly", "--inconclusive", "pass").returncode == 0
    worse = json.loads(_gate(gated, "worse", "--format", "json").stdout)["checks"][0]
    assert worse["high"] < -0.02 and worse["p_mcnemar"] < 0.001
    with ResultStore(gated["db"]) as store:
        runs = {r.model: r.run_key for r in store.runs()}
        right = {m: [p.pred == p.label for p in store.predictions(runs[m])] for m in runs}
    assert worse["diff"] == pytest.approx(np.mean(right["worse"]) - np.mean(right["base"]))


def test_junit_xml_has_one_case_per_check_and_reads_back(
    gated: dict[str, Any], tmp_path: Path
) -> None:
    from junitparser import Failure, JUnitXml

    xml_path = tmp_path / "gate.xml"
    proc = _bench("gate", "--baseline", "base", "--candidate", "worse", "--task", str(gated["task"]),
                  "--metric", "accuracy", "--metric", "macro_f1", "--metric", "brier",
                  "--db", str(gated["db"]), "--margin", "0.02", "--junit", str(xml_path))  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    suites = list(JUnitXml.fromfile(str(xml_path)))
    (suite,) = suites
    cases = list(suite)
    assert [c.name for c in cases] == ["gated accuracy", "gated macro_f1", "gated brier"]
    assert all(any(isinstance(r, Failure) for r in c.result) for c in cases)
    assert suite.tests == 3 and suite.failures == 3
    assert suite.name == "bench gate"  # the default name is not repeated ("bench gate gate")
    stdout = _bench("gate", "--baseline", "base", "--candidate", "same", "--task",
                    str(gated["task"]), "--db", str(gated["db"]), "--margin", "0.02",
                    "--format", "junit").stdout  # fmt: skip
    from xml.etree import ElementTree as ET

    root = ET.fromstring(stdout)
    assert [c.get("name") for c in root.iter("testcase")] == ["gated accuracy"]
    assert not list(root.iter("failure"))


def test_clusters_widen_the_interval(tmp_path: Path) -> None:
    from bench.gate import GateSpec, run_gate

    rng = np.random.default_rng(5)
    passage_effect = np.repeat(rng.random(N // 10) < 0.5, 10)  # the candidate loses whole passages
    base = rng.random(N) < 0.8
    cand = np.where(passage_effect & (rng.random(N) < 0.3), False, base)
    results = {}
    for clustered in (False, True):
        folder = tmp_path / f"c{int(clustered)}"
        folder.mkdir()
        task = _task(folder, cluster=clustered)
        data = _load(task)
        with ResultStore(folder / "r.sqlite") as store:
            store_run(store, data, "base", base)
            store_run(store, data, "cand", cand)
            spec = GateSpec(checks=[{"task": str(task)}], n_bootstrap=2000)
            results[clustered] = run_gate(store, spec, "base", "cand").checks[0]
    naive, cluster = results[False], results[True]
    assert naive.difference.n_clusters == N and cluster.difference.n_clusters == N // 10
    assert naive.diff == cluster.diff
    width = lambda c: c.ci[1] - c.ci[0]  # noqa: E731
    assert width(cluster) > 1.2 * width(naive)


def test_seed_families_are_bootstrapped_over_seeds(tmp_path: Path) -> None:
    from bench.gate import GateSpec, run_gate

    task = _task(tmp_path)
    data = _load(task)
    rng = np.random.default_rng(9)
    with ResultStore(tmp_path / "r.sqlite") as store:
        for s in range(3):
            store_run(store, data, f"base#s{s}", rng.random(N) < 0.8)
            store_run(store, data, f"cand#s{s}", rng.random(N) < 0.8)
        # A newer run of one seed on a smaller sample does not shrink the family's comparison.
        store_run(store, data, "cand#s1", rng.random(N) < 0.8, limit=30)
        check = run_gate(store, GateSpec(checks=[{"task": str(task)}]), "base", "cand").checks[0]
    assert check.seeds == (3, 3) and len(check.baseline_runs) == 3
    assert check.difference.n == N and check.unpaired == 0


def test_the_newest_pairable_runs_are_gated_not_each_models_newest_run(tmp_path: Path) -> None:
    # A candidate rerun on another split or sample must not hide the pair that can be gated.
    from bench.errors import BenchError
    from bench.gate import GateSpec, run_gate

    task = _task(tmp_path, n=200, dev=True)
    data = _load(task)
    right = np.random.default_rng(11).random(200) < 0.8
    n_test, n_dev = len(data.split("test")), len(data.split("dev"))
    assert n_test > 40 and n_dev > 40
    spec = GateSpec(checks=[{"task": str(task)}], margin=0.05)
    with ResultStore(tmp_path / "r.sqlite") as store:
        base_test = store_run(store, data, "base", right)
        cand_test = store_run(store, data, "cand", right)
        cand_dev = store_run(store, data, "cand", right, split="dev")  # newer, another split
        store_run(store, data, "cand", right, limit=30)  # newest, another sample of the split
        check = run_gate(store, spec, "base", "cand").checks[0]
        assert (check.baseline_runs, check.candidate_runs) == ((base_test,), (cand_test,))
        assert check.difference.n == n_test
        # Pairable pairs on two splits: the gate's split (test unless it says otherwise) wins
        # over the newer pair on dev.
        base_dev = store_run(store, data, "base", right, split="dev")
        check = run_gate(store, spec, "base", "cand").checks[0]
        assert check.candidate_runs == (cand_test,)
        dev_spec = spec.model_copy(update={"split": "dev"})
        check = run_gate(store, dev_spec, "base", "cand").checks[0]
        assert (check.baseline_runs, check.candidate_runs) == ((base_dev,), (cand_dev,))
        assert check.difference.n == n_dev
        # No pair at all: the newest runs' problem is reported.
        store_run(store, data, "odd", right, split="dev", limit=20)
        store_run(store, data, "odd", right, limit=20)
        with pytest.raises(BenchError, match=r"cannot be paired: setting limit differs"):
            run_gate(store, spec, "base", "odd")


def _four_checks(folder: Path) -> tuple[ResultStore, list[dict[str, str]]]:
    """Four tasks of 80 examples; "cand" is 3 examples (0.0375) worse than "base" on the first
    and identical on the others."""
    base = np.ones(80, dtype=bool)
    base[-16:] = False
    worse = base.copy()
    worse[:3] = False
    store = ResultStore(folder / "r.sqlite")
    checks = []
    for i in range(4):
        task = _task(folder, n=80, name=f"t{i}")
        data = _load(task)
        store_run(store, data, "base", base)
        store_run(store, data, "cand", worse if i == 0 else base)
        checks.append({"task": str(task)})
    return store, checks


def test_what_would_decide_a_check_uses_its_corrected_level(tmp_path: Path) -> None:
    from bench.gate import GateSpec, run_gate
    from bench.gate.stats import decide_n

    store, checks = _four_checks(tmp_path)
    with store:
        spec = GateSpec(checks=checks, alpha=0.2, margin=0.0)
        first = run_gate(store, spec, "base", "cand").checks[0]
    # The 80 % CI lies wholly below the margin, yet Holm across the four checks leaves it
    # inconclusive: it decides at p < 0.2 / 4, which takes more than these 80 examples.
    assert first.ci[1] < 0 and first.p_fail < 0.2 <= first.p_fail_adjusted
    assert first.verdict == "inconclusive"
    assert first.n_to_decide == decide_n(first.difference, 0.0, 0.2, 0.05)[1]
    assert first.n_to_decide is not None and first.n_to_decide > 80


def test_the_footer_states_the_verdict_rule_after_adjustment(tmp_path: Path) -> None:
    from bench.gate import GateSpec, run_gate
    from bench.gate.report import markdown

    store, checks = _four_checks(tmp_path)
    with store:
        holm = run_gate(store, GateSpec(checks=checks, alpha=0.2), "base", "cand")
        plain = run_gate(store, GateSpec(checks=checks, alpha=0.2, correction="none"), "base",
                         "cand")  # fmt: skip
    text = markdown(holm)
    assert text.startswith("## Gate: cand vs base — FAILED\n")  # not "Gate gate"
    footer = text.rstrip().splitlines()[-1]
    # The first check's CI is wholly below the margin and it is inconclusive: the footer says
    # why (the verdict is by adjusted p-values), not that a CI beyond the margin fails.
    assert holm.checks[0].ci[1] < 0 and holm.checks[0].verdict == "inconclusive"
    assert 'adjusted p-value against "within the margin" is below 0.2' in footer
    assert "a CI wholly beyond the margin can still be inconclusive" in footer
    assert footer.endswith("p-values are Holm-adjusted across the 4 blocking checks.")
    assert "fails when its better end is beyond it" not in footer
    # Unadjusted, the verdict is the CI's: the same check fails.
    assert plain.checks[0].verdict == "fail"
    plain_footer = markdown(plain).rstrip().splitlines()[-1]
    assert plain_footer.endswith(
        "p-values are not adjusted across the 4 blocking checks (correction: none)."
    )
    assert "none-adjusted" not in plain_footer and "advisory" not in plain_footer
    assert "exactly the CI's lower end above −margin" in plain_footer
    assert "can still be inconclusive" not in plain_footer


def test_delta_is_signed_so_that_negative_is_worse_for_every_metric(
    gated: dict[str, Any], tmp_path: Path
) -> None:
    xml_path = tmp_path / "gate.xml"
    proc = _gate(gated, "worse", "--metric", "accuracy", "--metric", "ece", "--format", "json",
                 "--junit", str(xml_path))  # fmt: skip
    out = json.loads(proc.stdout)
    acc, ece = out["checks"]
    # Worse calibration: ECE went up. diff/low/high stay candidate - baseline in ECE's units;
    # improvement is the same negated, negative because worse, and what meets the margin.
    assert ece["lower_is_better"] and ece["candidate"] > ece["baseline"]
    assert ece["diff"] == pytest.approx(ece["candidate"] - ece["baseline"]) and ece["diff"] > 0
    assert (ece["improvement"], ece["improvement_low"], ece["improvement_high"]) == (
        pytest.approx(-ece["diff"]), pytest.approx(-ece["high"]), pytest.approx(-ece["low"]))  # fmt: skip
    assert ece["verdict"] == "fail" and ece["improvement_high"] < -0.02
    assert (acc["improvement"], acc["improvement_low"]) == (acc["diff"], acc["low"])
    # The models are in the settings also when they came from the command line.
    assert (out["settings"]["baseline"], out["settings"]["candidate"]) == ("base", "worse")
    # The table and the JUnit message show the signed difference, labelled.
    md = _gate(gated, "worse", "--metric", "accuracy", "--metric", "ece").stdout
    (row,) = [line for line in md.splitlines() if line.startswith("| gated ece")]
    shown = f"{ece['improvement']:+.4f} [{ece['improvement_low']:+.4f}, "
    assert shown in row and "lower is better: Δ = baseline − candidate" in row
    assert "a negative Δ is always worse" in md
    assert f"base - worse (lower is better) = {ece['improvement']:+.4f}" in xml_path.read_text()


def test_gate_refusals_are_one_line(gated: dict[str, Any], tmp_path: Path) -> None:
    db, task = str(gated["db"]), str(gated["task"])
    # Different prediction settings: the runs cannot be paired.
    proc = _bench("gate", "--baseline", "base", "--candidate", "longer", "--task", task, "--db", db)
    assert_user_error(proc, "cannot be paired", "max_length")
    # A model with no stored run, and no --run.
    proc = _bench("gate", "--baseline", "base", "--candidate", "ghost", "--task", task, "--db", db)
    assert_user_error(proc, "no stored run of 'ghost'", "--run")
    # A metric the gate does not know, and a robustness check with no attack runs.
    proc = _bench("gate", "--baseline", "base", "--candidate", "same", "--task", task,
                  "--metric", "auroc", "--db", db)  # fmt: skip
    assert_user_error(proc, "metric")
    proc = _bench("gate", "--baseline", "base", "--candidate", "same", "--task", task,
                  "--suite", "typos", "--db", db)  # fmt: skip
    assert_user_error(proc, "no stored run", "@typos")
    # Different task data: the candidate ran on an edited copy of the task.
    other = tmp_path / "edited"
    other.mkdir()
    edited = _task(other, n=N - 1)
    with ResultStore(gated["db"]) as store:
        store_run(store, _load(edited), "edited-run", np.ones(N - 1, dtype=bool))
    proc = _bench("gate", "--baseline", "base", "--candidate", "edited-run", "--task", task,
                  "--db", db)  # fmt: skip
    assert_user_error(proc, "task data differs")
    # Malformed configs.
    for text, needle in (
        ("- a list\n", "mapping"),
        ("checks: []\nbaseline: base\ncandidate: same\n", "checks"),
        ("checks: [{task: x, margin: -1}]\n", "margin"),
        ("checks: [{task: x, wat: 1}]\n", "wat"),
        ("checks: [{task: x, metric: ece, suite: typos}]\n", "robustness"),
        ("margin: .nan\nchecks: [{task: x}]\n", "margin"),
    ):
        config = tmp_path / "gate.yaml"
        config.write_text(text)
        proc = _bench("gate", "--config", str(config), "--baseline", "base", "--candidate",
                      "same", "--db", db)  # fmt: skip
        assert_user_error(proc, needle)


def test_a_config_file_with_advisory_checks(gated: dict[str, Any], tmp_path: Path) -> None:
    config = tmp_path / "gate.yaml"
    config.write_text(
        f"name: release\nbaseline: base\ncandidate: worse\nmargin: 0.02\nchecks:\n"
        f"  - {{task: {gated['task']}, blocking: false}}\n"
        f"  - {{task: {gated['task']}, metric: ece, blocking: false}}\n"
    )
    proc = _bench("gate", "--config", str(config), "--db", str(gated["db"]), "-f", "json")
    out = json.loads(proc.stdout)
    # Advisory checks are reported (fail) but do not fail the gate.
    assert out["checks"][0]["verdict"] == "fail"
    assert proc.returncode == 0 and out["passed"]


def test_self_check_reports_how_often_an_unchanged_model_is_flagged(
    gated: dict[str, Any],
) -> None:
    proc = _bench("gate", "--self-check", "--baseline", "base", "--candidate", "same", "--task",
                  str(gated["task"]), "--db", str(gated["db"]), "--margin", "0.02")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "against itself (base): 0 of 1 checks fail, 0 do not pass" in proc.stdout
    assert "a retrained same-recipe model (same)" in proc.stdout
    headings = [line for line in proc.stdout.splitlines() if line.startswith("## Gate")]
    assert len(headings) == 2 and all(h.endswith("PASSED") for h in headings)


def test_self_check_exits_1_when_the_gate_would_fail_an_unchanged_model(
    gated: dict[str, Any], tmp_path: Path
) -> None:
    def self_check(cand: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return _bench("gate", "--self-check", "--baseline", "base", "--candidate", cand,
                      "--task", str(gated["task"]), "--db", str(gated["db"]), *extra)  # fmt: skip

    # Identical at margin 0: inconclusive, which fails the gate: the heading and exit say so.
    proc = self_check("same", "--margin", "0")
    assert proc.returncode == 1, proc.stderr
    headings = [line for line in proc.stdout.splitlines() if line.startswith("## Gate")]
    assert len(headings) == 2 and all(h.endswith("FAILED") for h in headings)
    assert "0 of 1 checks fail, 1 do not pass; the gate fails it" in proc.stdout
    # Itself passes at margin 0.02; a retrained model 2 points worse is inconclusive: exit 1.
    proc = self_check("slightly", "--margin", "0.02")
    assert proc.returncode == 1
    assert "itself (base): 0 of 1 checks fail, 0 do not pass; the gate passes it" in proc.stdout
    assert "(slightly): 0 of 1 checks fail, 1 do not pass; the gate fails it" in proc.stdout
    # Machine-readable outputs are for gate runs: refused, and nothing is written.
    for extra in (("--format", "json"), ("-f", "junit"), ("--json", str(tmp_path / "s.json")),
                  ("--junit", str(tmp_path / "s.xml"))):  # fmt: skip
        assert_user_error(self_check("same", *extra), "--self-check", extra[0])
    assert not list(tmp_path.iterdir())
    assert self_check("same", "--margin", "0.02", "--format", "markdown").returncode == 0


def test_task_with_a_config_is_refused(gated: dict[str, Any], tmp_path: Path) -> None:
    config = tmp_path / "gate.yaml"
    config.write_text(
        f"baseline: base\ncandidate: same\nmargin: 0.02\nchecks: [{{task: {gated['task']}}}, "
        f"{{task: {gated['task']}, metric: brier}}]\n"
    )
    db = str(gated["db"])
    for extra in (("-t", str(gated["task"])), ("--metric", "ece"), ("--suite", "typos")):
        proc = _bench("gate", "-c", str(config), "--db", db, *extra)
        assert_user_error(proc, extra[0], "--config")
    # The config alone runs both of its checks.
    out = json.loads(_bench("gate", "-c", str(config), "--db", db, "-f", "json").stdout)
    assert [c["check"] for c in out["checks"]] == ["gated accuracy", "gated brier"]


pytest_plugins = ["pytester"]


def test_pytest_plugin_fails_a_users_test_with_the_table(
    gated: dict[str, Any], pytester: pytest.Pytester
) -> None:
    def config(candidate: str) -> Path:
        path = pytester.path / f"gate-{candidate}.yaml"
        path.write_text(
            f"baseline: base\ncandidate: {candidate}\nmargin: 0.02\n"
            f"checks: [{{task: {gated['task']}}}]\n"
        )
        return path

    bad, good = config("worse"), config("same")
    pytester.makepyfile(
        test_model=f"""
        def test_int8_holds_up(bench_gate):
            bench_gate({str(bad)!r})

        def test_same_holds_up(bench_gate):
            result = bench_gate({str(good)!r})
            assert result.passed
        """
    )
    run = pytester.runpytest_subprocess("--bench-db", str(gated["db"]), "-p", "no:cacheprovider")
    run.assert_outcomes(passed=1, failed=1)
    assert "**FAIL**" in run.stdout.str() and "gated accuracy" in run.stdout.str()
    # As a gate file: one test per check.
    run = pytester.runpytest_subprocess("--bench-gate", str(bad), "--bench-db", str(gated["db"]),
                                        "-p", "no:cacheprovider", "-k", "gated")  # fmt: skip
    run.assert_outcomes(failed=1)
    assert "**FAIL**" in run.stdout.str()
    run = pytester.runpytest_subprocess("--bench-gate", str(good), "--bench-db", str(gated["db"]),
                                        "-p", "no:cacheprovider", "-k", "gated")  # fmt: skip
    run.assert_outcomes(passed=1)


def test_pytest_plugin_reports_a_gate_error_once_in_one_line(pytester: pytest.Pytester) -> None:
    """A gate that cannot be computed (here: no such store) fails each of its checks with the
    command line's one error line, not pytest's traceback of its own frames, and is computed
    once for all of them."""
    gate = pytester.path / "gate.yaml"
    gate.write_text(
        "baseline: a\ncandidate: b\nchecks:\n  - {task: t1}\n  - {task: t1, metric: macro_f1}\n"
        "  - {task: t2}\n"
    )
    # Counts the gate's attempts to open the store, in the pytest process under test.
    pytester.makeconftest(
        """
        import bench.store

        opened = []
        real = bench.store.open_store

        def counting(*args, **kwargs):
            opened.append(args)
            return real(*args, **kwargs)

        bench.store.open_store = counting

        def pytest_sessionfinish(session):
            with open("opened.txt", "w") as fh:
                fh.write(str(len(opened)))
        """
    )
    run = pytester.runpytest_subprocess(
        "--bench-gate", str(gate), "--bench-db", "nope.sqlite", "-p", "no:cacheprovider"
    )
    run.assert_outcomes(failed=3)
    out = run.stdout.str()
    line = "error: results database nope.sqlite does not exist"
    failures = out.split(" FAILURES ", 1)[1].split(" short test summary", 1)[0]
    # Each check's report is its header and the one error line.
    lines = [s for s in failures.splitlines() if s.strip("=_ ") and not s.startswith("_")]
    assert lines == [line] * 3, failures
    assert "Traceback" not in out and "CallInfo" not in out and len(out.splitlines()) < 40
    assert (pytester.path / "opened.txt").read_text() == "1"
    # A config without the two models is refused before any test runs.
    gate.write_text("baseline: a\nchecks: [{task: t1}]\n")
    run = pytester.runpytest_subprocess(
        "--bench-gate", str(gate), "--bench-db", "nope.sqlite", "-p", "no:cacheprovider"
    )
    assert run.ret == pytest.ExitCode.USAGE_ERROR
    assert "name the baseline and candidate" in run.stderr.str()


# ------------------------------------------------------------------------------------------------
# Real runs of tiny models: robustness and prompted checks, and --run


def _pairs_task(folder: Path, n: int = 40) -> Path:
    from conftest import TINY_WORDS

    rng = random.Random(8)
    labels = ["entailment", "neutral", "contradiction"]
    with (folder / "pairs.jsonl").open("w") as fh:
        for i in range(n):
            row = {"p": " ".join(rng.choices(TINY_WORDS, k=6)),
                   "h": " ".join(rng.choices(TINY_WORDS, k=4)), "label": labels[i % 3]}  # fmt: skip
            fh.write(json.dumps(row) + "\n")
    path = folder / "pairs.yaml"
    path.write_text(
        "name: pairs\nsource: {type: local, path: pairs.jsonl}\ninputs: [p, h]\n"
        "labels: [entailment, neutral, contradiction]\n"
        "prompt:\n  templates: ['{p} => {h}:', 'Premise: {p} Hypothesis: {h} Answer:']\n"
        "  choices: [' yes', ' maybe', ' no']\n"
    )
    return path


def _other_lm(src: Path, dst: Path) -> Path:
    """The tiny Llama with its weights nudged: another model of the same shape."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    tensors = load_file(dst / "model.safetensors")
    gen = torch.Generator().manual_seed(1)
    for name, t in tensors.items():
        if t.is_floating_point():
            tensors[name] = t + 0.05 * torch.randn(t.shape, generator=gen)
    save_file(tensors, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def test_robustness_and_prompted_checks_on_real_runs(
    tmp_path: Path, tiny_model_dir: Path, torch_one_thread: None
) -> None:
    from conftest import build_tiny_model
    from lm_helpers import build_tiny_llama

    from bench.attacks.runner import AttackRunner
    from bench.attacks.specs import AttackConfig, AttackSpec, SuiteSpec
    from bench.gate import GateSpec, run_gate
    from bench.prompt_runner import PromptRunner
    from bench.specs import ModelSpec, PromptConfig

    task_path = _pairs_task(tmp_path)
    data = _load(task_path)
    a = ModelSpec(name="a", path=str(tiny_model_dir))
    b = ModelSpec(name="b", path=str(build_tiny_model(tmp_path / "b", seed=3, init_range=0.5)))
    lm_a = build_tiny_llama(tmp_path / "lm-a")
    lm_b = _other_lm(lm_a, tmp_path / "lm-b")
    suite = SuiteSpec(name="mini", attacks=[AttackSpec(name="deepwordbug", recipe="deepwordbug")])
    with ResultStore(tmp_path / "r.sqlite") as store:
        attacks = AttackRunner(store, AttackConfig(limit=12, max_length=64), device="cpu",
                               progress=False)  # fmt: skip
        prompts = PromptRunner(store, PromptConfig(device="cpu"), progress=False)
        for m in (a, b):
            attacks.run_suite(data, m, suite)
        for name, path in (("lm-a", lm_a), ("lm-b", lm_b)):
            prompts.run(ModelSpec(name=name, path=str(path)), prompts.plan(data, [0]))
        robust = GateSpec(
            checks=[{"task": str(task_path), "suite": "mini"},
                    {"task": str(task_path), "suite": "mini", "attack": "deepwordbug"}],
            margin=0.1,
        )  # fmt: skip
        result = run_gate(store, robust, "a", "b")
        prompted = GateSpec(
            checks=[{"task": str(task_path), "shots": 0},
                    {"task": str(task_path), "shots": 0, "template": 2}],
            margin=0.1,
        )  # fmt: skip
        prompted_result = run_gate(store, prompted, "lm-a", "lm-b")
        # The per-example values behind the suite check: an example survives the suite when no
        # attack broke it; its mean is the suite run's stored accuracy under attack.
        from bench.engine import run_metrics

        suite_runs = {r.model: r for r in store.runs(kinds=["suite"])}
        stored = {m: run_metrics(store, suite_runs[m])["accuracy_under_attack"].value
                  for m in ("a", "b")}  # fmt: skip
        sets = {r.model: r for r in store.runs(kinds=["prompt_set"])}
        stored_prompt = {m: run_metrics(store, sets[m])["accuracy"].value for m in sets}
    suite_check, attack_check = result.checks
    assert suite_check.difference.n == attack_check.difference.n == 12
    assert suite_check.baseline == pytest.approx(stored["a"])
    assert suite_check.candidate == pytest.approx(stored["b"])
    assert suite_check.check.label == "pairs@mini accuracy"
    assert attack_check.check.label == "pairs@mini/deepwordbug accuracy"
    mean_check, template_check = prompted_result.checks
    assert mean_check.difference.n == template_check.difference.n == len(data.split("test"))
    assert mean_check.baseline == pytest.approx(stored_prompt["lm-a"])
    assert mean_check.candidate == pytest.approx(stored_prompt["lm-b"])
    assert template_check.check.label == "pairs@0shot/t2 accuracy"


def test_gate_run_computes_missing_runs_then_answers_from_the_store(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    from conftest import build_tiny_model

    task = _pairs_task(tmp_path, n=60)
    other = build_tiny_model(tmp_path / "other", seed=5, init_range=0.5)
    db = tmp_path / "r.sqlite"
    args = ("gate", "--baseline", f"a={tiny_model_dir}", "--candidate", f"b={other}", "--task",
            str(task), "--db", str(db), "--margin", "0.5", "--format", "json")  # fmt: skip
    refused = _bench(*args)
    assert_user_error(refused, "does not exist")  # no store yet, and no --run
    first = _bench(*args, "--run", "--no-progress")
    assert first.returncode == 0, first.stderr[-2000:]
    out = json.loads(first.stdout)
    assert out["checks"][0]["n"] == 60 and out["checks"][0]["verdict"] == "pass"
    with ResultStore(db) as store:
        assert {r.model for r in store.runs()} == {"a", "b"}
        keys = {r.run_key for r in store.runs()}
    # Stored now: the same gate without --run answers from the store, by name.
    again = _bench("gate", "--baseline", "a", "--candidate", "b", "--task", str(task), "--db",
                   str(db), "--margin", "0.5", "--format", "json")  # fmt: skip
    assert again.returncode == 0 and json.loads(again.stdout)["checks"] == out["checks"]
    with ResultStore(db) as store:
        assert {r.run_key for r in store.runs()} == keys


def test_gate_run_computes_a_pairable_run_when_the_stored_ones_do_not_pair(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    from conftest import build_tiny_model

    import bench

    task = _pairs_task(tmp_path, n=60)
    other = build_tiny_model(tmp_path / "other", seed=5, init_range=0.5)
    db = tmp_path / "r.sqlite"
    bench.evaluate([f"a={tiny_model_dir}"], [task], db=db, device="cpu")
    bench.evaluate([f"b={other}"], [task], db=db, device="cpu", limit=30)
    args = ("gate", "--baseline", f"a={tiny_model_dir}", "--candidate", f"b={other}", "--task",
            str(task), "--db", str(db), "--margin", "0.5", "--format", "json")  # fmt: skip
    assert_user_error(_bench(*args), "cannot be paired")
    # --run skipped a model with any stored run, so it refused the same way; the candidate is
    # now computed again with the baseline's settings (the whole split), and the gate pairs.
    ran = _bench(*args, "--run", "--no-progress")
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert json.loads(ran.stdout)["checks"][0]["n"] == 60
    with ResultStore(db) as store:
        assert sorted((r.model, r.n_examples) for r in store.runs()) == [
            ("a", 60),
            ("b", 30),
            ("b", 60),
        ]


def test_compare_names_one_prompted_run_as_task_at_column(tmp_path: Path) -> None:
    """A prompted model has a run per shot count and template; compare said to name one with a
    --run option it does not have. TASK@COLUMN names it, as the leaderboard labels it."""
    from lm_helpers import build_tiny_llama

    import bench

    task = _pairs_task(tmp_path, n=30)
    db = tmp_path / "r.sqlite"
    lm = build_tiny_llama(tmp_path / "lm")
    # One model under two names (the second answered from the store): a paired Δ of 0.
    bench.prompt([f"lm={lm}", f"lm2={lm}"], [task], shots=[0], db=db, device="cpu")
    several = _bench("compare", "-m", "lm", "-m", "lm2", "-t", "pairs", "--db", str(db))
    assert_user_error(several, "pairs@0shot/t1, pairs@0shot/t2", "--task TASK@COLUMN")
    for column in ("0shot/t1", "0shot/t2"):
        named = _bench("compare", "-m", "lm", "-m", "lm2", "-t", f"pairs@{column}", "--db",
                       str(db), "--format", "json")  # fmt: skip
        assert named.returncode == 0, named.stderr
        (row,) = json.loads(named.stdout)
        assert row["n"] == 30 and column in json.dumps(row) and row["diff"] == 0, row
