"""Store records -> leaderboard rows. The only bridge between the store and the report layer."""

from __future__ import annotations

from collections.abc import Iterable

from bench.report.leaderboard import ResultRow
from bench.store import ResultStore, RunRecord


def result_rows(
    store: ResultStore, records: Iterable[RunRecord], metric: str = "accuracy"
) -> list[ResultRow]:
    rows = []
    for rec in records:
        metrics = store.metrics(rec.run_key)
        if metric not in metrics:
            continue
        m = metrics[metric]
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
            )
        )
    return rows
