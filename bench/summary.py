"""Store records -> leaderboard rows. The only bridge between the store and the report layer.

Attack and suite runs become robustness columns beside a task's clean column: ``task@suite`` (an
example counts as correct only if no attack of the suite broke it) and ``task@suite/attack``.
For ``accuracy`` their cell is the accuracy under attack.
"""

from __future__ import annotations

from collections.abc import Iterable

from bench.report.leaderboard import ResultRow
from bench.store import ResultStore, RunRecord

ROBUSTNESS_KINDS = ("attack", "suite")
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
                column=f"{rec.task}@{rec.config['column']}" if robustness else None,
                profile=rec.config.get("profile_hash") if robustness else None,
            )
        )
    return rows
