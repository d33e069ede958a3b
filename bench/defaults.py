"""The built-in default: two MiniLM classifiers fine-tuned once, evaluated on the built-in tasks.

No fine-tuned NLI or sentiment model ships anywhere offline, so the main job trains its own from the
MiniLM-L6 encoder asset and caches them under the asset cache, keyed by a hash of the recipe and the
training data. A second invocation finds the models and every result already in place.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.finetune import CARD_NAME
from bench.progress import console
from bench.specs import canonical_json, sha256_text
from bench.training import BASE_ASSET, models_root, train_on

if TYPE_CHECKING:
    from bench.assets import AssetSpec
    from bench.tasks.examples import TaskData


@dataclass(frozen=True)
class DefaultModel:
    name: str
    train_tasks: tuple[str, ...]
    labels: tuple[str, ...]
    eval_tasks: tuple[str, ...]
    # Per-task cap on training examples (seeded sample), so CPU fine-tuning stays in minutes.
    max_train_per_task: int | None
    recipe: dict[str, Any]
    # The data assets its training and evaluation tasks read (the encoder asset aside).
    assets: tuple[str, ...]


DEFAULT_MODELS: dict[str, DefaultModel] = {
    m.name: m
    for m in (
        # Measured on 2 cores (see docs/default-models.md): MiniLM-L6 stays at the majority
        # rate on 3-way vitaminc (3,000 pairs, 2 epochs, lr 1e-4) and on 3-way
        # presuppositions_as_nli (5 epochs), but learns epistemic_reasoning in 2 epochs at lr 1e-4.
        # So the default NLI model is 2-way and trained on epistemic_reasoning only; vitaminc and
        # presuppositions are evaluation tasks (collapsed to 2-way), where chance is a finding.
        DefaultModel(
            name="minilm-nli",
            train_tasks=("epistemic_reasoning",),
            labels=("entailment", "non-entailment"),
            eval_tasks=(
                "epistemic_reasoning",
                "analytic_entailment",
                "presuppositions_as_nli_2way",
                "vitaminc_2way",
            ),
            max_train_per_task=None,
            recipe={"epochs": 2, "lr": 1e-4, "batch_size": 32, "max_length": 128, "seed": 0},
            assets=("bigbench",),
        ),
        DefaultModel(
            name="minilm-sentiment",
            train_tasks=("vader_movies",),
            labels=("negative", "positive"),
            eval_tasks=("vader_movies", "vader_amazon", "vader_nyt", "vader_tweets"),
            max_train_per_task=4000,
            recipe={"epochs": 1, "lr": 1e-4, "batch_size": 32, "max_length": 64, "seed": 0},
            assets=("vader",),
        ),
    )
}


def _recipe_key(model: DefaultModel, data_hashes: list[str]) -> str:
    return sha256_text(
        canonical_json(
            {
                "train_tasks": model.train_tasks,
                "labels": model.labels,
                "cap": model.max_train_per_task,
                "recipe": model.recipe,
                "data": data_hashes,
                "base": BASE_ASSET,
            }
        )
    )[:12]


def trained_model_dir(model: DefaultModel) -> Path | None:
    """The newest trained folder of a default model, if any (without loading task data)."""
    found = sorted(
        (p for p in models_root().glob(f"{model.name}-*") if (p / CARD_NAME).is_file()),
        key=lambda p: p.stat().st_mtime,
    )
    return found[-1] if found else None


def ensure_default_model(model: DefaultModel, datas: Sequence[TaskData], progress: bool) -> Path:
    from bench.finetune import FinetuneConfig

    key = _recipe_key(model, [d.data_hash for d in datas])
    out = models_root() / f"{model.name}-{key}"
    if (out / CARD_NAME).is_file():
        return out
    console.print(f"[bold]fine-tuning[/] {model.name} on {', '.join(model.train_tasks)}")
    config = FinetuneConfig(**model.recipe)
    return train_on(
        datas, model.labels, BASE_ASSET, out, config, model.max_train_per_task, progress
    )


# The robustness column of the main job: this suite on a seeded sample of each model's
# training-domain test split (DeepWordBug, ~40 s per 100 NLI pairs on 2 CPU cores).
DEFAULT_SUITE = "typos"
DEFAULT_ATTACK_LIMIT = 100


def _attack_default(
    store: Any, data: TaskData, spec: Any, limit: int, progress: bool
) -> tuple[Any, int]:
    """The default suite against one default model; (the suite's summary record, examples
    attacked now)."""
    from bench.attacks.runner import AttackRunner
    from bench.attacks.specs import AttackConfig
    from bench.attacks.suites import load_suite

    runner = AttackRunner(store, AttackConfig(limit=limit), progress=progress)
    outcomes, summary = runner.run_suite(data, spec, load_suite(DEFAULT_SUITE))
    return summary.record, sum(o.attacked for o in outcomes)


def run_default(
    db: Path | None = None,
    out_dir: Path | None = None,
    progress: bool = True,
    limit: int | None = None,
    attack_limit: int | None = DEFAULT_ATTACK_LIMIT,
) -> str:
    """Fetch assets, train the default models if needed, evaluate them, attack them on their
    training domain, return the table.

    ``limit`` evaluates a seeded sample of each test split (a quick look; full splits otherwise);
    ``attack_limit`` is the sample the attack suite runs on (0 or None: no attacks).
    """
    from bench import assets
    from bench.report.leaderboard import plot, render
    from bench.runner import Evaluator
    from bench.specs import EvalConfig, ModelSpec
    from bench.store import ResultStore
    from bench.summary import result_rows
    from bench.tasks import get_task, load_task_data

    started = time.perf_counter()
    assets.fetch([BASE_ASSET], progress=progress)
    models, left_out = available_models(progress)
    if attack_limit:
        assets.fetch(["wordnet"], progress=progress)  # TextAttack's import needs NLTK data
    names = sorted({t for m in models for t in (*m.train_tasks, *m.eval_tasks)})
    datas = {}
    for name in names:
        item = get_task(name)
        datas[name] = load_task_data(item.spec, item.base_dir)
    records = []
    computed = 0
    with ResultStore(db) as store:
        evaluator = Evaluator(store, EvalConfig(limit=limit), progress=progress)
        for model in models:
            path = ensure_default_model(model, [datas[t] for t in model.train_tasks], progress)
            spec = ModelSpec(name=model.name, path=str(path))
            for task in model.eval_tasks:
                result = evaluator.evaluate(datas[task], spec)
                computed += result.computed
                records.append(result.record)
            if attack_limit:
                summary, attacked = _attack_default(
                    store, datas[model.train_tasks[0]], spec, attack_limit, progress
                )
                computed += attacked
                records.append(summary)
        rows = result_rows(store, records)
    table = render(rows, "markdown")
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for fmt, ext in (
            ("markdown", "md"),
            ("csv", "csv"),
            ("html", "html"),
            ("latex", "tex"),
            ("json", "json"),
        ):
            (out_dir / f"leaderboard.{ext}").write_text(render(rows, fmt), encoding="utf-8")  # type: ignore[arg-type]
        plot(rows, out_dir / "leaderboard.png")
    elapsed = time.perf_counter() - started
    source = "computed" if computed else "answered from the store"
    where = f"; reports in {out_dir}" if out_dir is not None else ""
    missing = "".join(f"\nleft out: {name}: {why}" for name, why in left_out.items())
    return f"{table}\n\n{len(records)} results ({source}) in {elapsed:.1f} s{where}{missing}"


def available_models(
    progress: bool = True,
    models: Sequence[DefaultModel] | None = None,
    manifest: list[AssetSpec] | None = None,
) -> tuple[list[DefaultModel], dict[str, str]]:
    """The default models whose data assets can be fetched, and why each other one cannot.

    A release deleted from the package index (``AssetUnavailableError``) leaves its models out,
    saying so, so that the rest of the main job still runs; any other fetch failure (no network,
    a hash mismatch) stops it. With none left there is nothing to run, which is an error.
    """
    from bench import assets
    from bench.errors import AssetUnavailableError

    kept: list[DefaultModel] = []
    left_out: dict[str, str] = {}
    for model in DEFAULT_MODELS.values() if models is None else models:
        try:
            assets.fetch(list(model.assets), progress=progress, manifest=manifest)
        except AssetUnavailableError as exc:
            left_out[model.name] = str(exc)
            console.print(f"note: {model.name} is left out: {exc}", markup=False, soft_wrap=True)
            continue
        kept.append(model)
    if not kept:
        raise AssetUnavailableError(next(iter(left_out.values())))
    return kept, left_out
