"""Two models on the same examples: paired per-example correctness, a paired bootstrap CI of the
difference and McNemar's test, from stored runs only (no model is loaded).

Runs are paired only when they describe the same task data and the same prediction settings;
examples are aligned by uid, and any that only one run has are counted, not silently dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.errors import BenchError
from bench.records import MetricSettings, RunRecord
from bench.store import ResultStore

# Kinds whose rows say, per example, whether the model was right.
COMPARABLE_KINDS = ("eval", "prompt", "attack")
# Settings that may differ between paired runs: performance knobs and provenance, and the
# model-side settings a comparison is about (the precision a model ran in is as much a part of
# "the candidate" as its weights: fp32 against bf16 is a question a gate answers). What must
# agree is the protocol: task data, split, sample, lengths, prompts, attacks.
_UNKEYED = {
    "batch_size",
    "device",
    "n_bootstrap",
    "concurrency",
    "chat_template_used",
    "dtype",
    "execution",
}


@dataclass(frozen=True)
class Comparison:
    """Candidate ``b`` against baseline ``a`` on one task: accuracies, ``b - a`` with a paired
    bootstrap CI and p-value, and McNemar's test on the discordant pairs."""

    task: str
    column: str
    a: RunRecord
    b: RunRecord
    n: int
    unpaired: int
    a_value: float
    b_value: float
    diff: float
    low: float
    high: float
    p_bootstrap: float
    mcnemar_statistic: float
    p_mcnemar: float
    discordant: tuple[int, int]  # (a right and b wrong, a wrong and b right)


def example_keys(uids: Sequence[str]) -> list[str]:
    """Keys that pair examples across runs: the uid, with ``#2``, ``#3``... for repeats (a split
    may hold the same text with the same label twice; both count, in split order)."""
    seen: dict[str, int] = {}
    keys = []
    for uid in uids:
        seen[uid] = seen.get(uid, 0) + 1
        keys.append(uid if seen[uid] == 1 else f"{uid}#{seen[uid]}")
    return keys


def correctness(store: ResultStore, record: RunRecord) -> dict[str, bool]:
    """Per example key (see ``example_keys``): was the model right (for an attack run: did the
    example survive)."""
    rows: Sequence[Any]
    if record.kind == "eval":
        rows = store.predictions(record.run_key)
        right = [r.pred == r.label for r in rows]
    elif record.kind == "prompt":
        rows = store.prompt_rows(record.run_key)
        right = [bool(r.correct) for r in rows]
    elif record.kind == "attack":
        rows = store.attack_rows(record.run_key)
        right = [r.status == "failed" for r in rows]
    else:
        rows = []
    if rows:
        return dict(zip(example_keys([r.uid for r in rows]), right, strict=True))
    if record.kind in COMPARABLE_KINDS:
        return {}
    raise BenchError(
        f"run {record.run_key} is a {record.kind} run; compare runs of kind "
        f"{', '.join(COMPARABLE_KINDS)}"
    )


def pairing_problem(a: RunRecord, b: RunRecord) -> str | None:
    """Why two runs cannot be paired, in a few words; None when they can."""
    if a.kind != b.kind:
        return f"run kinds differ ({a.kind} vs {b.kind})"
    if a.task_hash != b.task_hash:
        return (
            f"task data differs for {a.task} (data hash {a.task_hash[:12]} vs {b.task_hash[:12]})"
        )
    if a.split != b.split:
        return f"splits differ ({a.split} vs {b.split})"
    if a.column != b.column:
        return f"columns differ ({a.label} vs {b.label})"
    sa, sb = a.config.to_json(), b.config.to_json()
    for name in sorted(set(sa) | set(sb)):
        if name in _UNKEYED:
            continue
        if sa.get(name) != sb.get(name):
            return f"setting {name} differs ({sa.get(name)!r} vs {sb.get(name)!r})"
    return None


def compare_runs(
    store: ResultStore, a: RunRecord, b: RunRecord, settings: MetricSettings | None = None
) -> Comparison:
    from bench.metrics import mcnemar_test, paired_bootstrap_test

    problem = pairing_problem(a, b)
    if problem is not None:
        raise BenchError(f"cannot pair {a.model} and {b.model} on {a.label}: {problem}")
    chosen = settings or MetricSettings()
    ca, cb = correctness(store, a), correctness(store, b)
    uids = sorted(set(ca) & set(cb))
    if not uids:
        raise BenchError(f"{a.model} and {b.model} share no examples on {a.label}")
    unpaired = len(set(ca) ^ set(cb))
    right_a = np.array([ca[u] for u in uids], dtype=bool)
    right_b = np.array([cb[u] for u in uids], dtype=bool)
    diff, low, high, p = paired_bootstrap_test(
        right_b, right_a, chosen.n_bootstrap or 1000, chosen.seed, chosen.alpha
    )
    stat, p_mc = mcnemar_test(right_b, right_a)
    return Comparison(
        task=a.task,
        column=a.label,
        a=a,
        b=b,
        n=len(uids),
        unpaired=unpaired,
        a_value=float(right_a.mean()),
        b_value=float(right_b.mean()),
        diff=diff,
        low=low,
        high=high,
        p_bootstrap=p,
        mcnemar_statistic=stat,
        p_mcnemar=p_mc,
        discordant=(int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())),
    )


def latest_run(store: ResultStore, model: str, task: str, kinds: Sequence[str]) -> RunRecord:
    """The newest complete run of ``model`` on ``task`` (any of ``kinds``), shown under that
    name; a one-line error naming what is missing."""
    # TASK@COLUMN names one run of several (a prompted model's shots and templates), as the
    # leaderboard labels them: vader_movies@0shot/t1.
    name, _, column = task.partition("@")
    found = [
        r
        for r in store.latest_complete(kinds=kinds, model=model)
        if r.task == name and (r.kind != "prompt" or r.column) and (not column or r.label == task)
    ]
    if not found:
        raise BenchError(f"no complete run of model {model!r} on task {task!r} in {store.path}")
    clean = [r for r in found if r.kind == "eval"]
    if clean:
        return clean[-1]
    if len(found) > 1:
        shown = ", ".join(sorted(r.label for r in found))
        raise BenchError(
            f"model {model!r} has several runs on {task!r} ({shown}); name one as --task "
            "TASK@COLUMN, as listed"
        )
    return found[0]


def markdown(comparisons: Sequence[Comparison], confidence: float = 0.95) -> str:
    """The comparison table: one row per task."""
    if not comparisons:
        return ""
    a, b = comparisons[0].a.model, comparisons[0].b.model
    pct = f"{100 * confidence:g}%"
    lines = [
        f"| task | n | {_esc(a)} | {_esc(b)} | Δ ({_esc(b)} − {_esc(a)}) [{pct} CI] | "
        "p (paired bootstrap) | p (McNemar) | discordant |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        lines.append(
            f"| {_esc(c.column)} | {c.n}{f' (+{c.unpaired} unpaired)' if c.unpaired else ''} | "
            f"{c.a_value:.3f} | {c.b_value:.3f} | {c.diff:+.3f} [{c.low:+.3f}, {c.high:+.3f}] | "
            f"{c.p_bootstrap:.3g} | {c.p_mcnemar:.3g} | {c.discordant[0]} / {c.discordant[1]} |"
        )
    note = (
        f"Paired by example uid. Discordant: examples only {a} got right / only {b} got right. "
        "Not significant is not the same as equal: read the CI."
    )
    return "\n".join(lines) + f"\n\n{note}\n"


def _esc(text: str) -> str:
    return text.replace("|", r"\|").replace("<", r"\<")


def as_dict(c: Comparison) -> dict[str, Any]:
    return {
        "task": c.task,
        "column": c.column,
        "baseline": c.a.model,
        "candidate": c.b.model,
        "baseline_run": c.a.run_key,
        "candidate_run": c.b.run_key,
        "n": c.n,
        "unpaired": c.unpaired,
        "baseline_accuracy": c.a_value,
        "candidate_accuracy": c.b_value,
        "diff": c.diff,
        "low": c.low,
        "high": c.high,
        "p_bootstrap": c.p_bootstrap,
        "mcnemar_statistic": c.mcnemar_statistic,
        "p_mcnemar": c.p_mcnemar,
        "discordant": list(c.discordant),
    }
