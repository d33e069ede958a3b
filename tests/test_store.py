"""The SQLite store: idempotent runs, per-batch atomic writes, no duplicate predictions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.records import EvalRunConfig
from bench.store import PredictionRow, ResultStore, RunRecord, StoredMetric, run_key


def _record(key: str, model: str = "m", task: str = "t", n: int = 4) -> RunRecord:
    return RunRecord(
        run_key=key,
        kind="eval",
        task=task,
        task_version="1",
        task_hash="th",
        model=model,
        model_path="/x",
        model_hash="mh",
        config=EvalRunConfig(split="test"),
        split="test",
        n_examples=n,
        label_names=["a", "b"],
        label_mapping={"A": "a", "B": "b"},
        seed=0,
        harness_version="0",
        versions={"torch": "x"},
    )


def _rows(idxs: list[int]) -> list[PredictionRow]:
    return [PredictionRow(i, f"u{i}", i % 2, 0, [0.6, 0.4], [0.3, -0.1]) for i in idxs]


def test_run_key_depends_on_every_part() -> None:
    base = {"task": "a", "model": "b", "config": {"x": 1}}
    assert run_key(base) == run_key(dict(reversed(list(base.items()))))
    assert run_key(base) != run_key({**base, "config": {"x": 2}})


def test_begin_is_idempotent_and_roundtrips(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "r.sqlite") as store:
        first = store.begin_run(_record("k1"))
        again = store.begin_run(_record("k1", model="other"))
        # The stored record is never overwritten; the run is shown under the name asked for.
        assert first.model == "m" and again.model == "other"
        assert store.get_run("k1").model == "m"  # type: ignore[union-attr]
        assert store.names("k1") == ["m", "other"]
        assert first.label_mapping == {"A": "a", "B": "b"}
        assert first.status == "running"


def test_predictions_are_never_duplicated(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "r.sqlite") as store:
        store.begin_run(_record("k"))
        assert store.add_predictions("k", _rows([0, 1])) == 2
        assert store.add_predictions("k", _rows([1, 2])) == 1
        assert store.done_indices("k") == {0, 1, 2}
        assert [r.idx for r in store.predictions("k")] == [0, 1, 2]


def test_a_failed_batch_writes_nothing(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "r.sqlite") as store:
        store.begin_run(_record("k"))
        bad = [*_rows([0]), PredictionRow(1, "u1", 0, 0, [float("nan")], [object()])]  # type: ignore[list-item]
        with pytest.raises(TypeError):
            store.add_predictions("k", bad)
        assert store.count_predictions("k") == 0


def test_finish_and_latest_complete(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    with ResultStore(path) as store:
        store.begin_run(_record("k1"))
        store.begin_run(_record("k2", model="m2"))
        store.finish_run("k1", [StoredMetric("k1", "accuracy", 0.75, 0.5, 1.0)])
        assert [r.run_key for r in store.latest_complete()] == ["k1"]
    with ResultStore(path) as store:  # reopened: data survived
        assert store.metrics("k1")["accuracy"].low == 0.5
        assert store.get_run("k1").status == "complete"  # type: ignore[union-attr]


def test_schema_mismatch_and_garbage_file_are_user_errors(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    ResultStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
    with pytest.raises(BenchError, match="schema 999"):
        ResultStore(path)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(BenchError, match="cannot open results database"):
        ResultStore(junk)


def test_result_rows_carry_majority_only_for_accuracy(tmp_path: Path) -> None:
    from bench.summary import result_rows

    with ResultStore(tmp_path / "r.sqlite") as store:
        store.begin_run(_record("k1"))
        store.finish_run(
            "k1",
            [
                StoredMetric("k1", "accuracy", 0.8, 0.7, 0.9),
                StoredMetric("k1", "macro_f1", 0.6, 0.5, 0.7),
                StoredMetric("k1", "majority", 0.55, None, None),
            ],
        )
        records = store.latest_complete()
        acc = result_rows(store, records, "accuracy")
        f1 = result_rows(store, records, "macro_f1")
        missing = result_rows(store, records, "ece")
    assert [(r.value, r.majority, r.n) for r in acc] == [(0.8, 0.55, 4)]
    assert [(r.value, r.majority) for r in f1] == [(0.6, None)]
    assert missing == []
