"""Store records -> leaderboard rows. The only bridge between the store and the report layer.

Attack and suite runs become robustness columns beside a task's clean column: ``task@suite`` (an
example counts as correct only if no attack of the suite broke it) and ``task@suite/attack``.
For ``accuracy`` their cell is the accuracy under attack. Prompted runs become ``task@3shot``
(the mean over prompt templates, with the spread across them) and ``task@3shot/t1`` per template.
"""

from __future__ import annotations

from collections.abc import Iterable

from bench.report.leaderboard import ResultRow
from bench.store import ResultStore, RunRecord

ROBUSTNESS_KINDS = ("attack", "suite")
# Prompted runs: one per template (``task@3shot/t2``) and their summary (``task@3shot``).
PROMPT_KINDS = ("prompt", "prompt_set")
# The figure a robustness column shows for a requested metric.
_UNDER_ATTACK = {"accuracy": "accuracy_under_attack"}


def result_rows(
    store: ResultStore, records: Iterable[RunRecord], metric: str = "accuracy"
) -> list[ResultRow]:
    rows = []
    for rec in records:
        metrics = store.metrics(rec.run_key)
        robustness = rec.kind in ROBUSTNESS_KINDS
        name = _UNDER_ATTACK.get(metric, metric) if robustness else metric
        if name not in metrics:
            continue
        m = metrics[name]
        # The stored baseline is the majority-class *accuracy*; it means nothing for other metrics.
        majority = metrics.get("majority") if metric == "accuracy" else None
        rows.append(
            ResultRow(
                model=rec.model,
                task=rec.task,
                metric=metric,
                value=m.value,
                low=m.low,
                high=m.high,
                n=rec.n_examples,
                majority=majority.value if majority is not None else None,
                run_key=rec.run_key,
                column=(
                    f"{rec.task}@{rec.config['column']}"
                    if robustness or rec.kind in PROMPT_KINDS
                    else None
                ),
                profile=(
                    rec.config.get("profile_hash" if robustness else "prompt_hash")
                    if robustness or rec.kind == "prompt"
                    else None
                ),
                spread=metrics["spread"].value if "spread" in metrics else None,
            )
        )
    return rows
