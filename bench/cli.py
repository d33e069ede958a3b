"""The ``bench`` command line.

Commands parse arguments into specs and call controllers; they hold no logic of their own. Heavy
libraries (torch, transformers, datasets) are imported inside commands so ``bench --help`` stays
instant. Every ``BenchError`` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import contextlib
import errno
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bench.errors import BenchError, shown

if TYPE_CHECKING:
    from bench.attacks.specs import AttackConfig
    from bench.specs import ModelSpec

app = typer.Typer(
    name="bench",
    help="Evaluate fine-tuned NLP models on pluggable tasks; store results; print leaderboards.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain text: docstrings are wrapped at the source's width, and rich mode would keep those
    # line breaks (ragged lines in --help) and read any [brackets] as markup.
    rich_markup_mode=None,
)
assets_app = typer.Typer(help="Pinned offline assets (models, data) fetched from PyPI.")
tasks_app = typer.Typer(help="Task definitions.")
app.add_typer(assets_app, name="assets")
app.add_typer(tasks_app, name="tasks")
export_app = typer.Typer(help="Export models (ONNX) and results (per-example rows).")
app.add_typer(export_app, name="export")
runs_app = typer.Typer(help="Stored runs: list, show, remove.")
app.add_typer(runs_app, name="runs")

DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db", help="Results database (SQLite). Default: $BENCH_DB or results/bench.sqlite."
    ),
]
TaskOption = Annotated[
    list[str], typer.Option("--task", "-t", help="Task name or YAML (repeatable).")
]
ModelOption = Annotated[
    list[str],
    typer.Option(
        "--model",
        "-m",
        help="Model: hub id, local folder, NAME=PATH, BACKEND:PATH, or a default model's name "
        "(repeatable).",
    ),
]
TasksDirOption = Annotated[
    list[Path] | None,
    typer.Option("--tasks-dir", help="Extra folder of task YAML files (repeatable)."),
]


def _echo(text: str) -> None:
    typer.echo(text)


# ------------------------------------------------------------------------------ option validation
# Options are checked before anything is loaded or computed, and reported by their command-line
# names (--batch-size, not batch_size).


def _option_error(exc: Any, options: dict[str, str] | None = None) -> BenchError:
    """A config's first validation error as ``--option: message``; ``options`` renames fields
    whose option is not simply ``--field-name`` (``limit`` is ``--attack-limit`` for run)."""
    first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    option = (options or {}).get(field, "--" + field.replace("_", "-"))
    return BenchError(f"{option}: {str(first['msg']).removeprefix('Value error, ')}")


def _check_device(device: str) -> None:
    """Device syntax (auto, cpu, cuda, cuda:N, mps), before a minute of loading; whether the
    device exists is checked when a model is put on it."""
    from bench.specs import check_device

    try:
        check_device(device)
    except ValueError as exc:
        raise BenchError(f"--device: {exc}") from None


def _at_least(minimum: int, **values: int | None) -> None:
    """Each given value is None or at least ``minimum``; keyword names are option names."""
    for name, value in values.items():
        if value is not None and value < minimum:
            option = "--" + name.replace("_", "-")
            raise BenchError(f"{option} must be at least {minimum}, got {value}")


def _check_seed(seed: int, option: str = "--seed") -> None:
    from bench.specs import SEED_MAX

    if not 0 <= seed <= SEED_MAX:
        raise BenchError(f"{option} must be between 0 and {SEED_MAX}, got {seed}")


# ------------------------------------------------------------------------------------------ assets


@assets_app.command("list")
def assets_list() -> None:
    """List the pinned assets and whether each is fetched."""
    from bench import assets

    for status in assets.list_assets():
        _echo(status.describe())


@assets_app.command(
    "fetch", short_help="Fetch pinned distributions with pip; verify their SHA-256."
)
def assets_fetch(
    names: Annotated[
        list[str] | None, typer.Argument(help="Assets to fetch (default: all).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Download and extract again.")] = False,
) -> None:
    """Download pinned distributions with pip, verify their SHA-256, extract what is needed."""
    from bench import assets

    for path in assets.fetch(names or None, force=force):
        _echo(str(path))


@assets_app.command("verify", short_help="Recheck extracted files against their recorded hashes.")
def assets_verify(
    names: Annotated[
        list[str] | None, typer.Argument(help="Assets to verify (default: fetched).")
    ] = None,
) -> None:
    """Recheck every extracted file against the hashes recorded at fetch time."""
    from bench import assets

    results = assets.verify(names or None)
    bad = [r for r in results if not r.ok]
    for r in results:
        _echo(r.describe())
    if bad:
        raise BenchError(
            f"{len(bad)} asset(s) failed verification: {', '.join(r.name for r in bad)}"
        )


# ------------------------------------------------------------------------------------------- tasks


@tasks_app.command("list", short_help="Known tasks: built-in, BENCH_TASKS_PATH and plug-ins.")
def tasks_list(tasks_dir: TasksDirOption = None) -> None:
    """List known tasks (built-in, BENCH_TASKS_PATH, plug-ins): version, domain, inputs, answers,
    and where the data comes from (a pinned asset, marked when it is not fetched yet)."""
    from bench import assets
    from bench.tasks import discover_tasks
    from bench.tasks.sources import source_asset, source_origin

    tasks = discover_tasks(tasks_dir or [])
    # Each asset checked once, however many tasks read it.
    needed = {source_asset(item.spec.source) for item in tasks.values()}
    missing = {name for name in needed if name is not None and not assets.is_fetched(name)}
    rows = []
    for name, item in sorted(tasks.items()):
        spec = item.spec
        inputs = "pair" if spec.is_pair else "text"
        answers = "/".join(spec.labels) if spec.labels else spec.kind.replace("_", " ")
        where = source_origin(spec.source)
        if source_asset(spec.source) in missing:
            where += " (not fetched)"
        rows.append((name, spec, inputs, answers, where))
    width = max((len(r[0]) for r in rows), default=0)
    answers_width = max((len(r[3]) for r in rows), default=0)
    for name, spec, inputs, answers, where in rows:
        _echo(
            f"{name:<{width}}  v{spec.version}  {spec.domain:<14} {inputs}  "
            f"{answers:<{answers_width}}  {where}"
        )


@tasks_app.command("show", short_help="A task's spec, split sizes, label counts and examples.")
def tasks_show(
    name: Annotated[str, typer.Argument(help="Task name or YAML path.")],
    tasks_dir: TasksDirOption = None,
    examples: Annotated[int, typer.Option(help="Also show N test examples.")] = 0,
) -> None:
    """Print a task's spec (YAML), the size and label counts of each split (this loads the
    data), and optionally a few test examples. A test split under 100 examples is warned about
    on stderr."""
    import yaml

    from bench.tasks import get_task, load_task_data
    from bench.tasks.examples import gold_answer
    from bench.tasks.loading import small_split_warning, split_summary

    _at_least(0, examples=examples)
    item = get_task(name, tasks_dir or [])
    _echo(f"# {item.origin}")
    _echo(yaml.safe_dump(item.spec.model_dump(mode="json"), sort_keys=False).rstrip())
    data = load_task_data(item.spec, item.base_dir)
    _echo(f"# data hash {data.data_hash[:16]}")
    for line in split_summary(data):
        _echo(f"# {line}")
    warning = small_split_warning(data, "test")
    if warning is not None:
        typer.echo(warning, err=True)
    for ex in data.splits.get("test", [])[:examples]:
        text = " ||| ".join(ex.inputs)
        _echo(f"[{gold_answer(item.spec, ex)}] {text[:200]}")


# ------------------------------------------------------------------------------------------ models


def parse_label_map(text: str | None) -> dict[str, str]:
    """``a=x,b=y`` -> {"a": "x", "b": "y"}."""
    if not text:
        return {}
    out: dict[str, str] = {}
    for part in text.split(","):
        if "=" not in part:
            raise BenchError(f"--label-map entry {shown(part, 40)} is not MODEL_LABEL=TASK_LABEL")
        src, dst = (p.strip() for p in part.split("=", 1))
        out[src] = dst
    return out


def parse_model(
    text: str, label_map: dict[str, str], trust_remote_code: bool, backend: str | None = None
) -> ModelSpec:
    """See :func:`bench.api.model_spec`."""
    from bench.api import model_spec

    return model_spec(text, label_map, trust_remote_code, backend)


BackendOption = Annotated[
    str | None,
    typer.Option(
        "--backend",
        help="Model backend: hf (transformers, default), onnx (an exported classifier) or "
        "served (a language model behind an OpenAI-compatible server, given as its /v1 URL); a "
        "model may also say it as a prefix, e.g. onnx:exports/sent or served:http://HOST:PORT/v1.",
    ),
]
ExecutorOption = Annotated[
    str, typer.Option(help="Where work runs: local (this process) or ray (Ray workers).")
]
WorkersOption = Annotated[
    int | None, typer.Option(help="With --executor ray: workers (default 2).")
]
RayAddressOption = Annotated[
    str | None,
    typer.Option(
        help="With --executor ray: an existing Ray cluster, HOST:PORT or auto (default: "
        "$RAY_ADDRESS, else start one here)."
    ),
]
ConfidenceOption = Annotated[
    float, typer.Option(help="Confidence level of the bootstrap intervals.")
]
BootstrapOption = Annotated[int, typer.Option(help="Bootstrap resamples for CIs.")]
DtypeOption = Annotated[str, typer.Option(help="auto, float32, bfloat16 or float16.")]
DeviceOption = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
MaxLengthOption = Annotated[int, typer.Option(help="Truncate inputs to this many tokens.")]
LabelMapOption = Annotated[
    str | None, typer.Option(help="Model label to task label: 'LABEL_0=negative,...'.")
]


# --------------------------------------------------------------------------------------------- run


@app.command("run", short_help="Evaluate models on tasks; causal LMs are prompted.")
def run(
    task: TaskOption,
    model: ModelOption,
    split: Annotated[str, typer.Option(help="Split to evaluate: train, dev or test.")] = "test",
    batch_size: Annotated[int, typer.Option(help="Starting batch size (halved on OOM).")] = 32,
    max_length: MaxLengthOption = 256,
    limit: Annotated[
        int | None, typer.Option(help="Evaluate a seeded sample of N examples.")
    ] = None,
    dtype: DtypeOption = "auto",
    device: DeviceOption = "auto",
    seed: Annotated[int, typer.Option(help="Seed for bootstrap CIs.")] = 0,
    n_bootstrap: BootstrapOption = 1000,
    confidence: ConfidenceOption = 0.95,
    label_map: LabelMapOption = None,
    trust_remote_code: Annotated[
        bool, typer.Option(help="Allow model code from the hub (off: code in data never runs).")
    ] = False,
    backend: BackendOption = None,
    suite: SuiteOption = None,
    attack_limit: Annotated[
        int | None, typer.Option(help="With --suite: attack a seeded sample of N examples.")
    ] = 100,
    query_budget: Annotated[
        int | None, typer.Option(help="With --suite: model queries allowed per example.")
    ] = None,
    masked_lm: MaskedLMOption = None,
    shots: Annotated[
        list[int] | None,
        typer.Option(
            "--shots",
            "-k",
            help="Causal LMs: solved examples in the prompt (repeatable, e.g. -k 0 -k 3; "
            "default: the task's).",
        ),
    ] = None,
    template: Annotated[
        list[int] | None,
        typer.Option(help="Causal LMs: prompt template number, from 1 (repeatable; default all)."),
    ] = None,
    chat_template: Annotated[
        bool, typer.Option(help="Causal LMs: wrap prompts in the model's chat template if any.")
    ] = True,
    adapter: Annotated[
        str,
        typer.Option(
            help="How models answer: auto (causal LMs are prompted, classifiers use their "
            "labels), causal, classifier, or nli (an NLI classifier answers zero-shot, one "
            "hypothesis per label)."
        ),
    ] = "auto",
    db: DbOption = None,
    tasks_dir: TasksDirOption = None,
    executor: ExecutorOption = "local",
    workers: WorkersOption = None,
    ray_address: RayAddressOption = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Evaluate every --model on every --task (then attack them with each --suite); results go
    to the store, tables to stdout. Causal LMs (e.g. --model smollm2) are posed each task as a
    prompt, at every --shots count and with every prompt template."""
    from pydantic import ValidationError

    from bench import api
    from bench.specs import EvalConfig, PromptConfig

    try:
        config = EvalConfig(
            split=split,  # type: ignore[arg-type]
            batch_size=batch_size,
            max_length=max_length,
            limit=limit,
            dtype=dtype,  # type: ignore[arg-type]
            device=device,
            seed=seed,
            n_bootstrap=n_bootstrap,
            confidence=confidence,
        )
        prompt_config = PromptConfig(
            split=split,  # type: ignore[arg-type]
            limit=limit,
            seed=seed,
            n_bootstrap=n_bootstrap,
            confidence=confidence,
            dtype=dtype,  # type: ignore[arg-type]
            chat_template=chat_template,
            batch_size=batch_size,
            device=device,
        )
    except ValidationError as exc:
        raise _option_error(exc) from None
    lm = parse_label_map(label_map)
    models = [parse_model(m, lm, trust_remote_code, backend) for m in model]
    attack_config = None
    if suite:
        attack_config = _attack_config(
            split, attack_limit or None, seed, query_budget, max_length, None, n_bootstrap,
            confidence, options={"limit": "--attack-limit"},
        )  # fmt: skip
    results = api.run(
        task,
        models,
        executor=api.executor(executor, workers, ray_address),
        db=db,
        adapter=adapter,
        eval_config=config,
        prompt_config=prompt_config,
        shots=shots,
        templates=template,
        suites=suite or (),
        attack_config=attack_config,
        masked_lm=masked_lm,
        tasks_dir=tasks_dir or [],
        progress=progress,
    )
    if suite:
        _echo(results.robustness_report())
    _echo(results.leaderboard("markdown"))


# ------------------------------------------------------------------------------------------ attack

SuiteOption = Annotated[
    list[str] | None,
    typer.Option("--suite", "-s", help="Attack suite: built-in name or YAML path (repeatable)."),
]
MaskedLMOption = Annotated[
    str | None,
    typer.Option("--masked-lm", help="Local masked-LM folder; enables BAE, BERT-Attack and CLARE."),
]


def _attack_config(
    split: str,
    limit: int | None,
    seed: int,
    query_budget: int | None,
    max_length: int,
    attack_column: list[str] | None,
    n_bootstrap: int,
    confidence: float = 0.95,
    options: dict[str, str] | None = None,
) -> AttackConfig:
    """The attack settings; a bad value is named by its option (``options`` renames fields,
    e.g. ``limit``, which ``bench run`` calls ``--attack-limit``)."""
    from pydantic import ValidationError

    from bench.attacks.specs import AttackConfig

    try:
        return AttackConfig(
            split=split,  # type: ignore[arg-type]
            limit=limit,
            seed=seed,
            query_budget=query_budget,
            max_length=max_length,
            attack_columns=attack_column or None,
            n_bootstrap=n_bootstrap,
            confidence=confidence,
        )
    except ValidationError as exc:
        raise _option_error(exc, options) from None


@app.command("attack", short_help="TextAttack suites against models; every example kept.")
def attack(
    task: TaskOption,
    model: ModelOption,
    suite: SuiteOption = None,
    split: Annotated[str, typer.Option(help="Split to attack: train, dev or test.")] = "test",
    limit: Annotated[
        int | None, typer.Option(help="Attack a seeded sample of N examples (0: all).")
    ] = 100,
    query_budget: Annotated[
        int | None, typer.Option(help="Model queries allowed per example (TextAttack's count).")
    ] = None,
    attack_column: Annotated[
        list[str] | None,
        typer.Option(
            help="Input column the attacks may change (default: the last, e.g. the "
            "hypothesis of an NLI pair; repeatable)."
        ),
    ] = None,
    masked_lm: MaskedLMOption = None,
    max_length: MaxLengthOption = 256,
    batch_size: Annotated[int, typer.Option(help="Model batch size for attack queries.")] = 64,
    concurrency: Annotated[
        int, typer.Option(help="Examples attacked together (their queries share batches).")
    ] = 16,
    seed: Annotated[int, typer.Option(help="Seed for sampling, attacks and CIs.")] = 0,
    n_bootstrap: BootstrapOption = 1000,
    confidence: ConfidenceOption = 0.95,
    dtype: DtypeOption = "auto",
    device: DeviceOption = "auto",
    label_map: LabelMapOption = None,
    trust_remote_code: Annotated[bool, typer.Option(help="Allow model code from the hub.")] = False,
    backend: BackendOption = None,
    db: DbOption = None,
    tasks_dir: TasksDirOption = None,
    show: Annotated[
        int, typer.Option(help="Print N successful adversarial examples per attack.")
    ] = 3,
    executor: ExecutorOption = "local",
    workers: WorkersOption = None,
    ray_address: RayAddressOption = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Run attack suites (TextAttack) against every --model on every --task."""
    from bench import api

    _check_device(device)
    _at_least(1, concurrency=concurrency, batch_size=batch_size)
    _at_least(0, show=show)
    config = _attack_config(
        split, limit or None, seed, query_budget, max_length, attack_column, n_bootstrap,
        confidence,
    )  # fmt: skip
    from bench.attacks.suites import load_suite

    suites = [load_suite(s) for s in (suite or ["quick"])]  # a bad suite file first
    lm = parse_label_map(label_map)
    models = [parse_model(m, lm, trust_remote_code, backend) for m in model]
    results = api.attack(
        models,
        task,
        suites,
        executor=api.executor(executor, workers, ray_address),
        db=db,
        masked_lm=masked_lm,
        batch_size=batch_size,
        concurrency=concurrency,
        device=device,
        dtype=dtype,
        progress=progress,
        tasks_dir=tasks_dir or [],
        **config.model_dump(),
    )
    _echo(results.robustness_report(show))


# ---------------------------------------------------------------------------------------- finetune


@app.command("finetune", short_help="Fine-tune a classifier on tasks' train splits (seeded).")
def finetune(
    task: Annotated[list[str], typer.Option("--task", "-t", help="Training task (repeatable).")],
    base: Annotated[str, typer.Option(help="Base encoder: hub id, local folder or 'minilm'.")],
    out: Annotated[Path, typer.Option(help="Output model folder.")],
    epochs: Annotated[int, typer.Option()] = 2,
    lr: Annotated[float, typer.Option()] = 1e-4,
    batch_size: Annotated[int, typer.Option()] = 32,
    max_length: Annotated[int, typer.Option()] = 128,
    seed: Annotated[int, typer.Option()] = 0,
    max_train: Annotated[
        int | None, typer.Option(help="Cap training examples per task (seeded sample).")
    ] = None,
    early_stopping: Annotated[
        int | None,
        typer.Option(
            metavar="PATIENCE",
            help="Stop once dev accuracy has not improved for PATIENCE epochs and keep the best "
            "epoch's weights (every task needs a dev split).",
        ),
    ] = None,
    lora_r: Annotated[
        int | None,
        typer.Option(
            metavar="R",
            help="Train rank-R LoRA adapters on the attention projections (and the new head) "
            "instead of every weight; merged before saving. Needs peft (the 'lora' extra).",
        ),
    ] = None,
    lora_alpha: Annotated[int, typer.Option(help="LoRA scaling alpha (with --lora-r).")] = 16,
    lora_dropout: Annotated[float, typer.Option(help="LoRA dropout (with --lora-r).")] = 0.1,
    tasks_dir: TasksDirOption = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Fine-tune a sequence classifier on the train split of one or more tasks (seeded)."""
    from bench.finetune import FinetuneConfig
    from bench.paths import check_output_dir
    from bench.training import finetune_on_tasks

    if lora_r is None and (lora_alpha != 16 or lora_dropout != 0.1):
        # Otherwise they would be ignored and the run would quietly train every weight.
        raise BenchError("--lora-alpha and --lora-dropout need --lora-r")
    _at_least(1, epochs=epochs, batch_size=batch_size, max_length=max_length)
    _at_least(1, max_train=max_train, early_stopping=early_stopping, lora_r=lora_r)
    _check_seed(seed)
    if not (math.isfinite(lr) and lr > 0):
        raise BenchError(f"--lr must be a positive number, got {lr}")
    check_output_dir(out, "--out")
    config = FinetuneConfig(
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        max_length=max_length,
        seed=seed,
        early_stopping_patience=early_stopping,
        lora_r=lora_r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
    )
    from bench.finetune import summary_line

    started = time.perf_counter()
    result = finetune_on_tasks(
        task, base, out, config, max_train, tasks_dir=tasks_dir or [], progress=progress
    )
    # Always, with or without progress: where the model went and how it did.
    _echo(summary_line(result, time.perf_counter() - started))


# ------------------------------------------------------------------------------------- leaderboard


@app.command("leaderboard", short_help="Models x tasks from the store, each cell with CI and n.")
def leaderboard(
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="markdown, csv, html, latex or json.")
    ] = "markdown",
    metric: Annotated[str, typer.Option(help="Metric shown in cells.")] = "accuracy",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to a file.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Also save a bar chart (PNG).")] = None,
    attacks: Annotated[
        bool,
        typer.Option(
            help="Add a column per attack beside each suite's (always on for csv and json)."
        ),
    ] = False,
    templates: Annotated[
        bool,
        typer.Option(
            help="Add a column per prompt template beside each shot count's (always on for "
            "csv and json)."
        ),
    ] = False,
    group_seeds: Annotated[
        bool,
        typer.Option(
            help="Fold models named NAME#s<seed> (as bench transfer trains them) into one row: "
            "mean ± sd across seeds."
        ),
    ] = False,
    n_bootstrap: Annotated[
        int, typer.Option(help="Bootstrap resamples for CIs (recomputed from stored rows).")
    ] = 1000,
    confidence: ConfidenceOption = 0.95,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    db: DbOption = None,
) -> None:
    """Rows = models, columns = tasks (task@suite: accuracy under attack; task@3shot: a causal
    LM prompted with 3 solved examples, mean over templates); each cell with its bootstrap 95%
    CI."""
    from bench.paths import check_output_file
    from bench.report.leaderboard import FORMATS, render
    from bench.report.leaderboard import group_seeds as group_seeds_rows
    from bench.report.leaderboard import plot as plot_rows
    from bench.store import open_store
    from bench.summary import result_rows

    if fmt not in FORMATS:
        raise BenchError(
            f"--format: unknown format {shown(fmt, 30)} (choose from {', '.join(FORMATS)})"
        )
    if db is not None and not db.exists():
        raise BenchError(f"results database {db} does not exist")
    if output is not None:
        check_output_file(output, "--output")
    if plot is not None:
        check_output_file(plot, "--plot")
    settings = _metric_settings(n_bootstrap, confidence, seed)
    with open_store(db) as store:
        kinds = ["eval", "suite", "prompt_set"]
        if attacks or fmt in ("csv", "json"):
            kinds.append("attack")
        if templates or fmt in ("csv", "json"):
            kinds.append("prompt")
        # Partial runs imported from submission bundles are never ranked (issue 14).
        records = store.latest_complete(kinds=kinds, ranked=True)
        shown_keys = {r.run_key for r in records}
        unranked = len({r.run_key for r in store.latest_complete(kinds=kinds)} - shown_keys)
        rows = result_rows(store, records, metric=metric, settings=settings)
        held: set[str] = set()
        if not rows:  # only to say what there is instead
            from bench.engine import run_metrics

            held = {n for r in records for n in run_metrics(store, r, settings)}
        # Baselines and flags stored beside the metrics, not metrics to rank by.
        held -= {"majority", "spread", "dominant_label", "dominant_share"}
    if not records and unranked:
        raise BenchError(
            f"results database {store.path} holds only partial runs imported from bundles, "
            "which are never ranked"
        )
    if not records:
        raise BenchError(
            f"results database {store.path} holds no completed runs; run `bench run` first"
        )
    if not rows:
        raise BenchError(
            f"no completed run has metric {metric!r}; the stored runs have: "
            f"{', '.join(sorted(held)) or 'no metrics'}"
        )
    if unranked > 0:
        typer.echo(
            f"note: {unranked} partial run(s) imported from bundles (a sample of their split) are "
            "not ranked",
            err=True,
        )
    if group_seeds:
        rows = group_seeds_rows(rows)
    text = render(rows, fmt, metric=metric)  # type: ignore[arg-type]
    try:
        if output is not None:
            output.write_text(text, encoding="utf-8")
            _echo(str(output))
        else:
            _echo(text)
        if plot is not None:
            _echo(str(plot_rows(rows, plot, metric=metric)))
    except OSError as exc:  # checked above; a full disk can still refuse the bytes
        raise BenchError(f"cannot write {exc.filename or output}: {exc.strerror or exc}") from None


def _metric_settings(n_bootstrap: int, confidence: float, seed: int) -> Any:
    from pydantic import ValidationError

    from bench.records import MetricSettings

    try:
        return MetricSettings(n_bootstrap=n_bootstrap, confidence=confidence, seed=seed)
    except ValidationError as exc:
        raise _option_error(exc) from None


# ---------------------------------------------------------------------------------------- transfer


def _task_list(values: list[str] | None) -> list[str] | None:
    """``--train-tasks a,b --train-tasks c`` -> [a, b, c]."""
    if not values:
        return None
    return [t.strip() for v in values for t in v.split(",") if t.strip()]


@app.command(
    "transfer", short_help="Train on A, test on B, over seeds: the domain-transfer matrix."
)
def transfer(
    suite: Annotated[
        str | None,
        typer.Option(help="Built-in transfer suite (tasks/transfer/) or YAML path."),
    ] = None,
    train_tasks: Annotated[
        list[str] | None, typer.Option(help="Training tasks, comma-separated (repeatable).")
    ] = None,
    test_tasks: Annotated[
        list[str] | None,
        typer.Option(help="Test tasks, comma-separated (default: the training tasks)."),
    ] = None,
    base: Annotated[
        str | None, typer.Option(help="Base encoder: hub id, local folder or 'minilm'.")
    ] = None,
    seeds: Annotated[
        int | None, typer.Option(help="Fine-tuning seeds 0..N-1 (one model per task and seed).")
    ] = None,
    max_train: Annotated[
        int | None, typer.Option(help="Training examples per task (seeded sample).")
    ] = None,
    eval_limit: Annotated[
        int | None, typer.Option(help="Test examples per task (seeded sample).")
    ] = None,
    epochs: Annotated[int | None, typer.Option()] = None,
    lr: Annotated[float | None, typer.Option()] = None,
    max_length: Annotated[int | None, typer.Option()] = None,
    batch_size: Annotated[int | None, typer.Option()] = None,
    early_stopping: Annotated[
        int | None, typer.Option(help="Stop after N epochs without a better dev accuracy.")
    ] = None,
    lora_r: Annotated[
        int | None, typer.Option(help="Train LoRA adapters of this rank (needs peft).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Report folder (default: reports/transfer/<suite name>)."),
    ] = None,
    device: DeviceOption = "auto",
    db: DbOption = None,
    tasks_dir: TasksDirOption = None,
    executor: ExecutorOption = "local",
    workers: WorkersOption = None,
    ray_address: RayAddressOption = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Fine-tune one model per (training task, seed), test each on every test task, and report
    the transfer matrix, the in-domain vs out-of-domain gaps and the spread across seeds."""
    from bench.paths import check_output_dir
    from bench.report.transfer import render_markdown, write_transfer_report
    from bench.specs import parse_spec
    from bench.store import ResultStore
    from bench.transfer import TransferSpec, load_transfer_suite, run_transfer

    _check_device(device)
    _at_least(1, seeds=seeds, max_train=max_train, eval_limit=eval_limit, epochs=epochs)
    _at_least(1, max_length=max_length, batch_size=batch_size)
    _at_least(1, early_stopping=early_stopping, lora_r=lora_r)
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise BenchError(f"--lr must be a positive number, got {lr}")
    if out is not None:
        check_output_dir(out, "--out")
    data: dict[str, object] = {}
    if suite is not None:
        data = load_transfer_suite(suite).model_dump(mode="json")
    elif not train_tasks:
        raise BenchError("name a --suite or give --train-tasks (and optionally --test-tasks)")
    trains, tests = _task_list(train_tasks), _task_list(test_tasks)
    if trains:
        data["train_tasks"] = trains
        # The name becomes the report folder: a task given as a path contributes its stem.
        data.setdefault(
            "name", "-".join(Path(t).stem if t.endswith((".yaml", ".yml")) else t for t in trains)
        )
    if tests:
        data["test_tasks"] = tests
    elif trains:
        data["test_tasks"] = trains
    overrides = {"base": base, "max_train": max_train, "eval_limit": eval_limit}
    data.update({k: v for k, v in overrides.items() if v is not None})
    if seeds is not None:
        data["seeds"] = list(range(seeds)) if seeds > 0 else []
    recipe = dict(data.get("recipe") or {})  # type: ignore[call-overload]
    recipe_overrides = {
        "epochs": epochs,
        "lr": lr,
        "max_length": max_length,
        "batch_size": batch_size,
        "early_stopping_patience": early_stopping,
        "lora_r": lora_r,
    }
    recipe.update({k: v for k, v in recipe_overrides.items() if v is not None})
    data["recipe"] = recipe
    spec = parse_spec(TransferSpec, data, "transfer", "a transfer suite")
    if out is None:
        check_output_dir(Path("reports") / "transfer" / spec.name, "the report folder")
    with ResultStore(db) as store:
        from bench.api import executor as make_executor

        result = run_transfer(
            spec,
            store,
            tasks_dir or [],
            progress=progress,
            device=device,
            executor=make_executor(executor, workers, ray_address),
        )
    folder = out if out is not None else Path("reports") / "transfer" / spec.name
    written = write_transfer_report(result, folder)
    _echo(render_markdown(result))
    _echo(
        f"{result.trained} model(s) trained, {result.evaluated} evaluation(s) computed, "
        f"{result.seconds:.1f} s; wrote {', '.join(str(p) for p in written)}"
    )


# ------------------------------------------------------------------------------------------ export


@export_app.command("onnx", short_help="Export a fine-tuned classifier to ONNX.")
def export_onnx(
    model: Annotated[
        str, typer.Option("--model", "-m", help="Classifier: local folder, hub id or NAME=PATH.")
    ],
    out: Annotated[
        Path, typer.Option(help="Folder to write (an earlier export there is replaced).")
    ],
    quantize: Annotated[
        str | None, typer.Option(help="int8: dynamic int8 quantisation of the weights.")
    ] = None,
    trust_remote_code: Annotated[bool, typer.Option(help="Allow model code from the hub.")] = False,
    progress: Annotated[bool, typer.Option(help="Say what was written.")] = True,
) -> None:
    """Export a fine-tuned classifier (with its tokenizer and labels) to ONNX, for
    --backend onnx (or an onnx: model prefix)."""
    from bench.backends.onnx import export_onnx as export

    if quantize not in (None, "int8"):
        raise BenchError(f"--quantize: unknown scheme {shown(quantize, 20)} (choose int8)")
    spec = parse_model(model, {}, trust_remote_code)
    _echo(str(export(spec, out, quantize, progress=progress)))  # type: ignore[arg-type]


@export_app.command("rows", short_help="Per-example rows of runs: JSONL, CSV or Parquet.")
def export_rows(
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write.")],
    run_key: Annotated[
        list[str] | None, typer.Option("--run", help="Run key or unique prefix (repeatable).")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model name.")] = None,
    task: Annotated[list[str] | None, typer.Option("--task", "-t", help="Task name.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="jsonl, csv or parquet.")] = "jsonl",
    db: DbOption = None,
) -> None:
    """Write the per-example rows of runs (every prediction, prompt or attacked example, with its
    run's key, model, task and column): named by --run, or the latest runs of --model on each
    --task."""
    from bench.api import run_rows_frame
    from bench.paths import check_output_file
    from bench.store import open_store

    formats = ("jsonl", "csv", "parquet")
    if fmt not in formats:
        raise BenchError(
            f"--format: unknown format {shown(fmt, 30)} (choose from jsonl, csv, parquet)"
        )
    if not run_key and model is None:
        raise BenchError("name runs with --run KEY, or a --model (and optionally --task)")
    check_output_file(out, "--out")
    with open_store(db) as store:
        if run_key:
            records = [_find_run(store, k) for k in run_key]
        else:
            records = [
                r
                for r in store.latest_complete(kinds=("eval", "prompt", "attack"), model=model)
                if not task or r.task in task
            ]
        frames = [f for f in (run_rows_frame(store, r) for r in records) if f is not None]
    if not frames:
        raise BenchError(
            f"no run in {store.path} with per-example rows matches (summaries have none)"
        )
    import pandas as pd

    frame = pd.concat(frames, ignore_index=True)
    try:
        if fmt == "jsonl":
            _write_jsonl(frame, out)
        elif fmt == "csv":
            _json_cells(frame).to_csv(out, index=False)
        else:
            frame.to_parquet(out, index=False)
    except OSError as exc:
        raise BenchError(f"--out {out}: {exc.strerror or exc}") from None
    _echo(f"{len(frame)} rows of {len(frames)} run(s) written to {out}")


def _json_cells(frame: Any) -> Any:
    """List and mapping cells (probabilities, logits, an attack's texts) as JSON, which any CSV
    reader can parse back; pandas wrote Python's repr (``['it''s', ...]``, ``array([...])``)."""
    import json

    import numpy as np

    def cell(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            value = value.tolist()
        if isinstance(value, list | tuple | dict):
            return json.dumps(value, ensure_ascii=False, default=_plain_number)
        return value

    out = frame.copy()
    for column in out.select_dtypes(include="object").columns:
        out[column] = out[column].map(cell)
    return out


def _write_jsonl(frame: Any, out: Path) -> None:
    """One JSON object per row, every number as Python writes it (shortest round-trip form):
    pandas' to_json kept 10 decimals, so a probability of 3e-12 became 0."""
    import json

    def plain(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return None
        return value

    with out.open("w", encoding="utf-8") as fh:
        for record in frame.to_dict(orient="records"):
            row = {k: plain(v) for k, v in record.items()}
            fh.write(json.dumps(row, ensure_ascii=False, default=_plain_number) + "\n")


def _plain_number(value: Any) -> Any:
    """numpy arrays and scalars, for json.dumps."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return value.item() if hasattr(value, "item") else str(value)


# -------------------------------------------------------------------------------------------- runs


def _find_run(store: Any, key: str) -> Any:
    """A run by key or unique prefix (at least 6 characters)."""
    if len(key) < 6:
        raise BenchError(f"run key {shown(key, 30)} is too short; give at least 6 characters")
    found = [r for r in store.runs(status=None) if r.run_key.startswith(key)]
    if not found:
        raise BenchError(f"no run {shown(key, 30)} in {store.path}")
    if len(found) > 1:
        raise BenchError(f"run key {shown(key, 30)} matches {len(found)} runs; give more of it")
    return found[0]


_HEADLINE = {
    "attack": "accuracy_under_attack",
    "suite": "accuracy_under_attack",
    # Audits (issue 15).
    "behave": "failure_rate",
    "explain": "similarity_mean",
}


@runs_app.command("list", short_help="One line per stored run.")
def runs_list(
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Runs asked for under this name.")
    ] = None,
    task: Annotated[str | None, typer.Option("--task", "-t", help="Task name.")] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option(
            help="eval, prompt, prompt_set, attack, suite, behave or explain (repeatable)."
        ),
    ] = None,
    status: Annotated[str, typer.Option(help="complete, running, failed or all.")] = "all",
    fmt: Annotated[str, typer.Option("--format", "-f", help="markdown or json.")] = "markdown",
    db: DbOption = None,
) -> None:
    """One line per stored run: key, kind, model, task, column, n, status and its headline
    figure (accuracy, or accuracy under attack) with its CI."""
    import json

    from bench.engine import run_metrics
    from bench.store import open_store

    statuses = ("complete", "running", "failed", "all")
    if status not in statuses:
        raise BenchError(f"--status: choose from {', '.join(statuses)}, not {shown(status, 20)}")
    if fmt not in ("markdown", "json"):
        raise BenchError(f"--format: choose markdown or json, not {shown(fmt, 20)}")
    kinds = ("eval", "prompt", "prompt_set", "attack", "suite", "behave", "explain")
    bad = [k for k in kind or [] if k not in kinds]
    if bad:
        raise BenchError(
            f"--kind: unknown kind {shown(bad[0], 20)} (choose from {', '.join(kinds)})"
        )
    rows: list[dict[str, Any]] = []
    with open_store(db) as store:
        records = store.runs(
            None if status == "all" else status, kinds=kind or None, model=model, task=task
        )
        for r in records:
            figure = None
            if r.status == "complete":
                name = _HEADLINE.get(r.kind, "accuracy")
                figure = run_metrics(store, r).get(name)
            rows.append(
                {
                    "run_key": r.run_key,
                    "kind": r.kind,
                    "model": ", ".join(store.names(r.run_key)) if model is None else r.model,
                    "task": r.task,
                    "column": r.column,
                    "split": r.split,
                    "n": r.n_examples,
                    "status": r.status,
                    "backend": r.backend,
                    "value": figure.value if figure else None,
                    "low": figure.low if figure else None,
                    "high": figure.high if figure else None,
                    "finished_at": r.finished_at,
                }
            )
    if fmt == "json":
        _echo(json.dumps(rows, indent=2))
        return
    if not rows:
        _echo("no runs match")
        return
    lines = [
        "| run | kind | model | task | column | n | status | figure [95% CI] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cell = "—"
        if row["value"] is not None:
            cell = f"{row['value']:.3f}"
            if row["low"] is not None:
                cell += f" [{row['low']:.3f}, {row['high']:.3f}]"
        lines.append(
            f"| {row['run_key']} | {row['kind']} | {_md(row['model'])} | {_md(row['task'])} | "
            f"{_md(row['column']) or '—'} | {row['n']} | {row['status']} | {cell} |"
        )
    _echo("\n".join(lines))


def _md(text: str) -> str:
    return text.replace("|", r"\|").replace("<", r"\<")


@runs_app.command("show", short_help="Everything stored about one run.")
def runs_show(
    key: Annotated[str, typer.Argument(help="Run key or unique prefix.")],
    db: DbOption = None,
) -> None:
    """Everything stored about one run: record, settings, names, members, error, metrics, key
    parts and provenance."""
    import dataclasses
    import json

    from bench.engine import run_metrics
    from bench.store import open_store

    with open_store(db) as store:
        r = _find_run(store, key)
        metrics = run_metrics(store, r) if r.status == "complete" else {}
        info = {
            "run_key": r.run_key,
            "kind": r.kind,
            "status": r.status,
            "error": r.error,
            "names": store.names(r.run_key),
            "task": r.task,
            "task_version": r.task_version,
            "task_hash": r.task_hash,
            "column": r.column,
            "split": r.split,
            "n_examples": r.n_examples,
            "model_path": r.model_path,
            "model_hash": r.model_hash,
            "backend": r.backend,
            "profile_hash": r.profile_hash,
            "label_names": r.label_names,
            "label_mapping": r.label_mapping,
            "config": r.config.to_json(),
            "members": list(r.members),
            "summarised_by": store.summaries_of(r.run_key),
            "harness_version": r.harness_version,
            "versions": r.versions,
            "created_at": r.created_at,
            "finished_at": r.finished_at,
            "compute_s": r.compute_s,
            "metrics": {
                n: {"value": m.value, "low": m.low, "high": m.high} for n, m in metrics.items()
            },
        }
        # Submission bundles (issue 14): what the key hashes, and where an imported run came from.
        info["key_parts"] = store.key_parts(r.run_key)
        source = store.provenance([r.run_key]).get(r.run_key)
        info["provenance"] = dataclasses.asdict(source) if source is not None else "local"
    _echo(json.dumps(info, indent=2, ensure_ascii=False))


@runs_app.command("rm", short_help="Remove runs with their rows, metrics and summaries.")
def runs_rm(
    keys: Annotated[list[str], typer.Argument(help="Run keys or unique prefixes.")],
    yes: Annotated[bool, typer.Option("--yes", help="Really remove them.")] = False,
    db: DbOption = None,
) -> None:
    """Remove runs with their rows and metrics (and the runs that depend on them: summaries
    that include them, explain runs of removed attack runs). Asks for --yes: nothing is
    removed without it."""
    from bench.store import open_store

    with open_store(db) as store:
        chosen = {_find_run(store, k).run_key for k in keys}
        # A suite or prompt set summarising a removed run would describe rows that are gone,
        # and an explain run would annotate an attack run that is gone: they go too.
        explains = [
            (r.run_key, getattr(r.config, "attack_run", ""))
            for r in store.runs(status=None, kinds=["explain"])
        ]
        summaries: set[str] = set()
        explained: set[str] = set()
        todo = set(chosen)
        while todo:
            gone = chosen | summaries | explained
            found_s = {s for k in todo for s in store.summaries_of(k)} - gone
            found_e = {e for e, source in explains if source in todo} - gone
            summaries |= found_s
            explained |= found_e
            todo = found_s | found_e
        doomed = sorted(chosen | summaries | explained)
        parts = [f"{len(summaries)} summary run(s) that include them"] if summaries else []
        if explained:
            parts.append(f"{len(explained)} explain run(s) of their attacks")
        extra = f" with {' and '.join(parts)}" if parts else ""
        if not yes:
            raise BenchError(
                f"this would remove {len(chosen)} run(s){extra}; pass --yes to remove them"
            )
        removed = store.delete_runs(doomed)
    detail = f" ({len(chosen)} named{extra})" if parts else ""
    _echo(f"removed {removed} run(s){detail}: {', '.join(doomed)}")


# ----------------------------------------------------------------------------------------- compare


@app.command(
    "compare", short_help="Two models on the same examples: paired difference and McNemar."
)
def compare(
    model: Annotated[
        list[str], typer.Option("--model", "-m", help="Baseline, then candidate (two names).")
    ],
    task: Annotated[list[str], typer.Option("--task", "-t", help="Task name (repeatable).")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="markdown or json.")] = "markdown",
    n_bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 1000,
    confidence: ConfidenceOption = 0.95,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    db: DbOption = None,
) -> None:
    """Two models on the same examples, from stored runs: per task, both accuracies, the
    difference with a paired bootstrap CI and p-value, and McNemar's exact/chi-square test."""
    import json

    from bench.compare import as_dict, compare_runs, latest_run, markdown
    from bench.store import open_store

    if len(model) != 2:
        raise BenchError(f"--model: give exactly two (baseline, candidate), not {len(model)}")
    if fmt not in ("markdown", "json"):
        raise BenchError(f"--format: choose markdown or json, not {shown(fmt, 20)}")
    settings = _metric_settings(n_bootstrap, confidence, seed)
    if settings.n_bootstrap < 1:
        raise BenchError("--n-bootstrap: a paired comparison needs at least 1 resample")
    with open_store(db) as store:
        results = []
        for name in task:
            kinds = ("eval", "prompt", "attack")
            a = latest_run(store, model[0], name, kinds)
            b = latest_run(store, model[1], name, kinds)
            results.append(compare_runs(store, a, b, settings))
    if fmt == "json":
        _echo(json.dumps([as_dict(c) for c in results], indent=2))
    else:
        _echo(markdown(results, settings.confidence))


# -------------------------------------------------------------------------------------------- gate


@app.command("gate", short_help="Regression gate: a paired test with a margin; exit 0/1/2.")
def gate(
    baseline: Annotated[
        str | None,
        typer.Option(help="Baseline model: a stored name, or NAME=PATH (needed with --run)."),
    ] = None,
    candidate: Annotated[
        str | None, typer.Option(help="Candidate model: a stored name, or NAME=PATH.")
    ] = None,
    task: Annotated[
        list[str] | None,
        typer.Option("--task", "-t", help="Check accuracy on this task (repeatable)."),
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(help="With --task: accuracy, macro_f1, ece or brier (repeatable)."),
    ] = None,
    suite: Annotated[
        list[str] | None,
        typer.Option("--suite", "-s", help="With --task: also check accuracy under attack."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Gate config (YAML).")
    ] = None,
    margin: Annotated[
        float | None, typer.Option(help="Non-inferiority margin (default: the config's, or 0).")
    ] = None,
    alpha: Annotated[float | None, typer.Option(help="Error rate per verdict.")] = None,
    n_bootstrap: Annotated[int | None, typer.Option(help="Bootstrap resamples.")] = None,
    seed: Annotated[int | None, typer.Option(help="Bootstrap seed.")] = None,
    inconclusive: Annotated[
        str | None, typer.Option(help="What an inconclusive blocking check does: fail or pass.")
    ] = None,
    run_missing: Annotated[
        bool, typer.Option("--run", help="Compute missing runs first, with identical settings.")
    ] = False,
    self_check: Annotated[
        bool,
        typer.Option(
            help="Gate the baseline against itself (and against --candidate, a retrained "
            "same-recipe model, when given) to see how often the gate flags a model that did not "
            "change; Markdown only, exit 1 when the gate would fail such a model."
        ),
    ] = False,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="markdown, json or junit (stdout).")
    ] = "markdown",
    junit: Annotated[Path | None, typer.Option(help="Also write JUnit XML here.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write JSON here.")] = None,
    db: DbOption = None,
    tasks_dir: TasksDirOption = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars (with --run).")] = True,
) -> None:
    """Does the candidate hold up against the baseline? Per check (task x metric, task x suite,
    prompted task), the paired difference with a bootstrap CI (clusters resampled together,
    seeds too), McNemar for accuracy, and a verdict by a non-inferiority margin. Exit code 0
    when every blocking check passes, 1 when one fails (or is inconclusive, by default), 2 for
    bad input; with --self-check, 1 when the gate would fail the unchanged model."""
    from bench.gate import report
    from bench.gate.spec import GateSpec, load_gate
    from bench.paths import check_output_file
    from bench.specs import parse_spec
    from bench.store import open_store

    if fmt not in ("markdown", "json", "junit"):
        raise BenchError(f"--format: choose markdown, json or junit, not {shown(fmt, 20)}")
    if self_check:
        # A report for a person deciding on margins, not a gate result for a CI system.
        for given, option in ((fmt != "markdown", "--format"), (json_out is not None, "--json"),
                              (junit is not None, "--junit")):  # fmt: skip
            if given:
                raise BenchError(f"--self-check prints Markdown only: leave out {option}")
    for path, option in ((junit, "--junit"), (json_out, "--json")):
        if path is not None:
            check_output_file(path, option)
    data: dict[str, Any] = {}
    if config is not None:
        # Errors after this point are prefixed with the config's name: its checks are the gate's.
        for listed, option in ((task, "--task"), (metric, "--metric"), (suite, "--suite")):
            if listed:
                raise BenchError(f"{option} with --config: put the checks in the config")
        data = load_gate(config).model_dump(mode="json", exclude_none=True)
    if task:
        data["checks"] = [
            {"task": t, "metric": m} for t in task for m in (metric or ["accuracy"])
        ] + [{"task": t, "suite": s} for t in task for s in suite or []]
    elif metric or suite:
        raise BenchError("--metric and --suite add checks to --task; give --task too")
    if not data.get("checks"):
        raise BenchError("name what to check: --task T (repeatable) or --config gate.yaml")
    overrides = {
        "baseline": baseline,  # so that JSON settings name the models gated
        "candidate": candidate,
        "margin": margin,
        "alpha": alpha,
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "inconclusive": inconclusive,
    }
    data.update({k: v for k, v in overrides.items() if v is not None})
    spec = parse_spec(GateSpec, data, str(config) if config else "gate options", "a gate")
    base_text = baseline or spec.baseline
    cand_text = candidate or spec.candidate
    if base_text is None or (cand_text is None and not self_check):
        raise BenchError("name the models: --baseline and --candidate (or in the config)")
    if run_missing:
        from bench.store import ResultStore

        store_ctx = ResultStore(db)
    else:
        store_ctx = open_store(db)
    with store_ctx as store:
        from bench.gate.run import ensure_runs, resolve_model

        base = resolve_model(store, base_text) if run_missing else None
        cand = resolve_model(store, cand_text) if run_missing and cand_text else None
        if run_missing:
            models = [m for m in (base, cand) if m is not None]
            ensure_runs(store, spec, models, tasks_dir or [], progress)
        base_name = base.name if base is not None else base_text.split("=", 1)[0]
        cand_name = (
            cand.name if cand is not None else (cand_text.split("=", 1)[0] if cand_text else None)
        )
        if self_check:
            text, code = _self_check(store, spec, base_name, cand_name, tasks_dir or [])
            _echo(text)
            if code:
                raise typer.Exit(code)
            return
        from bench.gate import run_gate

        assert cand_name is not None
        try:
            result = run_gate(store, spec, base_name, cand_name, tasks_dir or [])
        except BenchError as exc:
            if config is None:
                raise
            raise BenchError(f"{config}: {exc}") from None
    text = {"markdown": report.markdown, "json": report.to_json, "junit": report.junit}[fmt](result)
    _echo(text.rstrip("\n"))
    try:
        if junit is not None:
            junit.write_text(report.junit(result), encoding="utf-8")
        if json_out is not None:
            json_out.write_text(report.to_json(result), encoding="utf-8")
    except OSError as exc:
        raise BenchError(f"cannot write {exc.filename}: {exc.strerror or exc}") from None
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def _self_check(
    store: Any, spec: Any, baseline: str, retrained: str | None, tasks_dir: list[Path]
) -> tuple[str, int]:
    """The gate against an unchanged model: the baseline itself, and a retrained one; the
    report and the exit code (1 when the gate fails either, as each one's heading says)."""
    from bench.gate import report, run_gate

    parts = []
    code = 0
    for other, what in ((baseline, "itself"), (retrained, "a retrained same-recipe model")):
        if other is None:
            continue
        result = run_gate(store, spec, baseline, other, tasks_dir)
        code = max(code, result.exit_code)
        flagged = [c for c in result.checks if c.verdict != "pass"]
        failed = [c for c in result.checks if c.verdict == "fail"]
        parts.append(report.markdown(result))
        line = (
            f"Self-check, {baseline} against {what} ({other}): {len(failed)} of "
            f"{len(result.checks)} checks fail, {len(flagged)} do not pass; the gate "
            f"{'passes' if result.passed else 'fails'} it."
        )
        if flagged:
            line += (
                " A gate that flags an unchanged model will be rerun until it passes: widen the "
                "margin or add examples (see the inconclusive checks' notes)."
            )
        parts.append(line)
    return "\n\n".join(parts), code


# ----------------------------------------------------------------------------------------- default


@app.command("default", short_help="The main job: default models fine-tuned, evaluated, attacked.")
def default(
    db: DbOption = None,
    out: Annotated[Path, typer.Option(help="Folder for the report files.")] = Path(
        "reports/default"
    ),
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    limit: Annotated[
        int | None, typer.Option(help="Evaluate a seeded sample of N test examples per task.")
    ] = None,
) -> None:
    """The main job: fetch assets, fine-tune the default models once, evaluate, print the table."""
    from bench.defaults import run_default
    from bench.paths import check_output_dir

    _at_least(1, limit=limit)
    check_output_dir(out, "--out")
    _echo(run_default(db=db, out_dir=out, progress=progress, limit=limit))


# ------------------------------------------------------------------ submission bundles (issue 14)
# bench submit / validate / import, and export model-index / lm-eval. See docs/submissions.md.

# Problem lines validate prints before it says how many more there are.
_MAX_PROBLEM_LINES = 50


def _print_problems(problems: list[str]) -> None:
    from bench.errors import one_line

    for text in problems[:_MAX_PROBLEM_LINES]:
        typer.echo(f"error: {one_line(text)}", err=True)
    if len(problems) > _MAX_PROBLEM_LINES:
        more = len(problems) - _MAX_PROBLEM_LINES
        typer.echo(f"error: ... and {more} more problems", err=True)


def _check_bundle_args(rescore: int, seed: int, device: str) -> None:
    _at_least(0, rescore=rescore)
    _check_seed(seed)
    _check_device(device)


RescoreOption = Annotated[
    int,
    typer.Option(
        help="Also recompute N seeded random examples per run with the named model (0: none)."
    ),
]
RescoreModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="With --rescore: the model to load (local folder, NAME=PATH, default model name "
        "or hub id); its hash must be the bundle's. Default: the bundle's hub id or default "
        "model.",
    ),
]


@app.command("submit", short_help="Write a hash-pinned submission bundle of a model's stored runs.")
def submit(
    model: Annotated[
        str,
        typer.Option(
            "--model", "-m", help="The model: a name it was run under (or NAME=PATH with --run)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The bundle to write (NAME.zip).")],
    task: Annotated[
        list[str] | None,
        typer.Option("--task", "-t", help="Task name or YAML (repeatable; default: every task)."),
    ] = None,
    suite: Annotated[
        list[str] | None,
        typer.Option(
            "--suite", "-s", help="Attack suite to include (repeatable; default: every one)."
        ),
    ] = None,
    run_missing: Annotated[
        bool, typer.Option("--run", help="Compute missing runs first (needs --task).")
    ] = False,
    n_bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the CIs.")] = 1000,
    confidence: ConfidenceOption = 0.95,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    db: DbOption = None,
    tasks_dir: TasksDirOption = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars (with --run).")] = True,
) -> None:
    """Write a submission bundle of a model's stored runs (clean, prompted, under attack): a
    manifest with identities, settings, key parts and metrics with CIs, every per-example row
    under a Merkle root, file hashes, and model-index / lm-eval exports."""
    from bench.bundle.build import submit as build_bundle
    from bench.paths import check_output_file

    check_output_file(out, "--out")
    if out.suffix.lower() != ".zip":
        raise BenchError(f"--out {out}: a bundle is a .zip file")
    settings = _metric_settings(n_bootstrap, confidence, seed)
    manifest, _ = build_bundle(
        db,
        model,
        out,
        tasks=task or [],
        suites=suite or [],
        run_missing=run_missing,
        tasks_dir=tasks_dir or [],
        settings=settings,
        progress=progress,
    )
    rows = manifest["merkle"]["leaves"]
    partial = sum(1 for r in manifest["runs"] if r["partial"])
    note = f", {partial} partial (never ranked)" if partial else ""
    _echo(
        f"{out}: {len(manifest['runs'])} runs of {manifest['model']['name']} on "
        f"{len(manifest['tasks'])} task(s){note}, {rows} rows, Merkle root "
        f"{manifest['merkle']['root'][:16]}"
    )


BundleTaskOption = Annotated[
    list[str] | None,
    typer.Option(
        "--task",
        "-t",
        help="The local definition of a task the bundle names: name or YAML (repeatable; "
        "default: each task by name among the known tasks).",
    ),
]


@app.command("validate", short_help="Check submission bundles without trusting their submitter.")
def validate(
    bundles: Annotated[list[Path], typer.Argument(help="Bundles to check (NAME.zip).")],
    task: BundleTaskOption = None,
    rescore: RescoreOption = 0,
    model: RescoreModelOption = None,
    device: Annotated[str, typer.Option(help="With --rescore: auto, cpu, cuda, cuda:N or mps.")] = (
        "auto"
    ),
    seed: Annotated[int, typer.Option(help="With --rescore: seed of the examples drawn.")] = 0,
    tasks_dir: TasksDirOption = None,
) -> None:
    """Check bundles without trusting their submitter: schema, file hashes and Merkle root,
    completeness against the local tasks, metrics recomputed from the rows, settings, harness
    version; with --rescore N, N sampled examples per run recomputed with the named model.
    Every problem is one line (error: ...), then exit code 2; exit 0 when all are valid."""
    from bench.bundle.validate import validate as check

    _check_bundle_args(rescore, seed, device)
    problems: list[str] = []
    for path in bundles:
        report = check(
            path, tasks_dir=tasks_dir or [], tasks=task or [], rescore=rescore, model=model,
            device=device, seed=seed,
        )  # fmt: skip
        for note in report.notes:
            _echo(note)
        prefix = f"{path.name}: " if len(bundles) > 1 else ""
        problems += [prefix + p for p in report.problems]
        if report.ok:
            _echo(f"{path.name}: valid")
    if problems:
        _print_problems(problems)
        raise typer.Exit(2)


@app.command("import", short_help="Validate bundles and store their runs with their provenance.")
def import_bundles(
    bundles: Annotated[list[Path], typer.Argument(help="Bundles to import (NAME.zip).")],
    task: BundleTaskOption = None,
    rescore: RescoreOption = 0,
    model: RescoreModelOption = None,
    device: Annotated[str, typer.Option(help="With --rescore: auto, cpu, cuda, cuda:N or mps.")] = (
        "auto"
    ),
    seed: Annotated[int, typer.Option(help="With --rescore: seed of the examples drawn.")] = 0,
    db: DbOption = None,
    tasks_dir: TasksDirOption = None,
) -> None:
    """Validate bundles (every check of bench validate, and --rescore when given) and store
    their runs with their provenance (imported and hash-verified, or rescored). Nothing is
    written unless every bundle is valid."""
    from bench.bundle.importer import describe, import_report
    from bench.bundle.validate import validate as check
    from bench.store import ResultStore

    _check_bundle_args(rescore, seed, device)
    from bench.paths import check_output_file
    from bench.store import DEFAULT_DB, default_db_path

    # A store path that cannot be written is refused before the work; the store itself is
    # opened (created, migrated) only once every bundle is valid, so a refusal writes nothing.
    # The store creates the default store's folder (results/), and no other.
    target = db if db is not None else default_db_path()
    check_output_file(target, "--db", creates_folders=target in (default_db_path(), DEFAULT_DB))
    reports = []
    problems: list[str] = []
    for path in bundles:
        report = check(
            path, tasks_dir=tasks_dir or [], tasks=task or [], rescore=rescore, model=model,
            device=device, seed=seed,
        )  # fmt: skip
        reports.append(report)
        prefix = f"{path.name}: " if len(bundles) > 1 else ""
        problems += [prefix + p for p in report.problems]
    if problems:
        _print_problems(problems)
        raise typer.Exit(2)
    with ResultStore(db) as store:
        for report in reports:
            _echo(describe(import_report(store, report)))


def _interop_manifest(
    model: str | None,
    bundle: Path | None,
    task: list[str] | None,
    suite: list[str] | None,
    settings: Any,
    db: Path | None,
    tasks_dir: list[Path],
) -> dict[str, Any]:
    """The manifest data the exports are made from: a valid bundle's, or one drafted from the
    store's runs of ``model`` (as bench submit would write it)."""
    if (model is None) == (bundle is None):
        raise BenchError("name the results: --model M (from the store) or --bundle NAME.zip")
    if bundle is not None:
        from bench.bundle.validate import validate as check

        report = check(bundle, tasks_dir=tasks_dir, tasks=task or [])
        if not report.ok or report.manifest is None:
            raise BenchError(f"{bundle.name} is not a valid bundle: {report.problems[0]}")
        data: dict[str, Any] = report.manifest.model_dump(mode="json")
        return data
    from bench.attacks.suites import load_suite
    from bench.bundle.build import draft, load_tasks, select_runs
    from bench.store import open_store
    from bench.tasks import get_task

    assert model is not None
    suites = {s.name: s for s in (load_suite(t) for t in suite or [])}
    names = [get_task(t, tasks_dir).spec.name for t in task or []] or None
    with open_store(db) as store:
        records = select_runs(store, model, names, list(suites) if suites else None)
        if not records:
            raise BenchError(f"no completed runs of model {shown(model, 60)} in {store.path}")
        datas = load_tasks({r.task for r in records}, task or [], tasks_dir)
        return draft(store, records, datas, settings, suites).manifest


def _export_interop(
    kind: str,
    model: str | None,
    bundle: Path | None,
    task: list[str] | None,
    suite: list[str] | None,
    out: Path | None,
    n_bootstrap: int,
    confidence: float,
    seed: int,
    db: Path | None,
    tasks_dir: list[Path] | None,
) -> None:
    from bench.bundle import interop
    from bench.paths import check_output_file

    if out is not None:
        check_output_file(out, "--out")
    settings = _metric_settings(n_bootstrap, confidence, seed)
    data = _interop_manifest(model, bundle, task, suite, settings, db, tasks_dir or [])
    text = interop.model_index_yaml(data) if kind == "model-index" else interop.lm_eval_json(data)
    if out is None:
        _echo(text.rstrip("\n"))
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise BenchError(f"--out {out}: {exc.strerror or exc}") from None
    _echo(str(out))


_ExportModel = Annotated[
    str | None, typer.Option("--model", "-m", help="A model's stored runs (by name).")
]
_ExportBundle = Annotated[
    Path | None, typer.Option("--bundle", help="Or a bundle (validated first).")
]
_ExportTask = Annotated[
    list[str] | None, typer.Option("--task", "-t", help="With --model: task (repeatable).")
]
_ExportSuite = Annotated[
    list[str] | None, typer.Option("--suite", "-s", help="With --model: suite (repeatable).")
]
_ExportOut = Annotated[Path | None, typer.Option("--out", "-o", help="File (default: stdout).")]


@export_app.command("model-index", short_help="The model card's model-index YAML block.")
def export_model_index(
    model: _ExportModel = None,
    bundle: _ExportBundle = None,
    task: _ExportTask = None,
    suite: _ExportSuite = None,
    out: _ExportOut = None,
    n_bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the CIs.")] = 1000,
    confidence: ConfidenceOption = 0.95,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    db: DbOption = None,
    tasks_dir: TasksDirOption = None,
) -> None:
    """The model card's model-index YAML block (Hugging Face convention) of a model's runs:
    one result per leaderboard column, CIs and n in each metric's args."""
    _export_interop(
        "model-index", model, bundle, task, suite, out, n_bootstrap, confidence, seed, db,
        tasks_dir,
    )  # fmt: skip


@export_app.command("lm-eval", short_help="A results JSON shaped like lm-evaluation-harness's.")
def export_lm_eval(
    model: _ExportModel = None,
    bundle: _ExportBundle = None,
    task: _ExportTask = None,
    suite: _ExportSuite = None,
    out: _ExportOut = None,
    n_bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the CIs.")] = 1000,
    confidence: ConfidenceOption = 0.95,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    db: DbOption = None,
    tasks_dir: TasksDirOption = None,
) -> None:
    """A results JSON in the shape lm-evaluation-harness writes (results, configs, versions,
    n-shot, n-samples) of a model's runs."""
    _export_interop(
        "lm-eval", model, bundle, task, suite, out, n_bootstrap, confidence, seed, db, tasks_dir
    )


# ------------------------------------------------------------- end of submission bundles (issue 14)


# ----------------------------------------------------------------------- audits (issue 15): behave


def _behave_table(outcome: Any, rows: list[Any], show: int, confidence: float = 0.95) -> str:
    """Markdown: one line per test (failure rate with its CI), then failing cases."""
    from bench.audit.collect import wilson

    def rate(m: Any, n: int) -> str:
        cell = f"{m.value:.3f}"
        if m.low is not None and m.high is not None:
            cell += f" [{m.low:.3f}, {m.high:.3f}]"
            if m.low == m.high and n > 0:
                # No case failed (or every one did): every bootstrap resample gives the same
                # rate, a point; Wilson's interval says what n cases can rule out.
                low, high = wilson(m.value, n, confidence)
                cell += f" (Wilson [{low:.3f}, {high:.3f}])"
        return cell

    record = outcome.record
    metrics = outcome.metrics
    tests = getattr(record.config, "tests", [])
    conf = ""
    lines = [
        f"### {record.model} on {record.task}: behavioural suite {record.column.split('/', 1)[-1]}",
        "",
        "| test | type | capability | n | failure rate [CI] (lower is better) |",
        "|---|---|---|---|---|",
    ]
    for t in tests:
        m = metrics.get(f"failure_rate/{t['name']}")
        cell = "—" if m is None else rate(m, int(t["cases"]))
        lines.append(
            f"| {_md(t['name'])} | {t['type']} | {_md(t['capability'])} | {t['cases']} | {cell} |"
        )
    total = metrics.get("failure_rate")
    if total is not None:
        conf = rate(total, record.n_examples)
        lines.append(f"| **all cases** | | | {record.n_examples} | {conf} |")
    labels = record.label_names
    if show:
        lines.append("")
        for t in tests:
            failing = [r for r in rows if r.test == t["name"] and not r.passed][:show]
            for r in failing:
                text = " ||| ".join(r.inputs)
                after = f" -> {' ||| '.join(r.variant)}" if r.variant else ""
                want = f"expected {labels[r.expected]}, " if r.expected >= 0 else ""
                got = labels[r.pred] + (f" -> {labels[r.pred_variant]}" if r.variant else "")
                lines.append(f"- {_md(t['name'])}: {_md(text)}{_md(after)} ({want}got {got})")
    return "\n".join(lines) + "\n"


@app.command("behave", short_help="Behavioural tests (CheckList-style): failure rates, cases.")
def behave(
    task: TaskOption,
    model: ModelOption,
    suite: Annotated[
        str | None,
        typer.Option(
            "--suite",
            "-s",
            help="Behavioural suite: built-in name (sentiment, nli) or YAML path (default: the "
            "built-in one that fits the task's columns and labels).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of template expansion and CIs.")] = 0,
    show: Annotated[int, typer.Option(help="Print N failing cases per test.")] = 3,
    fmt: Annotated[str, typer.Option("--format", "-f", help="markdown or json.")] = "markdown",
    max_length: MaxLengthOption = 256,
    batch_size: Annotated[int, typer.Option(help="Model batch size.")] = 64,
    n_bootstrap: BootstrapOption = 1000,
    confidence: ConfidenceOption = 0.95,
    dtype: DtypeOption = "auto",
    device: DeviceOption = "auto",
    label_map: LabelMapOption = None,
    backend: BackendOption = None,
    db: DbOption = None,
    tasks_dir: TasksDirOption = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Run a behavioural test suite (CheckList-style: minimum functionality, invariance,
    directional expectations; templates and lexicons as YAML data) against every --model with
    each --task's labels; failure rate per test with a bootstrap CI, and failing cases. Results
    are stored like every other run."""
    import json

    from pydantic import ValidationError

    from bench.api import load_tasks
    from bench.audit.collect import choose_behave
    from bench.behave.runner import BehaveRunner
    from bench.behave.spec import load_behave_suite
    from bench.specs import EvalConfig
    from bench.store import ResultStore

    if fmt not in ("markdown", "json"):
        raise BenchError(f"--format: choose markdown or json, not {shown(fmt, 20)}")
    _check_device(device)
    _check_seed(seed)
    _at_least(0, show=show)
    try:
        config = EvalConfig(
            seed=seed, max_length=max_length, batch_size=batch_size, n_bootstrap=n_bootstrap,
            confidence=confidence, dtype=dtype, device=device,  # type: ignore[arg-type]
        )  # fmt: skip
    except ValidationError as exc:
        raise _option_error(exc) from None
    explicit = load_behave_suite(suite) if suite is not None else None
    lm = parse_label_map(label_map)
    models = [parse_model(m, lm, False, backend) for m in model]
    datas = load_tasks(task, tasks_dir or [])
    picked = {}
    for d in datas:
        chosen = choose_behave(d, explicit)
        if chosen is None:
            raise BenchError(
                f"no built-in behavioural suite fits task {shown(d.spec.name, 40)} (inputs "
                f"{', '.join(d.spec.inputs)}; labels {', '.join(d.spec.labels)}); pass --suite FILE"
            )
        picked[d.spec.name] = chosen
    parts = []
    payload = []
    with ResultStore(db) as store:
        runner = BehaveRunner(store, config, progress=progress)
        plans = [(runner.plan(d, m, *picked[d.spec.name])) for m in models for d in datas]
        for plan in plans:
            outcome = runner.run(plan)
            rows = store.behave_rows(outcome.record.run_key)
            parts.append(_behave_table(outcome, rows, show, confidence))
            payload.append(
                {
                    "model": outcome.record.model,
                    "task": outcome.record.task,
                    "run_key": outcome.record.run_key,
                    "suite": outcome.record.column.split("/", 1)[-1],
                    "cached": outcome.cached,
                    "tests": getattr(outcome.record.config, "tests", []),
                    "metrics": {
                        n: {"value": m.value, "low": m.low, "high": m.high}
                        for n, m in outcome.metrics.items()
                    },
                }
            )
    _echo(json.dumps(payload, indent=2) if fmt == "json" else "\n".join(parts))


# ------------------------------------------------------------------------ audits (issue 15): audit


@app.command("audit", short_help="A robustness audit: one HTML page and audit.json per task.")
def audit(
    model: Annotated[str, typer.Option("--model", "-m", help="The model audited.")],
    task: TaskOption,
    suite: SuiteOption = None,
    baseline: Annotated[
        str | None,
        typer.Option(help="A second model: every table shows both and the paired difference."),
    ] = None,
    behave_suite: Annotated[
        str | None,
        typer.Option(help="Behavioural suite (default: the built-in one that fits each task)."),
    ] = None,
    # A string, not a Path: Typer turns "" into Path("."), the current folder.
    out: Annotated[
        str | None,
        typer.Option(help="Report folder (default: reports/audit/<model>-<tasks>)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Attack a seeded sample of N test examples (0: all).")
    ] = 100,
    eval_limit: Annotated[
        int | None, typer.Option(help="Evaluate a seeded sample of N (default: the test split).")
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed for samples, attacks, templates, explanations and CIs.")
    ] = 0,
    query_budget: Annotated[
        int | None, typer.Option(help="Model queries allowed per attacked example.")
    ] = None,
    ig_budget: Annotated[
        int, typer.Option(help="Successful adversarial examples explained per attack.")
    ] = 10,
    ig_steps: Annotated[int, typer.Option(help="Integrated-gradients steps.")] = 50,
    similarity_threshold: Annotated[
        float, typer.Option(help="Report the share of adversarial examples this similar.")
    ] = 0.8,
    masked_lm: MaskedLMOption = None,
    max_length: MaxLengthOption = 256,
    batch_size: Annotated[int, typer.Option(help="Model batch size.")] = 64,
    concurrency: Annotated[
        int, typer.Option(help="Examples attacked together (their queries share batches).")
    ] = 16,
    n_bootstrap: BootstrapOption = 1000,
    confidence: ConfidenceOption = 0.95,
    dtype: DtypeOption = "auto",
    device: DeviceOption = "auto",
    label_map: LabelMapOption = None,
    backend: BackendOption = None,
    db: DbOption = None,
    tasks_dir: TasksDirOption = None,
    executor: ExecutorOption = "local",
    workers: WorkersOption = None,
    ray_address: RayAddressOption = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """A robustness audit of --model on each --task: computes what the store lacks (clean
    evaluation, attack suites, behavioural tests, similarity and integrated gradients of
    adversarial examples) and writes index.html (one self-contained page) and audit.json
    (every number) to --out."""
    from bench.audit import audit as run
    from bench.audit.collect import AuditOptions
    from bench.paths import check_output_dir

    _check_device(device)
    _check_seed(seed)
    if dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise BenchError(
            f"--dtype: choose auto, float32, bfloat16 or float16, not {shown(dtype, 20)}"
        )
    if out is not None:
        if not out.strip():
            raise BenchError("--out is empty; name the report folder")
        check_output_dir(Path(out), "--out")
    options = AuditOptions(
        suites=tuple(suite or ["quick"]),
        behave_suite=behave_suite,
        limit=limit or None,
        eval_limit=eval_limit,
        seed=seed,
        query_budget=query_budget,
        max_length=max_length,
        batch_size=batch_size,
        concurrency=concurrency,
        device=device,
        dtype=dtype,
        masked_lm=masked_lm,
        ig_budget=ig_budget,
        ig_steps=ig_steps,
        similarity_threshold=similarity_threshold,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
    )
    options.check()
    lm = parse_label_map(label_map)
    spec = parse_model(model, lm, False, backend)
    base = parse_model(baseline, lm, False, backend) if baseline is not None else None
    from bench.api import executor as make_executor

    result, written = run(
        spec, task, baseline=base, options=options, db=db, out=out, tasks_dir=tasks_dir or [],
        progress=progress, executor=make_executor(executor, workers, ray_address),
    )  # fmt: skip
    source = (
        "everything answered from the store"
        if result.computed == 0
        else f"{result.computed} rows computed, {result.cached} of {result.runs} runs from the store"
    )
    _echo(f"wrote {', '.join(str(p) for p in written)} ({source}; {result.seconds:.1f} s)")


# ------------------------------------------------------------------------------- end of audits


# -------------------------------------------------------------------------------------------- main


def _usage_error_types() -> tuple[type[Exception], ...]:
    """Click's exception base, as the installed Typer spells it: Typer >= 0.2x vendors click
    (``typer.TyperException``), older ones use click itself."""
    found: list[type[Exception]] = []
    vendored = getattr(typer, "TyperException", None)
    if isinstance(vendored, type) and issubclass(vendored, Exception):
        found.append(vendored)
    try:
        import click

        found.append(click.ClickException)
    except ImportError:  # pragma: no cover - a Typer that vendors click need not ship it
        pass
    return tuple(found)


def _command_path(exc: BaseException) -> str:
    """``bench run`` for an error raised while parsing ``run``'s options."""
    ctx = getattr(exc, "ctx", None)
    names: list[str] = []
    while ctx is not None:
        names.append(str(getattr(ctx, "info_name", "") or ""))
        ctx = getattr(ctx, "parent", None)
    # The root's info_name is however the program was started (python -m bench, bench, -c).
    return " ".join(["bench", *reversed(names[:-1])])


def _fail(message: str) -> None:
    from bench.errors import one_line

    # typer.echo writes to the sys.stderr of the moment (tests capture it).
    typer.echo(f"error: {one_line(message)}", err=True)
    sys.exit(2)


_PATH_ERRNOS = frozenset(
    {
        errno.ENAMETOOLONG, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ELOOP,
        errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC,
    }
)  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Console entry point: every user error becomes one line on stderr and exit code 2.

    Typer runs in non-standalone mode so that its usage errors (a non-numeric value, a missing or
    unknown option) reach this function instead of being drawn as a multi-line box; they are
    reported like our own ``BenchError``. ``--help`` prints help and exits 0; Ctrl-C exits 130.
    """
    usage_errors = _usage_error_types()
    terminated: list[int] = []
    try:
        with _sigterm_interrupts(terminated):
            code = app(args=argv, standalone_mode=False)
    except BenchError as exc:
        _fail(str(exc))
    except usage_errors as exc:
        format_message = getattr(exc, "format_message", None)
        message = str(format_message() if callable(format_message) else exc)
        if type(exc).__name__ == "NoArgsIsHelpError":
            # `bench` without arguments: its message is the help, asked for by implication.
            typer.echo(message)
            sys.exit(0)
        _fail(f"{message} (see '{_command_path(exc)} --help')")
    except OSError as exc:
        # The file system refusing a path the user gave, or its environment variables name
        # (too long, missing, a file where a folder must be, no permission, read-only, full),
        # wherever it was first touched: one line naming it. Other OS errors keep their
        # traceback.
        if exc.filename is None or exc.errno not in _PATH_ERRNOS:
            raise
        _fail(f"{exc.strerror or exc}: {shown(str(exc.filename), 100)}")
    except typer.Abort:
        # EOF on a prompt; Ctrl-C arrives as typer.Exit(130) below, as it always has.
        typer.echo("Aborted!", err=True)
        sys.exit(1)
    except typer.Exit as exc:  # pragma: no cover - non-standalone mode returns the code
        sys.exit(exc.exit_code)
    if isinstance(code, int) and not isinstance(code, bool) and code:
        # --help returns 0; an interrupted command returns 130 (143 for SIGTERM, as a shell
        # reports a process the signal ended).
        if code == 130:
            typer.echo(
                f"{'terminated' if terminated else 'interrupted'}: what was computed is stored; "
                "run the same command again to resume",
                err=True,
            )
            if terminated:
                sys.exit(143)
        sys.exit(code)


@contextlib.contextmanager
def _sigterm_interrupts(came: list[int]) -> Iterator[None]:
    """SIGTERM (a CI timeout, ``kill``, a container stopping) interrupts the command as Ctrl-C
    does: the run in progress is marked failed ('interrupted') and resumes when the command is
    run again. By default SIGTERM ended the process at once and left the run 'running' in the
    store with no process behind it. ``came`` gets the signal's number once it came; the
    previous handler is put back afterwards (tests call ``main`` in their own process)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def interrupt(signum: int, frame: object) -> None:
        came.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    main()
