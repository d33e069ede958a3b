"""Leaderboards: models x tasks tables of one metric with CIs, in several formats, and a bar chart.

A ``ResultRow`` is one (model, column, metric) figure. The column label is the task unless a row
sets ``column`` (e.g. ``"sst2@textfooler"``), so tables can hold more than clean task scores.
Markdown, HTML and LaTeX show the wide formatted table; CSV and JSON keep the numbers in long form
for machines.
A cell whose CI includes the majority-class rate is marked with a dagger: that score is not
distinguishable from always predicting the most frequent class. A cell whose run predicted one
class for at least ``DEGENERATE_SHARE`` of its examples is marked with a double dagger followed by
that class and its share: a degenerate predictor, whatever its score. The wide formats give each
column's number of examples in its header when its cells share one, else in each cell.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bench.errors import DataError, SpecError

if TYPE_CHECKING:
    import pandas as pd

Format = Literal["markdown", "csv", "html", "latex", "json"]
FORMATS: tuple[str, ...] = ("markdown", "csv", "html", "latex", "json")

MISSING = "—"
DAGGER = "†"
MAJORITY_ROW = "majority-class baseline"
DAGGER_NOTE = "CI includes the majority-class rate"
SPREAD = "range "
SPREAD_NOTE = "range: max - min of the score across prompt templates (prompt sensitivity)"
# One predicted class taking at least this share of a run's predictions marks the cell.
DEGENERATE_SHARE = 0.95
DEGENERATE = "‡"
DEGENERATE_NOTE = (
    f"one class takes ≥ {DEGENERATE_SHARE:.0%} of the run's predictions (that class and its "
    "share follow the mark)"
)
N_NOTE = "n: examples per cell (in the column header when all its cells share one)"
# Submission bundles (issue 14): cells of runs imported from bundles, by how they were checked.
IMPORTED = "§"
RESCORED = "§§"
PROVENANCE_MARKS = {"imported": IMPORTED, "rescored": RESCORED}
PROVENANCE_NOTES = {
    "imported": (
        f"{IMPORTED} imported from a submission bundle whose hashes, Merkle root, completeness "
        "and metrics were verified"
    ),
    "rescored": (
        f"{RESCORED} imported from a verified submission bundle and rescored (sampled examples "
        "recomputed with the named model)"
    ),
}
LONG_COLUMNS = (
    "model",
    "column",
    "task",
    "metric",
    "value",
    "low",
    "high",
    "n",
    "majority",
    "run_key",
    "profile",
    "spread",
    "sd",
    "seeds",
    "provenance",
    "dominant_label",
    "dominant_share",
)
# Models named "<group>#s<seed>" (as `bench transfer` names them) fold into one row per group.
SEED_SUFFIX = re.compile(r"^(?P<group>.+)#s(?P<seed>\d+)$")


@dataclass(frozen=True)
class ResultRow:
    """One stored figure: ``value`` of ``metric`` for ``model`` on ``task`` over ``n`` examples."""

    model: str
    task: str
    metric: str
    value: float
    low: float | None
    high: float | None
    n: int
    majority: float | None = None
    run_key: str = ""
    column: str | None = None
    # Short hash of an attack's constraint profile (or of a suite's attack profiles), or of the
    # prompt format of one prompted run.
    profile: str | None = None
    # Range (max - min) of the score across prompt templates, for a prompted column.
    spread: float | None = None
    # A row folding several fine-tuning seeds: their standard deviation and how many.
    sd: float | None = None
    seeds: int | None = None
    # The most predicted class and its share of the run's predictions, filled when the share is
    # at least DEGENERATE_SHARE (a degenerate predictor); None otherwise.
    dominant_label: str | None = None
    dominant_share: float | None = None
    # Where the run came from: None when computed here, "imported" (a verified submission
    # bundle) or "rescored" (verified, and sampled examples recomputed).
    provenance: str | None = None

    @property
    def label(self) -> str:
        """The table column this row fills."""
        return self.column if self.column is not None else self.task

    @property
    def ci_includes_majority(self) -> bool:
        if self.majority is None or self.low is None or self.high is None:
            return False
        return self.low <= self.majority <= self.high

    @property
    def is_degenerate(self) -> bool:
        """One class takes at least ``DEGENERATE_SHARE`` of the run's predictions."""
        return (
            self.dominant_label is not None
            and self.dominant_share is not None
            and self.dominant_share >= DEGENERATE_SHARE
        )


def group_seeds(rows: Sequence[ResultRow]) -> list[ResultRow]:
    """Rows of models named ``<group>#s<seed>`` folded into one row per (group, column): the
    mean over seeds and their standard deviation (CIs are per model, so none is shown). Other
    rows pass through."""
    import statistics

    groups: dict[tuple[str, str, str], list[ResultRow]] = {}
    out: list[ResultRow] = []
    for r in rows:
        match = SEED_SUFFIX.match(r.model)
        if match is None:
            out.append(r)
        else:
            groups.setdefault((match["group"], r.label, r.metric), []).append(r)
    for (group, _, _), members in groups.items():
        values = [m.value for m in members]
        first = members[0]
        # The group is degenerate only if every seed is, towards the same class.
        dominant = {m.dominant_label if m.is_degenerate else None for m in members}
        sources = {m.provenance for m in members}
        label = dominant.pop() if len(dominant) == 1 else None
        out.append(
            replace(
                first,
                model=f"{group} ({len(members)} seeds)",
                value=statistics.fmean(values),
                low=None,
                high=None,
                sd=statistics.stdev(values) if len(values) > 1 else 0.0,
                seeds=len(members),
                run_key="",
                n=min(m.n for m in members),
                dominant_label=label,
                dominant_share=(
                    min(m.dominant_share or 0.0 for m in members) if label is not None else None
                ),
                provenance=sources.pop() if len(sources) == 1 else None,
            )
        )
    return out


def _select(rows: Sequence[ResultRow], metric: str) -> list[ResultRow]:
    chosen = [r for r in rows if r.metric == metric]
    if not chosen:
        have = sorted({r.metric for r in rows})
        raise DataError(
            f"no results for metric {metric!r}; results hold: {', '.join(have) or 'none'}"
        )
    seen: set[tuple[str, str]] = set()
    for r in chosen:
        key = (r.model, r.label)
        if key in seen:
            raise DataError(
                f"two results for model {r.model!r} on {r.label!r} ({metric}); "
                "keep one run per cell"
            )
        seen.add(key)
    return chosen


def _model_order(rows: Sequence[ResultRow]) -> list[str]:
    """Best mean over the cells a model has first; ties break by name so the order is stable."""
    scores: dict[str, list[float]] = {}
    for r in rows:
        scores.setdefault(r.model, []).append(r.value)
    from bench.metrics import higher_is_better

    # The metric registry says which way is better (ECE and Brier: smaller).
    sign = 1.0 if rows and higher_is_better(rows[0].metric) is False else -1.0
    return sorted(scores, key=lambda m: (sign * sum(scores[m]) / len(scores[m]), m))


def _columns(rows: Sequence[ResultRow]) -> list[str]:
    return sorted({r.label for r in rows})


def leaderboard_frame(rows: Sequence[ResultRow], metric: str = "accuracy") -> pd.DataFrame:
    """Float table: index = models (best mean first), columns = labels (sorted), NaN if missing.

    "Best" is the highest mean, or the lowest for metrics registered as lower-is-better (ECE,
    Brier).
    """
    import pandas as pd

    chosen = _select(rows, metric)
    models, columns = _model_order(chosen), _columns(chosen)
    frame = pd.DataFrame(
        math.nan, index=pd.Index(models, name="model"), columns=columns, dtype=float
    )
    for r in chosen:
        frame.loc[r.model, r.label] = r.value
    frame.columns.name = metric
    return frame


def majority_rates(
    rows: Sequence[ResultRow], metric: str = "accuracy"
) -> dict[str, tuple[float, float]]:
    """Per column, the (lowest, highest) majority rate its rows report; absent if none does.

    Runs of one task usually share a split, hence one rate; different limits can make them differ.
    """
    out: dict[str, tuple[float, float]] = {}
    for r in rows:
        if r.metric != metric or r.majority is None:
            continue
        lo, hi = out.get(r.label, (r.majority, r.majority))
        out[r.label] = (min(lo, r.majority), max(hi, r.majority))
    return out


def _share(share: float) -> str:
    # Rounded down: "100%" only when every prediction is that class.
    return f"{math.floor(share * 100 + 1e-9):d}%"


def format_cell(row: ResultRow | None, with_n: bool = False) -> str:
    """``"0.812 [0.790, 0.833]"`` (3 decimals), a dagger if the CI includes the majority rate,
    then ``"range 0.031"`` for a prompted column's spread across templates, ``"§"`` or ``"§§"``
    for a run imported from a submission bundle (verified, or also rescored), ``"n=1,060"`` when
    ``with_n``, and ``"‡negative 100%"`` for a degenerate predictor."""
    if row is None:
        return MISSING
    text = f"{row.value:.3f}"
    if row.sd is not None:
        text += f" ± {row.sd:.3f}"
    else:
        if row.low is not None and row.high is not None:
            text += f" [{row.low:.3f}, {row.high:.3f}]"
        text += DAGGER if row.ci_includes_majority else ""
        if row.spread is not None:
            text += f" {SPREAD}{row.spread:.3f}"
    if row.provenance in PROVENANCE_MARKS:
        text += f" {PROVENANCE_MARKS[row.provenance]}"
    if with_n:
        text += f" n={row.n:,}"
    if row.is_degenerate:
        assert row.dominant_share is not None  # is_degenerate checks it
        text += f" {DEGENERATE}{row.dominant_label} {_share(row.dominant_share)}"
    return text


def _shared_n(rows: Sequence[ResultRow], columns: Sequence[str]) -> dict[str, int]:
    """Columns whose cells all cover the same number of examples, with that number."""
    sizes: dict[str, set[int]] = {c: set() for c in columns}
    for r in rows:
        sizes[r.label].add(r.n)
    return {c: next(iter(ns)) for c, ns in sizes.items() if len(ns) == 1}


def leaderboard_cells(
    rows: Sequence[ResultRow], metric: str = "accuracy", show_n: bool = False
) -> pd.DataFrame:
    """The wide table as strings, ordered like ``leaderboard_frame``, plus a majority row.

    With ``show_n`` a column whose cells share one number of examples names it in its header
    (``"sst2 (n=872)"``); in other columns each cell ends with its own ``"n=..."``.
    """
    import pandas as pd

    chosen = _select(rows, metric)
    models, columns = _model_order(chosen), _columns(chosen)
    by_cell = {(r.model, r.label): r for r in chosen}
    shared = _shared_n(chosen, columns) if show_n else {}
    data = [
        [format_cell(by_cell.get((m, c)), with_n=show_n and c not in shared) for c in columns]
        for m in models
    ]
    index = list(models)
    rates = majority_rates(chosen, metric)
    if rates:
        baseline = []
        for c in columns:
            if c not in rates:
                baseline.append(MISSING)
            else:
                lo, hi = rates[c]
                baseline.append(f"{lo:.3f}" if math.isclose(lo, hi) else f"{lo:.3f}–{hi:.3f}")
        data.append(baseline)
        index.append(MAJORITY_ROW)
    headers = [f"{c} (n={shared[c]:,})" if c in shared else c for c in columns]
    return pd.DataFrame(data, index=pd.Index(index, name="model"), columns=headers, dtype=object)


def _footnote(rows: Sequence[ResultRow], metric: str) -> str:
    note = f"Cells: {metric} [CI low, CI high]; {MISSING}: not evaluated; {N_NOTE}."
    if any(r.sd is not None for r in rows):
        note += " Rows of several seeds: mean ± standard deviation across seeds."
    if any(r.ci_includes_majority for r in rows):
        note += f" {DAGGER} {DAGGER_NOTE}."
    if any(r.spread is not None for r in rows):
        note += f" {SPREAD_NOTE}."
    if any(r.is_degenerate for r in rows):
        note += f" {DEGENERATE} {DEGENERATE_NOTE}."
    for source, text in PROVENANCE_NOTES.items():
        if any(r.provenance == source for r in rows):
            note += f" {text}."
    return note


def _long_records(rows: Sequence[ResultRow]) -> list[dict[str, Any]]:
    order = {m: i for i, m in enumerate(_model_order(rows))}
    ordered = sorted(rows, key=lambda r: (r.label, order[r.model]))
    records = []
    for r in ordered:
        rec = asdict(r)
        rec["column"] = r.label
        if not r.is_degenerate:  # a share below the threshold is no flag
            rec["dominant_label"] = rec["dominant_share"] = None
        rec["provenance"] = r.provenance or "local"
        records.append({key: rec[key] for key in LONG_COLUMNS})
    return records


def _json_number(x: Any) -> Any:
    # JSON has no NaN/Infinity; a non-finite figure becomes null rather than invalid output.
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "§": r"\S{}",
    "^": r"\textasciicircum{}",
    # Not special, but the default OT1 font encoding prints these as other glyphs.
    "|": r"\textbar{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials; the daggers, the missing-cell dash and ≥ become LaTeX commands."""
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)
    out = out.replace(DAGGER, r"\textsuperscript{\dag}")
    out = out.replace(DEGENERATE, r"\textsuperscript{\ddag}")
    return out.replace("≥", r"$\geq$").replace(MISSING, "---")


def _markdown_escape(text: str) -> str:
    # A pipe would split the cell; "<" would let a model name open an HTML tag once rendered.
    return text.replace("|", r"\|").replace("<", r"\<")


def _render_html(cells: pd.DataFrame, title: str, note: str) -> str:
    table = cells.reset_index().to_html(escape=True, border=0, classes="leaderboard", index=False)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n"
        "<style>\n"
        "body { font-family: sans-serif; margin: 2em; }\n"
        "table.leaderboard { border-collapse: collapse; }\n"
        "table.leaderboard th, table.leaderboard td { padding: 4px 10px; text-align: right;"
        " border-bottom: 1px solid #ddd; white-space: nowrap; }\n"
        # The first column holds model names: read left to right like text.
        "table.leaderboard th:first-child, table.leaderboard td:first-child { text-align: left; }\n"
        "</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n{table}\n"
        f'<p class="footnote">{html.escape(note)}</p>\n'
        "</body>\n</html>\n"
    )


def render(rows: Sequence[ResultRow], fmt: Format, metric: str = "accuracy") -> str:
    """The leaderboard of ``metric`` as text in ``fmt``.

    LaTeX output is a ``tabular`` using booktabs rules (``\\usepackage{booktabs}``) and a footnote.
    """
    import pandas as pd

    if fmt not in FORMATS:
        raise SpecError(f"unknown report format {fmt!r}; known: {', '.join(FORMATS)}")
    chosen = _select(rows, metric)
    if fmt == "csv":
        frame = pd.DataFrame(_long_records(chosen), columns=list(LONG_COLUMNS))
        return str(frame.to_csv(index=False, lineterminator="\n"))
    if fmt == "json":
        records = [{k: _json_number(v) for k, v in rec.items()} for rec in _long_records(chosen)]
        return json.dumps({"metric": metric, "rows": records}, ensure_ascii=False, indent=2) + "\n"

    cells = leaderboard_cells(chosen, metric, show_n=True)
    note = _footnote(chosen, metric)
    title = f"Leaderboard: {metric}"
    if fmt == "html":
        return _render_html(cells, title, note)
    if fmt == "markdown":
        esc = cells.reset_index().rename(columns=_markdown_escape).map(_markdown_escape)
        align = ("left",) + ("right",) * len(cells.columns)
        table = esc.to_markdown(index=False, colalign=align)
        return f"## {_markdown_escape(title)}\n\n{table}\n\n{note}\n"
    # latex: escape ourselves so the dagger can become a LaTeX command, then tell pandas not to.
    esc = cells.reset_index().rename(columns=latex_escape).map(latex_escape)
    table = esc.to_latex(escape=False, index=False, column_format="l" + "r" * len(cells.columns))
    return f"{table}\\par\\smallskip{{\\footnotesize {latex_escape(note)}}}\n"


def plot(rows: Sequence[ResultRow], path: str | Path, metric: str = "accuracy") -> Path:
    """Grouped bars per column with CI error bars and the majority rate as a dashed line; PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    chosen = _select(rows, metric)
    models, columns = _model_order(chosen), _columns(chosen)
    by_cell = {(r.model, r.label): r for r in chosen}
    rates = majority_rates(chosen, metric)
    x = np.arange(len(columns), dtype=float)
    width = 0.8 / len(models)

    fig_width = max(7.0, 2.5 + 0.9 * len(columns) * len(models) ** 0.5)
    fig, ax = plt.subplots(figsize=(fig_width, 4.5))
    try:
        for i, model in enumerate(models):
            vals, err_lo, err_hi = [], [], []
            for c in columns:
                r = by_cell.get((model, c))
                vals.append(r.value if r is not None else np.nan)
                if r is None or r.low is None or r.high is None:
                    err_lo.append(0.0)
                    err_hi.append(0.0)
                else:
                    err_lo.append(r.value - r.low)
                    err_hi.append(r.high - r.value)
            offset = (i - (len(models) - 1) / 2) * width
            shown = " " + model if model.startswith("_") else model  # keep "_x" in the legend
            ax.bar(x + offset, vals, width, yerr=[err_lo, err_hi], capsize=3, label=shown)
        # Matplotlib hides labels starting with "_": later markers use that to share one entry.
        legend_label = "majority-class rate"
        for j, c in enumerate(columns):
            if c in rates:
                lo, hi = rates[c]
                ax.hlines(
                    (lo + hi) / 2,
                    j - 0.45,
                    j + 0.45,
                    colors="black",
                    linestyles="dashed",
                    label=legend_label,
                )
                legend_label = "_majority"
        crowded = len(columns) > 4
        ax.set_xticks(
            x, columns, rotation=20 if crowded else 0, ha="right" if crowded else "center"
        )
        ax.set_ylabel(metric)
        ax.set_title(f"Leaderboard: {metric}")
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format="png", dpi=100)
    finally:
        plt.close(fig)
    return out
