"""The audit report: ``audit.json`` (every number) and ``index.html`` (one self-contained page).

The page needs nothing but itself: CSS and the script are inline, plots are PNG data URIs, and a
Content-Security-Policy forbids every request the page could make (no network, even if a bug
let markup through). Every string from data (texts, names, labels, tokens) is escaped with
``html.escape``: an adversarial example that contains markup is shown as text. The example
browser lists every attacked example in the HTML itself, so it reads with scripts off; the
script only adds the filters, the count of shown examples and sorting.
"""

from __future__ import annotations

import base64
import difflib
import html
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'"
)

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1300px; color: #222;
  line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 2px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
h3 { margin-top: 1.5em; } h4 { margin: 1em 0 .3em; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: .9em; }
th, td { padding: 3px 8px; border-bottom: 1px solid #ddd; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.dir { color: #555; font-size: .85em; }
.muted { color: #666; font-size: .85em; }
.pos { color: #1a7f37; } .neg { color: #b42318; }
del { background: #ffd7d5; text-decoration: line-through; }
ins { background: #c9f2d0; text-decoration: none; font-weight: bold; }
img.plot { max-width: 100%; border: 1px solid #eee; margin: .5em 0; }
#examples td.text { max-width: 420px; }
.filters { background: #f8f8f8; padding: .5em; border: 1px solid #ddd; margin: .5em 0; }
.filters label { margin-right: 1em; }
th button { font: inherit; background: none; border: none; cursor: pointer; padding: 0; }
span.tok { padding: 0 1px; border-radius: 2px; }
.attr { margin: .2em 0 .8em; line-height: 1.9; }
code { font-size: .9em; }
.badge { display: inline-block; padding: 0 .4em; border-radius: 3px; font-size: .85em; }
.succeeded { background: #fde2e1; } .failed { background: #dff3e3; } .skipped { background: #eee; }
"""

_SCRIPT = """
(function () {
  var table = document.getElementById('example-table');
  if (!table) { return; }
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var selects = Array.prototype.slice.call(document.querySelectorAll('select[data-filter]'));
  var count = document.getElementById('example-count');
  function apply() {
    var shown = 0;
    rows.forEach(function (row) {
      var ok = selects.every(function (s) {
        return s.value === '' || row.getAttribute('data-' + s.getAttribute('data-filter')) === s.value;
      });
      row.hidden = !ok;
      if (ok) { shown += 1; }
    });
    count.textContent = String(shown);
  }
  selects.forEach(function (s) { s.disabled = false; s.addEventListener('change', apply); });
  var directions = {};
  Array.prototype.slice.call(table.tHead.querySelectorAll('button[data-col]')).forEach(function (b) {
    b.addEventListener('click', function () {
      var col = Number(b.getAttribute('data-col'));
      var up = directions[col] = !directions[col];
      rows.sort(function (x, y) {
        var a = x.cells[col].getAttribute('data-sort'), c = y.cells[col].getAttribute('data-sort');
        var na = Number(a), nc = Number(c);
        var cmp = (a !== '' && c !== '' && !isNaN(na) && !isNaN(nc)) ? na - nc : a.localeCompare(c);
        return up ? cmp : -cmp;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
  apply();
})();
"""


def e(value: Any) -> str:
    """Escaped text of any value (quotes too: it may land in an attribute)."""
    return html.escape("" if value is None else str(value), quote=True)


def fmt(x: float | None, digits: int = 3, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def figure_text(f: dict[str, Any] | None, digits: int = 3, sign: bool = False) -> str:
    """``value [low, high] (n=N)``, or a dash."""
    if not f or f.get("value") is None:
        note = f.get("note") if f else None
        return f"— ({note})" if note else "—"
    text = fmt(f["value"], digits, sign)
    if f.get("low") is not None and f.get("high") is not None:
        text += f" [{fmt(f['low'], digits, sign)}, {fmt(f['high'], digits, sign)}]"
        wilson = f.get("wilson")
        if wilson and f["low"] == f["high"]:
            # A percentile bootstrap of a share of 0 or 1 is a point: say what it hides.
            text += f" (Wilson [{fmt(wilson[0], digits)}, {fmt(wilson[1], digits)}])"
    if f.get("n") is not None:
        text += f" (n={f['n']})"
    return text


# --------------------------------------------------------------------------------------------------
# Plots


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=80)
    finally:
        plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _bar_rows(
    rows: Sequence[dict[str, Any]], models: list[str], title: str, xlabel: str, limit01: bool = True
) -> str:
    """Horizontal bars with CI whiskers: one group per row, one bar per model."""
    import numpy as np

    plt = _plt()
    labels = [str(r.get("short") or r["label"]) for r in rows]
    fig, ax = plt.subplots(figsize=(8.5, 0.9 + 0.36 * len(rows) * len(models)))
    height = 0.8 / len(models)
    for j, model in enumerate(models):
        key = "model" if j == 0 else "baseline"
        vals, lows, highs = [], [], []
        for r in rows:
            f = r.get(key) or {}
            v = f.get("value")
            vals.append(np.nan if v is None else v)
            lo, hi = f.get("low"), f.get("high")
            lows.append(0.0 if lo is None or v is None else v - lo)
            highs.append(0.0 if hi is None or v is None else hi - v)
        y = np.arange(len(rows)) + j * height
        ax.barh(y, vals, height=height, xerr=[lows, highs], capsize=2, label=model, alpha=0.85)
    ax.set_yticks(np.arange(len(rows)) + height * (len(models) - 1) / 2, labels, fontsize=8)
    ax.invert_yaxis()
    if limit01:
        ax.set_xlim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    if len(models) > 1:
        ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def _validity_plot(attack: dict[str, Any], models: list[str]) -> str:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3))
    for model in models:
        v = attack["validity"][model]
        share = v["perturbed_word_share"]["values"]
        sims = v["similarity"]["values"]
        if share:
            axes[0].hist(share, bins=20, range=(0, 100), alpha=0.6, label=model)
        if sims:
            axes[1].hist(sims, bins=20, range=(0, 1), alpha=0.6, label=model)
    threshold = attack["validity"][models[0]]["threshold"]
    axes[1].axvline(threshold, color="black", linestyle="--", linewidth=1)
    axes[0].set_xlabel("perturbed words (%)")
    axes[1].set_xlabel(f"MiniLM cosine similarity (dashed: threshold {threshold:g})")
    for ax in axes:
        ax.set_ylabel("adversarial examples")
        if len(models) > 1:
            ax.legend(fontsize=8)
    fig.suptitle(f"{attack['attack']}: successful adversarial examples", fontsize=10)
    return _png(fig)


def _reliability_plot(calib: dict[str, Any], models: list[str], task: str) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    for model in models:
        bins = calib[model]["bins"]
        conf = [b["confidence"] for b in bins]
        acc = [b["accuracy"] for b in bins]
        sizes = [12 + 120 * b["n"] / max(1, calib[model]["n"]) for b in bins]
        ece = calib[model]["ece"]
        ax.plot(conf, acc, marker="o", linewidth=1, label=f"{model} (ECE {fmt(ece['value'])})")
        ax.scatter(conf, acc, s=sizes, alpha=0.3)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top-label probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability: {task} (marker area ~ examples)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    return _png(fig)


def _heatmap(transfer: dict[str, Any]) -> str | None:
    import numpy as np

    models, tasks = transfer["models"], transfer["tasks"]
    if not tasks:
        return None
    values = np.full((len(models), len(tasks)), np.nan)
    for i, m in enumerate(models):
        for j, t in enumerate(tasks):
            cell = transfer["cells"].get(m, {}).get(t)
            if cell and cell.get("value") is not None:
                values[i, j] = cell["value"]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(2.2 + 1.5 * len(tasks), 1.4 + 0.6 * len(models)))
    image = ax.imshow(values, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for i in range(len(models)):
        for j in range(len(tasks)):
            if np.isfinite(values[i, j]):
                ax.text(
                    j,
                    i,
                    f"{values[i, j]:.3f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="black" if values[i, j] > 0.6 else "white",
                )
    ax.set_xticks(range(len(tasks)), tasks, rotation=25, ha="right", fontsize=8)
    ax.set_yticks(range(len(models)), models, fontsize=8)
    ax.set_title("clean accuracy on stored test-split runs", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return _png(fig)


def _img(png: str | None, alt: str) -> str:
    if png is None:
        return ""
    return f'<img class="plot" alt="{e(alt)}" src="data:image/png;base64,{png}">'


# --------------------------------------------------------------------------------------------------
# HTML pieces


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    """Cells are HTML already (callers escape data); the header is escaped here."""
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(rows_) + "</tr>" for rows_ in rows)
    klass = f' class="{cls}"' if cls else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure_rows(rows: Sequence[dict[str, Any]], models: list[str]) -> str:
    """Metric rows: label, each model's figure, the paired difference, the direction."""
    header = ["figure", *models]
    if len(models) > 1:
        header.append(f"difference {models[0]} − {models[1]} [CI] (paired n)")
    header.append("better")
    out = []
    for r in rows:
        cells = [f"<td>{e(r['label'])}</td>", f'<td class="num">{e(figure_text(r["model"]))}</td>']
        if len(models) > 1:
            cells.append(f'<td class="num">{e(figure_text(r.get("baseline")))}</td>')
            diff = r.get("diff")
            text = figure_text(diff, sign=True) if diff else (r.get("note") or "—")
            cells.append(f'<td class="num">{e(text)}</td>')
        cells.append(f'<td class="dir">{e(r["direction"])}</td>')
        out.append(cells)
    return _table(header, out)


def word_diff(before: str, after: str) -> tuple[str, str]:
    """Both texts as escaped HTML, words removed or replaced in ``<del>`` (before) and words
    inserted or replacing in ``<ins>`` (after)."""
    a, b = before.split(), after.split()
    left: list[str] = []
    right: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            left.extend(e(w) for w in a[i1:i2])
            right.extend(e(w) for w in b[j1:j2])
            continue
        if i2 > i1:
            left.append("<del>" + " ".join(e(w) for w in a[i1:i2]) + "</del>")
        if j2 > j1:
            new = " ".join(b[j1:j2])
            odd = sorted({f"U+{ord(c):04X}" for c in new if ord(c) > 127})
            # Homoglyphs look like the letters they replace: name them.
            title = f' title="non-ASCII: {e(", ".join(odd))}"' if odd else ""
            right.append(f"<ins{title}>" + " ".join(e(w) for w in b[j1:j2]) + "</ins>")
    return " ".join(left), " ".join(right)


def _texts(
    original: Sequence[str], perturbed: Sequence[str], inputs: Sequence[str]
) -> tuple[str, str]:
    lefts, rights = [], []
    for column, o, p in zip(inputs, original, perturbed, strict=False):
        prefix = f"{e(column)}: " if len(inputs) > 1 else ""
        if o == p:
            lefts.append(f'<div class="muted">{prefix}{e(o)}</div>')
            rights.append(f'<div class="muted">{prefix}{e(p)}</div>')
        else:
            left, right = word_diff(o, p)
            lefts.append(f"<div>{prefix}{left}</div>")
            rights.append(f"<div>{prefix}{right}</div>")
    return "".join(lefts), "".join(rights)


def _tokens(attr: dict[str, Any], scale: float) -> str:
    """Word pieces coloured by attribution: green supports the target, red opposes it."""
    parts = []
    for tok, s in zip(attr["tokens"], attr["scores"], strict=True):
        if tok in ("[CLS]", "[SEP]", "[PAD]", "<s>", "</s>"):
            parts.append(f'<span class="muted">{e(tok)}</span> ')
            continue
        alpha = min(1.0, abs(s) / scale) if scale > 0 else 0.0
        colour = f"rgba(26,127,55,{alpha:.2f})" if s >= 0 else f"rgba(180,35,24,{alpha:.2f})"
        glue = "" if tok.startswith("##") else " "
        text = tok[2:] if tok.startswith("##") else tok
        parts.append(
            f'{glue}<span class="tok" style="background:{colour}" title="{s:+.4f}">{e(text)}</span>'
        )
    return "".join(parts).strip()


def _examples_section(task: dict[str, Any], multi_task: bool) -> str:
    examples = task["examples"]
    inputs = task["inputs"]
    labels = task["labels"]
    models = task["models"]
    attacks = sorted({x["attack"] for x in examples})
    rows = []
    for x in examples:
        left, right = _texts(x["original"], x["perturbed"], inputs)
        gold = labels.index(x["label"])
        before = x["original_scores"][gold] if x["original_scores"] else None
        after = x["perturbed_scores"][gold] if x["perturbed_scores"] else None
        share = 100.0 * x["words_changed"] / max(1, x["words_total"])
        sim = x["similarity"]
        cells = [
            f'<td data-sort="{e(x["model"])}">{e(x["model"])}</td>',
            f'<td data-sort="{e(x["attack"])}">{e(x["attack"])}</td>',
            f'<td data-sort="{e(x["status"])}"><span class="badge {e(x["status"])}">{e(x["status"])}</span></td>',
            f'<td data-sort="{e(x["label"])}">{e(x["label"])}</td>',
            f'<td data-sort="{e(x["perturbed_pred"])}">{e(x["original_pred"])} → {e(x["perturbed_pred"])}</td>',
            f'<td class="num" data-sort="{before if before is not None else ""}">{fmt(before)} → {fmt(after)}</td>',
            f'<td class="num" data-sort="{x["queries"]}">{x["queries"]}</td>',
            f'<td class="num" data-sort="{share:.2f}">{x["words_changed"]}/{x["words_total"]}</td>',
            f'<td class="num" data-sort="{"" if sim is None else sim}">{fmt(sim)}</td>',
            f'<td class="text" data-sort="{e(x["idx"])}">{left}</td>',
            f'<td class="text" data-sort="{e(x["idx"])}">{right}</td>',
        ]
        attrs = (
            f'data-model="{e(x["model"])}" data-attack="{e(x["attack"])}" '
            f'data-status="{e(x["status"])}" data-label="{e(x["label"])}"'
        )
        rows.append(f"<tr {attrs}>" + "".join(cells) + "</tr>")
    header = [
        "model",
        "attack",
        "outcome",
        "gold",
        "prediction before → after",
        "p(gold) before → after",
        "queries",
        "words changed",
        "similarity",
        "original",
        "adversarial",
    ]
    head = "".join(
        f'<th><button type="button" data-col="{i}" title="sort">{e(h)} ↕</button></th>'
        for i, h in enumerate(header)
    )

    def select(name: str, label: str, values: Sequence[str]) -> str:
        options = '<option value="">all</option>' + "".join(
            f'<option value="{e(v)}">{e(v)}</option>' for v in values
        )
        return (
            f'<label>{e(label)} <select data-filter="{e(name)}" disabled>{options}</select></label>'
        )

    filters = "".join(
        [
            select("model", "model", models) if len(models) > 1 else "",
            select("attack", "attack", attacks),
            select("status", "outcome", ["succeeded", "failed", "skipped"]),
            select("label", "gold label", labels),
        ]
    )
    task_id = e(task["task"])
    return (
        f'<div class="filters">{filters} <span>Showing <b id="example-count">{len(examples)}</b> '
        f"of {len(examples)} attacked examples{' of ' + task_id if multi_task else ''}.</span>"
        "<noscript> (Filters and sorting need scripts; every example is listed below.)</noscript>"
        "</div>"
        f'<table id="example-table"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
        "</table>"
    )


def _identity(data: dict[str, Any]) -> str:
    rows = []
    for role in ("model", "baseline"):
        m = data.get(role)
        if not m:
            continue
        rows.append(
            [
                f"<td>{e(role)}</td>",
                f"<td><b>{e(m['name'])}</b></td>",
                f"<td>{e(m['backend'])}</td>",
                f"<td><code>{e(m['hash'])}</code></td>",
                f"<td>{e(m['folder'])}</td>",
                f"<td>{e(m['dtype'])}</td>",
            ]
        )
    return _table(
        [
            "role",
            "model",
            "backend",
            "content hash (weights, config, tokenizer)",
            "folder",
            "dtype",
        ],
        rows,
    )


def _task_identity(task: dict[str, Any], behave: dict[str, Any] | None) -> str:
    rows = [
        [
            f"<td>task data ({e(task['task'])} v{e(task['version'])})</td>",
            f"<td><code>{e(task['data_hash'])}</code></td>",
        ]
    ]
    for column, profile in task["profiles"].items():
        rows.append(
            [f"<td>constraint profile of {e(column)}</td>", f"<td><code>{e(profile)}</code></td>"]
        )
    if behave:
        rows.append(
            [
                f"<td>behavioural suite {e(behave['suite'])} v{e(behave['version'])} ({e(behave['file'])}), seed {e(behave['seed'])}</td>",
                f"<td><code>{e(behave['suite_hash'])}</code></td>",
            ]
        )
    for model, runs in task["runs"].items():
        keys = ", ".join(
            f"{r['kind']} {r['column'] or ''} {r['run_key']}".replace("  ", " ") for r in runs
        )
        rows.append([f"<td>runs of {e(model)}</td>", f'<td class="muted">{e(keys)}</td>'])
    return _table(["what", "hash"], rows)


def _behave_html(task: dict[str, Any], b: dict[str, Any], models: list[str]) -> str:
    parts = [
        f"<p>Suite <b>{e(b['suite'])}</b> (version {e(b['version'])}, file {e(b['file'])}), expanded "
        f"with seed {e(b['seed'])}: minimum-functionality (mft) cases must get their label, "
        "invariance (inv) cases must keep their prediction under the perturbation (a flip either "
        "way fails), directional (dir) cases must move as stated. Failure rate: share of a test's "
        "cases that fail, with a bootstrap CI over cases.</p>"
    ]
    info = {t["name"]: t for t in b["tests"]}
    rows = []
    for r in b["table"]:
        t = info.get(r["label"])
        rows.append(
            {
                **r,
                "label": r["label"]
                if t is None
                else f"{r['label']} ({t['type']}, {t['capability']})",
            }
        )
    parts.append(_figure_rows(rows, models))
    parts.append(
        _img(
            _bar_rows(
                rows[:-1],
                models,
                f"Behavioural failure rates: {task['task']}",
                "failure rate (lower is better)",
            ),
            "behavioural failure rates",
        )
    )
    for t in b["tests"]:
        parts.append(
            f'<h4>{e(t["name"])} <span class="muted">{e(t["type"])} · {e(t["capability"])} · {e(t["source"])}</span></h4>'
        )
        parts.append(f'<p class="muted">{e(t["description"])}</p>')
        for model in models:
            predicted = t.get("predicted", {}).get(model)
            if predicted and predicted["top"] is not None:
                spread = ", ".join(f"{k} {v:.0%}" for k, v in predicted["shares"].items())
                warn = ""
                if predicted["top_share"] >= 0.95:
                    warn = (
                        " <b>One label for (nearly) every case: a pass here says little about"
                        " the capability.</b>"
                    )
                parts.append(f'<p class="muted">{e(model)} predicted: {e(spread)}.{warn}</p>')
            failing = t["failing"].get(model, [])
            if not failing:
                parts.append(f"<p>{e(model)}: no failing case.</p>")
                continue
            rows_ = []
            for c in failing:
                rows_.append(
                    [
                        f"<td>{' <b>|</b> '.join(e(x) for x in c['inputs'])}</td>",
                        f"<td>{' <b>|</b> '.join(e(x) for x in c['variant']) or '—'}</td>",
                        f"<td>{e(c['expected'] or '—')}</td>",
                        f"<td>{e(c['pred'])}{(' → ' + e(c['pred_variant'])) if c['pred_variant'] else ''}</td>",
                        f'<td class="num">{e(", ".join(fmt(p) for p in c["probs"]))}'
                        + (
                            f" → {e(', '.join(fmt(p) for p in c['probs_variant']))}"
                            if c["probs_variant"]
                            else ""
                        )
                        + "</td>",
                    ]
                )
            parts.append(f"<p>{e(model)}: first failing cases</p>")
            parts.append(
                _table(
                    [
                        "case",
                        "variant",
                        "expected",
                        "prediction (→ variant)",
                        f"p({', '.join(task['labels'])})",
                    ],
                    rows_,
                )
            )
    return "".join(parts)


def _attributions_html(task: dict[str, Any], models: list[str]) -> str:
    att = task["attributions"]
    parts = [
        "<p>Integrated gradients (Captum, on the input word embeddings) of the probability of the "
        "original prediction, for the original and the adversarial text of a seeded sample of "
        "successful attacks; green word pieces support that label, red ones oppose it (one colour "
        "scale per example). Attributions sum to the probability at the text minus at the "
        "baseline (special tokens kept, other pieces padding) up to the convergence delta shown. "
        "Faithfulness (ERASER's AOPC over deleting or keeping the top 1, 5, 10, 20, 50 % of word "
        "pieces, on the original text) is compared with a random ranking of the same pieces.</p>"
    ]
    for a in att["attacks"]:
        parts.append(
            f'<h4>{e(a["column"])} <span class="muted">{e(a["steps"])} steps, budget {e(a["budget"])}</span></h4>'
        )
        parts.append(_figure_rows(a["table"], models))
        secs = ", ".join(f"{m}: {figure_text(a['seconds_per_example'][m], 2)}" for m in models)
        parts.append(
            f'<p class="muted">seconds per explained example (two texts and the faithfulness passes): {e(secs)}</p>'
        )
        rows = [
            r
            for r in a["table"]
            if r["metric"]
            in (
                "comprehensiveness",
                "comprehensiveness_random",
                "sufficiency",
                "sufficiency_random",
            )
        ]
        if any(r["model"]["value"] is not None for r in rows):
            parts.append(
                _img(
                    _bar_rows(
                        rows,
                        models,
                        f"Faithfulness: {a['column']}",
                        "AOPC (probability drop)",
                        limit01=False,
                    ),
                    "faithfulness",
                )
            )
        for model in models:
            for x in a["examples"].get(model, []):
                scale = max(
                    [abs(s) for s in x["original"]["scores"] + x["adversarial"]["scores"]] + [1e-9]
                )
                parts.append(
                    f'<div class="attr"><div class="muted">{e(model)} · example {e(x["idx"])} · gold '
                    f"{e(x['label'])}, flipped to {e(x['perturbed_pred'])} · attributed: p({e(x['target'])}) · "
                    f"similarity {fmt(x['similarity'])} · comprehensiveness {fmt(x['comprehensiveness'])} "
                    f"(random {fmt(x['comprehensiveness_random'])})</div>"
                    f'<div>original: {_tokens(x["original"], scale)} <span class="muted">p {fmt(x["original"]["output"])}, '
                    f"baseline {fmt(x['original']['baseline_output'])}, Σ {fmt(x['original']['sum'])}, "
                    f"δ {fmt(x['original']['delta'], 5, True)}</span></div>"
                    f'<div>adversarial: {_tokens(x["adversarial"], scale)} <span class="muted">p '
                    f"{fmt(x['adversarial']['output'])}, baseline {fmt(x['adversarial']['baseline_output'])}, "
                    f"Σ {fmt(x['adversarial']['sum'])}, δ {fmt(x['adversarial']['delta'], 5, True)}</span></div></div>"
                )
    return "".join(parts)


def _context_html(context: dict[str, Any]) -> str:
    parts = ["<h3>Domain transfer</h3>"]
    transfer = context["transfer"]
    if len(transfer["tasks"]) < 2:
        parts.append(
            "<p>The store holds no clean evaluation of these models on other tasks with the same "
            "labels. Evaluate them (<code>bench run --task OTHER --model M</code>) and rerun the "
            "audit to see the transfer heatmap and gaps here.</p>"
        )
    else:
        parts.append(_img(_heatmap(transfer), "transfer heatmap"))
        rows = [
            [
                f"<td>{e(g['model'])}</td>",
                f"<td>{e(g['from'])}</td>",
                f"<td>{e(g['to'])}</td>",
                f'<td class="num">{e(figure_text(g, sign=True))}</td>',
                f'<td class="num">{g["n_from"]} / {g["n_to"]}</td>',
            ]
            for g in transfer["gaps"]
        ]
        parts.append(
            _table(
                [
                    "model",
                    "audited task",
                    "other task",
                    "gap: audited − other [CI]",
                    "n (audited / other)",
                ],
                rows,
            )
        )
        parts.append(
            f'<p class="muted">Gap: {e(context.get("gap_direction", ""))} Independent bootstrap of the two test sets (different examples: not paired).</p>'
        )
    parts.append("<h3>Prompt sensitivity</h3>")
    prompts = context["prompts"]
    if not prompts:
        parts.append(
            "<p>No prompted runs of these tasks are stored (prompt sensitivity is measured for "
            "causal LMs posed the task with several templates: <code>bench run --model smollm2 "
            "--task T</code>).</p>"
        )
    else:
        rows = []
        for p in prompts:
            per = ", ".join(f"t{t['template']}: {fmt(t.get('value'))}" for t in p["templates"])
            rows.append(
                [
                    f"<td>{e(p['task'])}</td>",
                    f"<td>{e(p['model'])}</td>",
                    f"<td>{e(p['column'])}</td>",
                    f'<td class="num">{e(figure_text(p["accuracy"]))}</td>',
                    f"<td>{e(per)}</td>",
                    f'<td class="num">{e(fmt(p["spread"]["value"]))}</td>',
                ]
            )
        parts.append(
            _table(
                [
                    "task",
                    "model",
                    "shots",
                    "accuracy, mean over templates [CI]",
                    "per template",
                    "spread (max − min; lower is better)",
                ],
                rows,
            )
        )
    return "".join(parts)


def render_html(data: dict[str, Any]) -> str:
    model = data["model"]["name"]
    base = data["baseline"]["name"] if data.get("baseline") else None
    models = [model] + ([base] if base else [])
    tasks = data["tasks"]
    title = f"Robustness audit: {model} on {', '.join(t['task'] for t in tasks)}"
    s = data["settings"]
    conf = f"{100 * s['confidence']:g}"
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<p>Every figure is a point estimate with a {conf}% bootstrap interval ({e(s['n_bootstrap'])} "
        f"resamples, seed {e(s['seed'])}) and its n; the last column of every table says which "
        "direction is better (or what a larger value means). "
        + (
            f"Differences are {e(model)} minus {e(base)}, paired by example (a paired bootstrap "
            "over examples, clusters kept together). "
            if base
            else ""
        )
        + f"Attacks ran on a seeded sample of {e(s['limit'])} test examples (seed {e(s['seed'])}). "
        "Every number is also in <code>audit.json</code> beside this page.</p>",
        _identity(data),
        '<nav><a href="#summary">Summary</a> · <a href="#validity">Attack validity</a> · '
        '<a href="#examples">Examples</a> · <a href="#behave">Behavioural tests</a> · '
        '<a href="#calibration">Calibration</a> · <a href="#attributions">Attributions</a> · '
        '<a href="#context">Context</a> · <a href="#provenance">Provenance</a></nav>',
    ]
    multi = len(tasks) > 1
    out.append('<h2 id="summary">Summary</h2>')
    for t in tasks:
        out.append(f"<h3>{e(t['task'])}</h3>")
        out.append(_figure_rows(t["summary"], models))
        acc = [
            r
            for r in t["summary"]
            if r["metric"] in ("accuracy", "clean_accuracy", "accuracy_under_attack", "worst_case")
        ]
        out.append(
            _img(
                _bar_rows(
                    acc,
                    models,
                    f"Accuracy, clean and under attack: {t['task']}",
                    "accuracy (higher is better)",
                ),
                "accuracy clean and under attack",
            )
        )
        out.append(_task_identity(t, t.get("behave")))
    out.append('<h2 id="validity">Attack validity</h2>')
    out.append(
        "<p>A large share of raw attack outputs do not keep the label a person would give. Per "
        "attack: how many words the successful attacks changed, and how similar each adversarial "
        "text is to its original (cosine of MiniLM sentence embeddings, the encoder the attacks "
        f"use), with the share at or above {e(s['similarity_threshold'])}. Read the examples below "
        "to judge the rest.</p>"
    )
    for t in tasks:
        for a in t["attacks"]:
            out.append(
                f'<h3>{e(t["task"])}: {e(a["attack"])} <span class="muted">profile {e(a["profile_hash"])}</span></h3>'
            )
            rows = [
                r
                for r in a["table"]
                if r["metric"] in ("perturbed_word_share", "similarity", "similarity_above")
            ]
            out.append(_figure_rows(rows, models))
            out.append(_img(_validity_plot(a, models), f"validity of {a['attack']}"))
            for model in models:
                v = a["validity"][model]
                sh, sm = v["perturbed_word_share"], v["similarity"]
                out.append(
                    f'<p class="muted">{e(model)}: perturbed words % median {fmt(sh.get("median"), 1)}, '
                    f"90th percentile {fmt(sh.get('p90'), 1)}; similarity median {fmt(sm.get('median'))}, "
                    f"10th percentile {fmt(sm.get('p10'))}.</p>"
                )
    out.append('<h2 id="examples">Example browser</h2>')
    out.append(
        "<p>Every attacked example: the original with the words the attack removed or replaced "
        "struck through, and the adversarial text with the new words marked. <i>succeeded</i>: the "
        "prediction flipped; <i>failed</i>: it held; <i>skipped</i>: misclassified before the "
        "attack. Click a column header to sort.</p>"
    )
    for t in tasks:
        if multi:
            out.append(f"<h3>{e(t['task'])}</h3>")
        out.append(_examples_section(t, multi))
    out.append('<h2 id="behave">Behavioural tests</h2>')
    for t in tasks:
        out.append(f"<h3>{e(t['task'])}</h3>")
        if t.get("behave"):
            out.append(_behave_html(t, t["behave"], models))
        else:
            out.append(
                "<p>No built-in behavioural suite fits this task's columns and labels; pass --behave-suite FILE.</p>"
            )
    out.append('<h2 id="calibration">Calibration</h2>')
    for t in tasks:
        out.append(f"<h3>{e(t['task'])}</h3>")
        out.append(_figure_rows(t["calibration"]["table"], models))
        out.append(
            _img(
                _reliability_plot(t["calibration"]["models"], models, t["task"]),
                "reliability diagram",
            )
        )
    out.append('<h2 id="attributions">Attributions for flipped examples</h2>')
    for t in tasks:
        out.append(f"<h3>{e(t['task'])}</h3>")
        out.append(_attributions_html(t, models))
    out.append('<h2 id="context">Context</h2>')
    out.append(_context_html({**data["context"], "gap_direction": data["directions"]["gap"]}))
    p = data["provenance"]
    out.append('<h2 id="provenance">Provenance</h2>')
    versions = ", ".join(f"{k} {v}" for k, v in sorted(p["versions"].items()))
    out.append(
        f"<p>Generated {e(p['generated_at'])} by nlp-bench {e(p['harness'])} from results store "
        f"{e(p['store'])}: {e(p.get('runs'))} runs, {e(p.get('runs_from_store'))} answered from "
        f"the store, {e(p.get('rows_computed'))} rows computed now, {e(p.get('seconds'))} s. "
        f"Settings: {e(json.dumps(s, sort_keys=True))}. Libraries: {e(versions)}.</p>"
    )
    out.append(f"<script>{_SCRIPT}</script></body></html>")
    return "\n".join(out) + "\n"


def finite(data: Any) -> Any:
    """``data`` with every NaN or infinity replaced by None (JSON has no NaN)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [finite(v) for v in data]
    return data


def write_report(data: dict[str, Any], out: Path) -> list[Path]:
    """``audit.json`` and ``index.html`` in ``out`` (created)."""
    data = finite(data)
    out.mkdir(parents=True, exist_ok=True)
    page = out / "index.html"
    numbers = out / "audit.json"
    text = json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False)
    numbers.write_text(text + "\n", encoding="utf-8")
    page.write_text(render_html(data), encoding="utf-8")
    return [page, numbers]
