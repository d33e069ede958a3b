"""Domain transfer: the controller on tiny models, label mapping, the statistics, the heatmap."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import assert_user_error

pytestmark = pytest.mark.usefixtures("torch_one_thread")

POSITIVE = ["good", "great", "lovely", "fine", "happy", "superb"]
NEGATIVE = ["bad", "awful", "poor", "sad", "dull", "worse"]


def _write_domain(folder: Path, name: str, noun: str, labels: tuple[str, str], n: int) -> Path:
    """A tiny sentiment domain: the polarity word decides the label; the nouns differ by domain."""
    rows = []
    for i in range(n):
        positive = i % 2 == 0
        word = (POSITIVE if positive else NEGATIVE)[i % 6]
        rows.append({"text": f"the {noun} {i} was {word}", "label": labels[int(positive)]})
    (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = folder / f"{name}.yaml"
    spec.write_text(
        f"name: {name}\nsource: {{type: local, path: {name}.jsonl}}\ninputs: [text]\n"
        f"labels: [{labels[0]}, {labels[1]}]\n"
        "splits: {fractions: {train: 0.6, dev: 0.1, test: 0.3}}\n"
    )
    return spec


@pytest.fixture()
def domains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    # Transfer models go into the model cache; keep this test's out of the real one.
    monkeypatch.setenv("BENCH_MODELS_DIR", str(tmp_path / "models"))
    folder = tmp_path / "tasks"
    folder.mkdir()
    return {
        "films": str(_write_domain(folder, "films", "film", ("negative", "positive"), 60)),
        "meals": str(_write_domain(folder, "meals", "meal", ("negative", "positive"), 60)),
    }


def _spec(domains: dict[str, str], tiny_base_dir: Path, **extra: Any) -> Any:
    from bench.transfer import TransferSpec

    return TransferSpec.model_validate(
        {
            "name": "tiny",
            "train_tasks": [domains["films"], domains["meals"]],
            "test_tasks": [domains["films"], domains["meals"]],
            "base": str(tiny_base_dir),
            "seeds": [0, 1],
            "max_train": 30,
            "recipe": {"epochs": 1, "lr": 1e-3, "batch_size": 8, "max_length": 16},
            **extra,
        }
    )


def test_transfer_trains_evaluates_and_answers_a_rerun_from_the_store(
    tmp_path: Path, domains: dict[str, str], tiny_base_dir: Path
) -> None:
    from bench.store import ResultStore
    from bench.transfer import run_transfer

    spec = _spec(domains, tiny_base_dir)
    with ResultStore(tmp_path / "t.sqlite") as store:
        first = run_transfer(spec, store, progress=False)
        assert first.trained == 4 and first.evaluated == 8
        assert len(first.cells) == 4 and len(first.gaps) == 2
        # Every cell is the mean of its seeds' stored accuracies (the evaluator's own metric).
        for cell in first.cells:
            runs = [r for r in first.runs if (r["train"], r["test"]) == (cell.train, cell.test)]
            stored = [store.metrics(r["run_key"])["accuracy"].value for r in runs]
            assert cell.per_seed == pytest.approx(stored)
            assert cell.mean == pytest.approx(np.mean(stored))
            assert cell.sd == pytest.approx(np.std(stored, ddof=1))
            assert cell.low <= cell.mean <= cell.high
        # Each model folder carries its card: training task, data hash, seed, dev score.
        folders = {r["model_path"] for r in first.runs}
        assert len(folders) == 4
        for folder in folders:
            card = json.loads((Path(folder) / "bench_model_card.json").read_text())
            assert card["seed"] in (0, 1) and card["train_tasks"] and card["data_hash"]
            assert card["dev_accuracy"] is not None
        weights = {folder: (Path(folder) / "model.safetensors").read_bytes() for folder in folders}
        assert len(set(weights.values())) == 4  # seeds and domains give different models

        again = run_transfer(spec, store, progress=False)
    assert again.trained == 0 and again.evaluated == 0
    assert [c.mean for c in again.cells] == [c.mean for c in first.cells]
    assert [(g.gap, g.p_value) for g in again.gaps] == [(g.gap, g.p_value) for g in first.gaps]


def test_cli_writes_the_report_and_groups_seeds_in_the_leaderboard(
    tmp_path: Path, domains: dict[str, str], tiny_base_dir: Path
) -> None:
    import os

    env = {**os.environ, "BENCH_MODELS_DIR": str(tmp_path / "models")}
    out = tmp_path / "report"
    db = str(tmp_path / "cli.sqlite")
    args = [
        sys.executable, "-m", "bench", "transfer", "--no-progress", "--db", db,
        "--train-tasks", f"{domains['films']},{domains['meals']}",
        "--base", str(tiny_base_dir), "--seeds", "2", "--max-train", "30",
        "--epochs", "1", "--lr", "1e-3", "--batch-size", "8", "--max-length", "16",
        "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "4 model(s) trained" in proc.stdout and "### Gaps" in proc.stdout
    for name in ("transfer.md", "matrix.csv", "runs.csv", "gaps.csv", "heatmap.png"):
        assert (out / name).is_file(), name
    page = (out / "transfer.html").read_text()
    assert '<img class="heatmap"' in page and "data:image/png;base64," in page

    board = subprocess.run(
        [sys.executable, "-m", "bench", "leaderboard", "--db", db, "--group-seeds"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert board.returncode == 0, board.stderr
    grouped = [line for line in board.stdout.splitlines() if "(2 seeds)" in line]
    assert len(grouped) == 2 and all(" ± " in line for line in grouped)
    plain = subprocess.run(
        [sys.executable, "-m", "bench", "leaderboard", "--db", db],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert plain.stdout.count("#s0") == 2 and plain.stdout.count("#s1") == 2


def test_unmappable_labels_are_refused_before_training(
    tmp_path: Path, domains: dict[str, str], tiny_base_dir: Path
) -> None:
    import os

    folder = Path(domains["films"]).parent
    nli = _write_domain(folder, "pairs", "claim", ("entailment", "non-entailment"), 20)
    env = {**os.environ, "BENCH_MODELS_DIR": str(tmp_path / "models")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "transfer",
            "--no-progress",
            "--db",
            str(tmp_path / "x.sqlite"),
            "--train-tasks",
            domains["films"],
            "--test-tasks",
            f"{domains['films']},{nli}",
            "--base",
            str(tiny_base_dir),
            "--seeds",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert_user_error(proc, "cannot be tested on pairs", "label_aliases or label_map")
    assert not (tmp_path / "models").exists()  # nothing was trained


def test_label_mapping_declared_in_the_test_task_is_used(
    tmp_path: Path, domains: dict[str, str], tiny_base_dir: Path
) -> None:
    from bench.errors import SpecError
    from bench.store import ResultStore
    from bench.transfer import run_transfer

    folder = Path(domains["films"]).parent
    stars = _write_domain(folder, "stars", "show", ("low", "high"), 40)
    spec = _spec(domains, tiny_base_dir, train_tasks=[domains["films"]], seeds=[0])
    with ResultStore(tmp_path / "m.sqlite") as store:
        with pytest.raises(SpecError, match="cannot be tested on stars"):
            run_transfer(spec.model_copy(update={"test_tasks": [str(stars)]}), store)
        text = stars.read_text() + "label_aliases: {negative: low, positive: high}\n"
        stars.write_text(text)
        result = run_transfer(
            spec.model_copy(update={"test_tasks": [domains["films"], str(stars)]}),
            store,
            progress=False,
        )
    run = next(r for r in result.runs if r["test"] == "stars")
    with ResultStore(tmp_path / "m.sqlite") as store:
        record = store.get_run(run["run_key"])
    assert record is not None and record.label_mapping == {"negative": "low", "positive": "high"}


@pytest.mark.assets("bigbench")
def test_multiemo_labels_are_mapped_onto_two_classes() -> None:
    from collections import Counter

    from bench.tasks import get_task, load_task_data
    from bench.tasks.sources import read_bigbench

    item = get_task("multiemo_hotels")
    data = load_task_data(item.spec, item.base_dir)
    raw = Counter(r["label"] for r in read_bigbench(item.spec.source))  # type: ignore[arg-type]
    assert set(raw) == {"negative", "positive", "neutral", "ambivalent"}
    kept = sum(len(ex) for ex in data.splits.values())
    assert kept == raw["negative"] + raw["positive"]
    assert data.spec.labels == ["negative", "positive"]


def test_gap_statistics_find_a_real_gap_and_no_gap_when_there_is_none() -> None:
    from bench.transfer import transfer_stats

    rng = np.random.default_rng(0)

    def hits(rate: float, seeds: int = 3, n: int = 300) -> np.ndarray:
        return (rng.random((seeds, n)) < rate).astype(float)

    matrix = {
        ("a", "a"): hits(0.9),
        ("a", "b"): hits(0.6),
        ("a", "c"): hits(0.9),
    }
    _, gaps = transfer_stats(matrix, ["a"], ["a", "b", "c"])
    by_test = {g.test: g for g in gaps}
    real, none = by_test["b"], by_test["c"]
    assert real.low > 0 and real.p_value < 0.001 and real.seeds_positive == 3
    assert none.low < 0 < none.high and none.p_value > 0.05
    assert real.gap == pytest.approx(matrix["a", "a"].mean() - matrix["a", "b"].mean())
    # The cell CI covers its mean and is wider than a CI that ignored seed variation would be
    # for seeds that disagree.
    spread = {("x", "x"): np.vstack([hits(0.5, 1), hits(0.9, 1), hits(0.7, 1)])}
    (cell,), _ = transfer_stats(spread, ["x"], ["x"])
    assert cell.sd > 0.1 and cell.high - cell.low > 0.2


def test_heatmap_renders(tmp_path: Path) -> None:
    from PIL import Image

    from bench.report.transfer import heatmap
    from bench.transfer import TransferResult, TransferSpec, transfer_stats

    rng = np.random.default_rng(1)
    names = ["movies", "amazon", "nyt"]
    matrix = {
        (a, b): (rng.random((3, 100)) < (0.85 if a == b else 0.65)).astype(float)
        for a in names
        for b in names
    }
    cells, gaps = transfer_stats(matrix, names, names)
    spec = TransferSpec(train_tasks=names, test_tasks=names)
    path = heatmap(TransferResult(spec, cells, gaps), tmp_path / "h.png")
    with Image.open(path) as image:
        width, height = image.size
        pixels = np.asarray(image.convert("RGB"), dtype=float)
    assert width >= 400 and height >= 300
    # Not blank: many colours, and the grid is not one flat colour.
    assert pixels.std() > 20
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
