"""bench audit end to end on tiny real models: the report, its numbers, the rerun, bad input,
and the page in a real browser (headless Chromium through Playwright, no network)."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY_WORDS, assert_user_error, build_tiny_model
from test_behave import TINY_SUITE

pytest.importorskip("captum", reason="integrated gradients need captum (the audit extra)")

HOSTILE_IMG = "<img src=x onerror=\"document.title='pwned'\">"
HOSTILE_SCRIPT = "<script>window.pwned = 1</script>"
LABELS = ["entailment", "neutral", "contradiction"]


def _bench(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=cwd,
    )


def _write_task(folder: Path) -> Path:
    import random

    rng = random.Random(5)
    rows = []
    for i in range(14):
        premise = " ".join(rng.choices(TINY_WORDS, k=rng.randint(5, 9)))
        hypothesis = " ".join(rng.choices(TINY_WORDS, k=rng.randint(4, 7)))
        if i == 3:
            hypothesis = f"the movie was good {HOSTILE_IMG} and great"
        if i == 7:
            premise = f"{HOSTILE_SCRIPT} the food was bad"
        rows.append({"premise": premise, "hypothesis": hypothesis, "label": LABELS[i % 3]})
    (folder / "tiny_audit.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = folder / "tiny_audit.yaml"
    task.write_text(
        "name: tiny_audit\nsource: {type: local, path: tiny_audit.jsonl}\n"
        "inputs: [premise, hypothesis]\nlabels: [entailment, neutral, contradiction]\n"
        "splits: {fractions: {test: 1.0}}\n"
    )
    return task


@dataclass
class Audit:
    folder: Path
    out: Path
    db: Path
    argv: list[str]
    first: subprocess.CompletedProcess[str]
    seconds: float
    model: Path
    baseline: Path

    def data(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads((self.out / "audit.json").read_text(encoding="utf-8"))
        return result

    def page(self) -> str:
        return (self.out / "index.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def tiny_audit(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Audit:
    folder = tmp_path_factory.mktemp("audit")
    task = _write_task(folder)
    suite = folder / "tiny_suite.yaml"
    suite.write_text(TINY_SUITE, encoding="utf-8")
    baseline = build_tiny_model(folder / "tiny-b", seed=1, init_range=0.5)
    db = folder / "store.sqlite"
    out = folder / "report"
    argv = [
        "audit",
        "--model",
        f"tiny={tiny_model_dir}",
        "--baseline",
        f"tiny-b={baseline}",
        "--task",
        str(task),
        "--suite",
        "quick",
        "--behave-suite",
        str(suite),
        "--limit",
        "0",
        "--ig-budget",
        "2",
        "--ig-steps",
        "8",
        "--n-bootstrap",
        "200",
        "--device",
        "cpu",
        "--db",
        str(db),
        "--out",
        str(out),
        "--no-progress",
    ]
    started = time.perf_counter()
    first = _bench(*argv)
    seconds = time.perf_counter() - started
    assert first.returncode == 0, first.stderr[-3000:]
    return Audit(folder, out, db, argv, first, seconds, tiny_model_dir, baseline)


def test_the_report_holds_every_number_with_its_interval_and_n(tiny_audit: Audit) -> None:
    data = tiny_audit.data()
    assert data["format"] == "bench-audit/1"
    assert data["model"]["name"] == "tiny" and data["baseline"]["name"] == "tiny-b"
    assert re.fullmatch(r"[0-9a-f]{64}", data["model"]["hash"])
    (task,) = data["tasks"]
    assert task["task"] == "tiny_audit" and re.fullmatch(r"[0-9a-f]{64}", task["data_hash"])
    assert set(task["profiles"]) == {
        "quick/deepwordbug",
        "quick/pruthi",
        "quick/textbugger-char",
    }
    metrics = [r["metric"] for r in task["summary"]]
    assert metrics[:2] == ["accuracy", "clean_accuracy"]
    assert metrics.count("accuracy_under_attack") == 3 and "worst_case" in metrics
    for row in task["summary"] + task["calibration"]["table"] + task["behave"]["table"]:
        assert row["direction"], row
        for fig in (row["model"], row["baseline"]):
            assert fig["n"] is not None, row
            if fig["value"] is not None and row["metric"] != "avg_queries":
                assert fig["low"] is not None and fig["low"] <= fig["value"] <= fig["high"], row
        # With a baseline, every row carries the paired difference and how many pairs (none
        # when the two models' populations do not meet: examples both attacked, say).
        diff = row["diff"]
        if diff["n"]:
            assert diff["low"] <= diff["value"] <= diff["high"], row
        else:
            assert diff["note"] == "no common examples", row
        if row["metric"] in ("accuracy", "clean_accuracy", "accuracy_under_attack", "worst_case"):
            assert diff["n"] == row["model"]["n"], row
    worst = next(r for r in task["summary"] if r["metric"] == "worst_case")
    under = [r for r in task["summary"] if r["metric"] == "accuracy_under_attack"]
    assert worst["model"]["value"] <= min(r["model"]["value"] for r in under)
    # Every attacked example of both models, with the texts and the outcome.
    assert len(task["examples"]) == 2 * 3 * 14
    assert {x["status"] for x in task["examples"]} <= {"succeeded", "failed", "skipped"}
    for attack in task["attacks"]:
        v = attack["validity"]["tiny"]
        wins = [
            x
            for x in task["examples"]
            if x["attack"] == attack["attack"]
            and x["model"] == "tiny"
            and x["status"] == "succeeded"
        ]
        assert v["similarity"]["n"] == len(wins) == len(v["similarity"]["values"])
        assert all(-1.0 <= s <= 1.0 for s in v["similarity"]["values"])
    # Behavioural tests, calibration and attributions.
    assert [t["name"] for t in task["behave"]["tests"]] == [
        "same_words",
        "swap_who",
        "bad_added",
        "typo",
    ]
    for t in task["behave"]["tests"]:
        shares = t["predicted"]["tiny"]["shares"]
        assert set(shares) == set(LABELS) and sum(shares.values()) == pytest.approx(1.0)
    assert sum(b["n"] for b in task["calibration"]["models"]["tiny"]["bins"]) == 14
    for attack in task["attributions"]["attacks"]:
        assert attack["steps"] == 8 and attack["budget"] == 2
        for x in attack["examples"]["tiny"]:
            assert len(x["original"]["tokens"]) == len(x["original"]["scores"])
            # Completeness: the scores sum to the output difference up to the stored delta.
            o = x["original"]
            assert o["sum"] - (o["output"] - o["baseline_output"]) == pytest.approx(
                o["delta"], abs=1e-4
            )
    # No path of this machine in what is written: folders are named, not located.
    for text in (tiny_audit.page(), json.dumps(data)):
        assert str(tiny_audit.folder) not in text and str(tiny_audit.model.parent) not in text


def test_the_rerun_is_answered_from_the_store(tiny_audit: Audit) -> None:
    before = tiny_audit.data()
    started = time.perf_counter()
    again = _bench(*tiny_audit.argv)
    seconds = time.perf_counter() - started
    assert again.returncode == 0, again.stderr[-3000:]
    assert "everything answered from the store" in again.stdout
    after = tiny_audit.data()
    assert after["provenance"]["rows_computed"] == 0
    assert after["provenance"]["runs_from_store"] == after["provenance"]["runs"]
    before.pop("provenance")
    after.pop("provenance")
    assert before == after  # the same numbers, from the stored rows
    assert seconds < tiny_audit.seconds


def test_the_page_is_self_contained_and_escapes_data(tiny_audit: Audit) -> None:
    page = tiny_audit.page()
    assert page.count("<script>") == 1  # ours; the hostile one is text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "http://" not in page and "https://" not in page
    assert "Content-Security-Policy" in page
    assert "<img src=x" not in page and "&lt;img src=x" in page
    assert "&lt;script&gt;window.pwned" in page
    assert page.count('<img class="plot"') >= 5  # plots are inline PNGs
    assert all(
        src.startswith("data:image/png;base64,")
        for src in re.findall(r'<img[^>]* src="([^"]+)"', page)
    )


def test_an_audit_without_baseline_reuses_the_stored_runs(tiny_audit: Audit) -> None:
    out = tiny_audit.folder / "alone"
    argv = [a for a in tiny_audit.argv]
    i = argv.index("--baseline")
    del argv[i : i + 2]
    argv[argv.index("--out") + 1] = str(out)
    proc = _bench(*argv)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "everything answered from the store" in proc.stdout
    data = json.loads((out / "audit.json").read_text())
    assert data["baseline"] is None
    assert all(r["baseline"] is None and r["diff"] is None for r in data["tasks"][0]["summary"])


def test_bad_input_is_one_line_and_stores_nothing(
    tiny_audit: Audit, tmp_path: Path, minilm_2way: Path
) -> None:
    db = tmp_path / "s.sqlite"
    task = _write_task(tmp_path)
    common = [
        "audit",
        "--model",
        f"tiny={tiny_audit.model}",
        "--task",
        str(task),
        "--db",
        str(db),
        "--out",
        str(tmp_path / "r"),
        "--no-progress",
        "--device",
        "cpu",
    ]
    # A 2-way baseline against a 3-way model: no paired comparison.
    proc = _bench(*common, "--baseline", f"two={minilm_2way}")
    assert_user_error(proc, "--baseline", "same labels")
    # A behavioural suite the task's columns cannot take.
    proc = _bench(*common, "--behave-suite", "sentiment")
    assert_user_error(proc, "sentiment.yaml", "takes 2")
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY_SUITE.replace("perturb: {swap: who}", "perturb: {swap: nobody}"))
    proc = _bench(*common, "--behave-suite", str(bad))
    assert_user_error(proc, "unknown lexicon key", "bad.yaml")
    proc = _bench(*common, "--similarity-threshold", "1.5")
    assert_user_error(proc, "--similarity-threshold")
    proc = _bench(*common, "--ig-steps", "0")
    assert_user_error(proc, "--ig-steps")
    # Named by its option, as bench attack names it (not pydantic's documentation link).
    proc = _bench(*common, "--query-budget", "0")
    assert_user_error(proc, "--query-budget: Input should be greater than or equal to 1")
    # The same weights under another name are not a baseline.
    proc = _bench(*common, "--baseline", f"other={tiny_audit.model}")
    assert_user_error(proc, "--baseline", "is the audited model", "same content hash")
    # An empty --out would be the current folder; a folder is not an attack suite.
    here = tmp_path / "here"
    (here / "mysuites").mkdir(parents=True)
    i = common.index("--out")
    empty = [*common[:i], "--out", "", *common[i + 2 :]]
    proc = _bench(*empty, cwd=here)
    assert_user_error(proc, "--out is empty")
    proc = _bench(*common, "--suite", "mysuites", cwd=here)
    assert_user_error(proc, "'mysuites' is a folder")
    assert [p.name for p in here.iterdir()] == ["mysuites"]
    if db.exists():
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
    assert not (tmp_path / "r").exists()


def test_suites_that_share_attack_runs_show_each_run_once_under_each_name(
    tiny_audit: Audit, tmp_path: Path
) -> None:
    import shutil

    db = tmp_path / "store.sqlite"
    shutil.copy(tiny_audit.db, db)
    task = tiny_audit.argv[tiny_audit.argv.index("--task") + 1]
    # dwb-a is quick's deepwordbug under another name (the same run: attack runs are keyed
    # without the suite); dwb-b is another run of the same recipe.
    dup = tmp_path / "dup.yaml"
    dup.write_text(
        "name: dup\nattacks:\n  - {name: dwb-a, recipe: deepwordbug}\n"
        "  - {name: dwb-b, recipe: deepwordbug, params: {max_edit_distance: 5}}\n"
    )
    out = tmp_path / "report"
    proc = _bench(
        "audit", "--model", f"tiny={tiny_audit.model}", "--task", task, "--task", task,
        "--suite", "quick", "--suite", str(dup), "--limit", "0", "--eval-limit", "5",
        "--ig-budget", "2", "--ig-steps", "8", "--n-bootstrap", "200", "--device", "cpu",
        "--db", str(db), "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((out / "audit.json").read_text(encoding="utf-8"))
    (section,) = data["tasks"]  # a task named twice is audited once
    shared = "quick/deepwordbug = dup/dwb-a"
    names = [shared, "quick/pruthi", "quick/textbugger-char", "dup/dwb-b"]
    assert [a["attack"] for a in section["attacks"]] == names
    assert len({a["run_key"] for a in section["attacks"]}) == 4
    profiles = section["profiles"]
    assert set(profiles) == {"quick/deepwordbug", "quick/pruthi", "quick/textbugger-char",
                             "dup/dwb-a", "dup/dwb-b"}  # fmt: skip
    assert profiles["quick/deepwordbug"] == profiles["dup/dwb-a"] != profiles["dup/dwb-b"]
    summary = section["summary"]
    under = [r["label"] for r in summary if r["metric"] == "accuracy_under_attack"]
    assert under == [f"accuracy under {n}" for n in names]
    worst = [r["label"] for r in summary if r["metric"] == "worst_case"]
    assert [w.rsplit("(", 1)[1] for w in worst] == ["suite quick)", "suite dup)"]
    # Every attacked example once, and each run once in the list of runs and in the counts.
    assert len(section["examples"]) == 4 * 14
    assert {x["attack"] for x in section["examples"]} == set(names)
    keys = [r["run_key"] for r in section["runs"]["tiny"]]
    assert len(keys) == len(set(keys)) == data["provenance"]["runs"]
    assert [r["column"] for r in section["runs"]["tiny"] if r["kind"] == "attack"] == names
    page = (out / "index.html").read_text(encoding="utf-8")
    assert page.count(f'<option value="{shared}">') == 1
    assert page.count('<option value="dup/dwb-b">') == 1
    # --eval-limit evaluates a seeded sample, and the summary says so.
    assert summary[0]["label"] == "clean accuracy (seeded sample of 5 of the test split's 14)"


def test_runs_rm_takes_the_explain_runs_of_a_removed_attack_run(
    tiny_audit: Audit, tmp_path: Path
) -> None:
    import shutil

    from bench.store import ResultStore

    db = tmp_path / "store.sqlite"
    shutil.copy(tiny_audit.db, db)
    with ResultStore(db) as store:
        attack = next(r for r in store.runs(kinds=["attack"]) if r.column == "quick/pruthi")
        explains = [
            r.run_key
            for r in store.runs(kinds=["explain"])
            if r.config.attack_run == attack.run_key  # type: ignore[attr-defined]
        ]
        suites = store.summaries_of(attack.run_key)
        before = len(store.runs(status=None))
    assert len(explains) == 1 and len(suites) == 1
    refused = _bench("runs", "rm", attack.run_key, "--db", str(db))
    assert_user_error(refused, "1 summary run(s)", "1 explain run(s)", "--yes")
    done = _bench("runs", "rm", attack.run_key, "--yes", "--db", str(db))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("removed 3 run(s) (1 named with 1 summary run(s)")
    assert explains[0] in done.stdout
    with ResultStore(db) as store:
        assert len(store.runs(status=None)) == before - 3
        assert store.get_run(explains[0]) is None and store.explain_rows(explains[0]) == []


# ------------------------------------------------------------------------------------ the browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("no Chromium installed (README: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1300, "height": 900},
        )
        try:
            yield context.new_page()
        finally:
            context.close()


def test_the_page_in_a_real_browser(tiny_audit: Audit, browser_page: Any, tmp_path: Path) -> None:
    import numpy as np

    page = browser_page
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda r: requests.append(r.url))
    uri = (tiny_audit.out / "index.html").as_uri()
    page.goto(uri, wait_until="load")
    assert errors == [], errors
    # Nothing but the file itself and its inline images.
    assert all(u == uri or u.startswith("data:") for u in requests), requests
    title = page.title()
    assert "pwned" not in title and title.startswith("Robustness audit: tiny")
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.locator('img[src="x"]').count() == 0
    # The hostile example is there as text, in the original and the adversarial column.
    cells = page.locator("#example-table td.text", has_text=HOSTILE_IMG)
    assert cells.count() >= 2
    assert page.locator("#example-table td.text", has_text=HOSTILE_SCRIPT).count() >= 2
    # Filters change the number of visible examples, and the count says so.
    total = page.locator("#example-table tbody tr").count()
    assert total == 2 * 3 * 14
    assert int(page.inner_text("#example-count")) == total
    page.select_option('select[data-filter="status"]', "skipped")
    skipped = page.locator("#example-table tbody tr:visible").count()
    assert 0 < skipped < total and int(page.inner_text("#example-count")) == skipped
    page.select_option('select[data-filter="model"]', "tiny-b")
    both = page.locator("#example-table tbody tr:visible").count()
    assert 0 < both < skipped
    page.select_option('select[data-filter="status"]', "")
    page.select_option('select[data-filter="model"]', "")
    assert page.locator("#example-table tbody tr:visible").count() == total
    # Sorting by queries puts the rows in order.
    page.click('#example-table th button[data-col="6"]')
    queries = [
        int(q) for q in page.locator("#example-table tbody tr td:nth-child(7)").all_inner_texts()
    ]
    assert queries == sorted(queries)
    assert errors == [], errors
    shot = tmp_path / "shot.png"
    page.screenshot(path=str(shot), full_page=False)
    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))
    assert pixels.shape[0] >= 800 and pixels.shape[1] >= 1200
    assert float(np.std(pixels)) > 0.05  # not a blank page


def test_the_page_reads_with_scripts_off(tiny_audit: Audit, tmp_path: Path) -> None:
    if CHROMIUM is None:
        pytest.skip("no Chromium installed (README: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            java_script_enabled=False,
        )
        try:
            page = context.new_page()
            page.goto((tiny_audit.out / "index.html").as_uri(), wait_until="load")
            # Every example is listed and visible; the filters are there but disabled.
            assert page.locator("#example-table tbody tr:visible").count() == 2 * 3 * 14
            assert page.locator("select[data-filter]").first.is_disabled()
            assert page.locator("h2#behave").is_visible()
        finally:
            context.close()


def _rows(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every per-example row of a store, keyed by run and position (run keys do not depend on
    the executor), the float columns as floats."""
    queries = {
        "predictions": "SELECT run_key, idx, uid, label, pred, probs FROM predictions",
        "attack_examples": "SELECT run_key, idx, uid, status, perturbed, perturbed_pred, "
        "queries, words_changed FROM attack_examples",
        "behave_examples": "SELECT run_key, idx, uid, variant, pred, pred_variant, passed "
        "FROM behave_examples",
        "explain_examples": "SELECT run_key, idx, uid, similarity, explanation FROM explain_examples",
    }
    with sqlite3.connect(db) as conn:
        return {name: sorted(conn.execute(sql).fetchall()) for name, sql in queries.items()}


@pytest.mark.slow
def test_the_audit_on_ray_workers_stores_the_same_rows(tiny_audit: Audit) -> None:
    pytest.importorskip("ray")
    db = tiny_audit.folder / "ray.sqlite"
    out = tiny_audit.folder / "ray-report"
    argv = [a for a in tiny_audit.argv]
    argv[argv.index("--db") + 1] = str(db)
    argv[argv.index("--out") + 1] = str(out)
    proc = _bench(*argv, "--executor", "ray", "--workers", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    local, ray = _rows(tiny_audit.db), _rows(db)
    for table in ("attack_examples", "behave_examples"):
        assert local[table] == ray[table] and local[table], table
    for table in ("predictions", "explain_examples"):
        assert len(local[table]) == len(ray[table]) > 0, table
        for a, b in zip(local[table], ray[table], strict=True):
            assert a[:3] == b[:3]
            if table == "predictions":
                assert a[3:5] == b[3:5]
                assert json.loads(a[5]) == pytest.approx(json.loads(b[5]), abs=1e-6)
            else:
                assert a[3] == pytest.approx(b[3], abs=1e-6)
                # Attributions: the same tokens, scores equal up to float summation order.
                ea, eb = json.loads(a[4] or "null"), json.loads(b[4] or "null")
                assert (ea is None) == (eb is None)
    # The report's numbers are the same.
    first = json.loads((tiny_audit.out / "audit.json").read_text(encoding="utf-8"))
    second = json.loads((out / "audit.json").read_text(encoding="utf-8"))
    assert first["tasks"][0]["summary"] == second["tasks"][0]["summary"]
