"""``bench import``: verified bundles into a leaderboard store, with their provenance.

A bundle is validated in full first (and rescored when asked); one with any problem is refused
and nothing is written. Its runs then go into the store in one transaction with their records,
key parts, declared metrics (equal to those recomputed from the rows), rows and a provenance
row: the bundle's SHA-256 and Merkle root, whether it was rescored, and whether a run is
partial (never ranked). A run whose key the store already holds is kept as it is.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.bundle.rows import KIND_TABLES
from bench.bundle.validate import Report, record_of

if TYPE_CHECKING:
    from bench.store import ResultStore


@dataclass(frozen=True)
class Imported:
    """What importing one bundle did."""

    bundle: Path
    added: list[str]
    kept: list[str]
    partial: int
    source: str


def import_report(store: ResultStore, report: Report) -> Imported:
    """Store the runs of a validated bundle (``report.ok``)."""
    from bench.records import StoredMetric
    from bench.store import ImportedRun, RunProvenance

    manifest = report.manifest
    assert manifest is not None and report.ok
    source = "rescored" if report.rescored > 0 else "imported"
    now = time.time()
    items = []
    for run in manifest.runs:
        record = record_of(run, manifest)
        provenance = RunProvenance(
            source=source,
            bundle_sha256=report.bundle_sha256,
            merkle_root=manifest.merkle.root,
            bundle_name=report.path.name,
            partial=run.partial,
            rescored=report.rescored,
            imported_at=now,
        )
        metrics = [
            StoredMetric(run.key, name, m.value, m.low, m.high) for name, m in run.metrics.items()
        ]
        items.append(
            ImportedRun(
                record=record,
                settings=run.metric_settings.to_settings(),
                metrics=metrics,
                table=KIND_TABLES.get(run.kind),
                rows=report.rows.get(run.key, []),
                provenance=provenance,
            )
        )
    added = store.import_runs(items)
    kept = [r.key for r in manifest.runs if r.key not in set(added)]
    return Imported(report.path, added, kept, sum(r.partial for r in manifest.runs), source)


def describe(result: Imported) -> str:
    partial = f", {result.partial} partial (never ranked)" if result.partial else ""
    if not result.added:
        # Not "0 runs imported (imported)": the provenance names what was imported, and here
        # nothing was.
        held = f"its {len(result.kept)} runs are" if len(result.kept) != 1 else "its run is"
        return (
            f"{result.bundle.name}: nothing imported, {held} already in the store (kept){partial}"
        )
    kept = f", {len(result.kept)} already in the store (kept)" if result.kept else ""
    runs = "run" if len(result.added) == 1 else "runs"
    return (
        f"{result.bundle.name}: {len(result.added)} {runs} imported ({result.source}){kept}"
        f"{partial}"
    )


def summary(results: Sequence[Imported]) -> list[str]:
    return [describe(r) for r in results]
