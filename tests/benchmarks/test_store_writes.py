"""What the driver's single writer can sustain: rows committed per second, one transaction per
work unit, as the engine writes them (the sizing note in docs/scale-out.md quotes these)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from bench.records import AttackRow, EvalRunConfig, PredictionRow, PromptRow, RunRecord
from bench.store import ResultStore

ROWS = 20_000


def _record(key: str, kind: str, n: int) -> RunRecord:
    return RunRecord(
        run_key=key, kind=kind, task="t", task_version="1", task_hash="h", model="m",
        model_path="/m", model_hash="mh", config=EvalRunConfig(), split="test", n_examples=n,
        label_names=["a", "b", "c"], label_mapping={}, seed=0, harness_version="x", versions={},
    )  # fmt: skip


def _rows(kind: str, n: int) -> list[Any]:
    if kind == "eval":
        return [PredictionRow(i, f"{i:016x}", i % 3, (i + 1) % 3, [0.2, 0.3, 0.5],
                              [-1.0, 0.1, 0.7]) for i in range(n)]  # fmt: skip
    if kind == "prompt":
        text = "Question: is the sky blue on a clear day? Answer:" * 4
        return [PromptRow(i, f"{i:016x}", 0, 1, 1, [-3.2, -1.1], text, " no", " no", " yes",
                          False, False, ["a", "b"], [" yes", " no"]) for i in range(n)]  # fmt: skip
    sentence = "the film was good and the acting was very fine indeed"
    return [AttackRow(i, f"{i:016x}", 1, "succeeded", [sentence], [sentence.replace("good", "g00d")],
                      1, 0, [0.1, 0.9], [0.8, 0.2], 37, 1, 11) for i in range(n)]  # fmt: skip


def _rate(path: Path, kind: str, rows: list[Any], unit: int) -> float:
    with ResultStore(path) as store:
        store.begin_run(_record("k", kind, len(rows)))
        add = {"eval": store.add_predictions, "prompt": store.add_prompt_rows,
               "attack": store.add_attack_rows}[kind]  # fmt: skip
        started = time.perf_counter()
        for i in range(0, len(rows), unit):
            add("k", rows[i : i + unit])
        return len(rows) / (time.perf_counter() - started)


@pytest.mark.benchmark
def test_single_writer_rows_per_second(benchmark: Any, tmp_path: Path) -> None:
    counter = iter(range(1_000))
    results: dict[str, float] = {}

    def measure() -> None:
        for kind, unit, n in (("eval", 128, ROWS), ("eval", 1, ROWS // 10),
                              ("prompt", 32, ROWS), ("attack", 1, ROWS // 10)):  # fmt: skip
            path = tmp_path / f"w{next(counter)}.sqlite"
            rate = _rate(path, kind, _rows(kind, n), unit)
            label = f"{kind}/{unit}"
            results[label] = max(results.get(label, 0.0), rate)
            size = path.stat().st_size + sum(
                p.stat().st_size for p in tmp_path.glob(f"{path.name}-*")
            )
            results[f"{label} bytes/row"] = size / n

    benchmark.pedantic(measure, rounds=2, iterations=1)
    if not results:
        measure()
    benchmark.extra_info.update(results)
    for label in ("eval/128", "eval/1", "prompt/32", "attack/1"):
        print(
            f"\n{label} rows per transaction: {results[label]:,.0f} rows/s committed, "
            f"~{results[label + ' bytes/row']:,.0f} bytes per row on disk",
            end="",
        )
    print()
    # A transaction per work unit, not per row, is what lets one writer keep up with workers.
    assert results["eval/128"] > 2 * results["eval/1"]
