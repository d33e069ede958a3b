"""Leaderboard tables, their text formats, and the bar chart."""

from __future__ import annotations

import io
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.errors import DataError, SpecError
from bench.report.leaderboard import (
    DAGGER,
    DAGGER_NOTE,
    DEGENERATE,
    DEGENERATE_SHARE,
    MAJORITY_ROW,
    MISSING,
    ResultRow,
    format_cell,
    group_seeds,
    leaderboard_cells,
    leaderboard_frame,
    plot,
    render,
)

EVIL = "<script>alert('x')</script>&_model"


def make_rows() -> list[ResultRow]:
    return [
        ResultRow("roberta_base", "sst2", "accuracy", 0.93, 0.915, 0.944, 872, 0.509, "k1"),
        ResultRow("roberta_base", "mnli_m", "accuracy", 0.87, 0.863, 0.877, 9815, 0.354, "k2"),
        ResultRow("roberta_base", "rte", "accuracy", 0.78, 0.73, 0.83, 277, 0.527, "k3"),
        ResultRow("distilbert", "sst2", "accuracy", 0.91, 0.891, 0.928, 872, 0.509, "k4"),
        ResultRow("distilbert", "rte", "accuracy", 0.55, 0.49, 0.61, 277, 0.527, "k5"),
        ResultRow(EVIL, "sst2", "accuracy", 0.8123, 0.7904, 0.8331, 872, 0.509, "k6"),
        ResultRow("roberta_base", "sst2", "ece", 0.04, 0.03, 0.05, 872, None, "k1"),
        ResultRow("distilbert", "sst2", "ece", 0.02, None, None, 872, None, "k4"),
    ]


def test_frame_shape_order_and_values() -> None:
    frame = leaderboard_frame(make_rows())
    assert list(frame.columns) == ["mnli_m", "rte", "sst2"]
    # Means: roberta (0.93+0.87+0.78)/3 = 0.86, EVIL 0.8123, distilbert 0.73.
    assert list(frame.index) == ["roberta_base", EVIL, "distilbert"]
    assert frame.shape == (3, 3)
    assert frame.dtypes.map(lambda d: d == np.float64).all()
    assert frame.loc["distilbert", "rte"] == 0.55
    assert math.isnan(frame.loc["distilbert", "mnli_m"])
    assert math.isnan(frame.loc[EVIL, "rte"])


def test_lower_is_better_metric_orders_ascending() -> None:
    frame = leaderboard_frame(make_rows(), metric="ece")
    assert list(frame.index) == ["distilbert", "roberta_base"]


def test_cells_format_missing_dagger_and_majority_row() -> None:
    cells = leaderboard_cells(make_rows())
    assert list(cells.index) == ["roberta_base", EVIL, "distilbert", MAJORITY_ROW]
    assert cells.loc[EVIL, "sst2"] == "0.812 [0.790, 0.833]"
    assert cells.loc["roberta_base", "sst2"] == "0.930 [0.915, 0.944]"
    assert cells.loc["distilbert", "mnli_m"] == MISSING
    # distilbert on rte: CI [0.49, 0.61] contains the majority rate 0.527.
    assert cells.loc["distilbert", "rte"] == "0.550 [0.490, 0.610]" + DAGGER
    assert not cells.loc["roberta_base", "rte"].endswith(DAGGER)
    assert cells.loc[MAJORITY_ROW].tolist() == ["0.354", "0.527", "0.509"]


def test_cells_without_majority_or_ci() -> None:
    cells = leaderboard_cells(make_rows(), metric="ece")
    assert MAJORITY_ROW not in cells.index
    assert cells.loc["distilbert", "sst2"] == "0.020"
    assert format_cell(None) == MISSING


def test_ci_touching_majority_counts_as_including_it() -> None:
    row = ResultRow("m", "t", "accuracy", 0.6, 0.5, 0.7, 10, 0.5)
    assert format_cell(row).endswith(DAGGER)
    assert not format_cell(ResultRow("m", "t", "accuracy", 0.6, 0.51, 0.7, 10, 0.5)).endswith(
        DAGGER
    )


def test_majority_range_when_rows_disagree() -> None:
    rows = [
        ResultRow("a", "t", "accuracy", 0.9, 0.8, 0.95, 100, 0.5),
        ResultRow("b", "t", "accuracy", 0.9, 0.8, 0.95, 50, 0.52),
    ]
    assert leaderboard_cells(rows).loc[MAJORITY_ROW, "t"] == "0.500–0.520"


def test_column_overrides_task() -> None:
    rows = [
        ResultRow("m", "sst2", "accuracy", 0.9, 0.88, 0.92, 872, 0.509),
        ResultRow("m", "sst2", "accuracy", 0.3, 0.27, 0.33, 872, 0.509, column="sst2@textfooler"),
    ]
    frame = leaderboard_frame(rows)
    assert list(frame.columns) == ["sst2", "sst2@textfooler"]
    assert frame.loc["m"].tolist() == [0.9, 0.3]


def test_errors() -> None:
    rows = make_rows()
    with pytest.raises(DataError, match="f1"):
        leaderboard_frame(rows, metric="f1")
    with pytest.raises(DataError, match="two results"):
        leaderboard_frame([*rows, rows[0]])
    with pytest.raises(SpecError):
        render(rows, "pdf")  # type: ignore[arg-type]


def test_csv_round_trips_numbers_in_long_form() -> None:
    rows = make_rows()
    text = render(rows, "csv")
    back = pd.read_csv(io.StringIO(text), keep_default_na=True)
    acc = [r for r in rows if r.metric == "accuracy"]
    assert len(back) == len(acc)
    assert list(back.columns[:4]) == ["model", "column", "task", "metric"]
    by_key = {(r.model, r.task): r for r in acc}
    for rec in back.to_dict("records"):
        r = by_key[(rec["model"], rec["task"])]
        assert rec["value"] == r.value and rec["low"] == r.low and rec["high"] == r.high
        assert rec["n"] == r.n and rec["majority"] == r.majority and rec["run_key"] == r.run_key
    # Missing CI comes back as an empty field (NaN).
    ece = pd.read_csv(io.StringIO(render(rows, "csv", metric="ece")))
    assert ece.set_index("model").loc["distilbert", ["low", "high"]].isna().all()


def test_json_round_trips_numbers() -> None:
    rows = make_rows()
    doc = json.loads(render(rows, "json", metric="ece"))
    assert doc["metric"] == "ece"
    got = {(d["model"], d["task"]): d for d in doc["rows"]}
    assert got[("distilbert", "sst2")]["low"] is None
    assert got[("roberta_base", "sst2")]["value"] == 0.04
    doc = json.loads(render(rows, "json"))
    assert {d["model"] for d in doc["rows"]} == {"roberta_base", "distilbert", EVIL}
    nan_row = [ResultRow("m", "t", "accuracy", float("nan"), None, None, 0)]
    assert json.loads(render(nan_row, "json"))["rows"][0]["value"] is None


class _TableText(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self.title = ""
        self.tags: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag in ("td", "th", "title", "p"):
            self._in = tag
            if tag in ("td", "th"):
                self.cells.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in in ("td", "th"):
            self.cells[-1] += data
        elif self._in == "title":
            self.title += data


def test_html_is_standalone_and_escapes_names() -> None:
    page = render(make_rows(), "html")
    assert page.startswith("<!DOCTYPE html>")
    assert EVIL not in page  # the raw name would inject a script tag
    parser = _TableText()
    parser.feed(page)
    assert "script" not in parser.tags
    assert EVIL in parser.cells  # it round-trips as text
    assert "0.550 [0.490, 0.610]" + DAGGER in parser.cells
    assert parser.title == "Leaderboard: accuracy"
    assert DAGGER_NOTE in page


def test_markdown_table_parses_back() -> None:
    rows = [*make_rows(), ResultRow("a|b", "sst2", "accuracy", 0.1, None, None, 872, 0.509)]
    text = render(rows, "markdown")
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    cells = leaderboard_cells(rows, show_n=True)
    assert len(lines) == 2 + len(cells)
    split = [
        [
            c.strip().replace("\\|", "|").replace("\\<", "<")
            for c in re.split(r"(?<!\\)\|", ln)[1:-1]
        ]
        for ln in lines
    ]
    assert split[0] == ["model", *cells.columns]
    body = split[2:]
    assert [r[0] for r in body] == list(cells.index)
    assert [r[1:] for r in body] == cells.values.tolist()
    assert DAGGER_NOTE in text


def test_latex_has_tabular_and_escapes() -> None:
    text = render(make_rows(), "latex")
    assert "\\begin{tabular}" in text and "\\end{tabular}" in text
    assert "mnli\\_m" in text and "roberta\\_base" in text
    assert "\\textless{}script\\textgreater{}" in text and "\\&\\_model" in text
    assert "<script>" not in text
    assert "\\textsuperscript{\\dag}" in text and DAGGER not in text
    assert "---" in text and MISSING not in text


def test_plot_writes_nonblank_png(tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    out = plot(make_rows(), tmp_path / "sub" / "lb.png")
    assert out == tmp_path / "sub" / "lb.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 5_000
    img = mpimg.imread(out)
    assert img.shape[0] >= 300 and img.shape[1] >= 600
    assert float(np.var(img[..., :3])) > 0.0


# ------------------------------------------------------------------------- n, degenerate flag


def test_n_goes_in_the_header_when_a_column_shares_it_else_in_each_cell() -> None:
    rows = [
        ResultRow("a", "vader_movies", "accuracy", 0.8, 0.78, 0.82, 1060, 0.5),
        ResultRow("b", "vader_movies", "accuracy", 0.7, 0.68, 0.72, 1060, 0.5),
        ResultRow("a", "nyt", "accuracy", 0.6, 0.5, 0.7, 120, 0.5),
        ResultRow("b", "nyt", "accuracy", 0.65, 0.55, 0.75, 1200, 0.5),
    ]
    cells = leaderboard_cells(rows, show_n=True)
    assert list(cells.columns) == ["nyt", "vader_movies (n=1,060)"]
    assert cells.loc["a", "nyt"] == "0.600 [0.500, 0.700]" + DAGGER + " n=120"
    assert cells.loc["b", "nyt"] == "0.650 [0.550, 0.750] n=1,200"
    assert cells.loc["a", "vader_movies (n=1,060)"] == "0.800 [0.780, 0.820]"
    assert cells.loc[MAJORITY_ROW, "nyt"] == "0.500"  # the baseline row carries no n
    assert list(leaderboard_cells(rows).columns) == ["nyt", "vader_movies"]  # the data view
    md = render(rows, "markdown")
    assert "vader_movies (n=1,060)" in md and "n=1,200" in md and "n: examples per cell" in md
    page = render(rows, "html")
    parser = _TableText()
    parser.feed(page)
    assert "vader_movies (n=1,060)" in parser.cells
    assert "0.600 [0.500, 0.700]" + DAGGER + " n=120" in parser.cells
    tex = render(rows, "latex")
    assert "vader\\_movies (n=1,060)" in tex and "n=120" in tex


DEGENERATE_ROWS = [
    ResultRow(
        "constant", "vitaminc_2way", "accuracy", 0.51, 0.488, 0.533, 2000, 0.51, "k1",
        dominant_label="non-entailment", dominant_share=1.0,
    ),
    ResultRow(
        "constant", "epistemic", "accuracy", 0.63, 0.6, 0.66, 604, 0.632, "k2",
        dominant_label="non-entailment", dominant_share=0.957,
    ),
    # Lopsided but under the threshold: no flag.
    ResultRow(
        "fine", "vitaminc_2way", "accuracy", 0.7, 0.68, 0.72, 2000, 0.51, "k3",
        dominant_label="entailment", dominant_share=0.94,
    ),
    ResultRow("fine", "epistemic", "accuracy", 0.8, 0.77, 0.83, 604, 0.632, "k4"),
]  # fmt: skip


def test_degenerate_cells_are_marked_in_the_wide_formats() -> None:
    assert DEGENERATE_SHARE == 0.95
    cells = leaderboard_cells(DEGENERATE_ROWS, show_n=True)
    vit = "vitaminc_2way (n=2,000)"
    assert cells.loc["constant", vit] == (
        "0.510 [0.488, 0.533]" + DAGGER + " " + DEGENERATE + "non-entailment 100%"
    )
    # 95.7 % is shown rounded down, never as more than it is.
    assert cells.loc["constant", "epistemic (n=604)"].endswith(DEGENERATE + "non-entailment 95%")
    assert DEGENERATE not in cells.loc["fine", vit]
    md = render(DEGENERATE_ROWS, "markdown")
    assert DEGENERATE + "non-entailment 100%" in md
    assert DEGENERATE + " one class takes ≥ 95% of the run's predictions" in md
    page = render(DEGENERATE_ROWS, "html")
    parser = _TableText()
    parser.feed(page)
    assert any(c.endswith(DEGENERATE + "non-entailment 100%") for c in parser.cells)
    assert "one class takes ≥ 95% of the run" in page
    tex = render(DEGENERATE_ROWS, "latex")
    assert "\\textsuperscript{\\ddag}non-entailment 100\\%" in tex
    assert "$\\geq$ 95\\%" in tex and DEGENERATE not in tex and "≥" not in tex
    # Without a degenerate cell there is no mark and no note.
    assert DEGENERATE not in render(DEGENERATE_ROWS[2:], "markdown")


def test_degenerate_fields_in_csv_and_json_always_present() -> None:
    back = pd.read_csv(io.StringIO(render(DEGENERATE_ROWS, "csv")))
    assert list(back.columns[-2:]) == ["dominant_label", "dominant_share"]
    by_key = back.set_index(["model", "task"])
    assert by_key.loc[("constant", "vitaminc_2way"), "dominant_label"] == "non-entailment"
    assert by_key.loc[("constant", "epistemic"), "dominant_share"] == 0.957
    # Under the threshold or not measured: empty.
    assert by_key.loc[("fine", "vitaminc_2way"), ["dominant_label", "dominant_share"]].isna().all()
    assert by_key.loc[("fine", "epistemic"), ["dominant_label", "dominant_share"]].isna().all()
    doc = json.loads(render(DEGENERATE_ROWS, "json"))
    got = {(d["model"], d["task"]): d for d in doc["rows"]}
    assert got[("constant", "vitaminc_2way")]["dominant_share"] == 1.0
    assert got[("fine", "vitaminc_2way")]["dominant_label"] is None
    assert all("dominant_label" in d and "dominant_share" in d for d in doc["rows"])
    plain = json.loads(render(make_rows(), "json"))["rows"]
    assert all(d["dominant_label"] is None and d["dominant_share"] is None for d in plain)


def test_seed_groups_are_degenerate_only_if_every_seed_is() -> None:
    def seed(s: int, share: float | None, label: str = "neg") -> ResultRow:
        return ResultRow(
            f"m#s{s}", "t", "accuracy", 0.5, 0.4, 0.6, 100, 0.5,
            dominant_label=label if share is not None else None, dominant_share=share,
        )  # fmt: skip

    (all_flat,) = group_seeds([seed(0, 1.0), seed(1, 0.96)])
    assert all_flat.dominant_label == "neg" and all_flat.dominant_share == 0.96
    assert format_cell(all_flat).endswith(DEGENERATE + "neg 96%")
    (mixed,) = group_seeds([seed(0, 1.0), seed(1, None)])
    assert not mixed.is_degenerate and DEGENERATE not in format_cell(mixed)
    (other,) = group_seeds([seed(0, 1.0, "neg"), seed(1, 1.0, "pos")])
    assert not other.is_degenerate
