"""Domain transfer: fine-tune on domain A, test on domain B, for every (A, B) and several seeds.

A transfer suite is data (``tasks/transfer/*.yaml`` or the command line): training tasks, test
tasks, a base encoder, seeds, a training cap and a fine-tuning recipe. The controller fine-tunes
one model per (training task, seed) into the model cache (keyed by everything that shapes its
weights, so a rerun trains nothing), evaluates each on every test task through the ordinary
evaluator (so a rerun evaluates nothing), and derives from the stored per-example predictions:

- the matrix: per (train, test) cell the mean accuracy over seeds, a CI from a two-level
  bootstrap (seeds, then examples, resampled together), and the standard deviation across seeds;
- the gap of each row: in-domain minus each out-of-domain accuracy, with a paired bootstrap test
  (the same models on both test sets; seeds resampled jointly for both, examples per test set);
- the spread across seeds, in-domain against out-of-domain.

Label spaces are declared in the task specs (label names, ``label_aliases``, ``label_map``); a test
task the training labels cannot be mapped onto is refused before anything is trained.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, field_validator

from bench.errors import SpecError, listing
from bench.progress import console
from bench.specs import Spec, canonical_json, check_name, sha256_text

if TYPE_CHECKING:
    import numpy as np

    from bench.engine.executors import Executor
    from bench.store import ResultStore
    from bench.tasks.examples import TaskData

N_BOOT = 2000


class TransferRecipe(Spec):
    """Fine-tuning settings shared by every model of a suite (the seed varies)."""

    epochs: int = Field(default=1, ge=1)
    lr: float = Field(default=1e-4, gt=0, allow_inf_nan=False)
    batch_size: int = Field(default=32, ge=1)
    max_length: int = Field(default=64, ge=8)
    early_stopping_patience: int | None = Field(default=None, ge=1)
    lora_r: int | None = Field(default=None, ge=1)


class TransferSpec(Spec):
    """A transfer experiment: every training task against every test task, over seeds."""

    name: str = "transfer"
    description: str = ""
    train_tasks: list[str] = Field(min_length=1)
    test_tasks: list[str] = Field(min_length=1)
    base: str = "minilm"
    # numpy seeds: 0 <= seed < 2**32.
    seeds: list[Annotated[int, Field(ge=0, le=2**32 - 1)]] = Field(
        default_factory=lambda: [0, 1, 2], min_length=1
    )
    # Training examples per task (a seeded sample); null: the whole train split.
    max_train: int | None = Field(default=2000, ge=1)
    # Test examples per task (a seeded sample); null: the whole test split.
    eval_limit: int | None = Field(default=None, ge=1)
    recipe: TransferRecipe = Field(default_factory=TransferRecipe)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        # The report folder is reports/transfer/NAME: "../x" or "/x" wrote anywhere.
        return check_name(value, "transfer suite")

    @field_validator("seeds", "train_tasks", "test_tasks")
    @classmethod
    def _distinct(cls, value: list[Any]) -> list[Any]:
        if len(set(value)) != len(value):
            raise ValueError(f"an entry is listed twice: {listing(value, 6)}")
        return value


def builtin_transfer_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "tasks" / "transfer"


def load_transfer_suite(name: str) -> TransferSpec:
    """A built-in suite by name (``tasks/transfer/NAME.yaml``) or a YAML file path."""
    import os

    from bench.errors import shown
    from bench.specs import parse_spec, read_yaml

    path = Path(name)
    separator = os.sep in name or (os.altsep is not None and os.altsep in name)
    if path.suffix.lower() in {".yaml", ".yml"} or separator:
        if path.is_dir():
            raise SpecError(f"transfer suite file {name} is a directory")
        if not path.exists():
            raise SpecError(f"transfer suite file {name} not found")
    else:
        path = builtin_transfer_dir() / f"{name}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in builtin_transfer_dir().glob("*.yaml"))
            raise SpecError(
                f"unknown transfer suite {shown(name, 60)}; built-in: {', '.join(known)} (or a "
                "YAML path)"
            )
    return parse_spec(TransferSpec, read_yaml(path, "transfer suite"), str(path), "a suite")


# ------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Cell:
    """One (train, test) pair over seeds."""

    train: str
    test: str
    per_seed: list[float]  # accuracy of each seed's model
    mean: float
    low: float
    high: float
    sd: float
    n: int  # test examples

    @property
    def in_domain(self) -> bool:
        return self.train == self.test


@dataclass(frozen=True)
class Gap:
    """In-domain minus out-of-domain accuracy of one training task's models."""

    train: str
    test: str
    gap: float
    low: float
    high: float
    p_value: float
    seeds_positive: int  # seeds whose own gap is > 0
    seeds: int


@dataclass
class TransferResult:
    spec: TransferSpec
    cells: list[Cell]
    gaps: list[Gap]
    # Long form: one row per (train, seed, test) with the run key and model folder.
    runs: list[dict[str, Any]] = field(default_factory=list)
    trained: int = 0
    evaluated: int = 0
    seconds: float = 0.0

    def cell(self, train: str, test: str) -> Cell:
        return next(c for c in self.cells if c.train == train and c.test == test)

    def spread(self) -> tuple[float | None, float | None]:
        """Mean seed standard deviation of in-domain and of out-of-domain cells."""

        def mean(values: list[float]) -> float | None:
            return sum(values) / len(values) if values else None

        ind = [c.sd for c in self.cells if c.in_domain]
        ood = [c.sd for c in self.cells if not c.in_domain]
        return mean(ind), mean(ood)


# ------------------------------------------------------------------------------------------------
# Statistics


def _cell_stats(hits: np.ndarray, seed: int) -> tuple[float, float, float]:
    """Mean accuracy over seeds and a two-level bootstrap CI (seeds and examples resampled)."""
    import numpy as np

    n_seeds, n = hits.shape
    rng = np.random.default_rng(seed)
    values = np.empty(N_BOOT)
    for b in range(N_BOOT):
        rows = rng.integers(0, n_seeds, n_seeds)
        cols = rng.integers(0, n, n)
        values[b] = hits[rows][:, cols].mean()
    low, high = np.percentile(values, [2.5, 97.5])
    return float(hits.mean()), float(low), float(high)


def _gap_stats(
    inside: np.ndarray, outside: np.ndarray, seed: int
) -> tuple[float, float, float, float]:
    """Gap, its CI and a two-sided bootstrap p-value for "no gap".

    Paired by model: a resample draws seeds once and uses each drawn seed's model on both test
    sets; examples are drawn independently from each test set (they are different examples).
    """
    import numpy as np

    n_seeds = inside.shape[0]
    rng = np.random.default_rng(seed)
    values = np.empty(N_BOOT)
    for b in range(N_BOOT):
        rows = rng.integers(0, n_seeds, n_seeds)
        a = rng.integers(0, inside.shape[1], inside.shape[1])
        o = rng.integers(0, outside.shape[1], outside.shape[1])
        values[b] = inside[rows][:, a].mean() - outside[rows][:, o].mean()
    gap = float(inside.mean() - outside.mean())
    low, high = np.percentile(values, [2.5, 97.5])
    # The share of resamples on the other side of zero, doubled; never reported as exactly 0.
    tail = min(float((values <= 0).mean()), float((values >= 0).mean()))
    p = max(min(1.0, 2 * tail), 1.0 / N_BOOT)
    return gap, float(low), float(high), p


def transfer_stats(
    hits: dict[tuple[str, str], np.ndarray],
    train_tasks: Sequence[str],
    test_tasks: Sequence[str],
    seed: int = 0,
) -> tuple[list[Cell], list[Gap]]:
    """Cells and gaps from per-(train, test) hit matrices of shape (seeds, examples)."""
    import numpy as np

    cells = []
    for train in train_tasks:
        for test in test_tasks:
            h = hits[train, test]
            mean, low, high = _cell_stats(h, seed)
            per_seed = [float(x) for x in h.mean(axis=1)]
            sd = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0
            cells.append(Cell(train, test, per_seed, mean, low, high, sd, h.shape[1]))
    gaps = []
    for train in train_tasks:
        if train not in test_tasks:
            continue
        inside = hits[train, train]
        for test in test_tasks:
            if test == train:
                continue
            outside = hits[train, test]
            gap, low, high, p = _gap_stats(inside, outside, seed)
            positive = int((inside.mean(axis=1) > outside.mean(axis=1)).sum())
            gaps.append(Gap(train, test, gap, low, high, p, positive, inside.shape[0]))
    return cells, gaps


# ------------------------------------------------------------------------------------------------
# The controller


def _model_name(base: str, train: str, seed: int) -> str:
    # "#s<seed>" is what `bench leaderboard --group-seeds` folds into one row.
    return f"{Path(base).name}@{train}#s{seed}"


def _check_tasks(spec: TransferSpec, datas: dict[str, TaskData]) -> list[str]:
    """The models' label set; refuses any task that cannot be trained on or tested."""
    from bench.errors import ModelError
    from bench.models.labels import align_labels

    first = datas[spec.train_tasks[0]].spec
    labels = list(first.labels)
    for name in [*spec.train_tasks, *spec.test_tasks]:
        datas[name].spec.require_labels("domain transfer")
    for name in spec.train_tasks[1:]:
        if sorted(datas[name].spec.labels) != sorted(labels):
            raise SpecError(
                f"training tasks must share one label set: {first.name} has {labels}, {name} has "
                f"{list(datas[name].spec.labels)}"
            )
    for name in spec.test_tasks:
        task = datas[name].spec
        try:
            align_labels(labels, list(task.labels), task.label_aliases)
        except ModelError:
            raise SpecError(
                f"a model trained on {first.name} (labels {', '.join(labels)}) cannot be tested on "
                f"{task.name} (labels {', '.join(task.labels)}): no label of one matches the "
                "other by name or alias; declare the mapping in the test task's spec "
                "(label_aliases or label_map)"
            ) from None
    return labels


def _model_dir(spec: TransferSpec, data: TaskData, labels: list[str], seed: int) -> Path:
    from bench.training import models_root

    key = sha256_text(
        canonical_json(
            {
                "base": spec.base,
                "train": data.data_hash,
                "labels": labels,
                "max_train": spec.max_train,
                "recipe": spec.recipe.model_dump(mode="json"),
                "seed": seed,
            }
        )
    )[:12]
    return models_root() / "transfer" / f"{Path(spec.base).name}-{data.spec.name}-s{seed}-{key}"


def run_transfer(
    spec: TransferSpec,
    store: ResultStore,
    tasks_dir: Sequence[Path] = (),
    progress: bool = True,
    device: str = "auto",
    executor: Executor | None = None,
) -> TransferResult:
    """Train what is missing, evaluate what is missing, and compute the matrix and gaps. With a
    Ray executor, the models of missing (training task, seed) pairs are fine-tuned on workers
    and the evaluations' work units run there too."""
    import numpy as np

    from bench.finetune import CARD_NAME, FinetuneConfig
    from bench.runner import Evaluator
    from bench.specs import EvalConfig, ModelSpec
    from bench.tasks import get_task, load_task_data
    from bench.training import train_on

    started = time.perf_counter()
    loaded = {}
    for given in dict.fromkeys([*spec.train_tasks, *spec.test_tasks]):
        item = get_task(given, tasks_dir)
        loaded[given] = load_task_data(item.spec, item.base_dir)
    # Tasks may be given as YAML paths; reports and model names use the tasks' own names.
    spec = spec.model_copy(
        update={
            "train_tasks": [loaded[t].spec.name for t in spec.train_tasks],
            "test_tasks": [loaded[t].spec.name for t in spec.test_tasks],
        }
    )
    datas = {d.spec.name: d for d in loaded.values()}
    if len(datas) != len(loaded):
        raise SpecError("two of the given tasks have the same name")
    labels = _check_tasks(spec, datas)
    if spec.eval_limit is None:
        for name in spec.test_tasks:
            datas[name].split("test")  # refuse a task without a test split before training

    from bench.engine import Engine
    from bench.engine.executors import LocalExecutor

    runner = executor or LocalExecutor()
    models: dict[tuple[str, int], ModelSpec] = {}
    jobs: list[tuple[Any, ...]] = []
    for train in spec.train_tasks:
        for seed in spec.seeds:
            out = _model_dir(spec, datas[train], labels, seed)
            if not (out / CARD_NAME).is_file():
                console.print(f"[bold]fine-tuning[/] {spec.base} on {train}, seed {seed}")
                config = FinetuneConfig(**spec.recipe.model_dump(), seed=seed)
                jobs.append(([datas[train]], labels, spec.base, out, config, spec.max_train,
                             progress and runner.name == "local"))  # fmt: skip
            models[train, seed] = ModelSpec(name=_model_name(spec.base, train, seed), path=str(out))
    # One job per (training task, seed): in turn here, or side by side on Ray workers.
    runner.map(train_on, jobs)
    trained = len(jobs)

    eval_config = EvalConfig(limit=spec.eval_limit, device=device)
    engine = Engine(
        store, progress=progress, metric_settings=eval_config.metric_settings(), executor=runner
    )
    evaluator = Evaluator(store, eval_config, engine=engine)
    hits: dict[tuple[str, str], np.ndarray] = {}
    runs: list[dict[str, Any]] = []
    evaluated = 0
    for train in spec.train_tasks:
        for test in spec.test_tasks:
            rows = []
            for seed in spec.seeds:
                result = evaluator.evaluate(datas[test], models[train, seed])
                evaluated += 0 if result.cached else 1
                preds = store.predictions(result.record.run_key)
                rows.append([p.pred == p.label for p in preds])
                runs.append(
                    {
                        "train": train,
                        "test": test,
                        "seed": seed,
                        "model": models[train, seed].name,
                        "accuracy": float(np.mean(rows[-1])),
                        "n": len(preds),
                        "run_key": result.record.run_key,
                        "model_path": models[train, seed].path,
                    }
                )
            hits[train, test] = np.array(rows, dtype=np.float64)
    cells, gaps = transfer_stats(hits, spec.train_tasks, spec.test_tasks)
    return TransferResult(
        spec, cells, gaps, runs, trained, evaluated, time.perf_counter() - started
    )
