"""``bench gate --run``: compute the runs a gate needs that are not stored yet, with the settings
of the other model's stored run when there is one (so the two pair), else the gate's."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.gate.checks import choose_pair, find_runs
from bench.gate.spec import CheckSpec, GateSpec
from bench.records import AttackRunConfig, RunRecord

if TYPE_CHECKING:
    from bench.specs import ModelSpec
    from bench.store import ResultStore


def resolve_model(store: ResultStore, text: str) -> ModelSpec:
    """A model for ``--baseline``/``--candidate``: ``NAME=PATH``, a folder, a hub id or a default
    model's name as everywhere else; a bare name that the store knows is the model it ran."""
    from bench.api import model_spec
    from bench.specs import ModelSpec

    if "=" not in text and not Path(text).exists():
        known = store.runs(model=text)
        if known:
            last = known[-1]
            return ModelSpec(name=text, path=last.model_path, backend=last.backend)
    return model_spec(text)


def _settings(record: RunRecord | None, spec: GateSpec) -> dict[str, Any]:
    """The settings a missing run is computed with: the stored run's (so the two pair), or the
    gate's split and limit."""
    if record is None:
        return {"split": spec.split, "limit": spec.limit}
    config = record.config
    out: dict[str, Any] = {"split": record.split, "limit": config.limit, "seed": config.seed}
    if config.max_length is not None:
        out["max_length"] = config.max_length
    if isinstance(config, AttackRunConfig):
        out["query_budget"] = config.query_budget
        out["attack_columns"] = list(config.attack_columns) or None
    if config.dtype in ("float32", "bfloat16", "float16"):
        out["dtype"] = config.dtype
    return out


def ensure_runs(
    store: ResultStore,
    spec: GateSpec,
    models: Sequence[ModelSpec],
    tasks_dir: Sequence[Path] = (),
    progress: bool = False,
) -> int:
    """Compute every check's missing runs for ``models``; the number of runs computed."""
    from bench import api
    from bench.tasks import get_task

    computed = 0
    for check in spec.checks:
        task = get_task(check.task, tasks_dir).spec.name
        stored = {m.name: find_runs(store, m.name, check, task) for m in models}
        for i, model in enumerate(models):
            others = [stored[m.name] for m in models if m.name != model.name and stored[m.name]]
            # Stored runs count only if one pairs with the other model's (another limit, split
            # or max length does not). When none does, the baseline is the reference: the
            # candidate is computed again with its settings.
            if stored[model.name] and (
                not others
                or i == 0
                or choose_pair(others[0], stored[model.name], spec.split)[2] is None
            ):
                continue
            # The other model's newest run, on the gate's split if it has one there.
            options = others[0] if others else []
            preferred = [o for o in options if o[0].split == spec.split] or options
            other = preferred[0][0] if preferred else None
            settings = _settings(other, spec)
            results = _compute(api, store.path, model, check, settings, tasks_dir, progress)
            computed += sum(0 if o.cached else 1 for o in results.outcomes)
            stored[model.name] = find_runs(store, model.name, check, task)
    return computed


def _compute(
    api: Any,
    db: Path,
    model: ModelSpec,
    check: CheckSpec,
    settings: dict[str, Any],
    tasks_dir: Sequence[Path],
    progress: bool,
) -> Any:
    common = {"db": db, "tasks_dir": tasks_dir, "progress": progress}
    if check.suite is not None:
        from bench.attacks.suites import load_suite

        suite = load_suite(check.suite)
        settings = {k: v for k, v in settings.items() if k != "dtype"}
        if settings.get("limit") is None:
            settings["limit"] = 100  # the attack commands' default sample
        return api.attack([model], [check.task], [suite], **common, **settings)
    if check.shots is not None:
        templates = [check.template] if check.template is not None else None
        settings = {
            k: v for k, v in settings.items() if k not in ("query_budget", "attack_columns")
        }
        return api.prompt([model], [check.task], shots=[check.shots], templates=templates,
                          **common, **settings)  # fmt: skip
    settings = {k: v for k, v in settings.items() if k not in ("query_budget", "attack_columns")}
    if model.backend == "onnx":
        settings.pop("dtype", None)  # an export's precision is its own
    return api.evaluate([model], [check.task], **common, **settings)
