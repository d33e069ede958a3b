"""Store records -> leaderboard rows. The only bridge between the store and the report layer.

Attack and suite runs become robustness columns beside a task's clean column: ``task@suite`` (an
example counts as correct only if no attack of the suite broke it) and ``task@suite/attack``.
For ``accuracy`` their cell is the accuracy under attack. Prompted runs become ``task@3shot``
(the mean over prompt templates, with the spread across them) and ``task@3shot/t1`` per template.
Metrics are read under the given metric settings, computed from stored rows when missing.
"""

from __future__ import annotations

from collections.abc import Iterable

from bench.records import MetricSettings, RunRecord
from bench.report.leaderboard import DEGENERATE_SHARE, ResultRow
from bench.store import ResultStore

ROBUSTNESS_KINDS = ("attack", "suite")
# Prompted runs: one per template (``task@3shot/t2``) and their summary (``task@3shot``).
PROMPT_KINDS = ("prompt", "prompt_set")
# The figure a robustness column shows for a requested metric.
_UNDER_ATTACK = {"accuracy": "accuracy_under_attack"}


def result_rows(
    store: ResultStore,
    records: Iterable[RunRecord],
    metric: str = "accuracy",
    settings: MetricSettings | None = None,
) -> list[ResultRow]:
    from bench.engine import run_metrics

    records = list(records)
    # Submission bundles (issue 14): how each imported run was checked.
    provenance = store.provenance(r.run_key for r in records)
    rows = []
    for rec in records:
        metrics = run_metrics(store, rec, settings)
        robustness = rec.kind in ROBUSTNESS_KINDS
        name = _UNDER_ATTACK.get(metric, metric) if robustness else metric
        if name not in metrics:
            continue
        m = metrics[name]
        # The stored baseline is the majority-class *accuracy*; it means nothing for other metrics.
        majority = metrics.get("majority") if metric == "accuracy" else None
        share = metrics.get("dominant_share")
        degenerate = share is not None and share.value >= DEGENERATE_SHARE
        dominant = metrics.get("dominant_label")
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
                column=rec.label if rec.column else None,
                profile=rec.profile_hash if rec.kind in ("attack", "suite", "prompt") else None,
                spread=metrics["spread"].value if "spread" in metrics else None,
                dominant_label=(
                    rec.label_names[int(dominant.value)]
                    if degenerate and dominant is not None
                    else None
                ),
                dominant_share=share.value if degenerate and share is not None else None,
                provenance=(provenance[rec.run_key].source if rec.run_key in provenance else None),
            )
        )
    return rows
