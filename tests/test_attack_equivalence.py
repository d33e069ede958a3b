"""Our attack runner against stock TextAttack: same attack, model, examples and seeds, same
per-example outcomes.

Stock runs ``Attacker`` one example at a time, seeded with the seed our runner gives that example
(our runner seeds per example so that resuming and batching across examples cannot change an
outcome). The stock side uses TextAttack's own recipe classes, not our compositions, so this also
checks that our recipes reproduce them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from attack_helpers import as_outcomes, load_task, run_ours, run_stock, sampled, stock_wrapper

N = 8
SENTIMENT = ("vader_movies", "minilm-sentiment")
# A near-constant classifier leaves nothing to compare (every attack fails or is skipped). The
# miniature NLI model trained where `bench default` has not run is one, so the NLI cases use the
# MiniLM encoder with a seeded random head: input-sensitive and the same on every machine.
NLI = ("epistemic_reasoning", "minilm-2way")
# Pairs from an asset PyPI still offers, so that two-column attacks are compared in CI while the
# BIG-bench release is gone: a movie-review snippet (VADER) and a hypothesis about its sentiment,
# zero-shot classification posed as NLI.
PAIRS = ("vader_pairs", "minilm-2way")


@pytest.mark.slow
# Stock Attacker prints summary statistics even for one example; their empty means warn.
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize(
    ("recipe", "task_name", "model_name", "n", "dynamic"),
    [
        pytest.param("deepwordbug", *SENTIMENT, N, False, marks=pytest.mark.assets("vader")),
        pytest.param("deepwordbug", *NLI, N, False, marks=pytest.mark.assets("bigbench")),
        # PWWS queries every WordNet synonym of every word: the stock wrapper padded to the
        # maximum length would take minutes, so this one pads each batch to its longest text.
        pytest.param("pwws", *NLI, 6, True, marks=pytest.mark.assets("bigbench")),
        pytest.param("deepwordbug", *PAIRS, N, False, marks=pytest.mark.assets("vader")),
        pytest.param("pwws", *PAIRS, 6, True, marks=pytest.mark.assets("vader")),
    ],
)
def test_runner_outcomes_equal_stock_attacker(
    recipe: str,
    task_name: str,
    model_name: str,
    n: int,
    dynamic: bool,
    default_models: dict[str, Path],
    minilm_2way: Path,
    tmp_path: Path,
) -> None:
    task = _vader_pairs(tmp_path) if task_name == "vader_pairs" else load_task(task_name)
    model_dir = minilm_2way if model_name == "minilm-2way" else default_models[model_name]
    rows, _, _ = run_ours(tmp_path / "r.sqlite", task, model_dir, recipe, limit=n, concurrency=4)
    ours = as_outcomes(rows)
    columns = list(task.spec.inputs)
    stock, _ = run_stock(stock_wrapper(model_dir, 128, dynamic), recipe, sampled(task, n), columns)
    assert ours.keys() == stock.keys()
    assert ours == stock
    # The comparison means something only if the attacks did something.
    statuses = {status for status, _, _ in ours.values()}
    assert "succeeded" in statuses, statuses


def _vader_pairs(folder: Path) -> Any:
    """A two-column task of the test's own: the first 60 VADER movie test snippets, each with the
    hypothesis that its sentiment is positive or (alternately) negative; entailment when the
    human rating agrees."""
    import json

    from bench.tasks import get_task, load_task_data

    movies = load_task("vader_movies")
    with (folder / "pairs.jsonl").open("w") as fh:
        for i, example in enumerate(movies.splits["test"][:60]):
            claim = ("positive", "negative")[i % 2]
            truth = movies.spec.labels[example.label]
            fh.write(
                json.dumps(
                    {
                        "premise": example.inputs[0],
                        "hypothesis": f"The sentiment of this review is {claim}.",
                        "label": "entailment" if claim == truth else "non-entailment",
                    }
                )
                + "\n"
            )
    (folder / "pairs.yaml").write_text(
        "name: vader_pairs\nsource: {type: local, path: pairs.jsonl}\n"
        "inputs: [premise, hypothesis]\nlabels: [entailment, non-entailment]\n"
    )
    item = get_task(str(folder / "pairs.yaml"))
    return load_task_data(item.spec, item.base_dir)
