"""Fine-tuning the tiny model on a separable toy task: it learns, the same seed is bitwise
reproducible, early stopping keeps the best epoch, and LoRA runs save plain merged classifiers."""

from __future__ import annotations

import dataclasses
import json
import random
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import BAD_WORDS, GOOD_WORDS, NEUTRAL_WORDS, assert_user_error

import bench.finetune as ft
from bench.errors import BenchError, DataError, ModelError
from bench.finetune import CARD_NAME, FinetuneConfig, FinetuneResult, finetune
from bench.models.classifier import HFClassifier

pytestmark = pytest.mark.usefixtures("torch_one_thread")

LABELS = ["negative", "positive"]
# A tiny model needs a large learning rate and some epochs; ~1 s per run on one thread.
CONFIG = FinetuneConfig(epochs=10, lr=1e-2, batch_size=16, max_length=32, warmup_ratio=0.1)


Data = list[tuple[tuple[str, ...], int]]


def toy_data(
    n: int, seed: int, good: Sequence[str] = GOOD_WORDS, bad: Sequence[str] = BAD_WORDS
) -> Data:
    """Filler words around one sentiment word; the label is that word's polarity."""
    rng = random.Random(seed)
    data: Data = []
    for i in range(n):
        label = i % 2
        words = rng.sample(NEUTRAL_WORDS, rng.randint(2, 6))
        words.insert(rng.randint(0, len(words)), rng.choice(good if label else bad))
        data.append(((" ".join(words),), label))
    return data


def lora_data(n: int, seed: int) -> Data:
    # Two words per class: with its embeddings frozen at random values, the tiny encoder cannot
    # tell sixteen sentiment words apart from the fillers (it memorises instead), but it learns
    # two per class through the adapters and generalises to unseen sentences.
    return toy_data(n, seed, GOOD_WORDS[:2], BAD_WORDS[:2])


# The adapters of a 32-wide model need a larger step than full fine-tuning (~1 s per run).
LORA_CONFIG = dataclasses.replace(CONFIG, lr=3e-2, lora_r=4)


def _accuracy(folder: Path, data: list[tuple[tuple[str, ...], int]]) -> float:
    clf = HFClassifier.load(str(folder), device="cpu")
    assert clf.labels == LABELS
    pred = clf.classify([x for x, _ in data], batch_size=32).argmax(axis=1)
    return float(np.mean(pred == np.array([y for _, y in data])))


def _tensors(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(folder / "model.safetensors")


def _logits(folder: Path, data: Data) -> np.ndarray:
    return HFClassifier.load(str(folder), device="cpu").classify([x for x, _ in data])


def _same_tensors(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def trained(tiny_base_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("ft") / "seed0"
    result = finetune(
        toy_data(96, 0), LABELS, str(tiny_base_dir), out, CONFIG, progress=False,
        dev=toy_data(32, 1), data_hash="abc123", device="cpu",
    )  # fmt: skip
    return out, result


def test_finetune_learns_the_toy_task(trained: tuple[Path, object]) -> None:
    out, result = trained
    # Balanced classes: chance is 0.5.
    assert _accuracy(out, toy_data(96, 0)) >= 0.95
    assert _accuracy(out, toy_data(64, 2)) >= 0.85  # unseen sentences, same words
    losses = result.epoch_losses  # type: ignore[attr-defined]
    assert losses[0] > 0.6 and losses[-1] < 0.2


def test_card_and_folder_contents(trained: tuple[Path, object], tiny_base_dir: Path) -> None:
    out, result = trained
    assert isinstance(result, FinetuneResult)
    card = json.loads((out / CARD_NAME).read_text())
    assert card["base"] == str(tiny_base_dir)
    assert card["labels"] == LABELS
    assert card["train_size"] == 96
    assert card["data_hash"] == "abc123"
    assert card["seed"] == 0
    assert card["config"]["lr"] == CONFIG.lr
    assert card["steps"] == 10 * 6
    assert 0.5 < card["dev_accuracy"] <= 1.0
    assert card["dev_accuracy"] == result.dev_accuracy
    # Dev accuracy after every epoch; without early stopping the last epoch is the one saved.
    curve = card["dev_curve"]
    assert len(curve) == 10 and all(0.0 <= a <= 1.0 for a in curve)
    assert card["dev_accuracy"] == curve[-1] == _accuracy(out, toy_data(32, 1))
    assert card["best_epoch"] == curve.index(max(curve)) + 1
    assert card["stopped_early"] is False and card["epochs_run"] == 10
    assert card["lora"] is None
    assert card["config"]["early_stopping_patience"] is None and card["config"]["lora_r"] is None
    assert result.dev_curve == curve and result.best_epoch == card["best_epoch"]
    assert result.epochs_run == 10 and result.stopped_early is False and result.lora is None
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", CARD_NAME} <= names
    assert not any(n.endswith(".bin") for n in names)
    # Only the finished folder is left: no temporary sibling survives.
    assert [p.name for p in out.parent.iterdir()] == [out.name]


def test_same_seed_same_weights_other_seed_different(
    trained: tuple[Path, object], tiny_base_dir: Path, tmp_path: Path
) -> None:
    out, _ = trained
    again = tmp_path / "again"
    finetune(
        toy_data(96, 0), LABELS, str(tiny_base_dir), again, CONFIG, progress=False,
        dev=toy_data(32, 1), device="cpu",
    )  # fmt: skip
    a, b = _tensors(out), _tensors(again)
    assert _same_tensors(a, b)
    probe = toy_data(64, 2)
    assert np.array_equal(_logits(out, probe), _logits(again, probe))

    other = tmp_path / "other"
    seed1 = FinetuneConfig(**{**CONFIG.__dict__, "seed": 1})
    finetune(toy_data(96, 0), LABELS, str(tiny_base_dir), other, seed1, progress=False)
    c = _tensors(other)
    assert not np.array_equal(a["classifier.weight"], c["classifier.weight"])
    assert not np.array_equal(
        a["bert.embeddings.word_embeddings.weight"], c["bert.embeddings.word_embeddings.weight"]
    )
    assert not np.array_equal(_logits(out, probe), _logits(other, probe))


def test_three_way_head_is_replaced_and_train_set_capped(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    config = FinetuneConfig(epochs=1, batch_size=16, max_train_examples=20)
    result = finetune(
        toy_data(64, 0), LABELS, str(tiny_model_dir), tmp_path / "m", config, progress=False
    )
    assert result.train_size == 20
    assert result.steps == 2
    assert _tensors(tmp_path / "m")["classifier.weight"].shape == (2, 32)
    assert HFClassifier.load(str(tmp_path / "m")).labels == LABELS


def test_existing_output_is_kept_unless_overwrite(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    small = FinetuneConfig(epochs=1, batch_size=16, max_train_examples=16)
    with pytest.raises(ModelError, match="already exists"):
        finetune(toy_data(16, 0), LABELS, str(tiny_model_dir), out, small, progress=False)
    assert (out / "keep.txt").read_text() == "mine"
    finetune(
        toy_data(16, 0), LABELS, str(tiny_model_dir), out, small, progress=False, overwrite=True
    )
    assert not (out / "keep.txt").exists()
    assert (out / CARD_NAME).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_bad_training_data_is_a_data_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no train examples"):
        finetune([], LABELS, str(tiny_model_dir), tmp_path / "a", CONFIG, progress=False)
    with pytest.raises(DataError, match=r"label id 2 is outside 0\.\.1"):
        finetune([(("good",), 2)], LABELS, str(tiny_model_dir), tmp_path / "b", progress=False)
    with pytest.raises(ModelError, match="does not exist"):
        finetune(toy_data(4, 0), LABELS, str(tmp_path / "nope"), tmp_path / "c", progress=False)
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------------------ early stopping


def test_early_stopping_stops_when_dev_accuracy_falls(tiny_base_dir: Path, tmp_path: Path) -> None:
    # Dev labels are the opposite of the rule the model learns, so dev accuracy can only fall
    # once it learns: the best epoch is an early one, and training stops long before epoch 10.
    flipped = [(x, 1 - y) for x, y in toy_data(32, 1)]
    config = dataclasses.replace(CONFIG, early_stopping_patience=2)
    out = tmp_path / "m"
    result = finetune(
        toy_data(96, 0), LABELS, str(tiny_base_dir), out, config, progress=False,
        dev=flipped, device="cpu",
    )  # fmt: skip
    card = json.loads((out / CARD_NAME).read_text())
    curve = card["dev_curve"]
    assert card["stopped_early"] is True and result.stopped_early
    assert card["epochs_run"] == len(curve) == card["best_epoch"] + 2 < 10
    assert card["steps"] == card["epochs_run"] * 6 == len(card["epoch_losses"]) * 6
    assert card["best_epoch"] == curve.index(max(curve)) + 1
    assert curve[-1] < max(curve)
    # The saved weights are the best epoch's, not the last one's.
    assert card["dev_accuracy"] == max(curve) == _accuracy(out, flipped)
    assert card["config"]["early_stopping_patience"] == 2


def _scripted_dev(
    monkeypatch: pytest.MonkeyPatch, accuracies: list[float]
) -> list[dict[str, np.ndarray]]:
    """Make the dev accuracy after epoch i be ``accuracies[i]``; returns the model's weights at
    each of those evaluations (filled in as training runs)."""
    weights: list[dict[str, np.ndarray]] = []

    def scripted(model: Any, *args: Any) -> float:
        weights.append({k: v.detach().numpy().copy() for k, v in model.state_dict().items()})
        return accuracies[len(weights) - 1]

    monkeypatch.setattr(ft, "_accuracy", scripted)
    return weights


@pytest.mark.parametrize(
    ("epochs", "patience", "accuracies", "best", "run"),
    [
        # A tie (epoch 3) is no improvement: stop after epoch 4, keep epoch 2.
        (6, 2, [0.5, 0.75, 0.75, 0.6, 0.9, 0.9], 2, 4),
        # Patience never runs out, yet the best epoch is still the one saved.
        (3, 5, [0.5, 0.8, 0.7], 2, 3),
    ],
)
def test_early_stopping_restores_the_best_epoch(
    tiny_base_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    epochs: int,
    patience: int,
    accuracies: list[float],
    best: int,
    run: int,
) -> None:
    weights = _scripted_dev(monkeypatch, accuracies)
    config = dataclasses.replace(CONFIG, epochs=epochs, early_stopping_patience=patience)
    out = tmp_path / "m"
    result = finetune(
        toy_data(48, 0), LABELS, str(tiny_base_dir), out, config, progress=False,
        dev=toy_data(8, 1), device="cpu",
    )  # fmt: skip
    assert len(weights) == run
    assert result.dev_curve == accuracies[:run]
    assert result.best_epoch == best and result.epochs_run == run
    assert result.stopped_early is (run < epochs)
    assert result.dev_accuracy == accuracies[best - 1]
    saved = _tensors(out)
    assert _same_tensors(saved, {k: weights[best - 1][k] for k in saved})
    assert not np.array_equal(saved["classifier.weight"], weights[-1]["classifier.weight"])


def test_early_stopping_needs_dev_data(tiny_base_dir: Path, tmp_path: Path) -> None:
    config = dataclasses.replace(CONFIG, early_stopping_patience=1)
    with pytest.raises(ModelError, match="early stopping needs dev examples"):
        finetune(toy_data(16, 0), LABELS, str(tiny_base_dir), tmp_path / "m", config, False)
    assert not any(tmp_path.iterdir())


def _task_data(name: str, splits: dict[str, Data]) -> Any:
    from bench.specs import TaskSpec
    from bench.tasks.examples import Example, TaskData, example_uid

    spec = TaskSpec.model_validate(
        {
            "name": name,
            "source": {"type": "local", "path": "x.jsonl"},
            "inputs": ["text"],
            "labels": LABELS,
        }
    )
    examples = {
        role: [Example(i, example_uid(x, LABELS[y]), x, y) for i, (x, y) in enumerate(data)]
        for role, data in splits.items()
    }
    return TaskData(spec, examples, data_hash=f"hash-{name}")  # type: ignore[arg-type]


def test_train_on_uses_dev_splits_and_refuses_a_task_without_one(
    tiny_base_dir: Path, tmp_path: Path
) -> None:
    from bench.training import train_on

    config = dataclasses.replace(CONFIG, epochs=3, early_stopping_patience=1)
    with_dev = _task_data("with_dev", {"train": toy_data(32, 0), "dev": toy_data(16, 1)})
    no_dev = _task_data("no_dev", {"train": toy_data(32, 2)})
    with pytest.raises(BenchError, match="early stopping needs a dev split, and task 'no_dev'"):
        train_on(
            [with_dev, no_dev], LABELS, str(tiny_base_dir), tmp_path / "a", config, None, False
        )
    assert not (tmp_path / "a").exists()

    out = train_on([with_dev], LABELS, str(tiny_base_dir), tmp_path / "b", config, None, False)
    card = json.loads((out / CARD_NAME).read_text())
    assert card["dev_size"] == 16 and card["train_tasks"] == ["with_dev"]
    assert 1 <= len(card["dev_curve"]) == card["epochs_run"] <= 3
    assert card["config"]["early_stopping_patience"] == 1


# ------------------------------------------------------------------------------------------ LoRA


@pytest.fixture(scope="module")
def lora_trained(
    tiny_base_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, FinetuneResult, np.ndarray]:
    """A LoRA run, with the logits its in-memory merged model gave on a probe just before saving."""
    probe = [x for x, _ in lora_data(16, 5)]
    seen: list[np.ndarray] = []
    save = ft._save_model

    def capturing(model: Any, tokenizer: Any, folder: Path) -> None:
        import torch

        encoded = ft._encode(tokenizer, probe, LORA_CONFIG.max_length)
        with torch.inference_mode():
            seen.append(model(**encoded).logits.numpy().copy())
        save(model, tokenizer, folder)

    out = tmp_path_factory.mktemp("lora") / "seed0"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ft, "_save_model", capturing)
        result = finetune(
            lora_data(96, 0), LABELS, str(tiny_base_dir), out, LORA_CONFIG, progress=False,
            dev=lora_data(32, 1), device="cpu",
        )  # fmt: skip
    assert len(seen) == 1
    return out, result, seen[0]


def test_lora_learns_and_saves_a_plain_merged_classifier(
    lora_trained: tuple[Path, FinetuneResult, np.ndarray],
    trained: tuple[Path, object],
) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out, result, in_memory = lora_trained
    assert result.epoch_losses[0] > 0.6 and result.epoch_losses[-1] < 0.3
    assert _accuracy(out, lora_data(64, 2)) >= 0.9  # unseen sentences

    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", CARD_NAME} <= names
    assert not any("adapter" in n for n in names)
    assert "lora" not in (out / "config.json").read_text().lower()
    # The same tensor names as a fully fine-tuned model: no adapter or wrapper leftovers.
    assert _tensors(out).keys() == _tensors(trained[0]).keys()

    probe = [x for x, _ in lora_data(16, 5)]
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    with torch.inference_mode():
        loaded = model(**ft._encode(tokenizer, probe, LORA_CONFIG.max_length)).logits.numpy()
    assert np.array_equal(loaded, in_memory)
    via_bench = HFClassifier.load(str(out), device="cpu").classify(probe)
    np.testing.assert_allclose(via_bench, in_memory, atol=1e-5)


def test_lora_changes_only_the_adapted_projections_and_the_head(
    lora_trained: tuple[Path, FinetuneResult, np.ndarray], tiny_base_dir: Path
) -> None:
    out, _, _ = lora_trained
    base = _tensors(tiny_base_dir)
    saved = _tensors(out)
    adapted = [k for k in base if k.endswith(("query.weight", "value.weight"))]
    assert len(adapted) == 4  # 2 layers x (query, value)
    for key, value in base.items():
        if key in adapted:
            assert not np.array_equal(saved[f"bert.{key}"], value), key
        else:
            assert np.array_equal(saved[f"bert.{key}"], value), key
    assert {k for k in saved if not k.startswith("bert.")} == {
        "classifier.weight",
        "classifier.bias",
    }


def test_lora_card(lora_trained: tuple[Path, FinetuneResult, np.ndarray]) -> None:
    import peft

    out, result, _ = lora_trained
    card = json.loads((out / CARD_NAME).read_text())
    assert card["lora"] == {
        "r": 4,
        "alpha": 16,
        "dropout": 0.1,
        "target_modules": ["query", "value"],
        "fully_trained_modules": ["classifier"],
    }
    assert result.lora == card["lora"]
    assert card["config"]["lora_r"] == 4
    assert card["versions"]["peft"] == peft.__version__
    assert card["epochs_run"] == 10 and len(card["dev_curve"]) == 10


def test_lora_same_seed_same_weights_other_seed_different(
    lora_trained: tuple[Path, FinetuneResult, np.ndarray], tiny_base_dir: Path, tmp_path: Path
) -> None:
    out, _, _ = lora_trained
    again = tmp_path / "again"
    finetune(
        lora_data(96, 0), LABELS, str(tiny_base_dir), again, LORA_CONFIG, progress=False,
        dev=lora_data(32, 1), device="cpu",
    )  # fmt: skip
    a = _tensors(out)
    assert _same_tensors(a, _tensors(again))
    probe = lora_data(64, 2)
    assert np.array_equal(_logits(out, probe), _logits(again, probe))

    other = tmp_path / "other"
    seed1 = dataclasses.replace(LORA_CONFIG, seed=1)
    finetune(lora_data(96, 0), LABELS, str(tiny_base_dir), other, seed1, progress=False)
    c = _tensors(other)
    assert not np.array_equal(a["classifier.weight"], c["classifier.weight"])
    key = "bert.encoder.layer.0.attention.self.query.weight"
    assert not np.array_equal(a[key], c[key])
    assert not np.array_equal(_logits(out, probe), _logits(other, probe))


def test_lora_without_peft_is_a_model_error(
    tiny_base_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "peft", None)  # makes `import peft` fail
    with pytest.raises(ModelError, match=r"pip install 'nlp-bench\[lora\]'"):
        finetune(toy_data(16, 0), LABELS, str(tiny_base_dir), tmp_path / "m", LORA_CONFIG, False)
    assert not any(tmp_path.iterdir())


def test_lora_on_a_model_without_known_projections_is_a_model_error(
    tiny_base_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    class Mystery(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mix = torch.nn.Linear(4, 4)
            self.classifier = torch.nn.Linear(4, 2)

    with pytest.raises(ModelError, match="no attention projections found in 'Mystery'"):
        ft._lora_targets(Mystery())
    # The tiny BERT stands in for an unknown architecture once its names are not on the list.
    monkeypatch.setattr(ft, "_ATTENTION_NAMES", (("q_proj", "v_proj"),))
    with pytest.raises(ModelError, match=r"no attention projections found in 'bert' models") as err:
        finetune(toy_data(16, 0), LABELS, str(tiny_base_dir), tmp_path / "m", LORA_CONFIG, False)
    assert "\n" not in str(err.value)
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------------- bad config


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("epochs", 0, "epochs must be >= 1, got 0"),
        ("batch_size", 0, "batch_size must be >= 1"),
        ("early_stopping_patience", 0, "patience must be >= 1 epoch, got 0"),
        ("lora_r", 0, r"LoRA rank \(lora_r\) must be >= 1, got 0"),
        ("lora_alpha", 0, "LoRA alpha must be >= 1"),
        ("lora_dropout", 1.0, r"LoRA dropout must be in \[0, 1\), got 1.0"),
        ("lora_dropout", -0.1, r"LoRA dropout must be in \[0, 1\), got -0.1"),
    ],
)
def test_bad_config_values_are_model_errors(
    field: str, value: float, message: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(ModelError, match=message):
        FinetuneConfig(**{field: value})
    # A config changed after construction is checked again before anything is loaded.
    config = FinetuneConfig(epochs=1)
    setattr(config, field, value)
    with pytest.raises(ModelError, match=message):
        finetune(toy_data(16, 0), LABELS, str(tiny_model_dir), tmp_path / "m", config, False)
    assert not any(tmp_path.iterdir())


def test_cli_bad_lora_rank_is_a_user_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable, "-m", "bench", "finetune", "--task", "vader_movies",
            "--base", str(tmp_path / "base"), "--out", str(tmp_path / "out"), "--lora-r", "0",
        ],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent.parent,
    )  # fmt: skip
    # Checked with the other options, named as the user wrote it.
    assert_user_error(proc, "--lora-r", "must be at least 1")
    assert not (tmp_path / "out").exists()


def test_lora_trains_in_full_what_the_base_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A base without a pooler gets a random one: frozen, it would only add noise, so it is
    trained in full next to the classifier, and saved unwrapped."""
    import torch
    from conftest import _tiny_config, _write_tokenizer
    from transformers import BertModel

    base = tmp_path / "base"
    torch.manual_seed(0)
    BertModel(_tiny_config(), add_pooling_layer=False).save_pretrained(base)  # type: ignore[arg-type]
    _write_tokenizer(base)
    initial: dict[str, np.ndarray] = {}
    add_lora = ft._add_lora

    def recording(model: Any, *args: Any) -> Any:
        initial.update(
            {k: v.detach().numpy().copy() for k, v in model.state_dict().items() if "pooler" in k}
        )
        return add_lora(model, *args)

    monkeypatch.setattr(ft, "_add_lora", recording)
    config = dataclasses.replace(LORA_CONFIG, epochs=2)
    result = finetune(lora_data(32, 0), LABELS, str(base), tmp_path / "m", config, False)
    assert result.lora is not None
    assert result.lora["fully_trained_modules"] == ["bert.pooler.dense", "classifier"]
    saved = _tensors(tmp_path / "m")
    assert (
        {k for k in saved if "pooler" in k}
        == set(initial)
        == {
            "bert.pooler.dense.weight",
            "bert.pooler.dense.bias",
        }
    )
    assert all(not np.array_equal(saved[k], initial[k]) for k in initial)
    assert HFClassifier.load(str(tmp_path / "m"), device="cpu").labels == LABELS


def _cli_finetune(
    tiny_base_dir: Path, tmp_path: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    rows = [
        {
            "text": f"{random.Random(i).choice(GOOD_WORDS if i % 2 else BAD_WORDS)} film",
            "label": i % 2,
        }
        for i in range(60)
    ]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = tmp_path / "t.yaml"
    task.write_text(
        "name: t\nsource: {type: local, path: d.jsonl}\ninputs: [text]\nlabels: [neg, pos]\n"
        'label_map: {"0": neg, "1": pos}\n'
        "splits: {fractions: {train: 0.7, dev: 0.3}}\n"
    )
    out = tmp_path / "out"
    return subprocess.run(
        [
            sys.executable, "-m", "bench", "finetune", "--task", str(task),
            "--base", str(tiny_base_dir), "--out", str(out), "--epochs", "1", *extra,
        ],
        capture_output=True, text=True, timeout=300, cwd=Path(__file__).parent.parent,
    )  # fmt: skip


def test_cli_no_progress_still_prints_a_summary_line(tiny_base_dir: Path, tmp_path: Path) -> None:
    proc = _cli_finetune(tiny_base_dir, tmp_path, "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    card = json.loads((tmp_path / "out" / CARD_NAME).read_text())
    assert lines[0].startswith(f"saved {tmp_path / 'out'}: 1 epoch, {card['train_size']} training")
    assert f"dev accuracy {card['dev_accuracy']:.3f} ({card['dev_size']} examples)" in lines[0]
    assert re.search(r"trained in \d+\.\d s, \d+\.\d s in all$", lines[0]), lines[0]
    assert "%" not in proc.stderr  # no progress asked for, none shown


def test_cli_progress_in_a_log_is_plain_lines(tiny_base_dir: Path, tmp_path: Path) -> None:
    # stderr is a pipe here, as in CI or `| tee`: no live bar, plain lines instead.
    proc = _cli_finetune(tiny_base_dir, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("epoch 1/1: ")]
    assert lines and re.match(r"^epoch 1/1: 100% \((\d+)/\1\) \d+\.\d s .* ex/s loss ", lines[-1])
    assert "\x1b[" not in proc.stderr  # no cursor movement or colour codes in a log
    assert proc.stdout.startswith("saved ")
