"""The library API: the README's Python example runs as written, and results come back typed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import _write_tokenizer

README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_python_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("### Using bench from Python", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the README's Python section has no python code block"
    return match.group(1)


def _sentiment_model(folder: Path) -> Path:
    """A tiny random 2-way classifier labelled like a sentiment model."""
    import torch
    from conftest import SPECIAL_TOKENS, TINY_WORDS
    from transformers import BertConfig, BertForSequenceClassification

    folder.mkdir(parents=True)
    torch.manual_seed(0)
    labels = ["negative", "positive"]
    config = BertConfig(
        vocab_size=len(SPECIAL_TOKENS) + len(TINY_WORDS),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=128,
        num_labels=2,
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
    )
    BertForSequenceClassification(config).save_pretrained(folder, safe_serialization=True)
    _write_tokenizer(folder)
    return folder


@pytest.mark.slow
def test_the_readme_python_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, torch_one_thread: None
) -> None:
    from bench import assets

    assets.fetch(["vader"], progress=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENCH_DB", str(tmp_path / "results.sqlite"))
    _sentiment_model(tmp_path / "models" / "sent")
    namespace: dict[str, object] = {}
    exec(compile(_readme_python_example(), "README.md", "exec"), namespace)

    results = namespace["results"]
    rows = namespace["rows"]
    metrics = namespace["metrics"]
    import pandas as pd

    from bench.api import Results

    assert isinstance(results, Results) and isinstance(rows, pd.DataFrame)
    evaluated = [o for o in results.outcomes if o.record.kind == "eval"]
    assert len(evaluated) == 2
    # One row per evaluated example, with its run's task and the per-example fields.
    assert len(rows) == sum(o.record.n_examples for o in evaluated)
    assert {"run_key", "model", "task", "idx", "uid", "label", "pred", "probs", "correct"} <= set(
        rows.columns
    )
    for o in evaluated:
        part = rows[rows["run_key"] == o.record.run_key]
        assert part["idx"].is_unique and len(part) == o.record.n_examples
        assert part["correct"].mean() == pytest.approx(o.metrics["accuracy"].value)
    assert isinstance(metrics, pd.DataFrame)
    acc = metrics[metrics["metric"] == "accuracy"]
    assert (
        len(acc) == 2 and (acc["low"] <= acc["value"]).all() and (acc["value"] <= acc["high"]).all()
    )
    # A second call is answered from the store.
    again = namespace["bench"].evaluate(  # type: ignore[attr-defined]
        ["sent=models/sent"], ["vader_movies", "vader_tweets"], limit=200
    )
    assert again.computed == 0 and all(o.cached for o in again.outcomes)


def test_api_refuses_bad_settings_in_one_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    import bench
    from bench.errors import BenchError

    with pytest.raises(BenchError, match="limit") as err:
        bench.evaluate([str(tiny_model_dir)], ["vader_movies"], limit=-3, db=tmp_path / "r.db")
    assert "\n" not in str(err.value)
    # 1 or 2 resamples gave intervals that missed their own point estimate.
    for n in (1, 2, 99, 10**9):
        with pytest.raises(BenchError, match=r"n_bootstrap.*0 .no intervals. or between 100"):
            bench.evaluate([str(tiny_model_dir)], ["x"], n_bootstrap=n, db=tmp_path / "r.db")


def test_the_leaderboard_of_a_call_shows_its_own_interval_settings(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """bench run's table (Results.leaderboard) showed 95 % intervals whatever --confidence."""
    from test_attack_runner import write_pair_task

    import bench

    task = write_pair_task(tmp_path, 60)
    results = bench.evaluate([f"tiny={tiny_model_dir}"], [task], db=tmp_path / "r.db",
                             device="cpu", confidence=0.5, n_bootstrap=200, seed=3)  # fmt: skip
    (acc,) = results.metrics_frame().query("metric == 'accuracy'").itertuples()
    assert f"{acc.value:.3f} [{acc.low:.3f}, {acc.high:.3f}]" in results.leaderboard()
    wide = bench.evaluate([f"tiny={tiny_model_dir}"], [task], db=tmp_path / "r.db", device="cpu")
    (w,) = wide.metrics_frame().query("metric == 'accuracy'").itertuples()
    assert w.high - w.low > acc.high - acc.low  # 95 % against 50 %: the setting took effect


def test_an_untrained_default_model_names_the_next_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`bench default` cannot train a model whose data is not fetched (and leaves it out when
    the index no longer offers the data): the message says to fetch first, naming the asset."""
    from bench import assets
    from bench.api import model_spec
    from bench.errors import BenchError

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("BENCH_MODELS_DIR", str(tmp_path / "models"))
    with pytest.raises(BenchError) as nli:
        model_spec("minilm-nli")
    assert str(nli.value) == (
        "default model 'minilm-nli' is not trained yet and its data asset 'bigbench' is not "
        "fetched; run `bench assets fetch bigbench`, then `bench default`"
    )
    folder = tmp_path / "vader"
    folder.mkdir()
    (folder / "movieReviewSnippets_GroundTruth.txt").write_text("1\t1.5\tfine\n")
    assets.install_tree(assets.get_spec("vader"), folder)
    with pytest.raises(BenchError) as sentiment:
        model_spec("minilm-sentiment")
    assert str(sentiment.value) == (
        "default model 'minilm-sentiment' is not trained yet; run `bench default`"
    )
