"""The ONNX Runtime backend: exports that agree with the PyTorch model, evaluated and attacked
through the same engine as any classifier."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_WORDS, assert_user_error

from bench.errors import ModelError
from bench.specs import EvalConfig, ModelSpec
from bench.store import ResultStore

PAIRS = [
    ("good movie was very good", "the film is bad"),
    ("a", "b"),
    ("the dog sleeps in the park and the cat eats", "no"),
    (" ".join(TINY_WORDS[:40]), "awful"),
]


@pytest.fixture(scope="module")
def exported(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from bench.backends.onnx import export_onnx

    root = tmp_path_factory.mktemp("onnx")
    spec = ModelSpec(name="tiny", path=str(tiny_model_dir))
    return {
        "fp32": export_onnx(spec, root / "fp32", progress=False),
        "int8": export_onnx(spec, root / "int8", quantize="int8", progress=False),
    }


def test_fp32_export_matches_pytorch_and_int8_is_another_model(
    tiny_model_dir: Path, exported: dict[str, Path]
) -> None:
    from bench.backends import LoadSettings, ModelPool
    from bench.models.classifier import HFClassifier

    pool = ModelPool()
    torch_logits = HFClassifier.load(str(tiny_model_dir), device="cpu").classify(PAIRS, 2)
    fp32 = pool.classifier(ModelSpec(name="o", path=str(exported["fp32"]), backend="onnx"),
                           LoadSettings("cpu"))  # fmt: skip
    assert fp32.labels == ["entailment", "neutral", "contradiction"]
    np.testing.assert_allclose(fp32.classify(PAIRS, 2), torch_logits, atol=1e-4)
    # Padding-aware batches and token keys work the same as for the PyTorch classifier.
    np.testing.assert_allclose(fp32.classify_padding_aware(PAIRS, 3), torch_logits, atol=1e-4)
    int8 = pool.classifier(ModelSpec(name="q", path=str(exported["int8"]), backend="onnx"),
                           LoadSettings("cpu"))  # fmt: skip
    q = int8.classify(PAIRS, 2)
    assert q.shape == torch_logits.shape and np.isfinite(q).all()
    ids = [
        pool.identity(ModelSpec(name="x", path=str(exported[k]), backend="onnx")).key()
        for k in ("fp32", "int8")
    ]
    assert ids[0] != ids[1]
    card = json.loads((exported["int8"] / "export.json").read_text())
    assert card["quantize"] == "int8" and card["labels"] == fp32.labels


def test_onnx_models_run_through_the_cli_and_are_refused_where_they_cannot_serve(
    tmp_path: Path, exported: dict[str, Path], tiny_model_dir: Path
) -> None:
    rows = [{"p": "good film", "h": "great movie", "label": "entailment"}] * 3
    rows += [{"p": "bad film", "h": "good movie", "label": "contradiction"}] * 3
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = tmp_path / "t.yaml"
    task.write_text(
        "name: t\nsource: {type: local, path: d.jsonl}\ninputs: [p, h]\n"
        "labels: [entailment, neutral, contradiction]\n"
    )
    db = tmp_path / "r.sqlite"

    def bench(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bench", *args, "--db", str(db), "--no-progress"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    flag = bench(
        "run", "--task", str(task), "--model", f"q={exported['int8']}", "--backend", "onnx"
    )
    assert flag.returncode == 0, flag.stderr[-2000:]
    prefix = bench("run", "--task", str(task), "--model", f"f=onnx:{exported['fp32']}")
    assert prefix.returncode == 0, prefix.stderr[-2000:]
    assert "| q " in flag.stdout and "| f " in prefix.stdout
    # Attacked through the CLI, quietly: TextAttack warned once per attack that it could not
    # tell the class of a model without a torch module.
    attacked = bench("attack", "--task", str(task), "--model", f"f=onnx:{exported['fp32']}",
                     "--suite", "typos", "--limit", "4", "--max-length", "32")  # fmt: skip
    assert attacked.returncode == 0, attacked.stderr[-2000:]
    assert "Unknown if model" not in attacked.stderr, attacked.stderr[-2000:]
    with ResultStore(db) as store:
        assert {r.backend for r in store.runs()} == {"onnx"}
    causal = bench("run", "--task", str(task), "--model", f"onnx:{exported['fp32']}",
                   "--adapter", "causal")  # fmt: skip
    assert_user_error(causal, "classifiers only")
    dtype = bench("run", "--task", str(task), "--model", f"onnx:{exported['fp32']}",
                  "--dtype", "bfloat16")  # fmt: skip
    assert_user_error(dtype, "fixed when it is exported")
    missing = bench("run", "--task", str(task), "--model", f"onnx:{tmp_path / 'nope'}")
    assert_user_error(missing, "does not exist")
    bad = subprocess.run(
        [sys.executable, "-m", "bench", "export", "onnx", "--model", str(exported["fp32"]),
         "--out", str(tmp_path / "x"), "--quantize", "int4"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert_user_error(bad, "--quantize")
    # --out replaces an earlier export, and nothing else: a folder of other files was deleted.
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    refused = subprocess.run(
        [sys.executable, "-m", "bench", "export", "onnx", "--model", str(tiny_model_dir),
         "--out", str(kept)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert_user_error(refused, "not an earlier export")
    assert [p.name for p in kept.iterdir()] == ["notes.txt"]
    earlier = tmp_path / "earlier"
    shutil.copytree(exported["int8"], earlier)
    replaced = subprocess.run(
        [sys.executable, "-m", "bench", "export", "onnx", "--model", str(tiny_model_dir),
         "--out", str(earlier), "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert replaced.returncode == 0, replaced.stderr
    assert json.loads((earlier / "export.json").read_text())["quantize"] == "none"


def test_an_unknown_backend_is_one_line() -> None:
    from bench.backends import get_backend
    from bench.errors import SpecError

    with pytest.raises(SpecError, match=r"unknown backend 'tpu'.*hf, onnx"):
        get_backend("tpu")


def test_an_onnx_folder_without_a_model_is_refused(
    tmp_path: Path, exported: dict[str, Path]
) -> None:
    from bench.backends import ModelPool

    broken = tmp_path / "broken"
    shutil.copytree(exported["fp32"], broken)
    (broken / "model.onnx").unlink()
    with pytest.raises(ModelError, match=r"has no model\.onnx"):
        ModelPool().identity(ModelSpec(name="b", path=str(broken), backend="onnx"))


def test_an_int8_export_scores_each_example_alone_whatever_its_batch(
    exported: dict[str, Path],
) -> None:
    from bench.backends.onnx import ONNXClassifier

    int8, fp32 = ONNXClassifier(exported["int8"]), ONNXClassifier(exported["fp32"])
    assert int8.one_at_a_time and not fp32.one_at_a_time
    alone = np.concatenate([int8.classify([pair], 1) for pair in PAIRS])
    # Batched (padded, and longest first), padding-aware (attack queries) and in another order:
    # the logits of each example alone, to the bit.
    np.testing.assert_array_equal(int8.classify(PAIRS, 4), alone)
    np.testing.assert_array_equal(int8.classify(PAIRS, 3), alone)
    np.testing.assert_array_equal(int8.classify_padding_aware(PAIRS, 4), alone)
    np.testing.assert_array_equal(int8.classify(PAIRS[::-1], 2)[::-1], alone)
    # Why: the graph quantises activations with the whole batch's range, padding included, so
    # fed a padded batch it gives each example other logits.
    int8.one_at_a_time = False
    assert not np.array_equal(int8.classify(PAIRS, 4), alone)


@pytest.mark.slow
def test_default_sentiment_model_exported_agrees_on_the_vader_test_splits_and_is_attacked(
    default_models: dict[str, Path], tmp_path: Path
) -> None:
    from bench.attacks.runner import AttackRunner
    from bench.attacks.specs import AttackConfig, AttackSpec, SuiteSpec
    from bench.backends.onnx import export_onnx
    from bench.runner import Evaluator
    from bench.tasks import get_task, load_task_data

    source = ModelSpec(name="minilm-sentiment", path=str(default_models["minilm-sentiment"]))
    folder = export_onnx(source, tmp_path / "sent-onnx", progress=False)
    onnx = ModelSpec(name="minilm-sentiment-onnx", path=str(folder), backend="onnx")
    with ResultStore(tmp_path / "r.sqlite") as store:
        evaluator = Evaluator(store, EvalConfig(device="cpu", n_bootstrap=0), progress=False)
        compared = expected = 0
        for name in ("vader_movies", "vader_amazon", "vader_nyt", "vader_tweets"):
            data = load_task_data(get_task(name).spec, get_task(name).base_dir)
            a = evaluator.evaluate(data, source).record.run_key
            b = evaluator.evaluate(data, onnx).record.run_key
            assert a != b
            pa, pb = store.predictions(a), store.predictions(b)
            assert [r.uid for r in pa] == [r.uid for r in pb]
            diff = np.abs(np.array([r.probs for r in pa]) - np.array([r.probs for r in pb]))
            assert diff.max() < 1e-4, (name, float(diff.max()))
            compared += len(pa)
            expected += len(data.split("test"))
        assert compared == expected  # every example of the four test splits
        # A gate on the real model: the fp32 export holds up on every domain.
        from bench.gate import GateSpec, run_gate

        tasks = ("vader_movies", "vader_amazon", "vader_nyt", "vader_tweets")
        gate = GateSpec(checks=[{"task": t} for t in tasks], margin=0.01)
        verdicts = run_gate(store, gate, source.name, onnx.name)
        assert [c.verdict for c in verdicts.checks] == ["pass"] * 4 and verdicts.exit_code == 0
        suite = SuiteSpec(name="t", attacks=[AttackSpec(name="deepwordbug", recipe="deepwordbug")])
        runner = AttackRunner(store, AttackConfig(limit=8, max_length=64), device="cpu",
                              progress=False)  # fmt: skip
        data = load_task_data(get_task("vader_movies").spec, get_task("vader_movies").base_dir)
        (outcome,), summary = runner.run_suite(data, onnx, suite)
        assert outcome.record.backend == "onnx" and outcome.record.n_examples == 8
        assert outcome.computed == 8 and "accuracy_under_attack" in summary.metrics
