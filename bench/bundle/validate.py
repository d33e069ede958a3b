"""``bench validate``: check a submission bundle without trusting its submitter.

In order: the zip (limits, names, links: nothing is inflated before these pass), the manifest
(JSON, schema version, the schema itself), harness compatibility, the files (listed, present,
SHA-256), every run's rows (types, canonical form, leaf hashes against the sealed leaf list and
the Merkle roots, so a changed row is named by run and example), the tasks against the local ones
(version, data hash), each run's settings and key parts (the key recomputed; label mapping and
prompt format against the local task), completeness (every example of the split, or of the run's
seeded sample, exactly once and nothing else), each row against its example and itself, the
metrics recomputed from the rows under the declared settings, and the interop files regenerated.
With ``rescore`` sampled examples are then recomputed with the named model
(:mod:`bench.bundle.rescore`).

Every problem found is one line; problems are ordered so the first names the most specific
thing that is wrong (a changed row before the file hash it breaks, say).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pydantic import ValidationError

from bench.bundle import canonical, interop, merkle
from bench.bundle.build import is_partial, leaves_path, rows_path
from bench.bundle.manifest import FORMAT, SCHEMA_VERSION, BundleManifest, RunInfo
from bench.bundle.rows import KIND_TABLES, parse_leaves, parse_rows
from bench.bundle.zipio import MANIFEST, BundleReadError, Limits, read_members
from bench.errors import BenchError, shown

if TYPE_CHECKING:
    from bench.records import RunRecord
    from bench.store import ResultStore
    from bench.tasks.examples import Example, TaskData

# What each problem is about, most specific first (see the module docstring).
STRUCTURE, ROWS, FILES, COMPAT, TASKS, RUNS, COMPLETENESS, CONSISTENCY, METRICS, INTEROP = range(10)
RESCORE = 10
# Example-level problems shown per run and kind of problem; the rest are counted.
PER_RUN = 3
# Relative and absolute tolerance of recomputed metrics: the same numpy code on the same rows
# gives the same bits; this absorbs a last-bit difference between platforms' libm.
METRIC_RTOL = 1e-9
METRIC_ATOL = 1e-12


@dataclass
class Report:
    """What validation found: ``problems`` (one line each, ordered), the parsed manifest and
    rows when they could be read, and the local task data used."""

    path: Path
    manifest: BundleManifest | None = None
    rows: dict[str, list[Any]] = field(default_factory=dict)
    tasks: dict[str, TaskData] = field(default_factory=dict)
    bundle_sha256: str = ""
    rescored: int = 0
    notes: list[str] = field(default_factory=list)
    _ordered: list[tuple[int, int, str]] = field(default_factory=list, repr=False)

    @property
    def problems(self) -> list[str]:
        """Every problem found, one line each, the most specific first."""
        return [text for _, _, text in sorted(self._ordered)]

    @property
    def ok(self) -> bool:
        return not self._ordered

    def add(self, priority: int, text: str) -> None:
        self._ordered.append((priority, len(self._ordered), text))


class RowSource:
    """Rows by run key, answering the store methods a run kind's ``metrics`` reads."""

    def __init__(self, rows: dict[str, list[Any]], where: str) -> None:
        self._rows = rows
        self.path = Path(where)

    def rows(self, table: Any, key: str) -> list[Any]:
        return self._rows.get(key, [])

    def predictions(self, key: str) -> list[Any]:
        return self._rows.get(key, [])

    def prompt_rows(self, key: str) -> list[Any]:
        return self._rows.get(key, [])

    def attack_rows(self, key: str) -> list[Any]:
        return self._rows.get(key, [])

    def as_store(self) -> ResultStore:
        # The run kinds read rows through these four methods only.
        return cast("ResultStore", self)


def _who(run: RunInfo) -> str:
    return f"run {run.key[:12]} ({shown(run.label, 50)})"


def _version_tuple(text: str) -> tuple[int, int, int] | None:
    import re

    match = re.match(r"^(\d+)\.(\d+)\.(\d+)", text)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def harness_problem(version: str, what: str) -> str | None:
    """Why ``version`` (what made ``what``) cannot be read by this harness, if it cannot: a
    newer version, or another major version (for 0.x, another minor one)."""
    from bench._version import __version__

    theirs, ours = _version_tuple(version), _version_tuple(__version__)
    if theirs is None or ours is None:
        return f"{what} names harness version {shown(version, 30)}, which is not a version"
    if theirs > ours:
        return (
            f"{what} was made by nlp-bench {version}, newer than this harness ({__version__}); "
            "upgrade nlp-bench to validate it"
        )
    same_line = theirs[0] == ours[0] and (ours[0] != 0 or theirs[1] == ours[1])
    if not same_line:
        return (
            f"{what} was made by nlp-bench {version}; this harness ({__version__}) reads bundles "
            f"of {ours[0]}.{ours[1]}.x only"
        )
    return None


def record_of(run: RunInfo, manifest: BundleManifest) -> RunRecord:
    """A manifest run as the store's record (complete, under the bundle's model name)."""
    from bench.records import RunRecord, parse_config

    return RunRecord(
        run_key=run.key,
        kind=run.kind,
        task=run.task,
        task_version=run.task_version,
        task_hash=run.task_hash,
        model=manifest.model.name,
        model_path=manifest.model.reference,
        model_hash=manifest.model.hash,
        config=parse_config(run.kind, dict(run.config)),
        split=run.split,
        n_examples=run.n_examples,
        label_names=list(run.label_names),
        label_mapping=dict(run.label_mapping),
        seed=run.seed,
        harness_version=run.harness_version,
        versions=dict(run.versions),
        column=run.column,
        profile_hash=run.profile_hash,
        backend=run.backend,
        members=tuple(run.members),
        status="complete",
        created_at=run.created_at,
        finished_at=run.finished_at,
        compute_s=run.compute_s,
        key_parts=dict(run.key_parts),
    )


# --------------------------------------------------------------------------------------------------
# The manifest


def _parse_manifest(report: Report, text_bytes: bytes) -> BundleManifest | None:
    try:
        text = text_bytes.decode("utf-8")
    except UnicodeDecodeError:
        report.add(STRUCTURE, "manifest.json is not UTF-8 text")
        return None
    try:
        data = canonical.loads(text)
    except canonical.JSONFormatError as exc:
        report.add(STRUCTURE, f"manifest.json is not valid JSON: {exc}")
        return None
    if not isinstance(data, dict):
        report.add(STRUCTURE, f"manifest.json must be a JSON object, not {type(data).__name__}")
        return None
    if data.get("format") != FORMAT:
        report.add(
            STRUCTURE,
            f"manifest.json: format is {shown(data.get('format'), 40)}, not {FORMAT!r} (not a "
            "bundle of this harness)",
        )
        return None
    version = data.get("schema_version")
    if type(version) is not int or version != SCHEMA_VERSION:
        report.add(
            STRUCTURE,
            f"manifest.json: schema version {shown(version, 20)} is not known to this harness "
            f"(it reads version {SCHEMA_VERSION}); upgrade nlp-bench or ask for a version "
            f"{SCHEMA_VERSION} bundle",
        )
        return None
    try:
        manifest = BundleManifest.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        for error in errors[:10]:
            where = ".".join(str(p) for p in error.get("loc", ())[:8]) or "(top level)"
            message = " ".join(str(error.get("msg", "invalid")).split())[:160]
            report.add(STRUCTURE, f"manifest.json: field '{shown(where, 80)[1:-1]}': {message}")
        if len(errors) > 10:
            report.add(STRUCTURE, f"manifest.json: {len(errors) - 10} more schema problems")
        return None
    if canonical.dumps(data) + "\n" != text:
        report.add(
            STRUCTURE,
            "manifest.json is not canonical JSON (sorted keys, no spaces, one newline at the "
            "end): it was edited after sealing",
        )
    return manifest


# --------------------------------------------------------------------------------------------------
# Files and rows


def _check_files(report: Report, manifest: BundleManifest, members: dict[str, bytes]) -> set[str]:
    """Listed files against the zip's members; the paths whose SHA-256 differs."""
    listed = {f.path: f for f in manifest.files}
    bad: set[str] = set()
    if len(listed) != len(manifest.files):
        report.add(FILES, "manifest.json lists a file twice")
    for name in sorted(set(members) - {MANIFEST} - set(listed)):
        report.add(FILES, f"{name} is in the zip but not listed in the manifest")
    for path, entry in sorted(listed.items()):
        data = members.get(path)
        if data is None:
            report.add(FILES, f"{path} is listed in the manifest but missing from the zip")
            bad.add(path)
        elif len(data) != entry.bytes or hashlib.sha256(data).hexdigest() != entry.sha256:
            bad.add(path)
    expected = {rows_path(r.key) for r in manifest.runs if r.rows is not None}
    expected |= {leaves_path(r.key) for r in manifest.runs if r.rows is not None}
    if manifest.model.card_file is not None:
        expected.add(manifest.model.card_file)
        if manifest.model.card_file not in listed:
            report.add(FILES, f"the model's card file {manifest.model.card_file} is not listed")
    for path in sorted(set(listed) - expected - {interop.MODEL_INDEX, interop.LM_EVAL}):
        report.add(FILES, f"{path} is listed in the manifest but belongs to no run")
    return bad


def _check_rows(report: Report, manifest: BundleManifest, members: dict[str, bytes]) -> None:
    roots: list[tuple[str, str]] = []
    total = 0
    for run in manifest.runs:
        table = KIND_TABLES.get(run.kind)
        if (run.rows is None) != (table is None):
            report.add(
                RUNS,
                f"{_who(run)}: a {run.kind} run "
                + ("has no rows" if table is not None else "cannot have rows of its own"),
            )
            continue
        if run.rows is None or table is None:
            continue
        info = run.rows
        if info.file != rows_path(run.key) or info.leaves != leaves_path(run.key):
            report.add(RUNS, f"{_who(run)}: its rows must be in {rows_path(run.key)}")
            continue
        if info.table != table.name:
            report.add(RUNS, f"{_who(run)}: a {run.kind} run's rows are {table.name}")
            continue
        roots.append((run.key, info.merkle_root))
        total += info.count
        data = members.get(info.file)
        if data is None:
            continue
        parsed = parse_rows(data, info.table, info.file)
        for problem in parsed.problems[:PER_RUN]:
            report.add(ROWS, f"{_who(run)}: {problem}")
        if len(parsed.problems) > PER_RUN:
            report.add(ROWS, f"{_who(run)}: {len(parsed.problems) - PER_RUN} more malformed rows")
        if not parsed.problems:
            report.rows[run.key] = parsed.rows
        sealed_bytes = members.get(info.leaves)
        sealed = parse_leaves(sealed_bytes) if sealed_bytes is not None else None
        sealed_ok = sealed is not None and merkle.root(sealed) == info.merkle_root
        if sealed_bytes is not None and sealed is None:
            report.add(ROWS, f"{_who(run)}: {info.leaves} is not one SHA-256 per line")
        elif sealed is not None and not sealed_ok:
            report.add(ROWS, f"{_who(run)}: {info.leaves} does not hash to the run's Merkle root")
        if merkle.root(parsed.leaves) == info.merkle_root:
            if len(parsed.leaves) != info.count:
                report.add(
                    ROWS, f"{_who(run)}: {len(parsed.leaves)} rows, the manifest says {info.count}"
                )
            continue
        if not sealed_ok or sealed is None:
            report.add(ROWS, f"{_who(run)}: its rows do not hash to the run's Merkle root")
            continue
        _locate_changes(report, run, parsed.leaves, sealed, data)
    if merkle.root([r for _, r in sorted(roots)]) != manifest.merkle.root:
        report.add(ROWS, "the bundle's Merkle root is not the root of its runs' roots")
    if total != manifest.merkle.leaves:
        report.add(
            ROWS, f"the manifest counts {manifest.merkle.leaves} leaves; its runs hold {total}"
        )


def _row_name(data: bytes, line_number: int) -> str:
    """``row of example idx I (uid U) (line N)`` for a rows file's line, as far as it can be
    read; ``row at line N`` when it cannot (the line is named once either way)."""
    lines = data.split(b"\n")
    at = f"row at line {line_number}"
    if line_number - 1 >= len(lines):
        return at
    try:
        row = canonical.loads(lines[line_number - 1].decode("utf-8"))
    except (UnicodeDecodeError, canonical.JSONFormatError):
        return at
    if isinstance(row, dict):
        return (
            f"row of example idx {shown(row.get('idx'), 12)} (uid {shown(row.get('uid'), 20)}) "
            f"(line {line_number})"
        )
    return at


def _surplus(have: list[str], than: list[str]) -> list[int]:
    """Positions in ``have`` of leaves beyond their count in ``than`` (later repeats first
    counted as surplus)."""
    budget = Counter(than)
    out = []
    for i, h in enumerate(have):
        if budget[h] > 0:
            budget[h] -= 1
        else:
            out.append(i)
    return out


def _locate_changes(
    report: Report, run: RunInfo, computed: list[str], sealed: list[str], data: bytes
) -> None:
    """Name the rows that differ from the sealed leaf list (the list itself matches the
    run's root, so it says what the rows were when the bundle was sealed)."""
    who = _who(run)
    new = _surplus(computed, sealed)
    gone = _surplus(sealed, computed)
    changed = sorted(set(new) & set(gone))
    added = [i for i in new if i not in changed]
    removed = [i for i in gone if i not in changed]
    found = [
        f"the {_row_name(data, i + 1)} was changed after the bundle was sealed (its leaf hash "
        "is not the sealed one)"
        for i in changed
    ]
    found += [
        f"the {_row_name(data, i + 1)} was added or repeated after the bundle was sealed"
        for i in added
    ]
    found += [
        f"sealed row {i + 1} (leaf {sealed[i][:12]}) is gone from its rows file (removed "
        "after the bundle was sealed)"
        for i in removed
    ]
    for text in found[:PER_RUN]:
        report.add(ROWS, f"{who}: {text}")
    if len(found) > PER_RUN:
        report.add(ROWS, f"{who}: {len(found) - PER_RUN} more rows changed after sealing")


# --------------------------------------------------------------------------------------------------
# Tasks, settings, completeness


def _load_tasks(
    report: Report, manifest: BundleManifest, tasks_dir: Sequence[Path], given: Sequence[str]
) -> None:
    """The local tasks the bundle's name: ``given`` (names or YAML paths, as ``--task``
    takes them) first, then by name among the known tasks."""
    from bench.tasks import get_task, load_task_data

    names = [t.name for t in manifest.tasks]
    if len(set(names)) != len(names):
        report.add(TASKS, "manifest.json lists a task twice")
    chosen = {}
    for text in given:
        try:
            item = get_task(text, tasks_dir)
        except BenchError as exc:
            report.add(TASKS, f"--task {shown(text, 60)}: {exc}")
            continue
        chosen[item.spec.name] = item
    for info in manifest.tasks:
        try:
            item = chosen.get(info.name) or get_task(info.name, tasks_dir)
            data = load_task_data(item.spec, item.base_dir)
        except BenchError as exc:
            report.add(TASKS, f"task {shown(info.name, 40)}: not available here ({exc})")
            continue
        if data.spec.version != info.version:
            report.add(
                TASKS,
                f"task {shown(info.name, 40)}: version {shown(info.version, 20)} in the bundle, "
                f"{shown(data.spec.version, 20)} here",
            )
        if data.data_hash != info.data_hash:
            report.add(
                TASKS,
                f"task {shown(info.name, 40)}: data hash {info.data_hash[:12]} in the bundle, "
                f"{data.data_hash[:12]} here (other examples, labels or spec)",
            )
            continue
        sizes = {role: len(ex) for role, ex in data.splits.items()}
        if sizes != info.splits:
            report.add(
                TASKS, f"task {shown(info.name, 40)}: split sizes differ from the local task"
            )
            continue
        report.tasks[info.name] = data
    for run in manifest.runs:
        if run.task not in names:
            report.add(RUNS, f"{_who(run)}: its task {shown(run.task, 40)} is not in the manifest")


def expected_examples(data: TaskData, split: str, limit: int | None, seed: int) -> list[Example]:
    """The examples a run of ``split`` with ``limit`` and ``seed`` covers."""
    from bench.tasks.loading import sample_examples

    return sample_examples(data.splits.get(split, []), limit, seed)  # type: ignore[call-overload]


def _limit_seed(run: RunInfo) -> tuple[int | None, int]:
    limit = run.config.get("limit")
    seed = run.config.get("seed", run.seed)
    return (limit if isinstance(limit, int) else None), (seed if isinstance(seed, int) else 0)


def _check_run(
    report: Report, manifest: BundleManifest, run: RunInfo, by_key: dict[str, RunInfo]
) -> Any:
    """Settings and key parts of one run; its typed config when it parses."""
    from bench.records import CONFIG_TYPES
    from bench.store import run_key

    who = _who(run)
    problem = harness_problem(run.harness_version, who)
    if problem is not None:
        report.add(COMPAT, problem)
    task = manifest.task(run.task)
    if task is not None:
        if run.task_hash != task.data_hash:
            report.add(
                RUNS,
                f"{who}: task hash {run.task_hash[:12]} is not its task's {task.data_hash[:12]}",
            )
        if run.task_version != task.version:
            report.add(RUNS, f"{who}: task version {shown(run.task_version, 20)} is not its task's")
        if run.split not in task.splits:
            report.add(RUNS, f"{who}: its task has no {run.split!r} split")
    try:
        config = CONFIG_TYPES[run.kind].model_validate(dict(run.config))
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "config"
        report.add(RUNS, f"{who}: config field {shown(where, 40)}: {first.get('msg', 'invalid')}")
        config = None
    if config is not None:
        if config.split != run.split or config.seed != run.seed:
            report.add(RUNS, f"{who}: its config's split or seed differs from the run's")
        if task is not None and run.split in task.splits:
            partial = is_partial(run.kind, config, task.splits[run.split])
            if run.kind == "prompt_set":
                partial = partial or any(by_key[m].partial for m in run.members if m in by_key)
            if partial != run.partial:
                report.add(
                    RUNS,
                    f"{who}: marked {'partial' if run.partial else 'complete'}, but its limit "
                    f"{shown(config.limit, 12)} makes it {'partial' if partial else 'complete'}",
                )
    if run.backend != manifest.model.backend:
        report.add(RUNS, f"{who}: backend {shown(run.backend, 20)} is not the model's")
    parts = dict(run.key_parts)
    if run_key(parts) != run.key:
        report.add(
            RUNS, f"{who}: its key parts do not hash to its key (recomputed {run_key(parts)[:12]})"
        )
    if run.kind in KIND_TABLES:
        checks = {
            "kind": run.kind,
            "task": run.task_hash,
            "model": manifest.model.identity_key(),
            "harness": run.harness_version,
        }
        for name, want in checks.items():
            if parts.get(name) != want:
                report.add(RUNS, f"{who}: key part {name!r} is not the run's {name}")
                break
        kp_config = parts.get("config")
        if config is not None and isinstance(kp_config, dict):
            for name in ("split", "limit", "dtype", "max_length"):
                if name in kp_config and kp_config[name] != getattr(config, name):
                    report.add(RUNS, f"{who}: key part config.{name} differs from its config")
                    break
            if (
                config.limit is not None
                and kp_config.get("sample_seed", config.seed) != config.seed
            ):
                report.add(RUNS, f"{who}: key part config.sample_seed differs from its seed")
        elif run.kind in KIND_TABLES:
            report.add(RUNS, f"{who}: its key parts have no config")
    else:
        want_parts = {"kind": run.kind, "runs": list(run.members), "harness": run.harness_version}
        if parts != want_parts:
            report.add(RUNS, f"{who}: its key parts are not its kind, members and harness version")
    _check_members(report, run, by_key)
    return config


def _check_members(report: Report, run: RunInfo, by_key: dict[str, RunInfo]) -> None:
    who = _who(run)
    wanted = {"suite": "attack", "prompt_set": "prompt"}.get(run.kind)
    if wanted is None:
        if run.members:
            report.add(RUNS, f"{who}: a {run.kind} run has no members")
        return
    if not run.members:
        report.add(RUNS, f"{who}: a {run.kind} run needs members")
    for key in run.members:
        member = by_key.get(key)
        if member is None:
            report.add(RUNS, f"{who}: member run {key[:12]} is not in the bundle")
        elif member.kind != wanted or member.task != run.task or member.split != run.split:
            report.add(RUNS, f"{who}: member run {key[:12]} is not a {wanted} run of its task")
        elif run.kind == "suite" and member.label_mapping != run.label_mapping:
            # A suite describes the same model and settings as its attacks.
            report.add(RUNS, f"{who}: its label mapping is not its member run {key[:12]}'s")


def _check_labels(report: Report, run: RunInfo, data: TaskData, config: Any) -> None:
    """Label names, the model-to-task label mapping and the prompt format against the task."""
    who = _who(run)
    labels = list(data.spec.labels)
    if list(run.label_names) != labels:
        report.add(RUNS, f"{who}: label names differ from the local task's ({', '.join(labels)})")
        return
    if run.kind in ("eval", "attack", "suite"):
        mapping = run.label_mapping
        stray = sorted(set(mapping.values()) - set(labels))
        uncovered = [label for label in labels if label not in mapping.values()]
        if not mapping:
            report.add(RUNS, f"{who}: no label mapping (model label -> task label)")
        elif stray:
            report.add(
                RUNS,
                f"{who}: its label mapping sends a model label to {shown(stray[0], 30)}, not a task label",
            )
        elif uncovered:
            report.add(RUNS, f"{who}: no model label maps to task label {shown(uncovered[0], 30)}")
        overrides = run.key_parts.get("label_map")
        if isinstance(overrides, dict):
            for src, dst in overrides.items():
                if mapping.get(src) != dst:
                    report.add(
                        RUNS,
                        f"{who}: its label mapping ignores the label map {shown(src, 30)}={shown(dst, 30)}",
                    )
                    break
    if run.kind == "prompt" and config is not None:
        from bench.prompt_runner import prompt_identity

        try:
            ident = prompt_identity(data, config.k, config.template - 1, config.adapter)
        except BenchError as exc:
            report.add(RUNS, f"{who}: the local task cannot pose it ({exc})")
            return
        if run.key_parts.get("prompt") != ident:
            report.add(
                RUNS,
                f"{who}: its prompt format is not the local task's (template {config.template}, {config.k} shots)",
            )
    if run.kind == "attack":
        from bench.attacks.components import profile_hash

        profile = run.config.get("profile")
        if not isinstance(profile, dict) or run.key_parts.get("profile") != profile:
            report.add(RUNS, f"{who}: its attack profile is not the one its key hashes")
        elif run.profile_hash != profile_hash(profile):
            report.add(
                RUNS, f"{who}: profile hash {shown(run.profile_hash, 20)} is not its profile's"
            )
        if run.attack_spec is not None:
            from bench.attacks.specs import AttackSpec

            try:
                AttackSpec.model_validate(run.attack_spec)
            except ValidationError:
                report.add(RUNS, f"{who}: its attack spec is not a valid attack")


def _argmax(values: Sequence[float]) -> int:
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def _check_completeness(
    report: Report, run: RunInfo, data: TaskData, rows: list[Any], config: Any
) -> dict[int, Example]:
    """Every example of the run's split (or seeded sample) exactly once, nothing else; the
    expected examples by idx."""
    who = _who(run)
    limit, seed = _limit_seed(run)
    expected = expected_examples(data, run.split, limit, seed)
    by_idx = {ex.idx: ex for ex in expected}
    in_split = {ex.uid for ex in data.splits.get(run.split, [])}
    where = f"split {run.split!r} of task {shown(run.task, 40)}"
    if run.n_examples != len(expected):
        report.add(
            COMPLETENESS,
            f"{who}: declares {run.n_examples} examples; {where}"
            + (f" sampled to {limit}" if limit is not None else "")
            + f" has {len(expected)}",
        )
    counts = Counter(r.idx for r in rows)
    wrong: list[str] = []
    dupes: list[str] = []
    for r in rows:
        ex = by_idx.get(r.idx)
        if ex is None or ex.uid != r.uid:
            if r.uid not in in_split:
                wrong.append(f"example uid {shown(r.uid, 20)} (idx {r.idx}) is not in {where}")
            elif ex is None:
                wrong.append(
                    f"example uid {shown(r.uid, 20)} (idx {r.idx}) is not in the run's seeded sample of {where}"
                )
            else:
                wrong.append(
                    f"example idx {r.idx} has uid {shown(r.uid, 20)}; {where} has {ex.uid} there"
                )
        elif counts[r.idx] > 1 and r.uid not in {d for d in dupes}:
            dupes.append(r.uid)
    for text in wrong[:PER_RUN]:
        report.add(COMPLETENESS, f"{who}: {text}")
    if len(wrong) > PER_RUN:
        report.add(
            COMPLETENESS, f"{who}: {len(wrong) - PER_RUN} more examples that are not in {where}"
        )
    for uid in dupes[:PER_RUN]:
        idx = next(r.idx for r in rows if r.uid == uid)
        report.add(
            COMPLETENESS,
            f"{who}: example uid {shown(uid, 20)} (idx {idx}) appears {counts[idx]} times",
        )
    if len(dupes) > PER_RUN:
        report.add(COMPLETENESS, f"{who}: {len(dupes) - PER_RUN} more repeated examples")
    missing = [ex for ex in expected if counts[ex.idx] == 0]
    for ex in missing[:PER_RUN]:
        report.add(
            COMPLETENESS, f"{who}: example uid {ex.uid} (idx {ex.idx}) of {where} is missing"
        )
    if len(missing) > PER_RUN:
        report.add(
            COMPLETENESS, f"{who}: {len(missing) - PER_RUN} more examples of {where} are missing"
        )
    ordered = [r.idx for r in rows]
    if not wrong and not dupes and ordered != sorted(ordered):
        report.add(COMPLETENESS, f"{who}: rows are not in example order")
    return by_idx


def _check_row_values(
    report: Report, run: RunInfo, rows: list[Any], by_idx: dict[int, Example], config: Any
) -> None:
    """Each row against its example (label, original text) and against itself (the predicted
    label is the most probable one; status and predictions agree)."""
    who = _who(run)
    k = len(run.label_names)
    found: list[str] = []
    attacked: set[int] | None = None
    if run.kind == "attack" and config is not None:
        columns = list(config.attack_columns)
        attacked = set()
        task = report.tasks.get(run.task)
        if task is not None:
            attacked = {i for i, c in enumerate(task.spec.inputs) if c in columns}
    for r in rows:
        ex = by_idx.get(r.idx)
        name = f"example uid {shown(r.uid, 20)} (idx {r.idx})"
        if ex is not None and r.label != ex.label:
            found.append(f"{name}: label {r.label} where the task has {ex.label}")
            continue
        if run.kind == "eval":
            if len(r.probs) != k:
                found.append(f"{name}: {len(r.probs)} probabilities for {k} labels")
            elif r.pred != _argmax(r.probs):
                found.append(
                    f"{name}: prediction {r.pred} is not its most probable label {_argmax(r.probs)}"
                )
            elif not math.isclose(math.fsum(r.probs), 1.0, abs_tol=1e-6) or min(r.probs) < 0:
                found.append(f"{name}: its probabilities do not sum to 1")
        elif run.kind == "attack":
            if ex is not None and list(r.original) != list(ex.inputs):
                found.append(f"{name}: the original text is not the task's")
            elif len(r.perturbed) != len(r.original):
                found.append(f"{name}: {len(r.perturbed)} perturbed inputs for {len(r.original)}")
            elif attacked is not None and any(
                r.perturbed[i] != r.original[i] for i in range(len(r.original)) if i not in attacked
            ):
                found.append(f"{name}: an input the attack may not change was changed")
            elif len(r.original_scores) != k or len(r.perturbed_scores) != k:
                found.append(f"{name}: scores for {k} labels expected")
            elif r.original_pred != _argmax(r.original_scores) or r.perturbed_pred != _argmax(
                r.perturbed_scores
            ):
                found.append(f"{name}: a prediction is not its most probable label")
            elif (r.status == "skipped") != (r.original_pred != r.label):
                found.append(
                    f"{name}: status {r.status!r} but the clean prediction was {'right' if r.original_pred == r.label else 'wrong'}"
                )
            elif r.status == "succeeded" and r.perturbed_pred == r.label:
                found.append(f"{name}: status 'succeeded' but the perturbed prediction is right")
            elif r.status == "failed" and r.perturbed_pred != r.label:
                found.append(f"{name}: status 'failed' but the perturbed prediction is wrong")
            elif r.words_changed > r.words_total:
                found.append(f"{name}: more words changed than it has")
        elif run.kind == "prompt":
            generation = config is not None and config.task_kind == "generation"
            if generation:
                if r.pred != -1 or r.pred_norm != -1 or r.correct != r.correct_norm:
                    found.append(f"{name}: a generated answer has no choice index")
            elif not (0 <= r.pred < len(r.scores)) or not (0 <= r.pred_norm < len(r.scores)):
                found.append(f"{name}: answer {r.pred} is not one of its {len(r.scores)} choices")
            elif len(r.choices) != len(r.scores):
                found.append(f"{name}: {len(r.scores)} scores for {len(r.choices)} choices")
            elif r.pred != _argmax(r.scores):
                # Raw accuracy's answer is the highest-scored choice, ties to the first
                # (bench.models.causal.choose; the NLI adapter's scores are monotone in its).
                found.append(
                    f"{name}: answer {r.pred} is not its highest-scored choice {_argmax(r.scores)}"
                )
            elif r.correct != (r.pred == r.label) or r.correct_norm != (r.pred_norm == r.label):
                found.append(
                    f"{name}: marked {'correct' if r.correct else 'wrong'} against its own answer"
                )
    for text in found[:PER_RUN]:
        report.add(CONSISTENCY, f"{who}: {text}")
    if len(found) > PER_RUN:
        report.add(CONSISTENCY, f"{who}: {len(found) - PER_RUN} more inconsistent rows")


# Prompts are rebuilt locally when that is cheap: without shots, or when drawing the shots (a hash
# per pool example per prompt) stays under this many hashes; the rescore rebuilds the rest.
PROMPT_REBUILD_BUDGET = 200_000


def _check_prompts(
    report: Report, run: RunInfo, rows: list[Any], by_idx: dict[int, Example], config: Any
) -> None:
    """A prompted run's prompts, answer choices and few-shot draws are the ones the local task
    builds (runs without a chat template, whose text needs the model's tokenizer)."""
    from bench.prompts import build_request, prompt_spec

    if config is None or config.chat_template_used:
        return
    data = report.tasks[run.task]
    spec = prompt_spec(data.spec)
    nli = config.adapter == "nli"
    pool = data.splits.get(spec.fewshot.split, []) if config.k > 0 else []
    if config.k > 0 and len(pool) * len(rows) > PROMPT_REBUILD_BUDGET:
        return
    who = _who(run)
    found: list[str] = []
    for r in rows:
        ex = by_idx.get(r.idx)
        if ex is None:
            continue
        name = f"example uid {shown(r.uid, 20)} (idx {r.idx})"
        try:
            req = build_request(data.spec, ex, pool, 0 if nli else config.template - 1, config.k)
        except BenchError as exc:
            found.append(f"{name}: the local task cannot pose it ({exc})")
            continue
        if nli:
            assert spec.hypothesis is not None
            prompt, choices = (
                ex.inputs[0],
                [spec.hypothesis.replace("{choice}", a) for a in req.answers],
            )
        else:
            prompt, choices = req.context, list(req.choices)
        if r.prompt != prompt:
            found.append(f"{name}: its prompt is not the one the local task builds")
        elif list(r.choices) != choices:
            found.append(f"{name}: its answer choices are not the local task's")
        elif list(r.shots) != list(req.shots):
            found.append(f"{name}: its few-shot examples are not the task's seeded draw")
    for text in found[:PER_RUN]:
        report.add(CONSISTENCY, f"{who}: {text}")
    if len(found) > PER_RUN:
        report.add(CONSISTENCY, f"{who}: {len(found) - PER_RUN} more prompts that differ")


# --------------------------------------------------------------------------------------------------
# Metrics and interop


def _number(x: float | None) -> str:
    return "none" if x is None else f"{x:.6g}"


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=METRIC_RTOL, abs_tol=METRIC_ATOL)


def _check_metrics(report: Report, manifest: BundleManifest, complete_rows: set[str]) -> None:
    from bench.engine import get_kind

    source = RowSource(report.rows, str(report.path)).as_store()
    for run in manifest.runs:
        needed = [run.key] if run.kind in KIND_TABLES else list(run.members)
        if not needed or any(k not in complete_rows for k in needed):
            continue  # the rows' own problems are reported already
        who = _who(run)
        try:
            record = record_of(run, manifest)
            values = get_kind(run.kind).metrics(source, record, run.metric_settings.to_settings())
        except (BenchError, ValueError, ValidationError) as exc:
            report.add(
                METRICS,
                f"{who}: metrics cannot be recomputed from its rows ({shown(str(exc), 80)})",
            )
            continue
        computed = {n: v for n, v in values.items() if math.isfinite(v.value)}
        declared = run.metrics
        for name in sorted(set(declared) - set(computed)):
            report.add(
                METRICS,
                f"{who}: metric {shown(name, 30)} is declared but not computed from its rows",
            )
        for name in sorted(set(computed) - set(declared)):
            report.add(
                METRICS, f"{who}: metric {shown(name, 30)} computed from its rows is not declared"
            )
        for name in sorted(set(declared) & set(computed)):
            d, c = declared[name], computed[name]
            if not (_close(d.value, c.value) and _close(d.low, c.low) and _close(d.high, c.high)):
                report.add(
                    METRICS,
                    f"{who}: {name} declared {_number(d.value)} [{_number(d.low)}, "
                    f"{_number(d.high)}], recomputed from the rows {_number(c.value)} "
                    f"[{_number(c.low)}, {_number(c.high)}]",
                )


def _check_interop(report: Report, manifest: BundleManifest, members: dict[str, bytes]) -> None:
    expected = interop.files_for(manifest.model_dump(mode="json"))
    for path, data in expected.items():
        have = members.get(path)
        if have is not None and have != data:
            report.add(
                INTEROP, f"{path} does not carry the manifest's numbers (regenerated, it differs)"
            )


# --------------------------------------------------------------------------------------------------
# All of it


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def validate(
    path: Path,
    *,
    tasks_dir: Sequence[Path] = (),
    tasks: Sequence[str] = (),
    rescore: int = 0,
    model: str | None = None,
    device: str = "auto",
    seed: int = 0,
    limits: Limits | None = None,
) -> Report:
    """Check the bundle at ``path`` (see the module docstring); never raises for anything the
    bundle holds: problems are in the report."""
    report = Report(path)
    try:
        members = read_members(path, limits)
    except BundleReadError as exc:
        report.add(STRUCTURE, str(exc))
        return report
    report.bundle_sha256 = _sha256_file(path)
    manifest = _parse_manifest(report, members[MANIFEST])
    if manifest is None:
        return report
    report.manifest = manifest
    problem = harness_problem(manifest.harness.version, f"{path.name}")
    if problem is not None:
        report.add(COMPAT, problem)
    bad = _check_files(report, manifest, members)
    _check_rows(report, manifest, members)
    for path_ in sorted(bad):
        if path_ in members:
            report.add(
                FILES,
                f"{path_}: its SHA-256 is not the one in the manifest (changed after sealing)",
            )
    keys = [r.key for r in manifest.runs]
    if len(set(keys)) != len(keys):
        report.add(RUNS, "manifest.json lists a run twice")
    _load_tasks(report, manifest, tasks_dir, tasks)
    by_key = {r.key: r for r in manifest.runs}
    for run in manifest.runs:
        config = _check_run(report, manifest, run, by_key)
        data = report.tasks.get(run.task)
        if data is None or data.data_hash != run.task_hash:
            continue
        _check_labels(report, run, data, config)
        rows = report.rows.get(run.key)
        if rows is None or run.kind not in KIND_TABLES:
            continue
        by_idx = _check_completeness(report, run, data, rows, config)
        _check_row_values(report, run, rows, by_idx, config)
        if run.kind == "prompt":
            _check_prompts(report, run, rows, by_idx, config)
    _check_metrics(report, manifest, set(report.rows))
    _check_interop(report, manifest, members)
    # The rows the bundle declares, as bench submit counts them: the rows read are fewer when
    # a rows file cannot be parsed (its run's rows are then left out of report.rows), and the
    # problems above say why.
    n_rows = manifest.merkle.leaves
    partial = [r for r in manifest.runs if r.partial]
    report.notes.append(
        f"{path.name}: model {manifest.model.name!r} ({manifest.model.kind} "
        f"{manifest.model.hash[:12]}), {len(manifest.runs)} runs"
        + (f" ({len(partial)} partial: never ranked)" if partial else "")
        + f", {n_rows} rows, Merkle root {manifest.merkle.root[:16]}"
    )
    if rescore > 0:
        if report.problems:
            report.notes.append("rescore skipped: the bundle has the problems above")
        else:
            from bench.bundle.rescore import rescore as run_rescore

            for text in run_rescore(
                report, rescore, model=model, device=device, seed=seed, tasks_dir=tasks_dir
            ):
                report.add(RESCORE, text)
    return report
