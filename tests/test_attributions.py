"""Integrated gradients (Captum) and their faithfulness, on a real fine-tuned MiniLM classifier."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.audit.attributions import DEFAULT_STEPS, Attributor

pytest.importorskip("captum", reason="integrated gradients need captum (the audit extra)")

TEXTS = [
    ("The film provides some great insight into the neurotic mindset of all comics.",),
    ("Effective but too tepid biopic",),
    ("An awful, boring mess of a movie that I regret watching.",),
]


@pytest.fixture(scope="module")
def sentiment(default_models: dict[str, Path]) -> Iterator[tuple[Any, Any]]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = default_models["minilm-sentiment"]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    yield model, AutoTokenizer.from_pretrained(folder)
    torch.set_num_threads(before)


def _probability(model: Any, tokenizer: Any, ids: list[int], target: int) -> float:
    """The model's probability of ``target`` for these token ids, computed independently."""
    import torch

    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids))).logits
    return float(torch.softmax(logits, dim=-1)[0, target])


def _check_completeness(model: Any, tokenizer: Any, text: tuple[str, ...], labels: int) -> float:
    """Completeness for every target; returns the largest output move (input vs baseline)."""
    attributor = Attributor(model, tokenizer, np.eye(labels))
    moved = 0.0
    for target in range(labels):
        a, enc = attributor.attribute(text, target)
        # The model outputs at the input and at the baseline, recomputed here without Captum.
        at_input = _probability(model, tokenizer, enc.ids, target)
        baseline_ids = [
            t if s else tokenizer.pad_token_id for t, s in zip(enc.ids, enc.special, strict=True)
        ]
        at_baseline = _probability(model, tokenizer, baseline_ids, target)
        assert a.output == pytest.approx(at_input, abs=1e-5)
        assert a.baseline_output == pytest.approx(at_baseline, abs=1e-5)
        gap = sum(a.scores) - (at_input - at_baseline)
        # Completeness holds up to exactly the reported delta, and the delta is small.
        assert gap == pytest.approx(a.delta, abs=1e-4)
        assert abs(a.delta) < 0.05
        assert len(a.tokens) == len(a.scores) == len(enc.ids)
        # Special tokens are the same at both ends of the path: no attribution.
        assert all(abs(s) < 1e-7 for s, sp in zip(a.scores, enc.special, strict=True) if sp)
        moved = max(moved, abs(at_input - at_baseline))
    return moved


@pytest.mark.parametrize("text", TEXTS)
def test_attributions_are_complete_within_the_reported_delta(
    sentiment: tuple[Any, Any], text: tuple[str]
) -> None:
    from bench import defaults

    model, tokenizer = sentiment
    moved = _check_completeness(model, tokenizer, text, 2)
    # The check is not vacuous where the output moves far between baseline and input: with the
    # fully trained default model (the miniature one a clean checkout trains for the tests stays
    # near 0.5 everywhere; the wide random model below covers that case).
    if defaults.trained_model_dir(defaults.DEFAULT_MODELS["minilm-sentiment"]) is not None:
        assert moved > 0.1


def test_completeness_on_a_model_whose_output_moves(tmp_path: Path) -> None:
    """A random BERT with wide weights: its outputs move far between the baseline and the input
    in any environment, so the delta bound cannot hold by itself."""
    import torch
    from conftest import TINY_WORDS, build_tiny_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = build_tiny_model(tmp_path / "wide", seed=3, init_range=0.5)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        moved = [
            _check_completeness(model, tokenizer, (" ".join(TINY_WORDS[i : i + 8]),), 3)
            for i in (0, 5, 10)
        ]
    finally:
        torch.set_num_threads(threads)
    assert max(moved) > 0.1, moved


def test_fewer_steps_leave_a_larger_delta(sentiment: tuple[Any, Any]) -> None:
    model, tokenizer = sentiment
    coarse = Attributor(model, tokenizer, np.eye(2), steps=2).attribute(TEXTS[0], 1)[0]
    fine = Attributor(model, tokenizer, np.eye(2), steps=DEFAULT_STEPS).attribute(TEXTS[0], 1)[0]
    assert abs(fine.delta) < abs(coarse.delta)
    assert abs(fine.delta) < 0.05


def test_routed_labels_attribute_the_task_probability(sentiment: tuple[Any, Any]) -> None:
    """A model label routed to a task label: the attributed output is the summed probability
    (both model labels onto one task label: always 1, so nothing to attribute)."""
    model, tokenizer = sentiment
    both = Attributor(model, tokenizer, np.array([[1.0], [1.0]]))
    a, _ = both.attribute(TEXTS[1], 0)
    assert a.output == pytest.approx(1.0, abs=1e-6)
    assert a.baseline_output == pytest.approx(1.0, abs=1e-6)
    assert max(abs(s) for s in a.scores) < 1e-5


def test_faithfulness_deletes_what_it_says(sentiment: tuple[Any, Any]) -> None:
    model, tokenizer = sentiment
    attributor = Attributor(model, tokenizer, np.eye(2), fractions=(0.2,))
    target = 0
    a, enc = attributor.attribute(TEXTS[2], target)
    comp, suff, comp_r, suff_r = attributor.aopc(enc, a.scores, target, np.random.default_rng(0))
    content = [i for i, s in enumerate(enc.special) if not s]
    k = int(np.ceil(0.2 * len(content)))
    top = sorted(content, key=lambda i: -a.scores[i])[:k]
    full = _probability(model, tokenizer, enc.ids, target)
    without = [t for i, t in enumerate(enc.ids) if i not in top]
    only = [t for i, t in enumerate(enc.ids) if enc.special[i] or i in top]
    assert comp == pytest.approx(full - _probability(model, tokenizer, without, target), abs=1e-5)
    assert suff == pytest.approx(full - _probability(model, tokenizer, only, target), abs=1e-5)
    # On this plainly negative review, deleting the most negative pieces costs more than
    # deleting random ones.
    assert comp > comp_r
    assert all(np.isfinite([comp, suff, comp_r, suff_r]))


def test_explain_is_seeded(sentiment: tuple[Any, Any]) -> None:
    model, tokenizer = sentiment
    attributor = Attributor(model, tokenizer, np.eye(2), steps=8)
    one = attributor.explain(
        TEXTS[2], ("An awfull, borign mess of a movie that I regret watching.",), 0, 7
    )
    two = attributor.explain(
        TEXTS[2], ("An awfull, borign mess of a movie that I regret watching.",), 0, 7
    )
    assert one.comprehensiveness_random == two.comprehensiveness_random
    assert one.original.scores == two.original.scores
    assert one.adversarial.tokens != one.original.tokens
    assert one.seconds > 0
