"""Attack results as a table a person reads: one row per attack, then the suite's worst case."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.store import RunRecord, StoredMetric

COLUMNS = (
    "attack",
    "profile",
    "n",
    "clean acc",
    "acc under attack",
    "success rate",
    "skipped",
    "perturbed words %",
    "avg queries",
)


def _ci(m: StoredMetric | None) -> str:
    if m is None:
        return "—"
    text = f"{m.value:.3f}"
    if m.low is not None and m.high is not None:
        text += f" [{m.low:.3f}, {m.high:.3f}]"
    return text


def _num(m: StoredMetric | None, fmt: str) -> str:
    return "—" if m is None else format(m.value, fmt)


def robustness_table(
    runs: Sequence[tuple[RunRecord, dict[str, StoredMetric]]],
) -> str:
    """Markdown: attack runs and suite runs of one (model, task), in the order given."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for rec, m in runs:
        suite = rec.kind == "suite"
        name = f"**{rec.config['column']} (all attacks)**" if suite else rec.config["column"]
        cells = [
            name.replace("|", r"\|"),
            str(rec.config.get("profile_hash", "")),
            _num(m.get("n"), ".0f"),
            _ci(m.get("clean_accuracy")),
            _ci(m.get("accuracy_under_attack")),
            "" if suite else _ci(m.get("attack_success_rate")),
            "" if suite else _num(m.get("skipped"), ".0f"),
            "" if suite else _num(m.get("avg_perturbed_word_pct"), ".1f"),
            "" if suite else _num(m.get("avg_queries"), ".1f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
