"""Fine-tuning the tiny model on a separable toy task: it learns, and the same seed is bitwise
reproducible."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import BAD_WORDS, GOOD_WORDS, NEUTRAL_WORDS

from bench.errors import DataError, ModelError
from bench.finetune import CARD_NAME, FinetuneConfig, finetune
from bench.models.classifier import HFClassifier

pytestmark = pytest.mark.usefixtures("torch_one_thread")

LABELS = ["negative", "positive"]
# A tiny model needs a large learning rate and some epochs; ~1 s per run on one thread.
CONFIG = FinetuneConfig(epochs=10, lr=1e-2, batch_size=16, max_length=32, warmup_ratio=0.1)


def toy_data(n: int, seed: int) -> list[tuple[tuple[str, ...], int]]:
    """Filler words around one sentiment word; the label is that word's polarity."""
    rng = random.Random(seed)
    data: list[tuple[tuple[str, ...], int]] = []
    for i in range(n):
        label = i % 2
        words = rng.sample(NEUTRAL_WORDS, rng.randint(2, 6))
        words.insert(rng.randint(0, len(words)), rng.choice(GOOD_WORDS if label else BAD_WORDS))
        data.append(((" ".join(words),), label))
    return data


def _accuracy(folder: Path, data: list[tuple[tuple[str, ...], int]]) -> float:
    clf = HFClassifier.load(str(folder), device="cpu")
    assert clf.labels == LABELS
    pred = clf.classify([x for x, _ in data], batch_size=32).argmax(axis=1)
    return float(np.mean(pred == np.array([y for _, y in data])))


def _tensors(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(folder / "model.safetensors")


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
    card = json.loads((out / CARD_NAME).read_text())
    assert card["base"] == str(tiny_base_dir)
    assert card["labels"] == LABELS
    assert card["train_size"] == 96
    assert card["data_hash"] == "abc123"
    assert card["seed"] == 0
    assert card["config"]["lr"] == CONFIG.lr
    assert card["steps"] == 10 * 6
    assert 0.5 < card["dev_accuracy"] <= 1.0
    assert card["dev_accuracy"] == result.dev_accuracy  # type: ignore[attr-defined]
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
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)

    other = tmp_path / "other"
    seed1 = FinetuneConfig(**{**CONFIG.__dict__, "seed": 1})
    finetune(toy_data(96, 0), LABELS, str(tiny_base_dir), other, seed1, progress=False)
    c = _tensors(other)
    assert not np.array_equal(a["classifier.weight"], c["classifier.weight"])
    assert not np.array_equal(
        a["bert.embeddings.word_embeddings.weight"], c["bert.embeddings.word_embeddings.weight"]
    )


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
