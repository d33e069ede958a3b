"""The library API: evaluate, prompt and attack from Python, with typed results.

Everything the command line does goes through here; the CLI only parses arguments and renders
what these functions return. Models are given as the CLI takes them (a hub id, a local folder,
``NAME=PATH``, a ``BACKEND:`` prefix, a built-in default model name) or as ``ModelSpec``; tasks
by name, YAML path, ``TaskSpec`` or loaded ``TaskData``. Results live in the store (``db``;
default ``$BENCH_DB`` or ``results/bench.sqlite``), so a repeated call answers from it.

    import bench
    res = bench.evaluate(["sent=path/to/model"], ["vader_movies"], limit=200)
    res.metrics_frame()   # one row per (run, metric) with its CI
    res.to_pandas()       # one row per evaluated example
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bench.errors import BenchError, shown

if TYPE_CHECKING:
    import pandas as pd

    from bench.attacks.specs import AttackConfig, SuiteSpec
    from bench.backends import ModelPool
    from bench.defaults import DefaultModel
    from bench.engine import Engine, RunOutcome
    from bench.engine.executors import Executor
    from bench.records import MetricSettings, RunRecord
    from bench.specs import EvalConfig, ModelSpec, PromptConfig, TaskSpec
    from bench.store import ResultStore
    from bench.tasks.examples import TaskData

Adapter = Literal["auto", "causal", "classifier", "nli"]
ADAPTERS: tuple[str, ...] = ("auto", "causal", "classifier", "nli")

# The built-in causal LM for prompting: SmolLM2-135M-Instruct from the pinned asset.
DEFAULT_LM = "smollm2"
DEFAULT_LM_NAME = "smollm2-135m-instruct"
_BACKEND_PREFIX = re.compile(r"^(?P<backend>[a-z][a-z0-9_]*):(?P<rest>.*)$")


# --------------------------------------------------------------------------------------------------
# Models and tasks from what a user writes


def model_spec(
    text: str,
    label_map: dict[str, str] | None = None,
    trust_remote_code: bool = False,
    backend: str | None = None,
) -> ModelSpec:
    """``NAME=PATH``, a local folder, a hub id, or a built-in default model name (a trained
    classifier, or ``smollm2`` for the default causal LM, converted on first use). ``PATH`` may
    start with ``BACKEND:`` (``onnx:exports/sent``); ``backend`` is the default otherwise."""
    from bench import defaults
    from bench.backends import backend_names
    from bench.paths import exists
    from bench.specs import ModelSpec

    name, path = text.split("=", 1) if "=" in text else ("", text)
    match = _BACKEND_PREFIX.match(path)
    chosen = backend
    if match is not None and match["backend"] in backend_names() and not exists(path):
        if backend is not None and backend != match["backend"]:
            raise BenchError(
                f"model {text!r} names backend {match['backend']!r} but --backend says {backend!r}"
            )
        chosen, path = match["backend"], match["rest"]
        if not path.strip():
            raise BenchError(f"model {text!r} names backend {chosen!r} and nothing after it")
    label_map = label_map or {}
    if path == DEFAULT_LM:
        from bench.models.gguf import default_causal_lm

        return ModelSpec(name=name or DEFAULT_LM_NAME, path=str(default_causal_lm()))
    if path in defaults.DEFAULT_MODELS:
        resolved = defaults.trained_model_dir(defaults.DEFAULT_MODELS[path])
        if resolved is None:
            raise BenchError(_untrained(defaults.DEFAULT_MODELS[path]))
        return ModelSpec(
            name=name or path, path=str(resolved), label_map=label_map, backend=chosen or "hf"
        )
    display = name or (Path(path).name if exists(path) else path)
    return ModelSpec(
        name=display,
        path=path,
        label_map=label_map,
        trust_remote_code=trust_remote_code,
        backend=chosen or "hf",
    )


def _untrained(model: DefaultModel) -> str:
    """Why a default model cannot be used yet, and the next step: `bench default` trains it,
    unless its data is not fetched, in which case fetching comes first (and says, in one line,
    when the index no longer offers the data: `bench default` would leave the model out)."""
    from bench import assets

    for name in model.assets:
        if not assets.is_fetched(name):
            return (
                f"default model {model.name!r} is not trained yet and its data asset {name!r} "
                f"is not fetched; run `bench assets fetch {name}`, then `bench default`"
            )
    return f"default model {model.name!r} is not trained yet; run `bench default`"


def _models(models: Iterable[str | ModelSpec]) -> list[ModelSpec]:
    from bench.specs import ModelSpec

    return [m if isinstance(m, ModelSpec) else model_spec(m) for m in models]


def load_tasks(
    tasks: Iterable[str | Path | TaskSpec | TaskData], tasks_dir: Sequence[Path] = ()
) -> list[TaskData]:
    """Tasks by name, YAML path, spec or already loaded; all resolved before any data is read,
    so a typo in the last one fails before the first is loaded."""
    from bench.specs import TaskSpec
    from bench.tasks import get_task, load_task_data
    from bench.tasks.examples import TaskData

    resolved: list[Any] = []
    for t in tasks:
        if isinstance(t, TaskData | TaskSpec):
            resolved.append(t)
        else:
            resolved.append(get_task(str(t), tasks_dir))
    out = []
    for item in resolved:
        if isinstance(item, TaskData):
            out.append(item)
        elif isinstance(item, TaskSpec):
            out.append(load_task_data(item))
        else:
            out.append(load_task_data(item.spec, item.base_dir))
    return out


def split_models(
    models: Sequence[ModelSpec], adapter: str, pool: ModelPool
) -> tuple[list[tuple[ModelSpec, Literal["causal", "nli"]]], list[ModelSpec]]:
    """(models posed prompts, with their adapter; classifiers evaluated with their labels).

    ``auto`` asks each model's backend from metadata alone: a language model is prompted,
    anything else is evaluated as a classifier. ``causal`` refuses a model that is not one
    before any weights are read.
    """
    if adapter not in ADAPTERS:
        from bench.errors import shown

        raise BenchError(
            f"unknown --adapter {shown(adapter, 40)} (choose from {', '.join(ADAPTERS)})"
        )
    prompted: list[tuple[ModelSpec, Literal["causal", "nli"]]] = []
    evaluated: list[ModelSpec] = []
    for m in models:
        if adapter == "causal":
            pool.require(m, "language_model")
            prompted.append((m, "causal"))
        elif adapter == "nli":
            prompted.append((m, "nli"))
        elif adapter == "classifier":
            evaluated.append(m)
        elif pool.model_type(m) == "language_model":
            prompted.append((m, "causal"))
        else:
            evaluated.append(m)
    return prompted, evaluated


# --------------------------------------------------------------------------------------------------
# Results


@dataclass
class Results:
    """The runs one call produced or found, in order, with the store they live in.

    ``outcomes`` holds every run (attack and template runs, then their suite and prompt-set
    summaries); ``db`` is the store, reopened read-only to read per-example rows.
    """

    db: Path
    outcomes: list[RunOutcome] = field(default_factory=list)
    # Per (model, task, suite): the attack outcomes and the suite's, for robustness reports.
    suites: list[tuple[str, str, list[RunOutcome], RunOutcome]] = field(default_factory=list)
    # The call's bootstrap settings: what its outcomes' metrics were computed with, and what
    # leaderboard() shows unless told otherwise (it showed the defaults' 95 % intervals).
    settings: MetricSettings | None = None

    @property
    def records(self) -> list[RunRecord]:
        return [o.record for o in self.outcomes]

    @property
    def computed(self) -> int:
        """Rows computed by this call (0: everything came from the store)."""
        return sum(o.computed for o in self.outcomes)

    def _open(self) -> ResultStore:
        from bench.store import ResultStore

        return ResultStore(self.db, readonly=True)

    def metrics_frame(self) -> pd.DataFrame:
        """One row per (run, metric): value, CI, n, and where the run shows on a leaderboard."""
        import pandas as pd

        rows = []
        for o in self.outcomes:
            rec = o.record
            for name, m in o.metrics.items():
                rows.append(
                    {
                        "run_key": rec.run_key,
                        "kind": rec.kind,
                        "model": rec.model,
                        "task": rec.task,
                        "column": rec.label,
                        "metric": name,
                        "value": m.value,
                        "low": m.low,
                        "high": m.high,
                        "n": rec.n_examples,
                    }
                )
        return pd.DataFrame(rows)

    def to_pandas(self) -> pd.DataFrame:
        """One row per example of every run that has per-example rows (evaluations, prompted
        templates, attacks), with the run's key, kind, model, task and column."""
        import pandas as pd

        frames = []
        with self._open() as store:
            for rec in self.records:
                frame = run_rows_frame(store, rec)
                if frame is not None:
                    frames.append(frame)
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True)

    def leaderboard(
        self,
        fmt: str = "markdown",
        metric: str = "accuracy",
        settings: MetricSettings | None = None,
    ) -> str:
        """These runs as a leaderboard table (summaries and clean runs, as ``bench run`` shows)."""
        from bench.report.leaderboard import render
        from bench.summary import result_rows

        shown = [r for r in self.records if r.kind in ("eval", "suite", "prompt_set")]
        with self._open() as store:
            rows = result_rows(store, shown, metric, settings or self.settings)
        return render(rows, fmt, metric=metric)  # type: ignore[arg-type]

    def robustness_report(self, show: int = 0) -> str:
        """Per (model, task, suite): the attacks' table and up to ``show`` adversarial
        examples per attack."""
        from bench.report.robustness import adversarial_examples, robustness_table

        parts = []
        with self._open() as store:
            for model, task, outcomes, summary in self.suites:
                runs = [(o.record, o.metrics) for o in [*outcomes, summary]]
                title = f"### {model} on {task}: suite {summary.record.column}"
                notes = []
                for o in outcomes:
                    n = o.record.n_examples
                    done = (
                        "answered from the store"
                        if o.cached
                        else f"{o.attacked} attacked now, {n - o.attacked} from the store"
                    )
                    notes.append(f"- {o.record.column}: {done}")
                    if show:
                        rows = store.attack_rows(o.record.run_key)
                        notes.extend(
                            "  " + line
                            for line in adversarial_examples(rows, o.record.label_names, show)
                        )
                parts.append(f"{title}\n\n{robustness_table(runs)}\n" + "\n".join(notes) + "\n")
        return "\n".join(parts)


def run_rows_frame(store: ResultStore, rec: RunRecord) -> pd.DataFrame | None:
    """A run's per-example rows as a frame (None for summary runs, which have none)."""
    import dataclasses

    import pandas as pd

    from bench.store import (
        ATTACK_TABLE,
        BEHAVE_TABLE,
        EXPLAIN_TABLE,
        PREDICTION_TABLE,
        PROMPT_TABLE,
        RowTable,
    )

    tables: dict[str, RowTable[Any]] = {
        "eval": PREDICTION_TABLE,
        "prompt": PROMPT_TABLE,
        "attack": ATTACK_TABLE,
        # Audits (issue 15).
        "behave": BEHAVE_TABLE,
        "explain": EXPLAIN_TABLE,
    }
    table = tables.get(rec.kind)
    if table is None:
        return None
    rows = [dataclasses.asdict(r) for r in store.rows(table, rec.run_key)]
    frame = pd.DataFrame(rows)
    if rec.kind == "eval" and not frame.empty:
        frame["correct"] = frame["pred"] == frame["label"]
    head = {
        "run_key": rec.run_key,
        "kind": rec.kind,
        "model": rec.model,
        "task": rec.task,
        "column": rec.label,
        "split": rec.split,
    }
    for i, (name, value) in enumerate(head.items()):
        frame.insert(i, name, value)
    return frame


# --------------------------------------------------------------------------------------------------
# Running


def _store(db: str | Path | None) -> ResultStore:
    from bench.store import ResultStore

    return ResultStore(Path(db) if db is not None else None)


def _engine(
    store: ResultStore, progress: bool, settings: MetricSettings, executor: Executor | None = None
) -> Engine:
    from bench.engine import Engine
    from bench.engine.executors import LocalExecutor

    return Engine(
        store, progress=progress, metric_settings=settings, executor=executor or LocalExecutor()
    )


def executor(name: str = "local", workers: int | None = None, address: str | None = None) -> Any:
    """``local`` (in this process) or ``ray`` (``workers`` Ray workers on an embedded instance,
    or the cluster at ``address``)."""
    from bench.engine.executors import LocalExecutor, RayExecutor

    if name == "local":
        if workers is not None or address is not None:
            raise BenchError("--workers and --ray-address need --executor ray")
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(workers=2 if workers is None else workers, address=address)
    raise BenchError(f"unknown --executor {shown(name, 20)} (choose local or ray)")


def run(
    tasks: Sequence[str | Path | TaskSpec | TaskData],
    models: Sequence[str | ModelSpec],
    *,
    db: str | Path | None = None,
    adapter: str = "auto",
    eval_config: EvalConfig | None = None,
    prompt_config: PromptConfig | None = None,
    shots: Sequence[int] | None = None,
    templates: Sequence[int] | None = None,
    suites: Sequence[str | SuiteSpec] = (),
    attack_config: AttackConfig | None = None,
    masked_lm: str | None = None,
    attack_batch_size: int = 64,
    concurrency: int = 16,
    tasks_dir: Sequence[Path] = (),
    progress: bool = False,
    executor: Executor | None = None,
) -> Results:
    """What ``bench run`` does: every classifier evaluated on every task, every language model
    posed every task as prompts (each shot count, each template), then every classifier
    attacked with every suite. Everything is resolved and planned before anything runs, so a
    bad task, template or attack fails before the first forward pass."""
    from bench.specs import EvalConfig, PromptConfig

    eval_config = eval_config or EvalConfig()
    prompt_config = prompt_config or PromptConfig()
    specs = _models(models)
    datas = load_tasks(tasks, tasks_dir)
    suite_specs = _suites(suites)
    if shots and min(shots) < 0:
        raise BenchError("--shots must be 0 or more")
    with _store(db) as store:
        engine = _engine(store, progress, eval_config.metric_settings(), executor)
        prompted, evaluated = split_models(specs, adapter, engine.models)
        for d in datas:
            if evaluated:
                d.spec.require_labels(f"evaluating classifier {evaluated[0].name}")
        prompt_runner = None
        plans: dict[tuple[str, str], Any] = {}
        if prompted:
            from bench.prompt_runner import PromptRunner

            prompt_runner = PromptRunner(store, prompt_config, engine=engine)
            chosen = [t - 1 for t in templates] if templates else None
            for kind in sorted({a for _, a in prompted}):
                for d in datas:
                    plans[kind, d.data_hash] = prompt_runner.plan(d, shots, chosen, kind)
        attack_runner = None
        if suite_specs:
            attack_runner = _attack_runner(
                store, engine, attack_config, masked_lm, eval_config, attack_batch_size, concurrency
            )
            for d in datas:  # refuse a bad attack before the evaluation starts
                for s in suite_specs:
                    attack_runner.plan(d, s)
        from bench.runner import Evaluator

        _warn_small_splits(datas, eval_config.split)
        evaluator = Evaluator(store, eval_config, engine=engine)
        results = Results(store.path, settings=engine.metric_settings)
        results.outcomes += [evaluator.evaluate(d, m) for m in evaluated for d in datas]
        if prompt_runner is not None:
            for m, kind in prompted:
                for d in datas:
                    outcomes, summaries = prompt_runner.run(m, plans[kind, d.data_hash])
                    results.outcomes += [*outcomes, *summaries]
        if attack_runner is not None:
            _attack_all(attack_runner, datas, evaluated, suite_specs, results)
        return results


def evaluate(
    models: Sequence[str | ModelSpec],
    tasks: Sequence[str | Path | TaskSpec | TaskData],
    *,
    db: str | Path | None = None,
    progress: bool = False,
    tasks_dir: Sequence[Path] = (),
    executor: Executor | None = None,
    **settings: Any,
) -> Results:
    """Every classifier on every task (``settings``: ``EvalConfig`` fields such as ``split``,
    ``limit``, ``max_length``, ``n_bootstrap``, ``confidence``, ``device``)."""
    from bench.specs import EvalConfig

    config = _config(EvalConfig, settings)
    return run(
        tasks, models, db=db, adapter="classifier", eval_config=config, tasks_dir=tasks_dir,
        progress=progress, executor=executor,
    )  # fmt: skip


def prompt(
    models: Sequence[str | ModelSpec],
    tasks: Sequence[str | Path | TaskSpec | TaskData],
    *,
    shots: Sequence[int] | None = None,
    templates: Sequence[int] | None = None,
    adapter: Literal["causal", "nli"] = "causal",
    db: str | Path | None = None,
    progress: bool = False,
    tasks_dir: Sequence[Path] = (),
    executor: Executor | None = None,
    **settings: Any,
) -> Results:
    """Every task posed to every language model as prompts, at each shot count and template
    (numbered from 1); ``settings``: ``PromptConfig`` fields."""
    from bench.specs import PromptConfig

    config = _config(PromptConfig, settings)
    return run(
        tasks, models, db=db, adapter=adapter, prompt_config=config, shots=shots,
        templates=templates, tasks_dir=tasks_dir, progress=progress, executor=executor,
    )  # fmt: skip


def attack(
    models: Sequence[str | ModelSpec],
    tasks: Sequence[str | Path | TaskSpec | TaskData],
    suites: Sequence[str | SuiteSpec] = ("quick",),
    *,
    db: str | Path | None = None,
    masked_lm: str | None = None,
    batch_size: int = 64,
    concurrency: int = 16,
    device: str = "auto",
    dtype: str = "auto",
    progress: bool = False,
    tasks_dir: Sequence[Path] = (),
    executor: Executor | None = None,
    **settings: Any,
) -> Results:
    """Every suite against every classifier on every task (``settings``: ``AttackConfig``
    fields such as ``limit``, ``seed``, ``query_budget``, ``attack_columns``)."""
    from bench.attacks.specs import AttackConfig
    from bench.specs import EvalConfig

    config = _config(AttackConfig, settings)
    # Cheapest first: a bad suite file is refused before any task data is read.
    suite_specs = _suites(suites)
    datas = load_tasks(tasks, tasks_dir)
    specs = _models(models)
    with _store(db) as store:
        engine = _engine(store, progress, config.metric_settings(), executor)
        runner = _attack_runner(
            store, engine, config, masked_lm, EvalConfig(device=device, dtype=dtype),  # type: ignore[arg-type]
            batch_size, concurrency,
        )  # fmt: skip
        results = Results(store.path, settings=engine.metric_settings)
        for data in datas:  # plans are cached: planning first refuses a bad attack up front
            for suite in suite_specs:
                runner.plan(data, suite)
        _warn_small_splits(datas, config.split)
        _attack_all(runner, datas, specs, suite_specs, results)
        return results


def _warn_small_splits(datas: Sequence[TaskData], role: str) -> None:
    """One stderr line per task whose split is under 100 examples (wide intervals, or a file
    split where it should not have been), once everything is planned."""
    import sys

    from bench.tasks.loading import small_split_warning

    for data in datas:
        warning = small_split_warning(data, role)  # type: ignore[arg-type]
        if warning is not None:
            sys.stderr.write(warning + "\n")


def _config(cls: Any, settings: dict[str, Any]) -> Any:
    from pydantic import ValidationError

    try:
        return cls(**settings)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = str(first["loc"][0]) if first.get("loc") else "settings"
        raise BenchError(f"{where}: {first['msg']}") from None


def _suites(suites: Sequence[str | SuiteSpec]) -> list[SuiteSpec]:
    from bench.attacks.specs import SuiteSpec
    from bench.attacks.suites import load_suite

    return [s if isinstance(s, SuiteSpec) else load_suite(s) for s in suites]


def _attack_runner(
    store: ResultStore,
    engine: Engine,
    config: AttackConfig | None,
    masked_lm: str | None,
    eval_config: EvalConfig,
    batch_size: int,
    concurrency: int,
) -> Any:
    from bench.attacks.runner import AttackRunner
    from bench.attacks.specs import AttackConfig

    if batch_size < 1 or concurrency < 1:
        raise BenchError("--concurrency and --batch-size must be at least 1")
    return AttackRunner(
        store,
        config or AttackConfig(),
        masked_lm=masked_lm,
        device=eval_config.device,
        dtype=eval_config.dtype,
        batch_size=batch_size,
        concurrency=concurrency,
        engine=engine,
    )


def _attack_all(
    runner: Any,
    datas: Sequence[TaskData],
    models: Sequence[ModelSpec],
    suites: Sequence[SuiteSpec],
    results: Results,
) -> None:
    """Plan everything (so a bad attack fails before any work), then run."""
    for data in datas:
        for suite in suites:
            runner.plan(data, suite)
    for model in models:
        for data in datas:
            for suite in suites:
                outcomes, summary = runner.run_suite(data, model, suite)
                results.outcomes += [*outcomes, summary]
                results.suites.append((model.name, data.spec.name, outcomes, summary))
