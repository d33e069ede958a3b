"""Behavioural test suites: YAML data, seeded expansion, verdicts, the run kind, the command."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_user_error

from bench.behave.expand import Case, expand, perturb
from bench.behave.runner import BehaveRunner, judge
from bench.behave.spec import (
    BehaveSuite,
    list_behave_suites,
    load_behave_suite,
    template_slots,
)
from bench.errors import SpecError
from bench.specs import EvalConfig, ModelSpec
from bench.store import ResultStore

# A suite in the tiny model's vocabulary (tests/conftest.py), 2 columns, 3-way labels.
TINY_SUITE = """
name: tiny
inputs: [premise, hypothesis]
labels: [entailment, neutral, contradiction]
lexicons:
  good: [good, great, excellent, wonderful, lovely, superb]
  bad: [bad, awful, terrible, horrible, poor, dreadful]
  thing: [movie, film, food, service, book, hotel, room]
  who: [man, woman, dog, cat]
tests:
  - name: same_words
    capability: vocabulary
    type: mft
    templates:
      - {premise: "the {thing} was {good}", hypothesis: "the {thing} was {good}"}
    label: entailment
    n: 12
  - name: swap_who
    capability: fairness
    type: inv
    templates:
      - {premise: "the {who} runs in the park", hypothesis: "a {who} runs"}
    perturb: {swap: who}
    n: 12
  - name: bad_added
    capability: contrast
    type: dir
    templates:
      - {premise: "the {thing} was {good}", hypothesis: "it was {good}"}
    variants:
      - {premise: "the {thing} was {good}", hypothesis: "it was {good} but {bad}"}
    expect: {label: entailment, direction: down, tolerance: 0.0}
    n: 12
  - name: typo
    capability: robustness
    type: inv
    templates:
      - {premise: "the {thing} was {good}", hypothesis: "the {thing} was very {good}"}
    perturb: {typo: 1}
    n: 12
"""


def _bench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=600
    )


def _suite(tmp_path: Path, text: str = TINY_SUITE, name: str = "tiny.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------ the built-in suites


@pytest.mark.parametrize("name", ["sentiment", "nli"])
def test_builtin_suites_have_every_test_type_and_eight_tests_or_more(name: str) -> None:
    suite, _ = load_behave_suite(name)
    assert len(suite.tests) >= 8
    assert {t.type for t in suite.tests} == {"mft", "inv", "dir"}
    cases = expand(
        suite,
        suite.labels,
        seed=0,
        task_examples=[("a longer piece of text",) * len(suite.inputs)] * 3,
    )
    per_test = {t.name: sum(c.test == t.name for c in cases) for t in suite.tests}
    # Every template test reaches its n (the lexicons hold enough combinations).
    assert all(per_test[t.name] == t.n for t in suite.tests if t.source == "templates"), per_test
    assert len({c.uid for c in cases}) == len(cases)  # distinct cases


def test_builtin_capabilities_are_the_issue_s() -> None:
    sentiment, _ = load_behave_suite("sentiment")
    names = {t.name for t in sentiment.tests}
    for wanted in (
        "negated_positive",
        "intensifier_positive",
        "neutral_filler",
        "names_swapped",
        "places_swapped",
        "typos",
        "contractions",
        "punctuation",
    ):
        assert wanted in names
    nli, _ = load_behave_suite("nli")
    names = {t.name for t in nli.tests}
    for wanted in (
        "hypothesis_negation",
        "names_swapped",
        "roles_swapped",
        "overlap_subsequence",
        "overlap_passive",
    ):
        assert wanted in names
    assert set(list_behave_suites()) >= {"sentiment", "nli"}


# -------------------------------------------------------------------------------------- expansion


def test_expansion_is_seeded_and_deterministic() -> None:
    suite, _ = load_behave_suite("sentiment")
    a = expand(suite, suite.labels, seed=0)
    b = expand(suite, suite.labels, seed=0)
    c = expand(suite, suite.labels, seed=1)
    assert a == b  # same seed: the same cases, in the same order
    assert [x.uid for x in a] != [x.uid for x in c]
    # A test's cases depend on its own stream only: dropping another test changes nothing.
    fewer = suite.model_copy(update={"tests": suite.tests[1:]})
    d = expand(fewer, suite.labels, seed=0)
    assert [x for x in a if x.test != suite.tests[0].name] == d
    # Fixed in the code, not the machine: the first case of seed 0 is always this one.
    assert a[0].inputs == expand(suite, suite.labels, seed=0)[0].inputs


def test_slots_fill_from_lexicons_and_draws_are_distinct(tmp_path: Path) -> None:
    suite, _ = load_behave_suite(
        _suite(
            tmp_path,
            TINY_SUITE.replace(
                '{premise: "the {who} runs in the park", hypothesis: "a {who} runs"}',
                '{premise: "the {who} and the {who:2} run", hypothesis: "a {who} runs {{x}}"}',
            ),
        )
    )
    cases = [c for c in expand(suite, suite.labels) if c.test == "swap_who"]
    assert cases
    for c in cases:
        words = c.inputs[0].split()
        assert words[1] != words[4]  # {who} and {who:2} differ
        assert c.inputs[1].endswith("{x}")  # escaped braces
        # The swap changes the same name in both columns, to another entry of the lexicon.
        assert c.variant[0] != c.inputs[0]
        swapped = {w for w in c.variant[1].split()} - {w for w in c.inputs[1].split()}
        assert len(swapped) == 1 and swapped <= set(suite.lexicons["who"])
    assert template_slots("a {x} b {y:2} {{z}}") == [("x", 1), ("y", 2)]


def test_perturbations() -> None:
    import random

    suite = BehaveSuite.model_validate(
        {
            "name": "p",
            "inputs": ["text"],
            "labels": ["negative", "positive"],
            "lexicons": {"city": ["Paris", "New York", "Lima", "Oslo"]},
            "pairs": {"c": [["is not", "isn't"], ["do not", "don't"]]},
            "tests": [
                {
                    "name": "t",
                    "capability": "c",
                    "type": "mft",
                    "templates": ["x"],
                    "label": "positive",
                }
            ],
        }
    )
    rng = random.Random(0)

    def run(op: dict[str, object], text: str) -> tuple[str, ...] | None:
        from bench.behave.spec import Perturbation

        return perturb(suite, Perturbation.model_validate(op), (text,), rng, {})

    assert run({"replace": "c"}, "it is not good") == ("it isn't good",)
    assert run({"replace": "c"}, "I don't know") == ("I do not know",)  # the other way
    assert run({"replace": "c"}, "nothing here") is None  # does not apply: no case
    assert run({"punctuation": True}, "Great!!") == ("Great",)
    assert run({"punctuation": True}, "Great") == ("Great.",)
    swapped = run({"swap": "city"}, "from New York to Paris")
    assert swapped is not None and "New York" not in swapped[0] and "Paris" not in swapped[0]
    assert run({"swap": "city"}, "no city at all") is None
    # Replacements are entries the text does not hold: three found leave one, too few.
    assert run({"swap": "city"}, "Paris, Lima and New York") is None
    typo = run({"typo": 1}, "a wonderful day")
    assert (
        typo is not None
        and sorted(typo[0]) == sorted("a wonderful day")
        and typo[0] != "a wonderful day"
    )


# ---------------------------------------------------------------------------------------- verdicts


def test_an_invariance_test_counts_a_flip_as_a_failure() -> None:
    suite, _ = load_behave_suite("sentiment")
    inv = next(t for t in suite.tests if t.type == "inv")
    assert judge(inv, -1, 1, 1, [0.2, 0.8], [0.4, 0.6]) is True  # same label: passes
    assert judge(inv, -1, 1, 0, [0.4, 0.6], [0.6, 0.4]) is False  # positive -> negative
    assert judge(inv, -1, 0, 1, [0.6, 0.4], [0.4, 0.6]) is False  # negative -> positive
    mft = next(t for t in suite.tests if t.type == "mft")
    assert judge(mft, 1, 1, -1, [0.1, 0.9], []) is True
    assert judge(mft, 1, 0, -1, [0.9, 0.1], []) is False
    up = next(t for t in suite.tests if t.name == "intensifier_positive")  # tolerance 0.05
    assert judge(up, 1, 1, 1, [0.2, 0.8], [0.24, 0.76]) is True
    assert judge(up, 1, 1, 1, [0.2, 0.8], [0.3, 0.7]) is False


def test_the_run_stores_verdicts_that_match_the_predictions(
    tmp_path: Path, tiny_model_dir: Path, torch_one_thread: None
) -> None:
    from test_attack_runner import load, write_pair_task

    task = load(write_pair_task(tmp_path, 30))
    suite, origin = load_behave_suite(_suite(tmp_path))
    model = ModelSpec(name="tiny", path=str(tiny_model_dir))
    with ResultStore(tmp_path / "s.sqlite") as store:
        runner = BehaveRunner(store, EvalConfig(device="cpu", n_bootstrap=200), progress=False)
        outcome = runner.run(runner.plan(task, model, suite, origin))
        rows = store.behave_rows(outcome.record.run_key)
        again = runner.run(runner.plan(task, model, suite, origin))
    assert again.cached and again.record.run_key == outcome.record.run_key
    assert len(rows) == outcome.record.n_examples == 48
    flips = 0
    for r in rows:
        if r.test_type == "inv":
            assert r.passed == (r.pred == r.pred_variant)
            flips += r.pred != r.pred_variant
        if r.test_type == "mft":
            assert r.passed == (r.pred == r.expected)
        if r.test_type == "dir":
            assert r.passed == (r.probs_variant[r.expected] <= r.probs[r.expected])
    # The stored failure rate of a test is its failed share, with an interval around it.
    for test in ("swap_who", "typo", "same_words", "bad_added"):
        mine = [r for r in rows if r.test == test]
        m = outcome.metrics[f"failure_rate/{test}"]
        assert m.value == pytest.approx(sum(not r.passed for r in mine) / len(mine))
        assert m.low is not None and m.high is not None and m.low <= m.value <= m.high
    assert outcome.metrics["n"].value == 48


# ------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        (
            ("perturb: {swap: who}", "perturb: {swap: whom}"),
            ("unknown lexicon key", "'whom'", "tiny.yaml"),
        ),
        (
            ('hypothesis: "a {who} runs"', 'hypothesis: "a {whoo} runs"'),
            ("slot {whoo}", "no lexicon", "tiny.yaml"),
        ),
        (
            (
                '{premise: "the {who} runs in the park", hypothesis: "a {who} runs"}',
                '{premise: "the {who} runs"}',
            ),
            ("lacks column 'hypothesis'", "tiny.yaml"),
        ),
        (
            ("label: entailment\n    n: 12", "label: happy\n    n: 12"),
            ("label 'happy'", "tiny.yaml"),
        ),
        (("perturb: {typo: 1}", "perturb: {typo: 1, swap: who}"), ("exactly one of", "tiny.yaml")),
        (("type: mft", "type: mft\n    code: 'import os'"), ("code", "tiny.yaml")),
    ],
)
def test_bad_suites_are_one_line_naming_the_file(
    tmp_path: Path, change: tuple[str, str], needles: tuple[str, ...]
) -> None:
    text = TINY_SUITE.replace(*change, 1)
    assert text != TINY_SUITE
    path = _suite(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_behave_suite(path)
    message = str(info.value)
    assert "\n" not in message and len(message) < 300
    for needle in needles:
        assert needle in message, message


def test_a_folder_given_as_a_suite_is_named_a_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "checks").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError, match="'checks' is a folder"):
        load_behave_suite("checks")
    (tmp_path / "sentiment").mkdir()  # a built-in name still names the built-in suite
    assert load_behave_suite("sentiment")[0].name == "sentiment"


def test_cli_refuses_bad_suites_and_tasks_that_cannot_take_them(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    from test_attack_runner import write_pair_task

    task = write_pair_task(tmp_path, 12)
    db = tmp_path / "s.sqlite"
    bad = _suite(tmp_path, TINY_SUITE.replace("perturb: {swap: who}", "perturb: {swap: nobody}"))
    common = ["--db", str(db), "--no-progress", "-m", f"tiny={tiny_model_dir}", "-t", str(task)]
    proc = _bench("behave", *common, "--suite", str(bad))
    assert_user_error(proc, "unknown lexicon key", "tiny.yaml")
    proc = _bench(
        "behave",
        *common,
        "--suite",
        str(_suite(tmp_path, TINY_SUITE.replace('{who} runs"', '{nobody} runs"'), "slot.yaml")),
    )
    assert_user_error(proc, "slot {nobody}", "slot.yaml")
    # The sentiment suite fills one column; the pair task takes two.
    proc = _bench("behave", *common, "--suite", "sentiment")
    assert_user_error(proc, "sentiment.yaml", "1 column", "takes 2")
    proc = _bench("behave", *common, "--suite", "no-such-suite")
    assert_user_error(proc, "unknown behaviour suite")
    # Refused before anything was stored.
    if db.exists():
        import sqlite3

        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0


def test_cli_runs_a_suite_and_answers_the_rerun_from_the_store(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    from test_attack_runner import write_pair_task

    task = write_pair_task(tmp_path, 12)
    db = tmp_path / "s.sqlite"
    args = [
        "behave",
        "--db",
        str(db),
        "--no-progress",
        "-m",
        f"tiny={tiny_model_dir}",
        "-t",
        str(task),
        "--suite",
        str(_suite(tmp_path)),
        "--device",
        "cpu",
    ]
    first = _bench(*args, "--format", "json")
    assert first.returncode == 0, first.stderr[-2000:]
    (result,) = json.loads(first.stdout)
    assert not result["cached"] and result["metrics"]["n"]["value"] == 48
    assert [t["name"] for t in result["tests"]] == ["same_words", "swap_who", "bad_added", "typo"]
    second = _bench(*args)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "| swap_who | inv | fairness | 12 |" in second.stdout
    assert json.loads(_bench(*args, "--format", "json").stdout)[0]["cached"]
    # A rate every bootstrap resample repeats (no case failed, or all did) is a point; such a
    # cell adds the Wilson interval (checked against scipy's), as the audit page does.
    from scipy.stats import binomtest

    cells = [line.split("|")[4:6] for line in second.stdout.splitlines() if line.startswith("| ")]
    points = 0
    for n_text, cell in cells[1:]:
        value, low, high = (float(x) for x in re.findall(r"\d\.\d{3}", cell)[:3])
        if low != high:
            assert "Wilson" not in cell
            continue
        points += 1
        n = int(n_text)
        ci = binomtest(round(value * n), n).proportion_ci(0.95, method="wilson")
        assert f"(Wilson [{ci.low:.3f}, {ci.high:.3f}])" in cell, cell
    assert points >= 1, second.stdout


def test_case_is_plain_data() -> None:
    c = Case("t", "inv", ("a",), ("b",), -1, "u")
    assert c.variant == ("b",) and c.expected == -1
