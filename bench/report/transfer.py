"""Transfer reports: the train x test matrix, the gaps, the seed spread, and a heatmap.

Reads a :class:`bench.transfer.TransferResult` only; writes Markdown, CSV (the matrix, and one row
per (train, seed, test) run), an HTML page with the heatmap inside, and the heatmap as PNG.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from bench.transfer import TransferResult

IN_DOMAIN = "*"


def _cell_text(mean: float, low: float, high: float, sd: float, marker: str) -> str:
    return f"{mean:.3f}{marker} [{low:.3f}, {high:.3f}] sd {sd:.3f}"


def matrix_frame(result: TransferResult) -> pd.DataFrame:
    """Mean accuracy: rows = training tasks, columns = test tasks."""
    import pandas as pd

    spec = result.spec
    frame = pd.DataFrame(index=pd.Index(spec.train_tasks, name="train \\ test"), dtype=float)
    for test in spec.test_tasks:
        frame[test] = [result.cell(train, test).mean for train in spec.train_tasks]
    return frame


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def matrix_rows(result: TransferResult) -> tuple[list[str], list[list[str]]]:
    spec = result.spec
    header = ["train \\ test", *spec.test_tasks]
    rows = []
    for train in spec.train_tasks:
        row = [train]
        for test in spec.test_tasks:
            c = result.cell(train, test)
            row.append(_cell_text(c.mean, c.low, c.high, c.sd, IN_DOMAIN if c.in_domain else ""))
        rows.append(row)
    return header, rows


def gap_rows(result: TransferResult) -> tuple[list[str], list[list[str]]]:
    header = ["train", "test", "in-domain", "out-of-domain", "gap [95% CI]", "p", "seeds gap > 0"]
    rows = []
    for g in result.gaps:
        rows.append(
            [
                g.train,
                g.test,
                f"{result.cell(g.train, g.train).mean:.3f}",
                f"{result.cell(g.train, g.test).mean:.3f}",
                f"{g.gap:+.3f} [{g.low:+.3f}, {g.high:+.3f}]",
                f"{g.p_value:.4f}",
                f"{g.seeds_positive}/{g.seeds}",
            ]
        )
    return header, rows


def _notes(result: TransferResult) -> list[str]:
    spec = result.spec
    ind, ood = result.spread()
    notes = [
        f"Cells: accuracy, mean over {len(spec.seeds)} seeds ({', '.join(map(str, spec.seeds))}) "
        f"[95% CI, bootstrap over seeds and examples] and the standard deviation across seeds; "
        f"{IN_DOMAIN}: in-domain.",
        "Gap: in-domain minus out-of-domain accuracy of the same models; CI and p from a paired "
        "bootstrap (seeds drawn once for both test sets, examples drawn within each).",
    ]
    if ind is not None and ood is not None:
        ratio = f" ({ood / ind:.1f}x)" if ind > 0 else ""
        notes.append(
            f"Seed spread (mean sd across seeds): in-domain {ind:.3f}, out-of-domain "
            f"{ood:.3f}{ratio}."
        )
    recipe = spec.recipe
    notes.append(
        f"Base {spec.base}; training capped at {spec.max_train or 'all'} examples per task; "
        f"{recipe.epochs} epoch(s), lr {recipe.lr}, batch {recipe.batch_size}, max length "
        f"{recipe.max_length}"
        + (
            f", early stopping patience {recipe.early_stopping_patience}"
            if recipe.early_stopping_patience
            else ""
        )
        + (f", LoRA r={recipe.lora_r}" if recipe.lora_r else "")
        + "."
    )
    return notes


def render_markdown(result: TransferResult) -> str:
    header, rows = matrix_rows(result)
    parts = [f"## Transfer: {result.spec.name}", "", _markdown_table(header, rows), ""]
    if result.gaps:
        gh, gr = gap_rows(result)
        parts += ["### Gaps", "", _markdown_table(gh, gr), ""]
    parts += [" ".join(_notes(result)), ""]
    return "\n".join(parts)


def heatmap(result: TransferResult, path: str | Path) -> Path:
    """The matrix as a colour grid, annotated with mean and seed sd; in-domain cells outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    frame = matrix_frame(result)
    values = frame.to_numpy(dtype=float)
    n_rows, n_cols = values.shape
    fig, ax = plt.subplots(figsize=(2.0 + 1.6 * n_cols, 1.6 + 0.9 * n_rows))
    try:
        image = ax.imshow(values, cmap="viridis", vmin=np.nanmin(values), vmax=np.nanmax(values))
        for i, train in enumerate(frame.index):
            for j, test in enumerate(frame.columns):
                c = result.cell(str(train), str(test))
                # Light text on the dark end of viridis, dark text on the bright end.
                bright = bool(np.asarray(image.norm(values[i, j])) > 0.6)
                ax.text(
                    j,
                    i,
                    f"{c.mean:.3f}\n±{c.sd:.3f}",
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="black" if bright else "white",
                )
                if c.in_domain:
                    ax.add_patch(
                        plt.Rectangle(
                            (j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2
                        )
                    )
        ax.set_xticks(range(n_cols), list(frame.columns), rotation=30, ha="right")
        ax.set_yticks(range(n_rows), list(frame.index))
        ax.set_xlabel("test domain")
        ax.set_ylabel("training domain")
        ax.set_title(f"Transfer: {result.spec.name} (accuracy, mean ± sd over seeds)")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        fig.tight_layout()
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format="png", dpi=100)
    finally:
        plt.close(fig)
    return out


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f'<table class="leaderboard"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def render_html(result: TransferResult, png: bytes) -> str:
    title = f"Transfer: {result.spec.name}"
    header, rows = matrix_rows(result)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body { font-family: sans-serif; margin: 2em; } "
        "table.leaderboard { border-collapse: collapse; margin-bottom: 1.5em; } "
        "table.leaderboard th, table.leaderboard td { padding: 4px 10px; text-align: right; "
        "border-bottom: 1px solid #ddd; white-space: nowrap; } "
        "table.leaderboard td:first-child, table.leaderboard th:first-child { text-align: left; }"
        "</style></head>",
        "<body>",
        f"<h1>{html.escape(title)}</h1>",
        _html_table(header, rows),
        f'<img class="heatmap" alt="{html.escape(title)} heatmap" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">',
    ]
    if result.gaps:
        gh, gr = gap_rows(result)
        parts += ["<h2>Gaps</h2>", _html_table(gh, gr)]
    parts += [f'<p class="footnote">{html.escape(n)}</p>' for n in _notes(result)]
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def write_transfer_report(result: TransferResult, out_dir: str | Path) -> list[Path]:
    """``transfer.md``, ``matrix.csv``, ``runs.csv``, ``heatmap.png`` and ``transfer.html``."""
    import pandas as pd

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    md = out / "transfer.md"
    md.write_text(render_markdown(result), encoding="utf-8")
    written.append(md)
    cells = pd.DataFrame(
        [
            {
                "train": c.train,
                "test": c.test,
                "in_domain": c.in_domain,
                "accuracy": c.mean,
                "low": c.low,
                "high": c.high,
                "seed_sd": c.sd,
                "n": c.n,
                "per_seed": " ".join(f"{x:.4f}" for x in c.per_seed),
            }
            for c in result.cells
        ]
    )
    matrix_csv = out / "matrix.csv"
    cells.to_csv(matrix_csv, index=False, lineterminator="\n")
    runs_csv = out / "runs.csv"
    pd.DataFrame(result.runs).to_csv(runs_csv, index=False, lineterminator="\n")
    written += [matrix_csv, runs_csv]
    if result.gaps:
        gaps_csv = out / "gaps.csv"
        pd.DataFrame([vars(g) for g in result.gaps]).to_csv(
            gaps_csv, index=False, lineterminator="\n"
        )
        written.append(gaps_csv)
    png = heatmap(result, out / "heatmap.png")
    written.append(png)
    page = out / "transfer.html"
    page.write_text(render_html(result, png.read_bytes()), encoding="utf-8")
    written.append(page)
    return written
