"""Shared fixtures: a tiny random BERT classifier (and a headless base) saved like a real model.

The models are random and tiny (hidden 32, 2 layers), built from a config with a word-level vocab,
so tests exercise real tokenizer/model code paths in milliseconds without any download.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

# The suite never downloads: make the hub libraries fail fast instead of retrying for ~30 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
GOOD_WORDS = ["good", "great", "excellent", "wonderful", "lovely", "superb", "fine", "happy"]
BAD_WORDS = ["bad", "awful", "terrible", "horrible", "poor", "dreadful", "sad", "nasty"]
NEUTRAL_WORDS = [
    "the", "a", "movie", "film", "food", "service", "book", "hotel", "room", "was", "is", "very",
    "really", "quite", "and", "but", "it", "this", "that", "man", "woman", "dog", "cat", "runs",
    "sleeps", "eats", "in", "on", "park", "house", "not", "no", "some", "all", "two", "people",
]  # fmt: skip
TINY_WORDS = GOOD_WORDS + BAD_WORDS + NEUTRAL_WORDS
TINY_LABELS = ["entailment", "neutral", "contradiction"]

# Pinned assets whose release the package index no longer offers, with why (see require_assets).
_UNAVAILABLE: dict[str, str] = {}


def require_assets(*names: str) -> None:
    """Fetch the named pinned assets, or skip the test, saying why, when the package index no
    longer offers one (``AssetUnavailableError``: a release deleted upstream, which no change here
    can bring back; ``BENCH_ASSET_ARCHIVES`` with a copy runs these tests). Every other fetch
    failure (no network, a hash mismatch) fails the test as before."""
    from bench import assets
    from bench.errors import AssetUnavailableError

    for name in names:
        if name not in _UNAVAILABLE:
            try:
                assets.fetch([name], progress=False)
            except AssetUnavailableError as exc:
                _UNAVAILABLE[name] = str(exc)
        if name in _UNAVAILABLE:
            pytest.skip(f"asset {name} cannot be fetched: {_UNAVAILABLE[name]}")


def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("assets")
    if marker is not None:
        require_assets(*marker.args)


def _write_tokenizer(folder: Path) -> None:
    from transformers import BertTokenizerFast

    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(SPECIAL_TOKENS + TINY_WORDS) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True, model_max_length=128)
    tokenizer.save_pretrained(folder)


def _tiny_config(num_labels: int = 3, init_range: float = 0.02) -> object:
    from transformers import BertConfig

    return BertConfig(
        vocab_size=len(SPECIAL_TOKENS) + len(TINY_WORDS),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=128,
        initializer_range=init_range,
        num_labels=num_labels,
        id2label=dict(enumerate(TINY_LABELS[:num_labels])),
        label2id={name: i for i, name in enumerate(TINY_LABELS[:num_labels])},
    )


def build_tiny_model(
    folder: Path, seed: int = 0, head: bool = True, init_range: float = 0.02
) -> Path:
    """Save a random tiny BERT (with a 3-way classification head unless ``head`` is False)."""
    import torch
    from transformers import BertForSequenceClassification, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = _tiny_config(init_range=init_range)
    model = BertForSequenceClassification(config) if head else BertModel(config)
    model.save_pretrained(folder, safe_serialization=True)
    _write_tokenizer(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random 3-way classifier folder (labels entailment/neutral/contradiction). Read-only:
    copy it before changing anything."""
    # Weights far above the usual 0.02 scale, so logits are O(1) and differ between inputs: a
    # padding or ordering bug must move them by much more than the 1e-5 the tests allow.
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", init_range=0.5)


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random encoder without a classification head (like a pre-trained base model),
    initialised at the usual scale so that fine-tuning it behaves normally."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-base") / "model", head=False)


@pytest.fixture(scope="module")
def torch_one_thread() -> Iterator[None]:
    """Run tiny models on one thread: they gain nothing from more, and on a busy 2-core machine
    OpenMP threads spin against each other (a training step measured 10-30x slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def default_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The two default models (NLI and sentiment): the trained ones when `bench default` has run
    here, else the same recipes in miniature (48 training examples per task, 1 epoch, max length
    48) trained into a temporary folder: real MiniLM classifiers, in about a minute on 2 cores."""
    import dataclasses

    from bench import assets, defaults, training
    from bench.errors import AssetUnavailableError
    from bench.tasks import get_task, load_task_data

    assets.fetch([training.BASE_ASSET], progress=False)
    # Which models the main job would run: the same choice, by the same function.
    try:
        models, left_out = defaults.available_models(progress=False)
    except AssetUnavailableError as exc:  # every model's data is gone
        models, left_out = [], dict.fromkeys(defaults.DEFAULT_MODELS, str(exc))
    out = _DefaultModels(left_out)
    for model in models:
        name = model.name
        trained = defaults.trained_model_dir(model)
        if trained is not None:
            out[name] = trained
            continue
        small = dataclasses.replace(
            model, max_train_per_task=48, recipe={**model.recipe, "epochs": 1, "max_length": 48}
        )
        datas = [load_task_data(get_task(t).spec, get_task(t).base_dir) for t in model.train_tasks]
        folder = tmp_path_factory.mktemp("default-models") / name
        out[name] = training.train_on(
            datas, small.labels, training.BASE_ASSET, folder,
            _finetune_config(small.recipe), small.max_train_per_task, False,
        )  # fmt: skip
    return out


class _DefaultModels(dict[str, Path]):
    """The default models by name; asking for one whose data asset cannot be fetched skips the
    test, saying why, so that tests of the other model still run."""

    def __init__(self, missing: dict[str, str]) -> None:
        super().__init__()
        self.missing = missing

    def __getitem__(self, name: str) -> Path:
        if name in self.missing:
            pytest.skip(f"default model {name}: {self.missing[name]}")
        return super().__getitem__(name)


def _finetune_config(recipe: dict[str, object]) -> object:
    from bench.finetune import FinetuneConfig

    return FinetuneConfig(**recipe)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def minilm_2way(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The MiniLM encoder asset with a fresh, seeded 2-way head (entailment / non-entailment),
    saved as a normal classifier folder: real tokenizer and encoder, no training needed."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bench import assets

    assets.fetch(["minilm"], progress=False)
    base = assets.asset_dir("minilm")
    torch.manual_seed(0)
    labels = ["entailment", "non-entailment"]
    model = AutoModelForSequenceClassification.from_pretrained(
        base,
        num_labels=2,
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
        use_safetensors=True,
    )
    out = tmp_path_factory.mktemp("minilm") / "minilm-2way"
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return out


def assert_user_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    """A user error: exit code 2, one ``error:`` line (the last on stderr), no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    # Progress chatter may come first; the error is one line, and the last.
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
