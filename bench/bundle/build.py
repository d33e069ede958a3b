"""``bench submit``: a model's stored runs as a submission bundle.

The runs are the newest complete ones of one model (by the name it was run under) on the chosen
tasks: clean evaluations, prompt sets with their template runs, attack suites with their attack
runs. Every run must come from the same model (one identity) and from the task data that is
here now. The manifest gets each run's record, typed settings, key parts (recomputed into the
key by the validator), metrics with their CIs under the chosen metric settings, and its rows;
``seal`` then adds the rows files, their leaf lists, the Merkle roots, the interop exports and
the SHA-256 of every file.
"""

from __future__ import annotations

import datetime
import json
import math
import platform
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.bundle import canonical, interop, merkle, rows
from bench.bundle.manifest import FORMAT, SCHEMA_VERSION
from bench.bundle.zipio import MANIFEST, write_zip
from bench.errors import BenchError, listing, shown

if TYPE_CHECKING:
    from bench.records import MetricSettings, RunRecord
    from bench.store import ResultStore
    from bench.tasks.examples import TaskData

ROW_KINDS = ("eval", "prompt", "attack")
SUMMARY_KINDS = ("suite", "prompt_set")
ALL_KINDS = (*ROW_KINDS, *SUMMARY_KINDS)
CARD_LIMIT = 1 << 20  # a model README larger than this is left out


def rows_path(key: str) -> str:
    return f"rows/{key}.jsonl"


def leaves_path(key: str) -> str:
    return f"rows/{key}.leaves"


# --------------------------------------------------------------------------------------------------
# Which runs


def select_runs(
    store: ResultStore,
    model: str,
    tasks: Sequence[str] | None = None,
    suites: Sequence[str] | None = None,
) -> list[RunRecord]:
    """The newest complete runs of ``model`` (a stored name) on ``tasks`` (names; all when
    None): clean evaluations, prompt sets and their template runs, and suites (``suites``:
    names; all when None) with their attack runs. Summaries bring their members.

    A task or suite named that has none of these runs is refused (a bundle without what was
    asked for would look like a complete answer); no runs at all is the caller's to say."""
    latest = store.latest_complete(kinds=("eval", "prompt_set", "suite"), model=model)
    chosen = [
        r
        for r in latest
        if (tasks is None or r.task in tasks)
        and (r.kind != "suite" or suites is None or r.column in suites)
    ]
    if chosen:
        on = f" on {listing(sorted(set(tasks)), 4)}" if tasks is not None else ""
        for task in tasks or []:
            if not any(r.task == task for r in chosen):
                raise BenchError(
                    f"no completed runs of model {shown(model, 60)} on task {shown(task, 40)} "
                    f"in {store.path}; run them first, or leave the task out"
                )
        for suite in suites or []:
            if not any(r.kind == "suite" and r.column == suite for r in chosen):
                raise BenchError(
                    f"no completed runs of model {shown(model, 60)} under suite "
                    f"{shown(suite, 40)}{on} in {store.path}; run them first (bench run "
                    "--suite), or leave the suite out"
                )
    out: dict[str, RunRecord] = {}
    for record in chosen:
        out[record.run_key] = record
        for key in record.members:
            member = store.get_run(key)
            if member is None or member.status != "complete":
                raise BenchError(
                    f"run {record.run_key} ({record.label}) summarises run {key}, which is "
                    f"{'missing' if member is None else member.status} in {store.path}"
                )
            out[key] = replace(member, model=model)
    return sorted(out.values(), key=lambda r: r.run_key)


# --------------------------------------------------------------------------------------------------
# Key parts


def key_parts(store: ResultStore, record: RunRecord, task: TaskData) -> dict[str, Any]:
    """What ``record``'s key hashes: as recorded when it began, or, for a run stored before
    key parts were recorded, rebuilt from its record (kept only if it hashes to the key)."""
    from bench.store import run_key

    stored = store.key_parts(record.run_key)
    if stored is not None:
        if run_key(stored) != record.run_key:
            raise BenchError(
                f"run {record.run_key} in {store.path}: its recorded key parts do not hash to its "
                "key; remove it with `bench runs rm` and run it again"
            )
        return stored
    for candidate in _rebuilt(record, task):
        if run_key(candidate) == record.run_key:
            return candidate
    raise BenchError(
        f"run {record.run_key} ({record.label}) was stored before run keys were recorded and its "
        f"key cannot be rebuilt; remove it (`bench runs rm {record.run_key[:10]}`) and run it "
        "again (or use bench submit --run)"
    )


def _rebuilt(record: RunRecord, task: TaskData) -> Iterable[dict[str, Any]]:
    """Candidate key parts of a run stored before schema 3 (no explicit label map)."""
    from bench.records import AttackRunConfig, PromptRunConfig

    harness = record.harness_version
    if record.kind in SUMMARY_KINDS:
        yield {"kind": record.kind, "runs": list(record.members), "harness": harness}
        return
    config = record.config
    models = [
        {"backend": record.backend, "kind": "local", "hash": record.model_hash},
        {
            "backend": record.backend,
            "kind": "hub",
            "id": record.model_path,
            "hash": record.model_hash,
            "revision": None,
        },
    ]
    common: dict[str, Any] = {"split": config.split, "limit": config.limit, "dtype": config.dtype}
    sample = {"sample_seed": config.seed} if config.limit is not None else {}
    for model in models:
        head = {"kind": record.kind, "task": record.task_hash, "model": model}
        if record.kind == "eval":
            cfg = {**common, "max_length": config.max_length, **sample}
            yield {**head, "label_map": {}, "config": cfg, "harness": harness}
        elif record.kind == "prompt" and isinstance(config, PromptRunConfig):
            from bench.prompt_runner import prompt_identity

            try:
                ident = prompt_identity(task, config.k, config.template - 1, config.adapter)
            except BenchError:
                return
            cfg = {
                **common,
                "max_length": config.max_length,
                "chat_template": config.chat_template,
                **sample,
            }
            yield {**head, "prompt": ident, "config": cfg, "harness": harness}
        elif record.kind == "attack" and isinstance(config, AttackRunConfig):
            for columns in (None, list(config.attack_columns)):
                cfg = {
                    **common,
                    "seed": config.seed,
                    "query_budget": config.query_budget,
                    "max_length": config.max_length,
                    "attack_columns": columns,
                }
                yield {
                    **head,
                    "label_map": {},
                    "profile": config.profile,
                    "config": cfg,
                    "harness": harness,
                }


# --------------------------------------------------------------------------------------------------
# The manifest


def is_partial(kind: str, config: Any, split_size: int) -> bool:
    """An evaluation or prompted run on a seeded sample smaller than its split. (Attack runs
    are run on a declared seeded sample by design: their n says how many.)"""
    if kind not in ("eval", "prompt", "prompt_set"):
        return False
    limit = config.get("limit") if isinstance(config, dict) else getattr(config, "limit", None)
    return isinstance(limit, int) and limit < split_size


def _finite(value: Any) -> Any:
    """A model card's values with NaN and infinities as null (JSON has no way to write them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _model_info(records: Sequence[RunRecord], parts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from bench import defaults
    from bench.api import DEFAULT_LM, DEFAULT_LM_NAME

    identities = {
        canonical.dumps(parts[r.run_key]["model"]) for r in records if r.kind in ROW_KINDS
    }
    if len(identities) != 1:
        shown_ids = listing(sorted(json.loads(i).get("hash", "?")[:12] for i in identities), 4)
        raise BenchError(
            f"the runs of model {records[0].model!r} come from {len(identities)} different models "
            f"(hashes {shown_ids}); rerun the older columns, or choose tasks with --task"
        )
    identity = json.loads(identities.pop())
    first = next(r for r in records if r.kind in ROW_KINDS)
    name = first.model
    if identity["kind"] != "local":
        reference = identity.get("id", first.model_path)
    elif name == DEFAULT_LM_NAME:
        reference = DEFAULT_LM
    elif name in defaults.DEFAULT_MODELS:
        reference = name
    else:
        reference = Path(first.model_path).name or name
    return {
        "name": name,
        "backend": identity["backend"],
        "kind": identity["kind"],
        "reference": reference,
        "hash": identity["hash"],
        "revision": identity.get("revision"),
        "card": None,
        "card_file": None,
    }


def _model_card(model_path: str) -> tuple[dict[str, Any] | None, bytes | None]:
    """The folder's ``bench_model_card.json`` (as data) and README (as text), when there."""
    from bench.finetune import CARD_NAME

    folder = Path(model_path)
    if not folder.is_dir():
        return None, None
    card = None
    card_path = folder / CARD_NAME
    if card_path.is_file() and card_path.stat().st_size <= CARD_LIMIT:
        try:
            data = json.loads(card_path.read_text(encoding="utf-8"))
            card = _finite(data) if isinstance(data, dict) else None
        except (OSError, ValueError):
            card = None
    readme = None
    readme_path = folder / "README.md"
    if readme_path.is_file() and readme_path.stat().st_size <= CARD_LIMIT:
        try:
            readme = readme_path.read_text(encoding="utf-8").encode("utf-8")
        except (OSError, ValueError):
            readme = None
    return card, readme


def _task_info(data: TaskData) -> dict[str, Any]:
    return {
        "name": data.spec.name,
        "version": data.spec.version,
        "data_hash": data.data_hash,
        "spec": json.loads(canonical.dumps(data.spec.model_dump(mode="json"))),
        "splits": {role: len(examples) for role, examples in data.splits.items()},
    }


def _attack_spec(record: RunRecord, suites: dict[str, Any]) -> dict[str, Any] | None:
    """The attack of an attack run as data, from the suites given or the built-in suite of its
    name; None when neither has it (the bundle then cannot be rescored on that run)."""
    from bench.records import AttackRunConfig

    config = record.config
    if not isinstance(config, AttackRunConfig):
        return None
    suite = suites.get(config.suite)
    if suite is None:
        from bench.attacks.suites import load_suite

        try:
            suite = load_suite(config.suite)
        except BenchError:
            return None
    for attack in suite.attacks:
        if attack.name == config.attack:
            spec: dict[str, Any] = attack.model_dump(mode="json")
            return spec
    return None


@dataclass
class Draft:
    """A manifest before sealing (no files, no Merkle root) and the rows of each run."""

    manifest: dict[str, Any]
    row_files: dict[str, bytes]
    card_readme: bytes | None = None


def draft(
    store: ResultStore,
    records: Sequence[RunRecord],
    tasks: dict[str, TaskData],
    settings: MetricSettings,
    suites: dict[str, Any] | None = None,
) -> Draft:
    """The manifest of ``records`` (see the module docstring), with their rows files."""
    from bench.engine import library_versions, run_metrics

    if not records:
        raise BenchError("no runs to bundle")
    parts: dict[str, dict[str, Any]] = {}
    for record in records:
        data = tasks.get(record.task)
        if data is None:
            raise BenchError(f"task {record.task!r} of run {record.run_key} is not loaded")
        if data.data_hash != record.task_hash:
            raise BenchError(
                f"the task {record.task!r} here differs from the one run {record.run_key} used "
                "(its data or spec changed: data hash differs); run it again, or submit from "
                "where it ran"
            )
        parts[record.run_key] = key_parts(store, record, data)
    model = _model_info(records, parts)
    first = next(r for r in records if r.kind in ROW_KINDS)
    card, readme = _model_card(first.model_path)
    model["card"] = card
    if readme is not None:
        model["card_file"] = "model/README.md"
    runs: list[dict[str, Any]] = []
    row_files: dict[str, bytes] = {}
    members_partial: dict[str, bool] = {}
    for record in records:
        split_size = len(tasks[record.task].splits.get(record.split, []))  # type: ignore[call-overload]
        members_partial[record.run_key] = is_partial(record.kind, record.config, split_size)
    for record in records:
        metrics = run_metrics(store, record, settings)
        partial = members_partial[record.run_key] or any(
            members_partial.get(m, False) for m in record.members
        )
        entry: dict[str, Any] = {
            "key": record.run_key,
            "kind": record.kind,
            "task": record.task,
            "task_version": record.task_version,
            "task_hash": record.task_hash,
            "column": record.column,
            "split": record.split,
            "n_examples": record.n_examples,
            "partial": partial,
            "profile_hash": record.profile_hash,
            "backend": record.backend,
            "label_names": list(record.label_names),
            "label_mapping": dict(record.label_mapping),
            "seed": record.seed,
            "harness_version": record.harness_version,
            "versions": dict(record.versions),
            "config": record.config.to_json(),
            "key_parts": parts[record.run_key],
            "members": list(record.members),
            "attack_spec": _attack_spec(record, suites or {}),
            "metric_settings": settings.model_dump(mode="json"),
            "metrics": {
                name: {"value": m.value, "low": m.low, "high": m.high}
                for name, m in sorted(metrics.items())
            },
            "rows": None,
            "created_at": float(record.created_at),
            "finished_at": float(record.finished_at or record.created_at),
            "compute_s": float(record.compute_s),
        }
        table = rows.KIND_TABLES.get(record.kind)
        if table is not None:
            stored = store.rows(table, record.run_key)
            body, _ = rows.encode_rows(stored)
            row_files[record.run_key] = body
            entry["rows"] = {"table": table.name}
        runs.append(entry)
    configs = [r.config for r in records]
    manifest = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "harness": {"name": "nlp-bench", "version": _harness_version()},
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(terse=True),
            "devices": sorted({c.device for c in configs if c.device}),
            "dtypes": sorted({c.dtype for c in configs if c.dtype}),
            "versions": library_versions(),
        },
        "model": model,
        "tasks": [_task_info(tasks[name]) for name in sorted({r.task for r in records})],
        "runs": runs,
    }
    return Draft(manifest, row_files, readme)


def _harness_version() -> str:
    from bench._version import __version__

    return __version__


# --------------------------------------------------------------------------------------------------
# Sealing


def seal(
    manifest: dict[str, Any], row_files: dict[str, bytes], card_readme: bytes | None = None
) -> tuple[list[tuple[str, bytes]], dict[str, Any]]:
    """The bundle's members (manifest first) and the final manifest: every run's rows file and
    leaf list with their Merkle root, the bundle's root, the interop exports, and the SHA-256
    of every file. ``manifest`` is data (its ``files`` and ``merkle`` are replaced)."""
    import hashlib

    manifest = dict(manifest)
    files: dict[str, bytes] = {}
    run_roots: list[tuple[str, str]] = []
    total = 0
    runs = []
    for run in manifest["runs"]:
        run = dict(run)
        key = run["key"]
        if key in row_files:
            body = row_files[key]
            lines = body.decode("utf-8").split("\n")
            if lines and lines[-1] == "":
                lines.pop()
            leaves = [merkle.leaf(line.encode("utf-8")) for line in lines]
            run_root = merkle.root(leaves)
            run["rows"] = {
                "file": rows_path(key),
                "leaves": leaves_path(key),
                "table": (run.get("rows") or {}).get("table", rows.KIND_TABLES[run["kind"]].name),
                "count": len(lines),
                "merkle_root": run_root,
            }
            files[rows_path(key)] = body
            files[leaves_path(key)] = rows.leaves_file(leaves)
            run_roots.append((key, run_root))
            total += len(leaves)
        runs.append(run)
    manifest["runs"] = runs
    if card_readme is not None:
        files["model/README.md"] = card_readme
    files.update(interop.files_for(manifest))
    manifest["merkle"] = {
        "algorithm": "sha256-rfc6962",
        "root": merkle.root([root for _, root in sorted(run_roots)]),
        "leaves": total,
    }
    manifest["files"] = [
        {"path": path, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        for path, data in sorted(files.items())
    ]
    text = canonical.dumps(manifest) + "\n"
    members = [(MANIFEST, text.encode("utf-8")), *sorted(files.items())]
    return members, manifest


def write_bundle(path: Path, draft_: Draft) -> dict[str, Any]:
    """Seal ``draft_`` and write it to ``path``; the final manifest."""
    members, manifest = seal(draft_.manifest, draft_.row_files, draft_.card_readme)
    write_zip(path, members)
    return manifest


# --------------------------------------------------------------------------------------------------
# From the command line


def load_tasks(
    names: Iterable[str], given: Sequence[str], tasks_dir: Sequence[Path]
) -> dict[str, TaskData]:
    """Task data by name: the ``--task`` values (names or YAML paths) and the named tasks."""
    from bench.tasks import get_task, load_task_data

    items = {}
    for text in given:
        item = get_task(text, tasks_dir)
        items[item.spec.name] = item
    for name in names:
        if name not in items:
            try:
                items[name] = get_task(name, tasks_dir)
            except BenchError:
                raise BenchError(
                    f"task {shown(name, 40)} of the runs is not known here; pass --task PATH or "
                    "--tasks-dir"
                ) from None
    return {name: load_task_data(item.spec, item.base_dir) for name, item in items.items()}


def submit(
    db: Path | None,
    model: str,
    out: Path,
    *,
    tasks: Sequence[str] = (),
    suites: Sequence[str] = (),
    run_missing: bool = False,
    tasks_dir: Sequence[Path] = (),
    settings: MetricSettings | None = None,
    progress: bool = False,
) -> tuple[dict[str, Any], list[RunRecord]]:
    """What ``bench submit`` does; the manifest written and the runs in it."""
    from bench.attacks.suites import load_suite
    from bench.records import MetricSettings
    from bench.store import ResultStore, open_store
    from bench.tasks import get_task

    settings = settings or MetricSettings()
    suite_specs = {s.name: s for s in (load_suite(text) for text in suites)}
    task_names = [get_task(t, tasks_dir).spec.name for t in tasks] or None
    name = model
    if run_missing:
        from bench import api

        if not tasks:
            raise BenchError("--run computes runs for the tasks named: give --task")
        spec = api.model_spec(model)
        name = spec.name
        api.run(
            list(tasks),
            [spec],
            db=db,
            suites=list(suite_specs.values()),
            tasks_dir=tasks_dir,
            progress=progress,
        )
        store_ctx = ResultStore(db)
    else:
        store_ctx = open_store(db)
    with store_ctx as store:
        records = select_runs(store, name, task_names, list(suite_specs) if suite_specs else None)
        if not records:
            where = f" on {listing(task_names, 4)}" if task_names else ""
            raise BenchError(
                f"no completed runs of model {shown(name, 60)}{where} in {store.path}; run them "
                "first, or pass --run (with NAME=PATH)"
            )
        datas = load_tasks({r.task for r in records}, list(tasks), tasks_dir)
        result = draft(store, records, datas, settings, suite_specs)
    return write_bundle(out, result), records
