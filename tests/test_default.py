"""The main job end to end on real assets, scaled down: train, evaluate, answer from the store."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from bench import defaults


@pytest.mark.slow
def test_default_job_then_answered_from_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Same recipes, far fewer training examples and a fresh model cache: this checks the
    # plumbing (assets, training, evaluation, reports, store answers), not the scores.
    monkeypatch.setenv("BENCH_MODELS_DIR", str(tmp_path / "models"))
    small = {
        name: dataclasses.replace(
            m, max_train_per_task=48, recipe={**m.recipe, "epochs": 1, "max_length": 48}
        )
        for name, m in defaults.DEFAULT_MODELS.items()
    }
    monkeypatch.setattr(defaults, "DEFAULT_MODELS", small)
    db = tmp_path / "r.sqlite"
    out = tmp_path / "reports"
    # A model whose data asset is gone from the package index is left out, saying why (the
    # rest of the job runs); everything else must be there.
    models, left_out = defaults.available_models(progress=False)
    small = {m.name: small[m.name] for m in models}

    capsys.readouterr()
    first = defaults.run_default(db=db, out_dir=out, progress=False, limit=60, attack_limit=6)
    assert "(computed)" in first
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert notes == [f"note: {name} is left out: {why}" for name, why in left_out.items()]
    for name in small:
        assert f"| {name}" in first
    for name, why in left_out.items():
        assert f"\nleft out: {name}: {why}" in first
        assert f"| {name}" not in first
    for task in {t for m in small.values() for t in m.eval_tasks}:
        assert task in first
    for ext in ("md", "csv", "html", "tex", "json"):
        assert (out / f"leaderboard.{ext}").stat().st_size > 0
    assert (out / "leaderboard.png").stat().st_size > 10_000
    rows = json.loads((out / "leaderboard.json").read_text())["rows"]
    assert {r["model"] for r in rows} == set(small)
    # The robustness column: each model attacked on its training domain.
    robust = {r["column"] for r in rows if r["profile"]}
    assert robust == {f"{m.train_tasks[0]}@{defaults.DEFAULT_SUITE}" for m in small.values()}
    assert all(0.0 <= r["low"] <= r["value"] <= r["high"] <= 1.0 for r in rows)

    second = defaults.run_default(db=db, out_dir=out, progress=False, limit=60, attack_limit=6)
    assert "(answered from the store)" in second
    assert second.split("\n\n")[0] == first.split("\n\n")[0]  # the same table
