"""``bench validate --rescore N``: recompute sampled examples with the model a bundle names.

The model is loaded from ``--model`` (a local folder, ``NAME=PATH``, a default model's name or a
hub id) or, without it, from the bundle's reference when that can be loaded here (a hub id at
the bundle's commit, or a built-in default model); its identity must be the bundle's. Each run
with rows is planned again through its own planner (``Evaluator``, ``PromptRunner``,
``AttackRunner``) with the run's settings, its key parts compared with the bundle's, and
``N`` examples drawn by a seeded random sample (per run: the seed and the run key) are run
through the engine into a temporary store, never the user's. Classifier probabilities and
logits, loglikelihoods and NLI scores must agree within ``TOLERANCE``; prompts, generated text,
extracted answers and every attack outcome (status, perturbed text, predictions, queries, words
changed) exactly. An attack's outcome for one example is deterministic given its seed (see
``bench.attacks.runner.example_seed``), whatever else is attacked with it.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import BenchError, shown

if TYPE_CHECKING:
    from bench.backends import ModelPool
    from bench.bundle.manifest import BundleManifest, RunInfo
    from bench.bundle.validate import Report
    from bench.engine import Engine, RunPlan
    from bench.specs import ModelSpec
    from bench.tasks.examples import TaskData

TOLERANCE = 1e-4


def _who(run: RunInfo) -> str:
    return f"rescore: run {run.key[:12]} ({shown(run.label, 50)})"


def model_spec_for(manifest: BundleManifest, model: str | None) -> ModelSpec:
    """The model to load: ``model`` as the command line takes it (run with the bundle's backend
    unless it names its own, ``onnx:PATH``), else the bundle's reference when it can name a
    model here. A BenchError says what to pass otherwise."""
    from bench import defaults
    from bench.api import DEFAULT_LM, model_spec
    from bench.specs import ModelSpec

    info = manifest.model
    named_backend = False
    if model is not None:
        try:
            spec = model_spec(model, backend=info.backend)
        except BenchError:
            # The text names another backend (onnx:PATH): the user's word, kept, so the identity
            # check says which model that is rather than reading the folder as the bundle's
            # backend. Any other error is raised again by this call.
            spec = model_spec(model)
            named_backend = True
    elif info.kind == "hub":
        spec = ModelSpec(name=info.name, path=info.reference, revision=info.hash)
    elif info.reference in defaults.DEFAULT_MODELS or info.reference == DEFAULT_LM:
        spec = model_spec(info.reference)
    else:
        raise BenchError(
            f"rescore: the bundle names a local model folder ({shown(info.reference, 40)}); pass "
            "--model PATH (its content hash must be the bundle's)"
        )
    if named_backend:
        return spec.model_copy(update={"name": info.name})
    return spec.model_copy(update={"name": info.name, "backend": info.backend})


def sample_rows(rows: Sequence[Any], n: int, seed: int, key: str) -> list[Any]:
    """The ``n`` rows of run ``key`` that a rescore with ``seed`` recomputes, in example order
    (all of them when there are fewer)."""
    chosen = random.Random(f"{seed}:{key}").sample(list(rows), min(n, len(rows)))
    return sorted(chosen, key=lambda r: r.idx)


def _dtype(run: RunInfo) -> str:
    dtype = run.config.get("dtype")
    return dtype if dtype in ("float32", "bfloat16", "float16") else "auto"


# Dtypes in which an example's numbers move with the examples batched beside it (padding, and
# the shapes the matrix kernels tile): such runs are recomputed in their own batches.
LOW_PRECISION = frozenset({"bfloat16", "float16"})


def _restrict(plan: RunPlan, idx: set[int] | None) -> RunPlan:
    if idx is None:
        return plan
    plan.examples = [ex for ex in plan.examples if ex.idx in idx]
    plan.record = replace(plan.record, n_examples=len(plan.examples))
    return plan


def _plan(
    run: RunInfo,
    task: TaskData,
    spec: ModelSpec,
    engine: Engine,
    idx: set[int] | None,
    device: str,
) -> RunPlan:
    """The run planned again with its own settings, restricted to the sampled examples ``idx``
    (None: all of them)."""
    from bench.records import AttackRunConfig, EvalRunConfig, PromptRunConfig, parse_config

    config = parse_config(run.kind, dict(run.config))
    parts_config = run.key_parts.get("config", {})
    label_map = run.key_parts.get("label_map") or {}
    spec = spec.model_copy(update={"label_map": dict(label_map)})
    common: dict[str, Any] = {
        "split": run.split,
        "limit": config.limit,
        "seed": config.seed,
        "device": device,
    }
    if isinstance(config, EvalRunConfig):
        from bench.runner import Evaluator
        from bench.specs import EvalConfig

        eval_config = EvalConfig(
            **common, dtype=_dtype(run), max_length=config.max_length or 256,  # type: ignore[arg-type]
            batch_size=config.batch_size or 32,
        )  # fmt: skip
        plan = Evaluator(engine.store, eval_config, progress=False, engine=engine).plan(task, spec)
        return _restrict(plan, idx)
    if isinstance(config, PromptRunConfig):
        from bench.prompt_runner import PromptRunner
        from bench.specs import PromptConfig

        prompt_config = PromptConfig(
            **common, dtype=_dtype(run), max_length=config.max_length,  # type: ignore[arg-type]
            chat_template=config.chat_template, batch_size=config.batch_size or 8,
        )  # fmt: skip
        runner = PromptRunner(engine.store, prompt_config, progress=False, engine=engine)
        adapter = "nli" if config.adapter == "nli" else "causal"
        (planned,) = runner.plan(task, [config.k], [config.template - 1], adapter)  # type: ignore[arg-type]
        keep = [j for j, ex in enumerate(planned.examples) if idx is None or ex.idx in idx]
        planned = replace(
            planned,
            examples=[planned.examples[j] for j in keep],
            requests=[planned.requests[j] for j in keep],
        )
        return runner.run_plan(planned, spec)
    if isinstance(config, AttackRunConfig):
        from bench.attacks.runner import AttackRunner
        from bench.attacks.specs import AttackConfig, AttackSpec, SuiteSpec

        if run.attack_spec is None:
            raise BenchError("the bundle does not carry this attack's spec")
        columns = parts_config.get("attack_columns") if isinstance(parts_config, dict) else None
        attack_config = AttackConfig(
            split=run.split,
            limit=config.limit,
            seed=config.seed,
            query_budget=config.query_budget,
            max_length=config.max_length or 256,
            attack_columns=columns,
        )
        attacker = AttackRunner(
            engine.store, attack_config, device=device, dtype=_dtype(run),
            batch_size=config.batch_size or 64, concurrency=config.concurrency or 16,
            progress=False, engine=engine,
        )  # fmt: skip
        attack = AttackSpec.model_validate(run.attack_spec)
        suite = SuiteSpec(name=config.suite or "bundle", attacks=[attack])
        (attack_plan,) = attacker.plan(task, suite)
        if attack_plan.profile != config.profile:
            raise BenchError(
                "the attack rebuilt here has another constraint profile than the bundle's "
                f"(profile {attack_plan.profile_hash} here, {run.profile_hash} in the bundle: other "
                "resources or TextAttack version)"
            )
        return _restrict(attacker.run_plan(task, spec, attack_plan), idx)
    raise BenchError(f"a {run.kind} run has no rows to rescore")


def _run_units_holding(engine: Engine, plan: RunPlan, idx: set[int]) -> None:
    """Every work unit of ``plan`` that holds an example of ``idx``, computed whole into the
    engine's store: each sampled example in the batch the submitter's run computed it in (units
    are a pure function of the plan). Recomputed alone, a bfloat16 run's greedy generations
    changed ('42 * 26 = 1048' bundled, '1080' recomputed), and honest bundles were refused."""
    from bench.engine.executors import LocalExecutor

    others = {pos for pos, ex in enumerate(plan.examples) if ex.idx not in idx}
    execution = LocalExecutor().start(plan, engine.models, others)
    engine.store.begin_run(execution.record)
    for rows in execution.rows:
        engine.store.add_rows(plan.kind.table, plan.key, rows)


def _floats_differ(a: Sequence[float], b: Sequence[float]) -> float | None:
    """The largest absolute difference, or None when within ``TOLERANCE``."""
    if len(a) != len(b):
        return float("inf")
    worst = max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0.0)
    return worst if worst > TOLERANCE else None


def _fmt(values: Sequence[float]) -> str:
    return (
        "["
        + ", ".join(f"{v:.4g}" for v in list(values)[:4])
        + (", ...]" if len(values) > 4 else "]")
    )


def disagreement(kind: str, bundled: Any, recomputed: Any) -> str | None:
    """How one recomputed row disagrees with the bundle's, or None."""
    if kind == "eval":
        worst = _floats_differ(bundled.probs, recomputed.probs)
        if worst is not None:
            return (
                f"probabilities {_fmt(bundled.probs)} in the bundle, {_fmt(recomputed.probs)} "
                f"recomputed (differ by {worst:.3g} > {TOLERANCE:g})"
            )
        worst = _floats_differ(bundled.logits, recomputed.logits)
        if worst is not None:
            return (
                f"logits {_fmt(bundled.logits)} in the bundle, {_fmt(recomputed.logits)} recomputed"
            )
        return None
    if kind == "prompt":
        if bundled.prompt != recomputed.prompt:
            return "its prompt is not the one the task and model build"
        if list(bundled.choices) != list(recomputed.choices):
            return "its answer choices are not the task's"
        worst = _floats_differ(bundled.scores, recomputed.scores)
        if worst is not None:
            return (
                f"scores {_fmt(bundled.scores)} in the bundle, {_fmt(recomputed.scores)} "
                f"recomputed (differ by {worst:.3g} > {TOLERANCE:g})"
            )
        if not bundled.choices and (
            bundled.output != recomputed.output or bundled.answer != recomputed.answer
        ):
            return (
                f"generated {shown(bundled.output, 40)} in the bundle, "
                f"{shown(recomputed.output, 40)} recomputed"
            )
        return None
    for name in (
        "status",
        "perturbed",
        "original_pred",
        "perturbed_pred",
        "queries",
        "words_changed",
    ):
        a, b = getattr(bundled, name), getattr(recomputed, name)
        if (list(a) if isinstance(a, list | tuple) else a) != (
            list(b) if isinstance(b, list | tuple) else b
        ):
            return f"attack {name} {shown(a, 40)} in the bundle, {shown(b, 40)} recomputed"
    for name in ("original_scores", "perturbed_scores"):
        worst = _floats_differ(getattr(bundled, name), getattr(recomputed, name))
        if worst is not None:
            return f"{name} differ by {worst:.3g} (> {TOLERANCE:g})"
    return None


def rescore(
    report: Report,
    n: int,
    *,
    model: str | None = None,
    device: str = "auto",
    seed: int = 0,
    tasks_dir: Sequence[Path] = (),
    pool: ModelPool | None = None,
) -> list[str]:
    """Recompute ``n`` sampled examples of every run with rows; the problems (one line each,
    the first disagreeing example of each run named). Notes go to ``report.notes``."""
    from bench.backends import ModelPool
    from bench.bundle.rows import KIND_TABLES
    from bench.engine import Engine
    from bench.records import MetricSettings
    from bench.store import ResultStore

    manifest = report.manifest
    assert manifest is not None
    try:
        spec = model_spec_for(manifest, model)
        pool = pool or ModelPool()
        identity = pool.identity(spec)
    except BenchError as exc:
        return [str(exc) if str(exc).startswith("rescore") else f"rescore: {exc}"]
    if identity.hash != manifest.model.hash or identity.backend != manifest.model.backend:
        return [
            f"rescore: the model at {shown(spec.path, 60)} is not the one the bundle names "
            f"({identity.backend} {identity.hash[:12]} here, {manifest.model.backend} "
            f"{manifest.model.hash[:12]} in the bundle)"
        ]
    problems: list[str] = []
    checked = 0
    with (
        tempfile.TemporaryDirectory(prefix="bench-rescore-") as tmp,
        ResultStore(Path(tmp) / "rescore.sqlite") as store,
    ):
        engine = Engine(
            store, models=pool, progress=False, metric_settings=MetricSettings(n_bootstrap=0)
        )
        for run in sorted(manifest.runs, key=lambda r: r.key):
            if run.kind not in KIND_TABLES:
                continue
            rows = report.rows.get(run.key, [])
            chosen = sample_rows(rows, n, seed, run.key)
            if not chosen:
                continue
            task = report.tasks[run.task]
            try:
                sampled = {r.idx for r in chosen}
                whole = _dtype(run) in LOW_PRECISION
                plan = _plan(run, task, spec, engine, None if whole else sampled, device)
            except BenchError as exc:
                problems.append(f"{_who(run)}: cannot be run again here ({exc})")
                continue
            assert plan.record.key_parts is not None
            mine = {k: v for k, v in plan.record.key_parts.items() if k not in ("harness", "model")}
            theirs = {k: v for k, v in run.key_parts.items() if k not in ("harness", "model")}
            if mine != theirs:
                differing = sorted(
                    k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k)
                )
                problems.append(
                    f"{_who(run)}: planned again here, its key part {differing[0]!r} differs "
                    "from the bundle's (other settings or task data)"
                )
                continue
            try:
                if whole:
                    _run_units_holding(engine, plan, sampled)
                else:
                    engine.run(plan)
            except BenchError as exc:
                problems.append(f"{_who(run)}: running it failed ({exc})")
                continue
            redone = {r.idx: r for r in store.rows(KIND_TABLES[run.kind], plan.key)}
            disagreeing = []
            for row in chosen:
                other = redone.get(row.idx)
                why = "not recomputed" if other is None else disagreement(run.kind, row, other)
                if why is not None:
                    disagreeing.append((row, why))
            checked += len(chosen)
            if disagreeing:
                row, why = disagreeing[0]
                problems.append(
                    f"{_who(run)}: example uid {row.uid} (idx {row.idx}) disagrees with model "
                    f"{shown(manifest.model.name, 40)}: {why}; {len(disagreeing)} of "
                    f"{len(chosen)} sampled examples disagree"
                )
    report.rescored = n
    if not problems:
        report.notes.append(
            f"rescored {checked} sampled examples (up to {n} per run, seed {seed}) with "
            f"{spec.path}: all agree (within {TOLERANCE:g}; exactly for prompts, generations "
            "and attack outcomes)"
        )
    return problems
