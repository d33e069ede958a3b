"""Label alignment: by name, through declared aliases, or by an explicit map; never by position."""

from __future__ import annotations

import numpy as np
import pytest

from bench.errors import ModelError
from bench.models.labels import align_labels, normalise_label


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


LOGITS = np.array([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0], [-1.0, -1.0, 4.0]], dtype=np.float32)


def test_same_labels_same_order_is_identity() -> None:
    labels = ["entailment", "neutral", "contradiction"]
    al = align_labels(labels, labels)
    assert al.is_identity
    assert al.rules == dict.fromkeys(labels, "name")
    np.testing.assert_allclose(al.to_task_probs(LOGITS), _softmax(LOGITS.astype(np.float64)))


def test_permuted_model_labels_give_permuted_probabilities() -> None:
    model = ["contradiction", "entailment", "neutral"]
    task = ["entailment", "neutral", "contradiction"]
    al = align_labels(model, task)
    assert not al.is_identity
    probs = al.to_task_probs(LOGITS)
    p_model = _softmax(LOGITS.astype(np.float64))
    # task column j holds the probability of the model label with the same name
    np.testing.assert_allclose(probs[:, 0], p_model[:, 1])
    np.testing.assert_allclose(probs[:, 1], p_model[:, 2])
    np.testing.assert_allclose(probs[:, 2], p_model[:, 0])
    # Row 0 favours model label 0 (contradiction), which is task label 2, and so on.
    assert probs.argmax(axis=1).tolist() == [2, 0, 1]


def test_names_match_up_to_case_and_separators() -> None:
    assert normalise_label(" Not_Entailment ") == normalise_label("not-entailment")
    al = align_labels(["NOT_ENTAILMENT", "Entailment"], ["entailment", "not entailment"])
    assert al.mapping == {"NOT_ENTAILMENT": "not entailment", "Entailment": "entailment"}
    assert al.matrix.tolist() == [[0.0, 1.0], [1.0, 0.0]]


def test_aliases_collapse_three_way_to_two_way_by_summing() -> None:
    model = ["entailment", "neutral", "contradiction"]
    task = ["entailment", "non-entailment"]
    aliases = {"neutral": "non-entailment", "contradiction": "non-entailment"}
    al = align_labels(model, task, aliases=aliases)
    assert al.rules == {"entailment": "name", "neutral": "alias", "contradiction": "alias"}
    probs = al.to_task_probs(LOGITS)
    p = _softmax(LOGITS.astype(np.float64))
    np.testing.assert_allclose(probs[:, 0], p[:, 0])
    np.testing.assert_allclose(probs[:, 1], p[:, 1] + p[:, 2])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)


def test_override_wins_over_names() -> None:
    # A model whose head was trained with swapped names: the user says so explicitly.
    al = align_labels(
        ["negative", "positive"],
        ["negative", "positive"],
        override={"negative": "positive", "positive": "negative"},
    )
    assert al.rules == {"negative": "override", "positive": "override"}
    probs = al.to_task_probs(np.array([[3.0, 0.0]]))
    assert probs[0, 1] > 0.9


def test_override_maps_generic_label_names() -> None:
    al = align_labels(
        ["LABEL_0", "LABEL_1"],
        ["negative", "positive"],
        override={"label_1": "Positive", "LABEL_0": "negative"},
    )
    assert al.mapping == {"LABEL_0": "negative", "LABEL_1": "positive"}


def test_generic_labels_without_a_map_are_refused_with_a_hint() -> None:
    with pytest.raises(ModelError) as err:
        align_labels(["LABEL_0", "LABEL_1"], ["negative", "positive"])
    assert str(err.value) == (
        "model labels [LABEL_0, LABEL_1] do not match task labels [negative, positive]; "
        "pass a label map (--label-map LABEL_0=negative,...)"
    )


def test_incomplete_or_wrong_override_is_refused() -> None:
    with pytest.raises(ModelError, match="does not cover model label 'LABEL_1'"):
        align_labels(["LABEL_0", "LABEL_1"], ["neg", "pos"], override={"LABEL_0": "neg"})
    with pytest.raises(ModelError, match="not a task label"):
        align_labels(
            ["LABEL_0", "LABEL_1"], ["neg", "pos"], override={"LABEL_0": "neg", "LABEL_1": "good"}
        )
    with pytest.raises(ModelError, match=r"\[LABEL_7\], which are not model labels"):
        align_labels(
            ["LABEL_0", "LABEL_1"],
            ["neg", "pos"],
            override={"LABEL_0": "neg", "LABEL_1": "pos", "LABEL_7": "pos"},
        )
    # Covering all model labels but leaving a task label empty is still refused.
    with pytest.raises(ModelError, match=r"task labels \[pos\] receive no model label"):
        align_labels(
            ["LABEL_0", "LABEL_1"], ["neg", "pos"], override={"LABEL_0": "neg", "LABEL_1": "neg"}
        )


def test_model_label_without_task_meaning_is_refused() -> None:
    # 3-way model on a 2-way task with no aliases: neutral's mass would silently vanish.
    with pytest.raises(ModelError, match=r"model labels \[neutral\] match no task label"):
        align_labels(["entailment", "neutral", "contradiction"], ["entailment", "contradiction"])


def test_task_label_without_model_label_is_refused() -> None:
    with pytest.raises(ModelError, match=r"task labels \[neutral\] receive no model label"):
        align_labels(["entailment", "contradiction"], ["entailment", "neutral", "contradiction"])


def test_alias_to_unknown_task_label_is_refused() -> None:
    with pytest.raises(ModelError, match="not a task label"):
        align_labels(["pos", "neg", "neu"], ["pos", "neg"], aliases={"neu": "mixed"})


def test_logits_shape_is_checked() -> None:
    al = align_labels(["a", "b"], ["a", "b"])
    with pytest.raises(ValueError, match="do not match 2 model labels"):
        al.to_task_probs(np.zeros((4, 3)))


def test_softmax_is_stable_for_large_logits() -> None:
    al = align_labels(["a", "b"], ["b", "a"])
    probs = al.to_task_probs(np.array([[1000.0, 0.0], [-1000.0, 1000.0]]))
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs, [[0.0, 1.0], [1.0, 0.0]])


# ------------------------------------------------------------------------ the --label-map hint


def _refusal(model: list[str], task: list[str]) -> str:
    with pytest.raises(ModelError) as err:
        align_labels(model, task)
    return str(err.value)


def test_unrelated_label_sets_get_no_label_map_proposal() -> None:
    # An NLI model on a sentiment task: any "entailment=negative" would be nonsense.
    message = _refusal(["entailment", "neutral", "contradiction"], ["negative", "positive"])
    assert message.startswith(
        "model labels [entailment, neutral, contradiction] do not match task labels "
        "[negative, positive]; the label sets do not correspond"
    )
    assert "--label-map" not in message and "=negative" not in message
    assert "--adapter nli" in message  # what such a model can do with the task
    other = _refusal(["joy", "anger", "fear"], ["negative", "positive"])
    assert "--label-map" not in other and "--adapter" not in other
    assert "do not correspond" in other


def test_names_that_pair_up_get_a_complete_proposal() -> None:
    message = _refusal(["pos", "neg"], ["negative", "positive"])
    assert message.endswith("pass a label map (--label-map pos=positive,neg=negative)")
    message = _refusal(["ENTAILMENT", "NOT_ENTAILMENT"], ["entailment", "non-entailment"])
    assert "match no task label" in message
    assert "--label-map ENTAILMENT=entailment,NOT_ENTAILMENT=non-entailment)" in message


def test_partly_unmatched_labels_without_a_plausible_pair_get_no_guess() -> None:
    message = _refusal(["positive", "negative", "mixed"], ["negative", "positive"])
    assert message.startswith("model labels [mixed] match no task label in [negative, positive]")
    assert message.endswith(
        "add task label_aliases for them, or a --label-map covering every model label"
    )
    assert "mixed=" not in message


def test_fewer_model_classes_than_task_labels_says_so() -> None:
    message = _refusal(["entailment", "contradiction"], ["entailment", "neutral", "contradiction"])
    assert message.endswith("the model has no class for them (a model trained for another task?)")
    assert "--label-map" not in message
