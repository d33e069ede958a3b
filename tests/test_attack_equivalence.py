"""Our attack runner against stock TextAttack: same attack, model, examples and seeds, same
per-example outcomes.

Stock runs ``Attacker`` one example at a time, seeded with the seed our runner gives that example
(our runner seeds per example so that resuming and batching across examples cannot change an
outcome). The stock side uses TextAttack's own recipe classes, not our compositions, so this also
checks that our recipes reproduce them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from attack_helpers import as_outcomes, load_task, run_ours, run_stock, sampled, stock_wrapper

N = 8
SENTIMENT = ("vader_movies", "minilm-sentiment")
# A near-constant classifier leaves nothing to compare (every attack fails or is skipped). The
# miniature NLI model trained where `bench default` has not run is one, so the NLI cases use the
# MiniLM encoder with a seeded random head: input-sensitive and the same on every machine.
NLI = ("epistemic_reasoning", "minilm-2way")


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
    task = load_task(task_name)
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
