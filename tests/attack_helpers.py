"""Shared by the attack tests and benchmarks: stock TextAttack runs and our runner, side by side."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.attacks.runner import AttackRunner, example_seed
from bench.attacks.specs import AttackConfig, AttackSpec, SuiteSpec
from bench.specs import ModelSpec
from bench.store import AttackRow, ResultStore
from bench.tasks.examples import Example, TaskData

# Our recipe name -> the stock TextAttack recipe class it reproduces.
STOCK_RECIPES = {"deepwordbug": "DeepWordBugGao2018", "pwws": "PWWSRen2019"}


def load_task(name: str) -> TaskData:
    from bench.tasks import get_task, load_task_data

    item = get_task(name)
    return load_task_data(item.spec, item.base_dir)


def run_ours(
    db: Path,
    task: TaskData,
    model_dir: Path,
    recipe: str,
    *,
    limit: int,
    all_columns: bool = True,
    concurrency: int = 16,
    max_length: int = 128,
    query_budget: int | None = None,
) -> tuple[list[AttackRow], float, Any]:
    """Our runner on a seeded sample of ``task``'s test split; (rows, seconds, outcome)."""
    columns = list(task.spec.inputs) if all_columns else None
    config = AttackConfig(
        limit=limit,
        seed=0,
        max_length=max_length,
        attack_columns=columns,
        n_bootstrap=0,
        query_budget=query_budget,
    )
    suite = SuiteSpec(name="t", attacks=[AttackSpec(name=recipe, recipe=recipe)])
    model = ModelSpec(name=model_dir.name, path=str(model_dir))
    with ResultStore(db) as store:
        runner = AttackRunner(store, config, device="cpu", concurrency=concurrency, progress=False)
        runner.warm(model)  # load outside the timed part, as the stock side does
        started = time.perf_counter()
        outcomes, _ = runner.run_suite(task, model, suite)
        elapsed = time.perf_counter() - started
        rows = store.attack_rows(outcomes[0].record.run_key)
    return rows, elapsed, outcomes[0]


def stock_wrapper(model_dir: Path, max_length: int, dynamic: bool = False) -> Any:
    """TextAttack's ``HuggingFaceModelWrapper``; ``dynamic`` pads each batch to its longest text
    instead of to the tokenizer's maximum length (the one change a careful user would make)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bench.attacks.compat import load_textattack

    ta = load_textattack()
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.model_max_length = max_length

    class DynamicPadding(ta.models.wrappers.HuggingFaceModelWrapper):  # type: ignore[misc]
        def __call__(self, text_input_list: list[Any]) -> Any:
            inputs = self.tokenizer(
                text_input_list,
                add_special_tokens=True,
                padding=True,
                max_length=max_length,
                truncation=True,
                return_tensors="pt",
            )
            with torch.no_grad():
                return self.model(**inputs).logits

    cls = DynamicPadding if dynamic else ta.models.wrappers.HuggingFaceModelWrapper
    return cls(model, tokenizer)


def run_stock(
    wrapper: Any,
    recipe: str,
    examples: Sequence[Example],
    columns: list[str],
    query_budget: int | None = None,
) -> tuple[dict[str, tuple[str, list[str], int]], float]:
    """Stock ``Attacker`` per example, seeded as our runner seeds it: uid -> (status, perturbed
    columns, queries), and the seconds it took."""
    from bench.attacks.compat import load_textattack, nltk_downloads_blocked

    ta = load_textattack()
    # Stock WordNet swaps call nltk.download("omw-1.4") when built; offline that only fails.
    with nltk_downloads_blocked():
        attack = getattr(ta.attack_recipes, STOCK_RECIPES[recipe]).build(wrapper)
    out: dict[str, tuple[str, list[str], int]] = {}
    started = time.perf_counter()
    for ex in examples:
        text: Any = ex.inputs[0] if len(columns) == 1 else tuple(ex.inputs)
        dataset = ta.datasets.Dataset([(text, ex.label)], input_columns=columns)
        args = ta.AttackArgs(
            num_examples=1,
            random_seed=example_seed(0, ex.uid),
            query_budget=query_budget,
            silent=True,
            disable_stdout=True,
        )
        (result,) = ta.Attacker(attack, dataset, args).attack_dataset()
        if isinstance(result, ta.attack_results.SuccessfulAttackResult):
            status = "succeeded"
        elif isinstance(result, ta.attack_results.SkippedAttackResult):
            status = "skipped"
        else:
            status = "failed"
        after = result.perturbed_result.attacked_text
        out[ex.uid] = (
            status,
            [after._text_input[c] for c in columns],
            int(result.perturbed_result.num_queries),
        )
    return out, time.perf_counter() - started


def as_outcomes(rows: Sequence[AttackRow]) -> dict[str, tuple[str, list[str], int]]:
    return {r.uid: (r.status, list(r.perturbed), r.queries) for r in rows}


def sampled(task: TaskData, limit: int) -> list[Example]:
    from bench.tasks.loading import sample_examples

    return sample_examples(task.split("test"), limit, 0)
