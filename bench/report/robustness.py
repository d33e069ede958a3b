"""Attack results as a table a person reads: one row per attack, then the suite's worst case."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.records import AttackRow, RunRecord, StoredMetric

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
        name = f"**{rec.column} (all attacks)**" if suite else rec.column
        cells = [
            name.replace("|", r"\|"),
            rec.profile_hash or "",
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


def _mark_changes(before: str, after: str) -> str:
    """``after`` with replaced words shown as ~~old~~ **new** (Markdown)."""
    import difflib

    a, b = before.split(), after.split()
    out: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.extend(b[j1:j2])
            continue
        if i2 > i1:
            out.append("~~" + " ".join(a[i1:i2]) + "~~")
        if j2 > j1:
            out.append("**" + " ".join(b[j1:j2]) + "**")
    return " ".join(out)


def adversarial_examples(rows: Sequence[AttackRow], labels: Sequence[str], k: int = 3) -> list[str]:
    """Up to ``k`` successful attacks, fewest changed words first, as Markdown bullet lines."""
    wins = sorted(
        (r for r in rows if r.status == "succeeded"), key=lambda r: (r.words_changed, r.idx)
    )
    lines = []
    for r in wins[:k]:
        changed = [
            _mark_changes(o, p) for o, p in zip(r.original, r.perturbed, strict=True) if o != p
        ]
        text = " ||| ".join(changed).replace("|", r"\|") if changed else ""
        lines.append(
            f"- #{r.idx} {labels[r.label]} → {labels[r.perturbed_pred]} "
            f"({r.words_changed} word(s), {r.queries} queries): {text}"
        )
    return lines
